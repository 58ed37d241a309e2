-- longpoll.subscribe: failures, backoff, Retry-After, hold timeouts and errors no retry fixes.
-- Waits are checked through an injected clock and sleep (what was asked for), never timed.
local longpoll = require "longpoll"
local testserver = require "support.testserver"
local socket = require "socket"

local subs = require "support.subs"
local closing = subs.closing
local texts = subs.texts

-- A fake clock that moves only when sleep() is called; `slept` lists the waits asked for.
local function fake_time()
  local now, slept = 1000, {}
  return function() return now end,
    function(s) slept[#slept + 1] = s; now = now + s end,
    slept
end

describe("longpoll.subscribe failures", function()
  after_each(subs.close_all)
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)
  before_each(function() srv:reset() end)

  -- a "since" subscription on /poll/<ch>, messages read with the blocking iterator
  local function since(ch, extra)
    local o = { url = srv:url("/poll/" .. ch), cursor = "since", query = { timeout_ms = "5000" },
      timeout = 10 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return longpoll.subscribe(o)
  end

  -- sub:messages() to its end: the messages, and what the loop raised
  local function drain(sub)
    local got = {}
    local ok, err = pcall(function()
      for m in sub:messages() do got[#got + 1] = m end
    end)
    return got, not ok and err or nil
  end

  local function take(sub, n)
    local got = {}
    for m in sub:messages() do
      got[#got + 1] = m.data
      if #got == n then break end
    end
    return got
  end

  it("retries 503s with exponential backoff and full jitter between floor and ceiling", function()
    local clock, sleep, slept = fake_time()
    local infos = {}
    srv:publish("f1", texts("m", 1, 5))
    srv:fail{ mode = "503", count = 6 }
    local sub = closing(since("f1", { clock = clock, sleep = sleep,
      backoff = { floor = 0.1, ceiling = 1, idle = 0 },
      on_error = function(err, info)
        assert.equals("http", err.kind)
        assert.equals(503, err.status)
        assert.is_true(info.retry)
        infos[#infos + 1] = info.failures
      end }))
    assert.same(texts("m", 1, 5), take(sub, 5))
    assert.same({ 1, 2, 3, 4, 5, 6 }, infos)
    assert.equals(6, #slept)
    for n, d in ipairs(slept) do
      assert.is_true(d >= 0.1, "wait " .. n .. " below the floor: " .. d)
      assert.is_true(d <= math.min(1, 0.1 * 2 ^ n), "wait " .. n .. " above its cap: " .. d)
    end
  end)

  it("resets the backoff after a success", function()
    local clock, sleep, slept = fake_time()
    local infos = {}
    local sub = closing(since("f2", { clock = clock, sleep = sleep,
      backoff = { floor = 0.1, ceiling = 100, idle = 0 },
      on_error = function(_, info) infos[#infos + 1] = info.failures end }))
    srv:publish("f2", "m1")
    srv:fail{ mode = "503", count = 3 }
    local got = take(sub, 1)
    assert.is_true(srv:wait_held(1, 5))       -- the next poll waits: it will get m2
    srv:fail{ mode = "503", count = 2 }       -- for the polls after it
    srv:publish("f2", "m2")
    for _, m in ipairs(take(sub, 1)) do got[#got + 1] = m end
    srv:publish("f2", "m3")
    for _, m in ipairs(take(sub, 1)) do got[#got + 1] = m end
    assert.same({ "m1", "m2", "m3" }, got)
    assert.same({ 1, 2, 3, 1, 2 }, infos)
    assert.equals(5, #slept)
    assert.is_true(slept[4] <= 0.2)           -- n = 1 again: within [floor, 2 * floor]
  end)

  it("honours Retry-After of a 429 and of a 503", function()
    local clock, sleep, slept = fake_time()
    srv:publish("f3", texts("m", 1, 2))
    srv:fail{ mode = "429", count = 1, retry_after = 7 }
    srv:fail{ mode = "503", count = 1, retry_after = 3 }
    local seen = {}
    local sub = closing(since("f3", { clock = clock, sleep = sleep,
      backoff = { floor = 0.1, ceiling = 10, idle = 0 },
      on_error = function(err, info)
        seen[#seen + 1] = { err.status, info.delay, err.response.retry_after }
      end }))
    assert.same(texts("m", 1, 2), take(sub, 2))
    assert.same({ { 429, 7, 7 }, { 503, 3, 3 } }, seen)
    assert.same({ 7, 3 }, slept)
  end)

  it("waits no longer than backoff.ceiling for a Retry-After (#9.5)", function()
    local clock, sleep, slept = fake_time()
    srv:publish("f3b", "m1")
    srv:fail{ mode = "503", count = 1, retry_after = 86400 }
    local seen = {}
    local sub = closing(since("f3b", { clock = clock, sleep = sleep,
      backoff = { floor = 0.1, ceiling = 2, idle = 0 },
      on_error = function(err, info) seen[#seen + 1] = { err.response.retry_after, info.delay } end }))
    assert.same({ "m1" }, take(sub, 1))
    assert.same({ { 86400, 2 } }, seen)
    assert.same({ 2 }, slept)
  end)

  for _, mode in ipairs{ "reset", "close", "500", "502", "504" } do
    it("loses and duplicates nothing across injected '" .. mode .. "' failures", function()
      local ch = "f4" .. mode
      local kinds = {}
      local sub = closing(since(ch, { backoff = { floor = 0.001, ceiling = 0.01 },
        on_error = function(err) kinds[#kinds + 1] = err.kind end }))
      srv:publish(ch, texts("m", 1, 5))
      srv:fail{ mode = mode, count = 3 }
      local got = take(sub, 5)
      for i = 6, 25, 5 do
        srv:fail{ mode = mode, count = 2 }
        srv:publish(ch, texts("m", i, i + 4))
        for _, m in ipairs(take(sub, 5)) do got[#got + 1] = m end
      end
      assert.same(texts("m", 1, 25), got)
      if tonumber(mode) then
        -- the first 3 always meet a poll; of the later ones, those injected while a poll
        -- was already waiting meet the polls after it, maybe after the test took its 5
        assert.is_true(#kinds >= 3)
        for _, k in ipairs(kinds) do assert.equals("http", k) end
      else
        -- libcurl itself retries a request whose reused connection dies before any answer,
        -- so fewer of these reach the subscription
        assert.is_true(#kinds >= 1)
        assert.equals("network", kinds[1])
      end
    end)
  end

  it("loses and duplicates nothing while connections are refused", function()
    local ch = "f5"
    local kinds = {}
    -- short holds and a fresh connection per poll, so polls meet the closed port
    local sub = closing(since(ch, { query = { timeout_ms = "50" },
      headers = { Connection = "close" }, backoff = { floor = 0.01, ceiling = 0.05 },
      on_error = function(err) kinds[#kinds + 1] = err.kind end }))
    srv:publish(ch, texts("m", 1, 5))
    local got = take(sub, 5)
    srv:fail{ mode = "refuse", ms = 300 }
    local published = false
    local deadline = socket.gettime() + 10
    for _ = 1, 10000 do                       -- game loop: poll() while the port is closed
      for _, m in ipairs(assert(sub:poll())) do got[#got + 1] = m.data end
      if not published and #kinds > 0 and srv:wait_listening(5) then
        srv:publish(ch, texts("m", 6, 10))    -- the control port is back: publish
        published = true
      end
      if #got >= 10 or socket.gettime() > deadline then break end
      socket.sleep(0.005)
    end
    assert.same(texts("m", 1, 10), got)
    -- a poll meets the closed port as "connect" (refused), or as "network" when
    -- it sat in the accept backlog as the listener closed (reset); nothing else
    assert.is_true(#kinds > 0)
    for _, k in ipairs(kinds) do
      assert.is_true(k == "connect" or k == "network", table.concat(kinds, ","))
    end
  end)

  describe("hold timeouts are not failures", function()
    for _, case in ipairs{ { "200 []", nil }, { "204", "204" }, { "408", "408" } } do
      it("(" .. case[1] .. ")", function()
        local clock, sleep, slept = fake_time()
        local errors = 0
        local q = { timeout_ms = "50", empty = case[2] }
        local sub = closing(longpoll.subscribe{ url = srv:url("/poll/h" .. case[1]:sub(1, 3)),
          cursor = "since", query = q, clock = clock, sleep = sleep,
          backoff = { floor = 5, ceiling = 5, idle = 0 },
          on_error = function() errors = errors + 1 end })
        local holds = 0
        for _ = 1, 200 do                            -- bounded: a few holds, then a message
          local msgs = assert(sub:poll())
          assert.same({}, msgs)
          holds = srv:stats().hits["/poll/h" .. case[1]:sub(1, 3)] or 0
          if holds >= 4 then break end
          socket.sleep(0.02)
        end
        assert.is_true(holds >= 4)
        srv:publish("h" .. case[1]:sub(1, 3), "m1")
        assert.same({ "m1" }, (function()
          local got = {}
          for m in sub:messages() do got[#got + 1] = m.data; break end
          return got
        end)())
        assert.equals(0, errors)
        assert.same({}, slept)                      -- no backoff was waited
      end)
    end

    it("an answer that came back at once waits backoff.idle before the next poll", function()
      local clock, sleep, slept = fake_time()
      -- /tg without timeout answers at once: a server that does not hold
      local n = 0
      local function sleep_then_publish(d)
        sleep(d)
        n = n + 1
        if n == 3 then srv:publish("idle", "m1") end
      end
      local sub = closing(longpoll.subscribe{ url = srv:url("/tg/idle/getUpdates"),
        cursor = "offset", messages = "result", clock = clock, sleep = sleep_then_publish,
        backoff = { idle = 0.25 } })
      local m = sub:messages()()
      assert.equals("m1", m.message.text)
      assert.same({ 0.25, 0.25, 0.25 }, slept)
    end)
  end)

  describe("errors no retry fixes", function()
    it("a 404 stops the subscription: messages() raises its error, poll() returns it", function()
      local errors = {}
      local sub = longpoll.subscribe{ url = srv:url("/nothing-here"), cursor = "since",
        on_error = function(err, info) errors[#errors + 1] = info.retry end }
      local got, raised = drain(sub)
      assert.same({}, got)
      assert.equals("failed", sub:status())
      local err = sub:error()
      assert.equals(err, raised)                -- the error object itself, as io.lines raises
      assert.has_error(function() sub:messages()() end, err)
      assert.equals("http", err.kind)
      assert.equals(404, err.status)
      assert.same({ false }, errors)
      local msgs, e2 = sub:poll()
      assert.is_nil(msgs)
      assert.equals(err, e2)
    end)

    it("messages buffered before the failure are handed out first", function()
      srv:publish("f6", texts("m", 1, 3))
      -- buffer = 1: no new poll starts while a message waits, so the failure comes after
      local sub = since("f6", { buffer = 1 })
      local got = {}
      local ok, raised = pcall(function()
        for m in sub:messages() do
          got[#got + 1] = m.data
          if #got == 1 then srv:fail{ mode = "400", count = 1 } end
        end
      end)
      assert.is_false(ok)
      assert.equals(sub:error(), raised)
      assert.same(texts("m", 1, 3), got)
      assert.equals("http", sub:error().kind)
      assert.equals(400, sub:error().status)
      assert.equals("3", sub:cursor())
    end)

    it("on_error may retry what would stop (return true) or stop a retry (false)", function()
      srv:publish("f7", "m1")
      srv:fail{ mode = "404", count = 2 }
      local sub = closing(since("f7", { backoff = { floor = 0.001, ceiling = 0.001 },
        on_error = function(err) return err.status == 404 end }))
      assert.same({ "m1" }, take(sub, 1))
      sub:cancel()

      srv:fail{ mode = "503", count = 1 }
      local stop = since("f7b", { on_error = function() return false end })
      local msgs
      for _ = 1, 1000 do
        msgs = stop:poll()
        if not msgs then break end
        socket.sleep(0.005)
      end
      local _, err = stop:poll()
      assert.equals(503, err.status)
      assert.equals("failed", stop:status())
    end)

    it("on_error may choose the delay (a number)", function()
      local clock, sleep, slept = fake_time()
      srv:publish("f8", "m1")
      srv:fail{ mode = "502", count = 2 }
      local sub = closing(since("f8", { clock = clock, sleep = sleep,
        backoff = { idle = 0 }, on_error = function() return 42 end }))
      assert.same({ "m1" }, take(sub, 1))
      assert.same({ 42, 42 }, slept)
    end)

    it("a body that is not a list of messages is a decode error", function()
      local sub = longpoll.subscribe{ url = srv:url("/json"), cursor = "since" }
      local _, err = drain(sub)
      assert.equals(sub:error(), err)
      assert.equals("decode", err.kind)
      assert.matches("not an array of messages", err.message)
      assert.equals(200, err.status)
    end)

    it("a message without its id is a decode error", function()
      local sub = longpoll.subscribe{ url = srv:url("/json"), cursor = "since", messages = "items" }
      drain(sub)
      assert.equals("decode", sub:error().kind)
      assert.matches("message 1 has no 'id'", sub:error().message)
    end)

    it("a missing messages field is a decode error", function()
      local sub = longpoll.subscribe{ url = srv:url("/json"), cursor = "offset", messages = "result" }
      drain(sub)
      assert.matches("no field 'result'", sub:error().message)
    end)

    it("an on_error that raises stops the subscription and the error propagates", function()
      srv:fail{ mode = "503", count = 1 }
      local sub = since("f9", { on_error = function() error("handler bug") end })
      assert.has_error(function() sub:messages()() end, "handler bug")
      assert.equals("failed", sub:status())
      assert.equals("callback", sub:error().kind)
      assert.matches("handler bug", sub:error().cause)
      assert.equals(503, sub:error().failure.status)
    end)

    it("an ETag with a bare CR: the message is handed out, then a decode error (#7.8)", function()
      -- If-None-Match cannot carry a CR: the next poll cannot be sent with that cursor
      local url = srv:url("/hold?ms=0&status=200&body=hello&etag=%22a%0Db%22")
      local sub = longpoll.subscribe{ url = url, cursor = "etag", backoff = { idle = 0 } }
      local got = {}
      for _ = 1, 1000 do                       -- game loop: poll() never raises
        local msgs = sub:poll()
        if not msgs then break end
        for _, m in ipairs(msgs) do got[#got + 1] = m end
        socket.sleep(0.005)
      end
      assert.same({ "hello" }, got)
      local err = sub:error()
      assert.equals("decode", err.kind)
      assert.matches("cursor cannot be sent back", err.message)
      assert.equals(200, err.status)
      assert.is_nil(sub:cursor())              -- the resume point stays before the message
      -- the other consumers see the same: the message, then the error
      local again = longpoll.subscribe{ url = url, cursor = "etag" }
      local list, raised = drain(again)
      assert.same({ "hello" }, list)
      assert.equals("decode", raised.kind)
    end)
  end)
end)
