-- Stream mode against a real Nchan (nginx + libnginx-mod-nchan, spec/support/nchan.lua):
-- its EventSource subscriber (/es/<ch>, chosen by Accept: text/event-stream, resumed by
-- Last-Event-ID) and its chunked subscriber (/chunked/<ch>, chosen by TE: chunked).
--
-- What Nchan 1.3.6 (Debian 12) does, as these specs check it:
-- * EventSource: "id: <time>:<tag>" and "data: <message>" per message, after a ": hi"
--   comment; a message's own LFs become more data lines (so "a\n" arrives as data "a\n");
--   a new subscriber with Last-Event-ID gets the stored messages after that id, then waits;
-- * chunked: each message is one HTTP chunk of its bytes, nothing added (publish lines
--   ending in LF to read them with stream = "lines");
-- * a reload (HUP) ends both streams cleanly (the end of the body, no error) and loses the
--   memory store; ids go on from the time, with tags from 0 again.
local longpoll = require "longpoll"
local nchan = require "support.nchan"
local proc = require "support.proc"
local lua = require "support.lua"
local socket = require "socket"

local describe_nchan = nchan.available() and describe or pending
local SSE = { Accept = "text/event-stream" }

local function es(srv, ch, last_id)
  local headers = { Accept = "text/event-stream", ["Last-Event-ID"] = last_id }
  return longpoll.request{ url = srv:url("/es/" .. ch), stream = "sse", headers = headers }
end

local seq = 0
local function channel()
  seq = seq + 1
  return ("st%d_%d"):format(os.time(), seq)
end

describe_nchan("stream mode with Nchan", function()
  local srv
  setup(function() srv = nchan.start{} end)
  teardown(function() srv:stop(); srv:cleanup() end)

  it("EventSource: each message as an event with Nchan's id, JSON data decoded", function()
    local ch = channel()
    local req = es(srv, ch):start()
    assert.is_true(srv:wait_subscribers(ch, 1))
    assert.is_true(srv:publish(ch, '{"text":"hello"}', "application/json"))
    assert.is_true(srv:publish(ch, "plain"))
    local a = req:next(10)
    local b = req:next(10)
    assert.same({ text = "hello" }, a.data)
    assert.equals("message", a.event)
    assert.matches("^%d+:%d+$", a.id)
    assert.equals("plain", b.data)
    assert.is_true(req:cancel())
    assert.is_true(srv:wait_subscribers(ch, 0))    -- the cancel reached the server
  end)

  it("EventSource: Last-Event-ID resumes after the last message seen, nothing repeated", function()
    local ch = channel()
    for i = 1, 3 do assert.is_true(srv:publish(ch, "m" .. i)) end
    local req = es(srv, ch)
    local first = req:next(10)
    assert.equals("m1", first.data)
    req:cancel()
    req = es(srv, ch, first.id)
    assert.equals("m2", req:next(10).data)
    assert.equals("m3", req:next(10).data)
    assert.is_nil(req:next(0.2))                  -- and then it waits
    assert.is_false(req:done())
    req:cancel()
  end)

  it("chunked: each published line as a message", function()
    local ch = channel()
    local req = longpoll.request{ url = srv:url("/chunked/" .. ch), stream = "lines",
      headers = { TE = "chunked" } }:start()
    assert.is_true(srv:wait_subscribers(ch, 1))
    assert.is_true(srv:publish(ch, "one\n"))
    assert.is_true(srv:publish(ch, "two\nthree\n"))
    assert.same({ "one", "two", "three" }, { req:next(10), req:next(10), req:next(10) })
    req:cancel()
    assert.is_true(srv:wait_subscribers(ch, 0))
  end)

  it("a reload ends the streams cleanly; Last-Event-ID resumes with what comes after", function()
    local ch = channel()
    local req = es(srv, ch):start()
    local chunked = longpoll.request{ url = srv:url("/chunked/" .. ch), stream = "lines",
      headers = { TE = "chunked" } }:start()
    assert.is_true(srv:wait_subscribers(ch, 2))
    assert.is_true(srv:publish(ch, "before\n"))
    local seen = req:next(10)
    assert.equals("before\n", seen.data)
    assert.equals("before", chunked:next(10))
    assert.truthy(srv:reload())
    assert.is_nil(req:next(10))                   -- a clean end, not an error
    assert.is_true(req:done())
    assert.equals("done", req:status())
    assert.is_nil(chunked:next(10))
    assert.is_true(chunked:done())
    -- the store was lost with the reload; a message published after it, in a later second
    -- (Nchan's tags restart at 0), is what the resumed stream gets, once
    local deadline = socket.gettime() + 3
    while os.time() <= tonumber(seen.id:match("^%d+")) and socket.gettime() < deadline do
      socket.sleep(0.02)
    end
    req = es(srv, ch, seen.id):start()
    assert.is_true(srv:wait_subscribers(ch, 1))
    assert.is_true(srv:publish(ch, "after"))
    local m = req:next(10)
    assert.equals("after", m.data)
    assert.is_nil(req:next(0.2))
    req:cancel()
  end)

  it("over HTTP/2 (prior knowledge) as over HTTP/1.1", function()
    local ch = channel()
    local req = longpoll.request{ url = srv:h2url("/es/" .. ch), stream = "sse", headers = SSE,
      http_version = "2" }:start()
    assert.is_true(srv:wait_subscribers(ch, 1))
    assert.is_true(srv:publish(ch, '[1,2,3]', "application/json"))
    assert.same({ 1, 2, 3 }, req:next(10).data)
    req:cancel()                                   -- after DATA arrived on the stream
    assert.is_true(srv:wait_subscribers(ch, 0))
  end)

  it("over HTTP/2, a cancel the moment Nchan counts the subscriber reaches Nchan, every time", function()
    -- the cancel lands while Nchan's first DATA (": hi") is on its way or being read: the
    -- worker must not end the transfer from its body callback (a write error over HTTP/2
    -- leaves libcurl 7.88.1's RST_STREAM unsent, and Nchan held the subscriber, about one
    -- try in four); the cancel path ends it and makes the reset go out
    for i = 1, 12 do
      local ch = channel()
      local req = longpoll.request{ url = srv:h2url("/es/" .. ch), stream = "sse", headers = SSE,
        http_version = "2" }:start()
      assert.is_true(srv:wait_subscribers(ch, 1), "try " .. i)
      req:cancel()
      assert.equals("canceled", req:status())
      assert.is_true(srv:wait_subscribers(ch, 0, 3), "try " .. i .. ": Nchan still holds the stream")
    end
  end)

  it("examples/chat.lua --sse runs its scripted conversation over EventSource streams", function()
    local out, ok = proc.run(("LUA_PATH=%q LUA_CPATH=%q %s examples/chat.lua --sse --script %s"):format(
      package.path, package.cpath, lua, srv:url("")))
    assert.is_true(ok, out)
    assert.matches("alice sees bob: hi alice", out, 1, true)
    assert.matches("bob sees alice: bye", out, 1, true)
    assert.matches("both saw all 7 messages in order", out, 1, true)
  end)

end)
