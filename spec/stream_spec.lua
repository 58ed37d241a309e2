-- Stream mode: longpoll.request{ stream = "sse" | "ndjson" | "json-seq" | "lines" } against the
-- spec server's /stream/<fmt> and /sse/<ch> endpoints (spec/support/server.lua)
local longpoll = require "longpoll"
local testserver = require "support.testserver"
local socket = require "socket"

local FORMATS = { "ndjson", "json-seq", "lines", "sse" }

-- the message numbers a stream's messages carry, whatever their format
local function number_of(msg)
  if type(msg) == "string" then return tonumber(msg:match('"n":(%d+)')) end
  if msg.data ~= nil then return number_of(msg.data) end
  return msg.n
end

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- until pred() or `seconds` passed (10 ms steps); the last pred() value
local function wait_until(seconds, pred)
  local deadline = longpoll.now() + seconds
  local v = pred()
  while not v and longpoll.now() < deadline do
    longpoll.sleep(0.01)
    v = pred()
  end
  return v
end

describe("stream mode", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)
  before_each(function() assert.truthy(srv:wait_held(0, 5)) end)

  for _, fmt in ipairs(FORMATS) do
    it(fmt .. ": every message, in order, from a body cut into 3-byte chunks", function()
      local req = longpoll.request{
        url = srv:url("/stream/" .. fmt .. "?n=40&size=20&chunk=3&interval_ms=1&bom=1"), stream = fmt,
        timeout = 60 }                       -- every loop here ends, at the latest by this
      local got = {}
      for msg in req:messages() do got[#got + 1] = number_of(msg) end
      assert.equals(40, #got)
      for i = 1, 40 do assert.equals(i, got[i]) end
      assert.is_true(req:done())
      assert.equals("done", req:status())
      local p = req:progress()
      assert.equals(40, p.messages)
      assert.equals(0, p.queued)
      assert.is_true(p.received > 40 * 20)
    end)
  end

  it("ndjson and json-seq messages are decoded like bodies; decode = 'none' keeps the text", function()
    local req = longpoll.request{ url = srv:url("/stream/ndjson?n=2"), stream = "ndjson" }
    local m = req:next(10)
    assert.same({ n = 1, pad = ("p"):rep(16) }, m)
    if math.type then assert.equals("integer", math.type(m.n)) end
    req = longpoll.request{ url = srv:url("/stream/json-seq?n=2"), stream = "json-seq", decode = "none" }
    assert.equals('{"n":1,"pad":"pppppppppppppppp"}', req:next(10))
    req = longpoll.request{ url = srv:url("/stream/lines?n=2"), stream = "lines" }
    assert.equals('{"n":1,"pad":"pppppppppppppppp"}', req:next(10))
    req = longpoll.request{ url = srv:url("/stream/lines?n=2"), stream = "lines", decode = "json" }
    assert.equals(1, req:next(10).n)
  end)

  it("sse messages are tables {event, data, id, retry}; data decoded when it is JSON", function()
    local req = longpoll.request{ url = srv:url("/stream/sse?n=2&retry=2500"), stream = "sse" }
    local m = req:next(10)
    assert.same({ event = "tick", id = "1", retry = 2500, data = { n = 1, pad = ("p"):rep(16) } }, m)
    m = req:next(10)
    assert.same({ event = "tick", id = "2", data = { n = 2, pad = ("p"):rep(16) } }, m)
    assert.is_nil(req:next(10))
    assert.is_true(req:done())
    req = longpoll.request{ url = srv:url("/stream/sse?n=1"), stream = "sse", decode = "none" }
    assert.equals('{"n":1,"pad":"pppppppppppppppp"}', req:next(10).data)
  end)

  it("sse data that is not JSON stays text in decode 'auto' and fails the stream in 'json'", function()
    local ch = "sse_text_" .. os.time()
    srv:publish(ch, "hello")
    srv:publish(ch, "[1, 2]")
    local req = longpoll.request{ url = srv:url("/sse/" .. ch .. "?close_after=2"), stream = "sse" }
    assert.same({ event = "message", id = "1", data = "hello" }, req:next(10))
    assert.same({ 1, 2 }, req:next(10).data)
    req = longpoll.request{ url = srv:url("/sse/" .. ch .. "?close_after=2"), stream = "sse", decode = "json" }
    local m, err = req:next(10)
    assert.is_nil(m)
    assert.equals("decode", err.kind)
    assert.matches("invalid JSON", err.message, 1, true)
    assert.is_true(req:done())
    assert.equals("failed", req:status())
    assert.same({ nil, err }, { req:next(1) })
    assert.truthy(srv:wait_held(0, 5))      -- the transfer was stopped
  end)

  it("next(seconds) returns nil when nothing came in time, without ending the stream", function()
    local req = longpoll.request{ url = srv:url("/stream/ndjson?n=1&end=0"), stream = "ndjson" }
    assert.equals(1, req:next(10).n)
    local t0 = longpoll.now()
    assert.is_nil(req:next(0.05))
    assert.is_true(longpoll.now() - t0 >= 0.04)
    assert.is_false(req:done())
    assert.is_false(req:ready())
    assert.equals("running", req:status())
    assert.is_true(req:cancel())
  end)

  it("poll() returns what is queued, never blocks, {} at a clean end", function()
    local req = longpoll.request{ url = srv:url("/stream/ndjson?n=25&chunk=64&interval_ms=2"),
      stream = "ndjson" }
    local got, rounds = {}, 0
    while not req:done() and rounds < 5000 do
      rounds = rounds + 1
      local msgs = assert(req:poll())
      for _, m in ipairs(msgs) do got[#got + 1] = m.n end
      longpoll.sleep(0.002)
    end
    assert.equals(25, #got)
    for i = 1, 25 do assert.equals(i, got[i]) end
    assert.same({}, req:poll())
    -- at most `max` at a time
    req = longpoll.request{ url = srv:url("/stream/lines?n=10"), stream = "lines" }:start()
    assert.truthy(wait_until(10, function() return req:progress().messages == 10 end))
    assert.equals(3, #req:poll(3))
    assert.equals(7, #req:poll())
    assert.has_error(function() req:poll(0) end)
  end)

  it("fd() is readable while messages are queued and once the stream ended", function()
    local req = longpoll.request{ url = srv:url("/stream/ndjson?n=1&end=0"), stream = "ndjson" }:start()
    local fd = req:fd()
    local wrap = { getfd = function() return fd end }
    local r = socket.select({ wrap }, nil, 10)
    assert.equals(1, #r)
    assert.is_true(req:ready())
    assert.equals(1, req:next(0).n)
    r = socket.select({ wrap }, nil, 0.05)   -- drained: not readable
    assert.equals(0, #r)
    req:cancel()
    r = socket.select({ wrap }, nil, 10)
    assert.equals(1, #r)
    assert.is_true(req:done())
  end)

  it("await_next() yields in a coroutine until a message is queued", function()
    local req = longpoll.request{ url = srv:url("/stream/sse?n=3&interval_ms=20"), stream = "sse" }
    local got = {}
    local co = coroutine.create(function()
      while true do
        local m, err = req:await_next()
        if m == nil then return err end
        got[#got + 1] = tonumber(m.id)
      end
    end)
    local yields = 0
    while coroutine.status(co) ~= "dead" and yields < 100000 do
      local ok, y = coroutine.resume(co)
      assert.is_true(ok, y)
      if coroutine.status(co) ~= "dead" then
        assert.equals(req, y)
        yields = yields + 1
        longpoll.wait_any({ req }, 1)
      end
    end
    assert.same({ 1, 2, 3 }, got)
    assert.is_true(yields > 0)
    assert.has_error(function() req:await_next() end)   -- outside a coroutine
  end)

  it("wait_any() returns a stream that has a message queued", function()
    local idle = longpoll.request{ url = srv:url("/stream/ndjson?n=0&end=0"), stream = "ndjson" }:start()
    local busy = longpoll.request{ url = srv:url("/stream/ndjson?n=1&end=0&interval_ms=50"), stream = "ndjson" }
    assert.equals(busy, longpoll.wait_any({ idle, busy }, 10))
    assert.equals(1, busy:next(0).n)
    assert.is_nil(longpoll.wait_any({ idle, busy }, 0.05))
    idle:cancel()
    busy:cancel()
  end)

  it("cancel mid-stream ends next() with 'canceled' at once and closes the connection", function()
    local req = longpoll.request{ url = srv:url("/stream/ndjson?n=3&end=0"), stream = "ndjson" }:start()
    assert.truthy(wait_until(10, function() return req:progress().messages == 3 end))
    assert.truthy(srv:wait_held(1, 5))
    local co = coroutine.create(function() return req:await_next() end)
    assert.is_true(req:cancel())
    local ok, m, err = coroutine.resume(co)
    assert.is_true(ok)
    assert.is_nil(m)
    assert.equals("canceled", err.kind)            -- queued messages are dropped: cancel wins
    assert.is_true(req:done())
    local none, perr = req:poll()
    assert.is_nil(none)
    assert.equals("canceled", perr.kind)
    assert.truthy(srv:wait_held(0, 5))
    -- the iterator ends quietly on a cancel
    req = longpoll.request{ url = srv:url("/stream/lines?n=2&end=0"), stream = "lines", timeout = 60 }
    local n = 0
    for _ in req:messages() do
      n = n + 1
      if n == 2 then req:cancel() end
    end
    assert.equals(2, n)
  end)

  it("a message over max_message fails the stream with too_large after the ones before", function()
    local ch = "sse_large_" .. os.time()
    srv:publish(ch, "a")
    srv:publish(ch, "b")
    srv:publish(ch, ("c"):rep(101))
    local req = longpoll.request{ url = srv:url("/sse/" .. ch), stream = "sse", max_message = 100 }
    assert.equals("a", req:next(10).data)
    assert.equals("b", req:next(10).data)
    local m, err = req:next(10)
    assert.is_nil(m)
    assert.equals("too_large", err.kind)
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("response() of a stream that failed with messages queued leaves them to be read", function()
    local ch = ("failq%d"):format(os.time())
    srv:publish(ch, { "a", "b", ("x"):rep(300) })
    local req = longpoll.request{ url = srv:url("/sse/" .. ch .. "?close_after=3"), stream = "sse",
      max_message = 100, timeout = 10 }:start()
    assert.truthy(wait_until(10, function() return req:status() == "failed" end))
    assert.equals(200, req:response().status)
    local msgs = req:poll()
    assert.equals(2, #msgs)
    assert.equals("b", msgs[2].data)
    local none, err = req:poll()
    assert.is_nil(none)
    assert.equals("too_large", err.kind)
    assert.equals(err.response, req:response())
  end)

  it("a message exactly at max_message passes; one byte over fails with too_large", function()
    -- each line is {"n":i,"pad":"pp.."} of `size` bytes
    local req = longpoll.request{ url = srv:url("/stream/ndjson?n=2&size=64"), stream = "ndjson",
      max_message = 64 }
    assert.equals(1, req:next(10).n)
    assert.equals(2, req:next(10).n)
    assert.is_nil(req:next(10))
    req = longpoll.request{ url = srv:url("/stream/ndjson?n=2&size=65"), stream = "ndjson",
      max_message = 64, timeout = 60 }
    local m, err = req:next(10)
    assert.is_nil(m)
    assert.equals("too_large", err.kind)
    assert.matches("max_message (64 bytes)", err.message, 1, true)
    assert.equals(200, err.status)
    local ok, raised = pcall(function() for _ in req:messages() do end end)
    assert.is_false(ok)
    assert.equals("too_large", raised.kind)          -- the iterator raises the error object
  end)

  it("an error answer is not split: kind 'http' with its body", function()
    local req = longpoll.request{ url = srv:url("/status/404"), stream = "lines" }
    local m, err = req:next(10)
    assert.is_nil(m)
    assert.equals("http", err.kind)
    assert.equals(404, err.status)
    assert.equals('{"status":404}', err.response.body)
    assert.equals(0, req:progress().messages)
  end)

  it("a connection reset mid-stream hands out the queued messages, then the error", function()
    local req = longpoll.request{ url = srv:url("/reset"), stream = "lines" }
    local m, err = req:next(10)
    assert.is_nil(m)
    assert.equals("network", err.kind)
  end)

  it("bad stream options raise, naming the option; run() and next() say what fits", function()
    local url = srv:url("/stream/sse")
    assert.has_error(function() longpoll.request{ url = url, stream = "xml" } end,
      'longpoll.request: option \'stream\' must be "sse", "ndjson", "json-seq" or "lines"')
    assert.has_error(function() longpoll.request{ url = url, max_message = 10 } end,
      "longpoll.request: option 'max_message' applies only with 'stream'")
    assert.has_error(function() longpoll.request{ url = url, stream = "sse", max_queued = 0 } end,
      "longpoll.request: option 'max_queued' must be a positive integer")
    assert.has_error(function() longpoll.request{ url = url, stream = "sse", max_message = 1.5 } end,
      "longpoll.request: option 'max_message' must be a positive integer")
    local req = longpoll.request{ url = url, stream = "sse" }
    assert.has_error(function() req:run() end)
    local plain = longpoll.request{ url = srv:url("/json") }
    assert.has_error(function() plain:next() end)
    assert.has_error(function() plain:poll() end)
    assert.is_true(longpoll.request{ url = url, stream = "sse" }.progress ~= nil)
  end)

  it("await() of a stream, await_next() and messages() of a plain request raise at once, at the caller's line", function()
    local stream = longpoll.request{ url = srv:url("/stream/ndjson?n=1&end=0"), stream = "ndjson",
      timeout = 10 }
    local plain = longpoll.request{ url = srv:url("/poll/await_misuse?since=0"), timeout = 10 }
    -- runs method m of req in a coroutine: a programmer error raises at once, at the
    -- line that called it, nothing yielded and nothing started
    local function try(req, m)
      local line
      local co = coroutine.create(function()
        line = debug.getinfo(1, "l").currentline + 1
        local v = req[m](req)
        return v
      end)
      local ok, err = coroutine.resume(co)
      assert.is_false(ok, "it yielded instead of raising")
      return err, ("stream_spec.lua:%d: longpoll.request:%s: "):format(line, m)
    end
    local err, where = try(stream, "await")
    assert.equals(where .. "a stream request is read with next(), await_next(), messages() or poll()",
      err:match("stream_spec%.lua:.*"))
    err, where = try(plain, "await_next")
    assert.equals(where .. "not a stream request (no 'stream' option)", err:match("stream_spec%.lua:.*"))
    err, where = try(plain, "messages")
    assert.equals(where .. "not a stream request (no 'stream' option)", err:match("stream_spec%.lua:.*"))
    assert.equals("ready", stream:status())
    assert.equals("ready", plain:status())
  end)

  it("backpressure: a fast server and a slow reader pause the transfer; memory stays flat", function()
    -- 128 MiB as 2048 lines of 64 KiB; at most 4 queued
    local n, size = 2048, 65536
    collectgarbage()
    local rss0 = rss_kib()
    local req = longpoll.request{ url = srv:url(("/stream/lines?n=%d&size=%d"):format(n, size)),
      stream = "lines", max_queued = 4, decode = "none", timeout = 120 }:start()
    -- the reader sleeps until the worker paused on the full queue
    assert.truthy(wait_until(20, function() return req:progress().pauses > 0 end))
    assert.is_true(req:progress().queued >= 4)
    -- paused, the transfer stops: what arrived stays a few chunks of the 128 MiB
    local held = req:progress().received
    longpoll.sleep(0.2)
    assert.equals(held, req:progress().received)
    assert.is_true(held < 8 * 1048576, held)
    local count, peak = 0, 0
    for msg in req:messages() do
      count = count + 1
      assert.equals(size, #msg)
      assert.equals(count, tonumber(msg:match('"n":(%d+)')))
      if count % 128 == 0 then
        collectgarbage()
        peak = math.max(peak, rss_kib() - rss0)
      end
    end
    assert.equals(n, count)
    assert.is_true(req:progress().pauses > 1)
    assert.equals(n * (size + 1), req:progress().received)
    -- the body is 128 MiB; the process grows by a small part of it (valgrind's memcheck
    -- alone keeps 20 MB of freed blocks aside; ASan's quarantine keeps up to 256 MB, so
    -- there only the bytes received while paused, above, say it)
    if not (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) then
      assert.is_true(peak < 48 * 1024, "RSS grew by " .. peak .. " KiB")
    end
  end)

  it("response() gives a stream's status and headers as soon as they are in, then once it ended", function()
    local req = longpoll.request{ url = srv:url("/stream/ndjson?n=1&end=0"), stream = "ndjson", timeout = 10 }
    assert.is_nil(req:response())                   -- not started
    assert.equals(1, req:next(10).n)
    local open = req:response()                     -- still open: the headers, no body
    assert.equals("running", req:status())
    assert.equals(200, open.status)
    assert.equals("application/x-ndjson", open.headers["content-type"])
    assert.equals("1.1", open.http_version)
    assert.equals("", open.body)
    assert.is_true(open.elapsed > 0)
    req:cancel()
    assert.equals(200, req:response().status)       -- canceled: the headers it had
    req = longpoll.request{ url = srv:url("/stream/ndjson?n=2"), stream = "ndjson", timeout = 10 }
    assert.equals(1, req:next(10).n)
    assert.equals(2, req:next(10).n)
    assert.is_nil(req:next(10))
    local resp = req:response()
    assert.equals(200, resp.status)
    assert.equals("application/x-ndjson", resp.headers["content-type"])
    assert.equals("", resp.body)
    req = longpoll.request{ url = srv:url("/status/404"), stream = "lines", timeout = 10 }
    local _, err = req:next(10)
    assert.equals(err.response, req:response())
    local plain = longpoll.request{ url = srv:url("/json") }
    local _, r2 = plain:run()
    assert.equals(r2, plain:response())
  end)

  it("response(seconds) waits for a stream's headers, which wake no other waiter", function()
    -- headers, then nothing: the stream stays open and empty
    local url = srv:url("/stream/lines?n=0&end=0")
    local req = longpoll.request{ url = url, stream = "lines", timeout = 10 }
    local resp = req:response(10)                   -- starts it, returns once the headers are in
    assert.equals(200, resp.status)
    assert.equals("text/plain", resp.headers["content-type"])
    assert.equals("running", req:status())
    assert.is_false(req:ready())                    -- headers are no message
    assert.equals(0, #socket.select({ { getfd = function() return req:fd() end,
      dirty = function() return false end } }, nil, 0))
    req:cancel()
    -- threads blocked in wait_any and wait() while the headers come go on waiting
    local other = longpoll.request{ url = url, stream = "lines", timeout = 10 }
    assert.is_nil(longpoll.wait_any({ other }, 0.3))  -- it starts it; the headers come meanwhile
    assert.equals(200, other:response().status)
    assert.is_false(other:wait(0.05))
    assert.is_nil(other:next(0.05))
    other:cancel()
    -- a plain request: the response once finished; a bad wait raises
    local plain = longpoll.request{ url = srv:url("/hold?ms=50&status=200&body=x"), timeout = 10 }
    assert.equals("x", plain:response(10).body)
    assert.has_error(function() plain:response(-1) end)
  end)

  it("progress() of a plain request: bytes received, expected and sent", function()
    local req = longpoll.request{ url = srv:url("/echo"), body = ("b"):rep(1000) }
    local v = assert(req:run())
    local p = req:progress()
    assert.equals(1000, p.sent)
    assert.is_true(p.received > 1000)
    assert.equals(p.received, p.expected)
    assert.is_nil(p.messages)
    assert.equals("b", v.body:sub(1, 1))
    p = longpoll.request{ url = srv:url("/json") }:progress()
    assert.same({ received = 0, sent = 0 }, p)
  end)
end)
