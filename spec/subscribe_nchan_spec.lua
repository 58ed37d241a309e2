-- longpoll.subscribe{cursor = "etag"} against a real Nchan (nginx + libnginx-mod-nchan) that
-- the spec starts on a loopback port (spec/support/nchan.lua) with nchan_subscriber_timeout 2s.
--
-- What Nchan 1.3.6 (Debian 12) does, checked by the first block below:
-- * a long-poll answer carries the message as its body (Content-Type as published), with
--   Last-Modified (the message time, 1 s resolution) and Etag (the message tag within that
--   second); sending them back as If-Modified-Since / If-None-Match gets the next message;
-- * a first poll without them, on a channel with stored messages, gets the oldest one;
-- * a poll held until nchan_subscriber_timeout is answered 408, empty, with no
--   Last-Modified (and the Etag sent echoed): the cursor must not move;
-- * If-Modified-Since without If-None-Match is a 400;
-- * when nginx stops (TERM), the polls it holds are answered 410 Gone (as when a channel is
--   deleted): the "etag" strategy retries a 410;
-- * the memory store does not survive a restart (nor, observed, a reload by SIGHUP): what was
--   published and not yet received is gone. Message ids are "<time>:<tag>" and the tag counter
--   starts again at 0, so a message published after a restart within the same second as the
--   last one received, with a tag not above its tag, is taken as already seen and skipped
--   (nginx logs "Missed message ... previous message id tags don't match"). Only a store
--   that survives restarts (Nchan's Redis storage) avoids both; the restart spec publishes
--   after the clock second turned.
-- * a poll whose If-None-Match/If-Modified-Since name a message the channel does not have
--   (after a restart) is held and answered 408 as usual, but the worker then dies on an
--   assertion (error.log: "spool_fetch_msg: Assertion `spool->msg_status == MSG_INVALID'
--   failed", "worker process ... exited on signal 6") and the master starts another; the
--   connections of that worker are cut, which a subscription retries like any network error.
local longpoll = require "longpoll"
local nchan = require "support.nchan"
local proc = require "support.proc"
local lua = require "support.lua"
local socket = require "socket"

local subs = require "support.subs"
local closing = subs.closing
local texts = subs.texts

local poll_until = subs.poll_until

-- the message time (seconds) of an Nchan message id "<time>:<tag>"
local function id_time(id) return tonumber(id:match("^(%d+)")) end

local describe_nchan = nchan.available() and describe or pending

describe_nchan("longpoll.subscribe against Nchan", function()
  after_each(subs.close_all)
  local srv
  setup(function() srv = nchan.start{ subscriber_timeout = "2s" } end)
  teardown(function()
    if srv then srv:stop(); srv:cleanup() end
  end)

  local function publish_all(ch, list)
    local last
    for _, t in ipairs(list) do last = select(2, assert(srv:publish(ch, t))) end
    return last
  end

  local function etag_sub(ch, extra)
    local o = { url = srv:url("/sub/" .. ch), cursor = "etag", timeout = 10,
      backoff = { floor = 0.05, ceiling = 0.5 } }
    for k, v in pairs(extra or {}) do o[k] = v end
    return longpoll.subscribe(o)
  end

  describe("Nchan itself", function()
    it("answers with Etag and Last-Modified; sending them back gets the next message", function()
      publish_all("raw1", { "one", "two" })
      local body, resp = longpoll.request{ url = srv:url("/sub/raw1"), timeout = 10 }:run()
      assert.equals("one", body)                 -- the oldest stored message
      assert.equals(200, resp.status)
      local etag, lm = resp.headers.etag, resp.headers["last-modified"]
      assert.is_string(etag)
      assert.matches("GMT$", lm)
      body, resp = longpoll.request{ url = srv:url("/sub/raw1"), timeout = 10,
        headers = { ["If-None-Match"] = etag, ["If-Modified-Since"] = lm } }:run()
      assert.equals("two", body)
      local ok, err = longpoll.request{ url = srv:url("/sub/raw1"), timeout = 10,
        headers = { ["If-None-Match"] = resp.headers.etag,
          ["If-Modified-Since"] = resp.headers["last-modified"] } }:run()
      assert.is_nil(ok)                          -- held, then the subscriber timeout
      assert.equals("http", err.kind)
      assert.equals(408, err.status)
      assert.is_nil(err.response.headers["last-modified"])
      local _, bad = longpoll.request{ url = srv:url("/sub/raw1"), timeout = 10,
        headers = { ["If-Modified-Since"] = lm } }:run()
      assert.equals(400, bad.status)
    end)

    it("forgets its stored messages on restart", function()
      publish_all("raw2", { "lost" })
      assert.equals(1, srv:info("raw2").messages)
      srv:restart()
      assert.equals(0, srv:info("raw2").messages)
      local ok, err = longpoll.request{ url = srv:url("/sub/raw2"), timeout = 10 }:run()
      assert.is_nil(ok)
      assert.equals(408, err.status)
    end)
  end)

  it("receives every message in order, none twice: backlog, bursts, singles, hold timeouts",
    function()
      local errors = 0
      local sub = closing(etag_sub("ch1", { on_error = function() errors = errors + 1 end }))
      publish_all("ch1", texts("m", 1, 5))       -- no poll waiting yet
      local got = poll_until(sub, {}, 5)
      assert.is_true(srv:wait_subscribers("ch1", 1))
      publish_all("ch1", texts("m", 6, 25))      -- a burst: most find no poll waiting
      poll_until(sub, got, 25)
      for i = 26, 30 do                          -- singles, each to a waiting poll
        assert.is_true(srv:wait_subscribers("ch1", 1))
        publish_all("ch1", { "m" .. i })
        poll_until(sub, got, i)
      end
      -- two hold timeouts (408) pass with nothing published
      local before = srv:answered("ch1", 408)
      local deadline = socket.gettime() + 15
      for _ = 1, 100000 do
        assert.same({}, assert(sub:poll()))
        if srv:answered("ch1", 408) >= before + 2 or socket.gettime() > deadline then break end
        socket.sleep(0.02)
      end
      assert.is_true(srv:answered("ch1", 408) >= before + 2)
      publish_all("ch1", texts("m", 31, 40))
      poll_until(sub, got, 40)
      assert.same(texts("m", 1, 40), got)
      assert.equals(0, errors)
      local c = sub:cursor()
      assert.is_string(c.etag)
      assert.matches("GMT$", c.last_modified)
    end)

  it("decodes a JSON message; a text message stays a string", function()
    assert(srv:publish("ch2", '{"user":"ann","text":"hi"}', "application/json"))
    assert(srv:publish("ch2", "plain", "text/plain"))
    local sub = closing(etag_sub("ch2"))
    local got = poll_until(sub, {}, 2)
    assert.same({ user = "ann", text = "hi" }, got[1])
    assert.equals("plain", got[2])
  end)

  it("two subscribers on one channel each receive everything", function()
    local a = closing(etag_sub("ch3"))
    local b = closing(etag_sub("ch3"))
    local ga, gb = {}, {}
    a:poll(); b:poll()
    assert.is_true(srv:wait_subscribers("ch3", 2))
    for i = 1, 20 do
      publish_all("ch3", { "m" .. i })
      if i % 5 == 0 then poll_until(a, ga, i); poll_until(b, gb, i) end
    end
    assert.same(texts("m", 1, 20), ga)
    assert.same(texts("m", 1, 20), gb)
  end)

  it("the blocking iterator and coroutines work the same", function()
    publish_all("ch4", texts("m", 1, 6))
    local sub = closing(etag_sub("ch4"))
    local got = {}
    for m in sub:messages() do got[#got + 1] = m; if #got == 3 then break end end
    local co = coroutine.wrap(function()
      while #got < 6 do got[#got + 1] = assert(sub:next()) end
      return true
    end)
    for _ = 1, 1000 do
      local r = co()
      if r == true then break end
      if type(r) == "userdata" then r:wait(5) end   -- the request on the wire
    end
    assert.same(texts("m", 1, 6), got)
  end)

  it("resumes from a saved cursor in a new subscription", function()
    publish_all("ch5", texts("m", 1, 6))
    local sub = etag_sub("ch5")
    local got = {}
    for m in sub:messages() do got[#got + 1] = m; if #got == 3 then break end end
    local saved = sub:cursor()
    sub:cancel()
    publish_all("ch5", texts("m", 7, 9))
    local again = closing(etag_sub("ch5", { resume = saved }))
    for m in again:messages() do got[#got + 1] = m; if #got == 9 then break end end
    assert.same(texts("m", 1, 9), got)
  end)

  it("goes on across a restart of nginx: what is published after it all arrives", function()
    local kinds = {}
    local sub = closing(etag_sub("ch6", { on_error = function(err, info)
      kinds[#kinds + 1] = err.status or err.kind
      assert.is_true(info.retry)
    end }))
    local last_id = publish_all("ch6", texts("m", 1, 10))
    local got = poll_until(sub, {}, 10)
    assert.same(texts("m", 1, 10), got)
    assert.is_true(srv:wait_subscribers("ch6", 1))
    srv:restart()                                -- cuts the waiting poll
    -- Nchan's ids are <time>:<tag> and its tags restart at 0: publish in a later second
    -- than the last message received (see the top of this file)
    local deadline = socket.gettime() + 3
    while os.time() <= id_time(last_id) and socket.gettime() < deadline do socket.sleep(0.02) end
    local pending = {}
    for i = 11, 20 do pending[#pending + 1] = "m" .. i end
    publish_all("ch6", pending)
    poll_until(sub, got, 20)
    assert.same(texts("m", 1, 20), got)
    assert.equals(410, kinds[1])                 -- the poll nginx held when it stopped
    assert.equals("running", sub:status())
  end)

  it("examples/chat.lua runs its scripted conversation over long-poll subscriptions", function()
    local out, ok = proc.run(("LUA_PATH=%q LUA_CPATH=%q %s examples/chat.lua --script %s"):format(
      package.path, package.cpath, lua, srv:url("")))
    assert.is_true(ok, out)
    assert.matches("alice sees bob: hi alice", out, 1, true)
    assert.matches("bob sees alice: bye", out, 1, true)
    assert.matches("both saw all %d+ messages in order", out)
  end)
end)
