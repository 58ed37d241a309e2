-- Connections of the process-wide engine: the idle cache bound (#9.5), HTTP/2
-- streams per connection (#11.6), libcurl's receive buffer (#11.6); all set
-- with longpoll.configure
local longpoll = require "longpoll"
local testserver = require "support.testserver"
local nchan = require "support.nchan"
local proc = require "support.proc"

-- our established connections to a local port (the server's side has it as
-- its source port, so only ours are counted)
local function established(port)
  return proc.count(("ss -Htn state established '( dport = :%d )'"):format(port))
end

-- wait (bounded) until pred() holds; its last value
local function eventually(seconds, pred)
  local deadline = longpoll.now() + seconds
  repeat
    local v = pred()
    if v then return v end
    longpoll.sleep(0.02)
  until longpoll.now() > deadline
  return pred()
end

describe("longpoll.configure", function()
  local defaults
  setup(function() defaults = longpoll.configure() end)
  teardown(function() longpoll.configure(defaults) end)

  it("reads the settings, changes only those named, and names a wrong one", function()
    local now = longpoll.configure()
    assert.same({ max_host_connections = 0, max_connections = 0, max_idle_connections = 64,
                  max_streams = 1000, buffer_size = 0 }, now)
    assert.equals(8, longpoll.configure{ max_idle_connections = 8 }.max_idle_connections)
    assert.equals(1000, longpoll.configure().max_streams)
    assert.has_error(function() longpoll.configure{ max_streams = 0 } end,
      "longpoll.configure: option 'max_streams' must be a positive integer")
    assert.has_error(function() longpoll.configure{ buffer_size = 512 } end,
      "longpoll.configure: option 'buffer_size' must be 0 (libcurl's) or 1024 to 10485760 bytes")
    assert.has_error(function() longpoll.configure{ buffer = 1 } end,
      "longpoll.configure: unknown option 'buffer'")
    longpoll.configure(defaults)
  end)
end)

describe("over HTTP/1.1", function()
  local srv, defaults
  setup(function()
    defaults = longpoll.configure()
    srv = testserver.start()
  end)
  teardown(function()
    longpoll.configure(defaults)
    srv:stop()
  end)
  after_each(function() longpoll.configure(defaults) end)

  it("keeps at most max_idle_connections once many requests at once ended (#9.5)", function()
    -- libcurl's own bound is 4 per transfer in the multi handle, counted
    -- while they run: 40 at once left 40 idle connections open. The bound
    -- counts every server's connections, and libcurl closes one, the
    -- oldest, each time a transfer ends over it: first bring down to 1 what
    -- earlier specs left in the cache (one closed per request)
    longpoll.configure{ max_idle_connections = 1 }
    for _ = 1, 80 do assert.is_table((longpoll.request{ url = srv:url("/json") }:run())) end
    longpoll.configure{ max_idle_connections = 8 }
    local reqs = {}
    for i = 1, 40 do reqs[i] = longpoll.request{ url = srv:url("/hold?ms=300&body=x") }:start() end
    assert.truthy(srv:wait_held(40, 10))
    for i = 1, 40 do
      assert.is_true(reqs[i]:wait(10))
      assert.equals("x", (reqs[i]:run()))
    end
    -- the connections past the bound are closed as their transfers end
    assert.truthy(eventually(5, function() return established(srv.port) <= 8 end),
      established(srv.port) .. " connections still open")
    assert.equals(8, established(srv.port))
    -- and the cached ones are reused (one more: the next stats request)
    local before = srv:stats().connections
    for i = 1, 8 do reqs[i] = longpoll.request{ url = srv:url("/hold?ms=100&body=y") }:start() end
    for i = 1, 8 do assert.equals("y", (reqs[i]:run())) end
    assert.equals(before + 1, srv:stats().connections)
  end)

  it("buffer_size is libcurl's receive buffer: a small one still takes a large body whole (#11.6)", function()
    assert.equals(1024, longpoll.configure{ buffer_size = 1024 }.buffer_size)
    local body = longpoll.request{ url = srv:url("/big?bytes=300000"), decode = "none" }:run()
    assert.equals(300000, #body)
    longpoll.configure{ buffer_size = 0 }
    body = longpoll.request{ url = srv:url("/big?bytes=300000"), decode = "none" }:run()
    assert.equals(300000, #body)
  end)
end)

describe("HTTP/2 streams per connection (#11.6)", function()
  local ng, defaults
  setup(function()
    defaults = longpoll.configure()
    if nchan.available() then ng = nchan.start{ subscriber_timeout = "60s" } end
  end)
  teardown(function()
    longpoll.configure(defaults)
    if ng then ng:stop() end
  end)

  local function hold(n, ch)
    local reqs = {}
    for i = 1, n do
      reqs[i] = longpoll.request{ url = ng:tlsurl("/sub/" .. ch), cainfo = ng.cafile }:start()
    end
    assert.truthy(eventually(20, function() return ng:info(ch).subscribers == n end),
      "held " .. tostring(ng:info(ch).subscribers))
    for i = 1, n do assert.equals("running", reqs[i]:status()) end
    return reqs
  end

  it("opens one more connection when they are full, not one per waiting request", function()
    if not ng then return pending("nginx with Nchan is not installed") end
    -- libcurl 7.88.1 let every request past a full connection open its own
    -- (curl/curl#10456): 35 polls at 10 streams each made 26 connections
    longpoll.configure{ max_streams = 10 }
    local reqs = hold(35, "streams35")
    assert.equals(4, established(ng.tlsport))
    for i = 1, 35 do reqs[i]:cancel() end
    assert.truthy(eventually(10, function() return established(ng.tlsport) == 0 end))
    -- by default the server's SETTINGS bound them (256 here), not libcurl's
    -- 100: one connection. (Until a new connection has read the server's
    -- SETTINGS libcurl assumes 100: one poll goes first)
    longpoll.configure(defaults)
    local first = hold(1, "streams1")
    reqs = hold(120, "streams120")
    assert.equals(1, established(ng.tlsport))
    first[1]:cancel()
    for i = 1, 120 do reqs[i]:cancel() end
  end)
end)
