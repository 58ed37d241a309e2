-- longpoll.subscribe: the ways to consume (messages(), poll(), next(), run(), on_message)
-- and ending a subscription at once (cancel(), close(), GC).
local longpoll = require "longpoll"
local testserver = require "support.testserver"
local socket = require "socket"

local subs = require "support.subs"
local closing = subs.closing
local eventually = subs.eventually
local texts = subs.texts


describe("longpoll.subscribe consumption", function()
  after_each(subs.close_all)
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  -- a subscription on /poll/<ch> with a long server hold (so only a cancel ends a poll)
  local function since(ch, extra)
    local o = { url = srv:url("/poll/" .. ch), cursor = "since", query = { timeout_ms = "60000" } }
    for k, v in pairs(extra or {}) do o[k] = v end
    return longpoll.subscribe(o)
  end

  describe("messages()", function()
    it("hands out every message in order; publishing from the loop body", function()
      srv:publish("it1", texts("m", 1, 3))
      local sub = closing(since("it1"))
      local got = {}
      for m in sub:messages() do
        got[#got + 1] = m.data
        if #got == 3 then srv:publish("it1", texts("m", 4, 10)) end
        if #got == 10 then srv:publish("it1", "m11") end
        if #got == 11 then break end
      end
      assert.same(texts("m", 1, 11), got)
    end)

    it("leaving the loop keeps the subscription: a second loop goes on", function()
      srv:publish("it2", texts("m", 1, 6))
      local sub = closing(since("it2"))
      local got = {}
      for m in sub:messages() do got[#got + 1] = m.data; if #got == 2 then break end end
      assert.equals("running", sub:status())
      for m in sub:messages() do got[#got + 1] = m.data; if #got == 6 then break end end
      assert.same(texts("m", 1, 6), got)
    end)

    it("ends when the subscription is canceled from the loop body", function()
      srv:publish("it3", texts("m", 1, 5))
      local sub = since("it3")
      local n = 0
      for _ in sub:messages() do
        n = n + 1
        if n == 2 then assert.is_true(sub:cancel()) end
      end
      assert.equals(2, n)
      assert.equals("canceled", sub:status())
      assert.equals("canceled", sub:error().kind)
      assert.is_false(sub:cancel())
    end)
  end)

  describe("poll()", function()
    it("never blocks: returns {} while the poll is held at the server", function()
      local sub = closing(since("pl1"))
      assert.same({}, sub:poll())            -- starts the first poll
      assert.is_true(srv:wait_held(1, 5))
      for _ = 1, 5 do
        assert.same({}, sub:poll())          -- the held poll is not waited for
        assert.equals("running", sub:status())
      end
      local st = srv:stats()
      assert.equals(1, st.held)
      assert.equals(1, st.hits["/poll/pl1"])
    end)

    it("returns what arrived since the last call, in order, none twice (game loop)", function()
      local sub = closing(since("pl2"))
      local got, frames = {}, 0
      local function frame()
        frames = frames + 1
        local msgs = assert(sub:poll())
        for _, m in ipairs(msgs) do got[#got + 1] = m.data end
      end
      frame()
      srv:publish("pl2", texts("m", 1, 20))
      assert.is_truthy(eventually(function() frame(); return #got >= 20 end))
      for i = 21, 30 do srv:publish("pl2", "m" .. i) end
      assert.is_truthy(eventually(function() frame(); return #got >= 30 end))
      assert.same(texts("m", 1, 30), got)
      assert.is_true(frames > 2)
    end)

    it("keeps a poll waiting at the server after handing out messages", function()
      srv:publish("pl3", texts("m", 1, 3))
      local sub = closing(since("pl3"))
      local got = {}
      eventually(function()
        for _, m in ipairs(assert(sub:poll())) do got[#got + 1] = m.data end
        return #got >= 3
      end)
      assert.same(texts("m", 1, 3), got)
      assert.is_true(srv:wait_held(1, 5))
    end)
  end)

  describe("next()", function()
    it("yields while waiting; two subscriptions in coroutines under wait_any", function()
      srv:publish("co1", texts("a", 1, 3))
      local a = closing(since("co1"))
      local b = closing(since("co2"))
      local got = { co1 = {}, co2 = {} }
      local function consumer(sub, ch, n)
        return coroutine.create(function()
          for _ = 1, n do
            local m = assert(sub:next())
            got[ch][#got[ch] + 1] = m.data
          end
        end)
      end
      local cos = { consumer(a, "co1", 8), consumer(b, "co2", 5) }
      local published = false
      local deadline = socket.gettime() + 10
      for _ = 1, 10000 do
        local waiting = {}
        for _, co in ipairs(cos) do
          if coroutine.status(co) == "suspended" then
            local ok, what = coroutine.resume(co)
            assert(ok, what)
            if coroutine.status(co) == "suspended" then
              -- next() yields the request on the wire (a backoff: a context)
              assert.equals("userdata", type(what))
              waiting[#waiting + 1] = what
            end
          end
        end
        if #waiting == 0 or socket.gettime() > deadline then break end
        if not published and #got.co1 == 3 then
          published = true
          srv:publish("co1", texts("a", 4, 8))
          srv:publish("co2", texts("b", 1, 5))
        end
        longpoll.wait_any(waiting, 0.5)
      end
      assert.same(texts("a", 1, 8), got.co1)
      assert.same(texts("b", 1, 5), got.co2)
    end)

    it("a plain coroutine gets what req:await() yields: the request, a context for a backoff", function()
      srv:publish("co5", { "m1" })
      srv:fail{ mode = "503", count = 1 }
      local sub = closing(since("co5", { backoff = { floor = 0.2, ceiling = 0.2 },
        on_error = function() end }))
      local co = coroutine.create(function() return sub:next() end)
      local contexts, msg = 0, nil
      for _ = 1, 1000 do
        local ok, y = coroutine.resume(co)
        assert(ok, y)
        if coroutine.status(co) == "dead" then msg = y; break end
        -- the request while a poll is on the wire (unless it answered at once)
        local kind = tostring(y):match("^longpoll%.(%a+)")
        if kind == "context" then
          -- the backoff: it ends when that is over (its fd turns readable then)
          contexts = contexts + 1
          assert.is_true(y:deadline() - longpoll.now() <= 0.2)
        else
          assert.equals("request", kind)
        end
        assert.is_true(y:wait(5))
      end
      assert.equals(1, contexts)
      assert.equals("m1", msg.data)
    end)

    it("raises outside a coroutine", function()
      local sub = closing(since("co3"))
      assert.has_error(function() sub:next() end)
    end)

    it("returns nil, err (canceled) when canceled while it waits", function()
      local sub = since("co4")
      local res
      local co = coroutine.create(function() res = { sub:next() } end)
      assert(coroutine.resume(co))
      assert.equals("suspended", coroutine.status(co))
      assert.is_true(srv:wait_held(1, 5))
      assert.is_true(sub:cancel())
      assert(coroutine.resume(co))
      assert.equals("dead", coroutine.status(co))
      assert.is_nil(res[1])
      assert.equals("canceled", res[2].kind)
      assert.is_true(srv:wait_held(0, 5))   -- the held poll was cut at once
    end)
  end)

  describe("on_message and run()", function()
    it("sees each message once in every style", function()
      srv:publish("cb1", texts("m", 1, 9))
      local seen = {}
      local sub = closing(since("cb1", { on_message = function(m, s)
        assert.equals("table", type(s))
        seen[#seen + 1] = m.data
      end }))
      local got = {}
      for m in sub:messages() do got[#got + 1] = m.data; if #got == 3 then break end end
      eventually(function()
        for _, m in ipairs(assert(sub:poll())) do got[#got + 1] = m.data end
        return #got >= 6
      end)
      local co = coroutine.wrap(function()
        while #got < 9 do got[#got + 1] = assert(sub:next()).data end
      end)
      co()
      assert.same(texts("m", 1, 9), got)
      assert.same(texts("m", 1, 9), seen)
    end)

    it("run() hands every message to on_message until canceled", function()
      srv:publish("cb2", texts("m", 1, 12))
      local seen = {}
      local sub
      sub = since("cb2", { on_message = function(m)
        seen[#seen + 1] = m.data
        if #seen == 12 then sub:cancel() end
      end })
      local ok, err = sub:run()
      assert.is_nil(ok)
      assert.equals("canceled", err.kind)
      assert.same(texts("m", 1, 12), seen)
    end)

    it("a message whose on_message raised is handed out again, and the cursor stays", function()
      srv:publish("cb3", texts("m", 1, 3))
      local seen, fail_once = {}, true
      local sub = closing(since("cb3", { on_message = function(m)
        if m.data == "m2" and fail_once then fail_once = false; error("boom") end
        seen[#seen + 1] = m.data
      end }))
      local it = sub:messages()
      assert.equals("m1", it().data)
      assert.has_error(function() it() end, "boom")
      assert.equals("1", sub:cursor())
      assert.equals("m2", it().data)
      assert.equals("m3", it().data)
      assert.same({ "m1", "m2", "m3" }, seen)
      assert.equals("3", sub:cursor())
    end)
  end)

  describe("ends at once", function()
    it("by cancel(): the held poll is cut, poll() then returns nil, err", function()
      local sub = since("end1")
      assert.equals("ready", sub:status())
      sub:start()
      assert.is_true(srv:wait_held(1, 5))
      assert.is_true(sub:cancel())
      assert.is_true(srv:wait_held(0, 5))
      local msgs, err = sub:poll()
      assert.is_nil(msgs)
      assert.equals("canceled", err.kind)
      assert.equals("canceled", sub:status())
    end)

    it("by close() (what <close> does on 5.4: subscribe_close_54_spec.lua)", function()
      local sub = since("end2")
      sub:start()
      assert.is_true(srv:wait_held(1, 5))
      sub:close()
      assert.is_true(srv:wait_held(0, 5))
      assert.equals("canceled", sub:status())
      sub:close()                           -- a second close() does nothing
      assert.equals("canceled", sub:error().kind)
    end)

    it("by garbage collection", function()
      local sub = since("end3")
      sub:start()
      assert.is_true(srv:wait_held(1, 5))
      sub = nil   -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      assert.is_true(srv:wait_held(0, 5))
    end)

    it("during a backoff wait", function()
      local sub = longpoll.subscribe{ url = srv:url("/poll/end4"), cursor = "since",
        query = { timeout_ms = "60000" }, backoff = { floor = 60, ceiling = 60 } }
      srv:fail{ mode = "503", count = 1 }
      sub:start()
      assert.is_truthy(eventually(function() sub:poll(); return sub:status() == "retrying" end))
      assert.is_true(sub:cancel())
      local msgs, err = sub:poll()
      assert.is_nil(msgs)
      assert.equals("canceled", err.kind)
    end)

    it("describes itself", function()
      local sub = closing(since("end5"))
      assert.equals("longpoll.subscription: " .. srv:url("/poll/end5") .. " (ready)", tostring(sub))
    end)
  end)
end)
