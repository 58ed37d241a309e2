-- longpoll.subscribe: each cursor strategy against the spec server, and resuming from
-- sub:cursor(). Every message is checked: all of them, in order, none twice.
local longpoll = require "longpoll"
local testserver = require "support.testserver"
local socket = require "socket"

-- the texts "<prefix>1" .. "<prefix>n"
local subs = require "support.subs"
local closing = subs.closing
local texts = subs.texts

local poll_until = subs.poll_until

describe("longpoll.subscribe cursor", function()
  after_each(subs.close_all)
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  -- Publish a backlog (no poll waiting), then bursts and singles while the subscription
  -- polls; returns every text received, in the order received.
  local function scenario(sub, ch, text_of, path)
    srv:publish(ch, texts("m", 1, 5))                      -- before the first poll
    local got = {}
    poll_until(sub, got, 5, text_of)
    assert.is_true(srv:wait_held(1, 5))                    -- a poll is waiting now
    srv:publish(ch, texts("m", 6, 15))                     -- a burst
    poll_until(sub, got, 15, text_of)
    for i = 16, 20 do                                      -- singles
      srv:publish(ch, "m" .. i)
      poll_until(sub, got, i, text_of)
    end
    -- two hold timeouts pass with nothing published: the server answers "no news"
    local hits = srv:stats().hits[path]
    local deadline = socket.gettime() + 10
    for _ = 1, 100000 do
      local msgs = assert(sub:poll())
      assert.same({}, msgs)
      if srv:stats().hits[path] >= hits + 2 or socket.gettime() > deadline then break end
      socket.sleep(0.01)
    end
    assert.is_true(srv:stats().hits[path] >= hits + 2)
    srv:publish(ch, texts("m", 21, 40))                    -- a burst
    poll_until(sub, got, 40, text_of)
    return got
  end

  it('"since" sends the last id back as a query field', function()
    local sub = closing(longpoll.subscribe{
      url = srv:url("/poll/since1"), cursor = "since", query = { timeout_ms = "300" },
      timeout = 10,
    })
    local got = scenario(sub, "since1", function(m) return m.data end, "/poll/since1")
    assert.same(texts("m", 1, 40), got)
    assert.equals("40", sub:cursor())
  end)

  it('"since" with cursor_in = "body" sends it in the JSON body', function()
    local sub = closing(longpoll.subscribe{
      url = srv:url("/poll/since2"), cursor = "since", cursor_in = "body",
      body = { timeout_ms = 300 }, timeout = 10,
    })
    local got = scenario(sub, "since2", function(m) return m.data end, "/poll/since2")
    assert.same(texts("m", 1, 40), got)
    assert.equals("40", sub:cursor())
  end)

  it('"offset" sends the last update_id + 1 (Telegram getUpdates)', function()
    local sub = closing(longpoll.subscribe{
      url = srv:url("/tg/tg1/getUpdates"), cursor = "offset", messages = "result",
      query = { timeout = 1 }, timeout = 10,
    })
    local got = scenario(sub, "tg1", function(m) return m.message.text end, "/tg/tg1/getUpdates")
    assert.same(texts("m", 1, 40), got)
    assert.equals(41, sub:cursor())
  end)

  it('"offset" takes the field names from cursor_field and id_field', function()
    srv:publish("tg2", texts("x", 1, 3))
    local seen = {}
    local sub = closing(longpoll.subscribe{
      url = srv:url("/poll/tg2"), cursor = "offset", cursor_field = "since", id_field = "id",
      query = { timeout_ms = "300" }, timeout = 10,
    })
    -- /poll answers what follows `since`, so offset semantics (last + 1) skip one each time:
    -- the point here is only that the names are used
    local msgs = assert(sub:poll())
    for _ = 1, 1000 do
      if #msgs > 0 then break end
      socket.sleep(0.005)
      msgs = assert(sub:poll())
    end
    for _, m in ipairs(msgs) do seen[#seen + 1] = m.data end
    assert.same({ "x1", "x2", "x3" }, seen)
    assert.equals(4, sub:cursor())
  end)

  it('"index" sends X-Consul-Index back as index, with wait (Consul blocking query)', function()
    local sub = closing(longpoll.subscribe{
      url = srv:url("/kv/kv1"), cursor = "index", wait = "1s",
    })
    local got = scenario(sub, "kv1", function(m) return m.data end, "/kv/kv1")
    assert.same(texts("m", 1, 40), got)
    assert.equals("40", sub:cursor())
  end)

  it('"index" treats an answer with an unchanged index as no news', function()
    srv:publish("kv2", "a")
    local sub = closing(longpoll.subscribe{
      url = srv:url("/kv/kv2"), cursor = "index", wait = "100ms", backoff = { idle = 0 },
    })
    local got = poll_until(sub, {}, 1, function(m) return m.data end)
    -- let several wait timeouts pass: each answers the same index, no message
    local hits = srv:stats().hits["/kv/kv2"]
    local deadline = socket.gettime() + 10
    for _ = 1, 100000 do
      local msgs = assert(sub:poll())
      for _, m in ipairs(msgs) do got[#got + 1] = m.data end
      if srv:stats().hits["/kv/kv2"] >= hits + 3 or socket.gettime() > deadline then break end
      socket.sleep(0.01)
    end
    assert.is_true(srv:stats().hits["/kv/kv2"] >= hits + 3)
    srv:publish("kv2", "b")
    poll_until(sub, got, 2, function(m) return m.data end)
    assert.same({ "a", "b" }, got)
  end)

  it("a cursor function gets (previous_opts, response, messages) and returns the next options",
    function()
      local calls = 0
      local function after(prev, resp, msgs)
        calls = calls + 1
        assert.equals(200, resp.status)
        assert.equals("table", type(prev.query))
        if #msgs > 0 then prev.query.since = msgs[#msgs].id end
        return prev
      end
      local sub = closing(longpoll.subscribe{
        url = srv:url("/poll/fn1"), cursor = after, query = { timeout_ms = "300" }, timeout = 10,
      })
      local got = scenario(sub, "fn1", function(m) return m.data end, "/poll/fn1")
      assert.same(texts("m", 1, 40), got)
      assert.is_true(calls >= 5)
      local c = sub:cursor()
      assert.equals("40", c.query.since)
      assert.equals(srv:url("/poll/fn1"), c.url)
    end)

  describe("resume", function()
    -- Take `k` messages with the blocking iterator out of a backlog of 10 (one answer, so
    -- the rest is buffered), cancel, publish 5 more, resume: exactly the rest arrives.
    local function resume_case(ch, opts, text_of, publish)
      publish(ch, texts("r", 1, 10))
      local sub = longpoll.subscribe(opts())
      local got = {}
      for m in sub:messages() do
        got[#got + 1] = text_of(m)
        if #got == 3 then break end
      end
      assert.is_true(sub:pending() > 0)     -- taken from one answer: the rest was buffered
      local saved = sub:cursor()
      assert.is_true(sub:cancel())
      publish(ch, texts("r", 11, 15))
      local o = opts()
      o.resume = saved
      local again = closing(longpoll.subscribe(o))
      for m in again:messages() do
        got[#got + 1] = text_of(m)
        if #got == 15 then break end
      end
      assert.same(texts("r", 1, 15), got)
      return saved, again:cursor()
    end

    local function pub(ch, list) srv:publish(ch, list) end

    it('"since" resumes after the last message handed out', function()
      local saved, last = resume_case("rs1", function()
        return { url = srv:url("/poll/rs1"), cursor = "since", query = { timeout_ms = "300" } }
      end, function(m) return m.data end, pub)
      assert.equals("3", saved)
      assert.equals("15", last)
    end)

    it('"offset" resumes after the last message handed out', function()
      local saved, last = resume_case("rs2", function()
        return { url = srv:url("/tg/rs2/getUpdates"), cursor = "offset", messages = "result",
          query = { timeout = 1 } }
      end, function(m) return m.message.text end, pub)
      assert.equals(4, saved)
      assert.equals(16, last)
    end)

    it('"index" resumes per answer: no message is lost', function()
      -- the index moves per answer, so a cursor taken in the middle of one is that of the
      -- answer before it: resuming hands out the rest of that answer again, never less
      srv:publish("rs3", texts("r", 1, 10))
      local sub = longpoll.subscribe{ url = srv:url("/kv/rs3"), cursor = "index", wait = "1s" }
      local got = {}
      for m in sub:messages() do
        got[#got + 1] = m.data
        if #got == 10 then break end
      end
      local saved = sub:cursor()
      assert.equals("10", saved)
      sub:cancel()
      srv:publish("rs3", texts("r", 11, 15))
      local again = closing(longpoll.subscribe{ url = srv:url("/kv/rs3"), cursor = "index",
        wait = "1s", resume = saved })
      for m in again:messages() do
        got[#got + 1] = m.data
        if #got == 15 then break end
      end
      assert.same(texts("r", 1, 15), got)
    end)

    it("a cursor function resumes from the options it returned", function()
      local function after(prev, _, msgs)
        if #msgs > 0 then prev.query.since = msgs[#msgs].id end
        return prev
      end
      local function opts()
        return { url = srv:url("/poll/rs4"), cursor = after, query = { timeout_ms = "300" } }
      end
      srv:publish("rs4", texts("r", 1, 4))
      local sub = longpoll.subscribe(opts())
      local got = {}
      for m in sub:messages() do
        got[#got + 1] = m.data
        if #got == 4 then break end
      end
      local saved = sub:cursor()
      sub:cancel()
      srv:publish("rs4", texts("r", 5, 8))
      local o = opts()
      o.resume = saved
      local again = closing(longpoll.subscribe(o))
      for m in again:messages() do
        got[#got + 1] = m.data
        if #got == 8 then break end
      end
      assert.same(texts("r", 1, 8), got)
    end)

    it("a cursor is a plain value that survives a round trip through JSON", function()
      local cjson = require "cjson"
      srv:publish("rs5", texts("r", 1, 3))
      local sub = longpoll.subscribe{ url = srv:url("/poll/rs5"), cursor = "since",
        query = { timeout_ms = "300" } }
      local n = 0
      for _ in sub:messages() do n = n + 1; if n == 2 then break end end
      local text = cjson.encode({ cursor = sub:cursor() })
      sub:cancel()
      local again = closing(longpoll.subscribe{ url = srv:url("/poll/rs5"), cursor = "since",
        query = { timeout_ms = "300" }, resume = cjson.decode(text).cursor })
      local m = again:messages()()
      assert.equals("r3", m.data)
    end)
  end)
end)
