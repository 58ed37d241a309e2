-- Hostile servers (#9): responses and conditions meant to break a client,
-- each a spec of what the module does today, so that it keeps doing it: a
-- clean `nil, err` with the right kind (or the right value), promptly, and a
-- process that keeps working. The servers are scripted raw servers
-- (spec/support/rawserver.lua) and the spec server, on 127.0.0.1 only.
local longpoll = require "longpoll"
local rawserver = require "support.rawserver"
local testserver = require "support.testserver"
local proc = require "support.proc"
local LUA = require "support.lua"

local function head(extra) return "HTTP/1.1 200 OK\r\n" .. (extra or "") end
-- (concatenated: Lua 5.1's string.format("%s") stops at a NUL)
local function response(body, extra)
  return head((extra or "") .. "Content-Length: " .. #body .. "\r\n\r\n" .. body)
end

-- one request to a raw server playing `steps` on every connection
local function against(steps, opts)
  local srv = rawserver.start{ steps = steps }
  opts = opts or {}
  opts.url = srv:url("/x")
  opts.timeout = opts.timeout or 60        -- a spec that goes wrong fails, never hangs
  local value, second = longpoll.request(opts):run()
  srv:stop()
  return value, second
end

-- after each hostile answer the module still serves an ordinary request
local function still_works()
  local srv = rawserver.start{ steps = { "request", { send = response("fine") }, "again" } }
  local v = longpoll.request{ url = srv:url("/"), decode = "none" }:run()
  srv:stop()
  assert.equals("fine", v)
end

describe("a hostile server", function()
  after_each(still_works)

  describe("headers", function()
    it("that never end (a flood) fail as network once past the header cap, saying so", function()
      local block = {}
      for i = 1, 2000 do block[i] = ("X-Flood-%d: %s\r\n"):format(i, ("v"):rep(20)) end
      local steps = { "request", { send = head() } }
      for _ = 1, 100 do steps[#steps + 1] = { send = table.concat(block) } end  -- 5.6 MB, no end
      local v, err = against(steps)
      assert.is_nil(v)
      assert.equals("network", err.kind)
      assert.truthy(err.message:find("response headers exceed 256 KiB", 1, true), err.message)
    end)

    it("that never end (a trickle) end at the timeout, or at once on cancel", function()
      local steps = { "request", { send = head() } }
      for _ = 1, 200 do
        steps[#steps + 1] = { send = "X-Trickle: 1\r\n" }
        steps[#steps + 1] = { sleep = 50 }
      end
      local v, err = against(steps, { timeout = 0.5 })
      assert.is_nil(v)
      assert.equals("timeout", err.kind)
      local srv = rawserver.start{ steps = steps }
      local req = longpoll.request{ url = srv:url("/") }:start()
      assert.is_false(req:wait(0.3))
      assert.is_true(req:cancel())
      local _, err2 = req:run()
      assert.equals("canceled", err2.kind)
      srv:stop()
    end)

    it("a 10 MB header line fails as network, saying so (libcurl 100 KiB line limit, not \"Out of memory\")", function()
      local v, err = against{ "request", { send = response("ok", "X-Big: " .. ("a"):rep(10 * 1024 * 1024) .. "\r\n") } }
      assert.is_nil(v)
      assert.equals("network", err.kind)
      -- not libcurl's "Out of memory"
      assert.truthy(err.message:find("a response header line exceeds 100 KiB", 1, true), err.message)
    end)

    it("100,000 headers fail as network, saying so (past the header cap)", function()
      local many = {}
      for i = 1, 100000 do many[i] = "X-H: " .. i .. "\r\n" end
      local v, err = against{ "request", { send = response("ok", table.concat(many)) } }
      assert.is_nil(v)
      assert.equals("network", err.kind)
      assert.truthy(err.message:find("response headers exceed 256 KiB", 1, true), err.message)
    end)
  end)

  describe("bodies", function()
    it("a Content-Length longer than the body, then a close, fails as network", function()
      local v, err = against{ "request", { send = head("Content-Length: 100\r\n\r\nshort") }, "close" }
      assert.is_nil(v)
      assert.equals("network", err.kind)
    end)

    it("a Content-Length shorter than the body gives its bytes, and the rest answers no one", function()
      local srv = rawserver.start{ conns = {
        { "request", { send = head("Content-Length: 5\r\n\r\nhello, and more than that") },
          "request", { send = response("second on the first connection") }, "again" },
        { "request", { send = response("fresh") }, "again" } } }
      assert.equals("hello", (longpoll.request{ url = srv:url("/1"), decode = "none" }:run()))
      assert.equals("fresh", (longpoll.request{ url = srv:url("/2"), decode = "none" }:run()))
      srv:stop()
    end)

    for name, bytes in pairs{
      ["a size that is not hex"] = "zz\r\nhello\r\n0\r\n\r\n",
      ["a size of 20 hex digits"] = "ffffffffffffffffffff\r\nhello\r\n",
      ["a size larger than the data, then a close"] = "ffff\r\nhello\r\n",
      ["no last chunk before the close"] = "5\r\nhello\r\n",
    } do
      it("broken chunked encoding (" .. name .. ") fails as network", function()
        local v, err = against{ "request", { send = head("Transfer-Encoding: chunked\r\n\r\n" .. bytes) }, "close" }
        assert.is_nil(v)
        assert.equals("network", err.kind)
      end)
    end

    it("a gzip bomb stops at max_body, as too_large, without inflating it all", function()
      -- 100 MB of zeros, gzip'ed to about 100 KB
      local p = assert(io.popen("head -c 100000000 /dev/zero | gzip -c"))
      local gz = p:read("*a")
      p:close()
      assert.is_true(#gz > 1000 and #gz < 1000000)
      local function hwm()
        return tonumber(proc.read_file("/proc/self/status"):match("VmHWM:%s*(%d+)"))
      end
      local before = hwm()
      local v, err = against({ "request", { send = response(gz, "Content-Encoding: gzip\r\n") } },
        { max_body = 1024 * 1024 })
      assert.is_nil(v)
      assert.equals("too_large", err.kind)
      assert.is_true(hwm() - before < 50 * 1024, "the peak grew by " .. (hwm() - before) .. " KB")
    end)
  end)

  describe("JSON", function()
    local function json(body, decode)
      return against({ "request", { send = response(body, "Content-Type: application/json\r\n") } },
        { decode = decode })
    end

    it("an escaped NUL decodes into the string; a raw NUL is a decode error", function()
      assert.equals("x\0y", json('{"a":"x\\u0000y"}').a)
      local v, err = json('{"a":"x\0y"}')
      assert.is_nil(v)
      assert.equals("decode", err.kind)
      assert.equals('{"a":"x\0y"}', err.response.body)
    end)

    it("invalid UTF-8 comes through as the bytes it was, never run", function()
      assert.equals("x\255\254y", json('{"a":"x\255\254y"}', "json").a)
    end)

    it("nesting deeper than lua-cjson's limit (1000) is a decode error, with the body kept", function()
      local deep = ("["):rep(100000) .. ("]"):rep(100000)
      local v, err = json(deep)
      assert.is_nil(v)
      assert.equals("decode", err.kind)
      assert.equals(#deep, #err.response.body)
      assert.equals(#deep, #json(deep, "none"))
    end)
  end)

  describe("1xx and 101", function()
    it("100 Continue, 103 Early Hints and a thousand 102s come before the final answer", function()
      local v, resp = against{ "request", { send = "HTTP/1.1 100 Continue\r\n\r\n"
        .. "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        .. ("HTTP/1.1 102 Processing\r\n\r\n"):rep(1000)
        .. response("ok", "X-Final: yes\r\n") } }
      assert.equals("ok", v)
      assert.equals(200, resp.status)
      assert.equals("yes", resp.headers["x-final"])
      assert.is_nil(resp.headers.link)              -- the hints' headers are not the answer's
    end)

    it("a 101 nobody asked for is an http error once the server closes, and cancelable before", function()
      local switch = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\1\2\3"
      local v, err = against{ "request", { send = switch }, { sleep = 100 }, "close" }
      assert.is_nil(v)
      assert.equals("http", err.kind)
      assert.equals(101, err.status)
      local srv = rawserver.start{ steps = { "request", { send = switch, note = "switched" }, "hold" } }
      local req = longpoll.request{ url = srv:url("/") }:start()
      assert.truthy(srv:wait(function(st) return st.notes.switched == 1 end, 5))
      assert.is_false(req:wait(0.2))
      assert.is_true(req:cancel())
      assert.equals("canceled", select(2, req:run()).kind)
      srv:stop()
    end)
  end)

  describe("subscriptions", function()
    -- found by spec/libfuzzer/cursor_fuzz.c: a "since" id of another JSON
    -- type became the cursor as is (one its own check refuses), and the next
    -- poll sent it as "since=table: 0x..."
    for what, id in pairs{ ["an object"] = '{"a":1}', ["a boolean"] = "true", ["an array"] = "[1]" } do
      it("a message id that is " .. what .. " stops a \"since\" subscription as decode, never sent back", function()
        local srv = rawserver.start{ steps = { "request",
          { send = response('[{"id":' .. id .. ',"data":"x"}]', "Content-Type: application/json\r\n") },
          "again" } }
        local sub = longpoll.subscribe{ url = srv:url("/poll"), cursor = "since",
          backoff = { floor = 0.01, ceiling = 0.05 } }
        local got, err
        for _ = 1, 500 do
          got, err = sub:poll()
          if got == nil or #got > 0 then break end
          longpoll.sleep(0.01)
        end
        sub:cancel()
        local lines = srv:requests()
        srv:stop()
        assert.is_nil(got)
        assert.equals("decode", err.kind)
        assert.is_true(#lines >= 1)
        for _, r in ipairs(lines) do assert.is_nil(r.line:find("since=", 1, true), r.line) end
      end)
    end
  end)

  describe("connections and names", function()
    it("that accepts and never answers ends at the timeout", function()
      local v, err = against({ "request", "hold" }, { timeout = 0.5 })
      assert.is_nil(v)
      assert.equals("timeout", err.kind)
    end)

    it("a name that does not resolve fails as resolve while other requests run on", function()
      local srv = testserver.start()
      local held = {}
      for i = 1, 5 do
        held[i] = longpoll.request{ url = srv:url("/hold?ms=300&status=200&body=%5B" .. i .. "%5D") }:start()
      end
      -- a label over 63 bytes: the C library refuses it without asking a DNS
      -- server (no traffic leaves the machine); .invalid never resolves (RFC 6761)
      local bad = {}
      for i = 1, 20 do
        bad[i] = longpoll.request{ url = ("http://%s%d.invalid/"):format(("n"):rep(64), i) }:start()
      end
      for i = 1, 20 do
        local v, err = bad[i]:run()
        assert.is_nil(v)
        assert.equals("resolve", err.kind)
      end
      for i = 1, 5 do
        assert.same({ i }, (held[i]:run()))
      end
      srv:stop()
    end)

    it("with every descriptor taken (ulimit -n), requests fail as connect and fd() as a file result; then all works again", function()
      local srv = testserver.start()
      local out, ok = proc.run(("ulimit -n 64; LUA_PATH=%s LUA_CPATH=%s timeout 60 %s spec/support/nofile.lua %s"):format(
        proc.shell_quote(package.path), proc.shell_quote(package.cpath), LUA, srv:url("")))
      srv:stop()
      assert.is_true(ok, out)
      assert.truthy(out:match("\nkind connect 20\n"), out)
      assert.truthy(out:match("\nfd nil Too many open files 24\n"), out)
      local cpu = tonumber(out:match("\ncpu ([%d.]+)\n"))
      assert.is_true(cpu ~= nil and cpu < 0.5, out)       -- no spinning worker
      assert.truthy(out:match("\nafter 7\nfd after number\nafter fd 8\n"), out)
    end)
  end)
end)
