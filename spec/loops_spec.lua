-- Event loops and coroutine schedulers: the request as a cqueues pollable and
-- a LuaSocket select() object, req:await() inside cqueues and copas, and the
-- examples for luv, cqueues and copas run as users run them
local testserver = require "support.testserver"
local proc = require "support.proc"
local longpoll = require "longpoll"

local LUA = require "support.lua"
local next_threads = require "support.next_threads"
local cjson = require "cjson"

-- true when `lua` can load `module` (copas is packaged for Lua 5.1 only)
local function loads(lua, module)
  local _, ok = proc.run(("%s -e %s >/dev/null"):format(lua, proc.shell_quote("require '" .. module .. "'")))
  return ok == true
end

describe("event loops", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  -- spec/support/next_threads.lua's run: the subscription's waits (a 503's backoff of
  -- 0.2 s, the poll on the wire) let the other thread run, and the cancel ends the held poll
  local function next_channel()
    local ch = "next-" .. tostring(longpoll.now()):gsub("%.", "")
    srv:publish(ch, { "m1", "m2" })
    srv:fail{ mode = "503", count = 1 }
    return srv:url("/poll/" .. ch)
  end
  local function consumed(r, out)
    assert.same({ "503 0.2" }, r.failures, out)
    assert.same({ "m1", "m2", "canceled" }, r.got, out)
    assert.is_true(r.backoff_ticks > 0, out)     -- the other thread ran during the backoff
    assert.truthy(srv:wait_held(0, 5))
  end

  local function example(script)
    local out, ok, how, code = proc.run(("LUA_PATH=%q LUA_CPATH=%q timeout 60 %s %s %s"):format(
      package.path, package.cpath, LUA, script, srv:url("")))
    assert.is_true(ok, out)
    assert.equals("exit", how)
    assert.equals(0, code)
    -- two polls got their message, the third was canceled while held
    for _, ch in ipairs({ "a", "b" }) do assert.matches("\n?" .. ch .. ": hello " .. ch .. "\n", out) end
    assert.matches("cancel c -> true\n", out, 1, true)
    assert.matches("\nc: canceled\n", out, 1, true)
    assert.truthy(srv:wait_held(0, 5))
    return out
  end

  describe("cqueues", function()
    local cqueues = require "cqueues"

    it("cqueues.poll(req) returns once the request finished (the request is a pollable)", function()
      local req = longpoll.request{ url = srv:url("/hold?ms=50&status=200&body=%5B1%5D") }:start()
      assert.equals(req:fd(), req:pollfd())
      assert.equals("r", req:events())
      assert.is_nil(req:timeout())
      local cq, polls = cqueues.new(), 0
      cq:wrap(function()
        while not req:done() and polls < 1000 do
          cqueues.poll(req, 10)
          polls = polls + 1
        end
      end)
      assert(cq:loop(10))
      assert.is_true(req:done())
      assert.is_true(polls < 1000)
      assert.same({ 1 }, (req:run()))
    end)

    it("req:await() inside cq:wrap waits through the loop, beside other threads", function()
      local cq, order = cqueues.new(), {}
      local held = longpoll.request{ url = srv:url("/hold") }
      cq:wrap(function()
        local v = longpoll.request{ url = srv:url("/hold?ms=30&status=200&body=%5B2%5D") }:await()
        order[#order + 1] = "value " .. tostring(v and v[1])
        order[#order + 1] = "cancel " .. tostring(held:cancel())
      end)
      cq:wrap(function()
        local _, err = held:await()
        order[#order + 1] = "held " .. tostring(err and err.kind)
      end)
      cq:wrap(function() order[#order + 1] = "other thread ran" end)
      assert(cq:loop(10))
      assert.same({ "other thread ran", "value 2", "cancel true", "held canceled" }, order)
      assert.truthy(srv:wait_held(0, 5))
    end)

    it("sub:next() inside cq:wrap: the poll and the backoff wait go through the loop", function()
      local cq = cqueues.new()
      consumed(next_threads(next_channel(), {
        spawn = function(f) cq:wrap(f) end,
        sleep = cqueues.sleep,
        run = function(seconds) assert(cq:loop(seconds)) end,
        held = function() return srv:stats().held == 1 end,
      }))
    end)

    it("examples/cqueues.lua: three polls on one loop, one canceled", function()
      srv:reset()
      example("examples/cqueues.lua")
    end)
  end)

  describe("LuaSocket select", function()
    it("socket.select({req}) returns the request once it finished (getfd, dirty)", function()
      local socket = require "socket"
      local req = longpoll.request{ url = srv:url("/hold?ms=50&status=204") }:start()
      assert.equals(req:fd(), req:getfd())
      assert.is_false(req:dirty())
      assert.same({ nil, "timeout" }, { req:receive() })
      local ready
      for _ = 1, 100 do
        ready = socket.select({ req }, nil, 0.1)
        if ready[1] then break end
      end
      assert.equals(req, ready[1])
      assert.is_true(req:dirty())
      assert.is_true(req:receive())
    end)
  end)

  describe("await_hook", function()
    after_each(function() longpoll.await_hook = nil end)

    it("replaces the plain yield: await calls it until the request finished", function()
      local seen = 0
      longpoll.await_hook = function(req)
        seen = seen + 1
        req:wait(0.01)
      end
      local co = coroutine.wrap(function()
        return longpoll.request{ url = srv:url("/hold?ms=50&status=200&body=%5B3%5D") }:await()
      end)
      local v = co() -- the hook waits, so await returns without yielding
      assert.same({ 3 }, v)
      assert.is_true(seen >= 1)
    end)
  end)

  it("examples/luv.lua: three polls watched with uv.new_poll, one canceled", function()
    srv:reset()
    example("examples/luv.lua")
  end)

  local copas = loads(LUA, "copas") and it or pending
  copas("sub:next() in copas threads (await_hook = copas.receive): the poll and the backoff wait", function()
    local out, ok = proc.run(("LUA_PATH=%q LUA_CPATH=%q timeout 60 %s spec/support/next_in_copas.lua %s"):format(
      package.path, package.cpath, LUA, proc.shell_quote(next_channel())))
    assert.is_true(ok, out)
    consumed(cjson.decode(out:match("([^\n]*)\n?$")), out)
  end)

  copas("examples/copas.lua: three polls awaited in copas threads, one canceled (copas: " .. LUA .. ")", function()
    srv:reset()
    example("examples/copas.lua")
  end)
end)
