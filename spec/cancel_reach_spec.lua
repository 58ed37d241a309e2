-- A cancel reaches the server: the connection (or the HTTP/2 stream) is
-- closed at once, whatever else the process does (API.md, Threads and lifetime)
local longpoll = require "longpoll"
local testserver = require "support.testserver"
local nchan = require "support.nchan"
local proc = require "support.proc"
local socket = require "socket"

-- #9.1: libcurl 7.88.1 makes its sockets with plain socket(), so a child
-- process inherited them and kept a canceled poll open on the server
describe("a cancel with a child process running", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  it("closes the connection though the child inherited the process's descriptors", function()
    local req = longpoll.request{ url = srv:url("/hold") }:start()
    assert.truthy(srv:wait_held(1, 5))
    local pidfile = os.tmpname()
    os.execute("sleep 30 & echo $! > " .. pidfile)
    local child = tonumber(proc.read_file(pidfile))
    os.remove(pidfile)
    assert.is_number(child)
    local ok, err = pcall(function()
      assert.is_true(req:cancel())
      assert.truthy(srv:wait_held(0, 5))
      assert.is_true(proc.alive(child))
    end)
    os.execute("kill -KILL " .. child .. " 2>/dev/null")
    assert(ok, err)
  end)

  it("a child inherits none of the module's descriptors", function()
    -- in a fresh process, where only the module makes sockets and anon inodes
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local longpoll = require "longpoll"
      local req = longpoll.request{ url = ...}:start()
      req:fd()
      req:wait(0.2)
      local p = io.popen("sleep 30 >/dev/null 2>&1 </dev/null & echo $!")
      local child = p:read("*l")
      p:close()
      p = io.popen("ls -l /proc/" .. child .. "/fd")
      io.write(p:read("*a"))
      p:close()
      os.execute("kill -KILL " .. child)
      req:cancel()
    ]])
    f:close()
    local out = proc.run(("LUA_PATH=%s LUA_CPATH=%s timeout 30 %s %s %s"):format(
      proc.shell_quote(package.path), proc.shell_quote(package.cpath),
      require "support.lua", script, srv:url("/hold")))
    os.remove(script)
    assert.matches("total", out)
    assert.is_nil(out:find("socket:", 1, true), out)
    assert.is_nil(out:find("anon_inode", 1, true), out)
  end)
end)

-- #7.8: in a cancel storm libcurl tells the engine to stop watching sockets it
-- already closed (epoll_ctl DEL gave EBADF), and socket numbers come back for
-- new connections at once: every request must still end, every connection close
describe("a cancel storm", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  it("300 requests canceled at random moments all end, and the server holds none", function()
    local rng = 12345
    local function random(n) rng = (rng * 1103515245 + 12345) % 2147483648 return rng % n end
    local reqs = {}
    for i = 1, 300 do
      reqs[i] = longpoll.request{ url = srv:url(random(4) == 0 and "/json" or "/hold") }:start()
      local j = random(i) + 1           -- cancel an earlier one, at once or a little later
      if random(3) == 0 then reqs[j]:wait(0.001) end
      reqs[j]:cancel()
    end
    for i = 1, 300 do reqs[i]:cancel() end
    for i = 1, 300 do assert.is_true(reqs[i]:wait(5), "request " .. i) end
    assert.truthy(srv:wait_held(0, 10))
    local value = longpoll.request{ url = srv:url("/json"), timeout = 10 }:run()
    assert.is_true(value.ok)
  end)
end)

-- #7.6: over HTTP/2 libcurl 7.88.1 queues the RST_STREAM of a removed
-- transfer in a buffer that only the connection's next send flushes
local describe_nchan = nchan.available() and describe or pending
describe_nchan("a cancel over HTTP/2 with TLS", function()
  local ng
  setup(function() ng = nchan.start{ subscriber_timeout = "60s" } end)
  teardown(function() if ng then ng:stop() end end)

  local function subscribers(prefix, n)
    local total = 0
    for i = 1, n do total = total + ng:info(prefix .. i).subscribers end
    return total
  end

  local function until_subscribers(prefix, n, want)
    local deadline = socket.gettime() + 5
    repeat
      if subscribers(prefix, n) == want then return true end
      socket.sleep(0.01)
    until socket.gettime() > deadline
    return subscribers(prefix, n) == want
  end

  local function hold(prefix, n)
    local reqs = {}
    for i = 1, n do
      reqs[i] = longpoll.request{ url = ng:tlsurl("/sub/" .. prefix .. i), cainfo = ng.cafile }:start()
    end
    assert.is_true(until_subscribers(prefix, n, n))
    return reqs
  end

  it("reaches the server at once when it ends the connection's last streams", function()
    for round = 1, 2 do
      local reqs = hold("last" .. round .. "x", 10)
      for i = 1, 10 do assert.is_true(reqs[i]:cancel()) end
      assert.is_true(until_subscribers("last" .. round .. "x", 10, 0), "round " .. round)
    end
  end)

  it("reaches the server at once while other streams stay on the connection", function()
    local other = hold("stay", 1)[1]
    local reqs = hold("gone", 10)
    for i = 1, 10 do assert.is_true(reqs[i]:cancel()) end
    assert.is_true(until_subscribers("gone", 10, 0))
    assert.equals(1, ng:info("stay1").subscribers)
    assert.equals("running", other:status())
    assert.truthy(ng:publish("stay1", "still here"))
    assert.is_true(other:wait(10))
    local value, resp = other:run()
    assert.equals("still here", value)
    assert.equals("2", resp.http_version)
  end)
end)
