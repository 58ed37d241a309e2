-- longpoll.compat and what differs between Lua 5.1, LuaJIT 2.1, 5.3 and 5.4
-- (README, "Lua versions"): each spec runs on every version and checks the
-- behaviour that version has
local compat = require "longpoll.compat"
local longpoll = require "longpoll"
local testserver = require "support.testserver"
local proc = require "support.proc"

local luajit = rawget(_G, "jit") ~= nil
local v = _VERSION:match("%d+%.%d+")

describe("longpoll.compat", function()
  it("names the Lua running", function()
    assert.equals(luajit and "luajit" or v, compat.lua)
    assert.equals(v >= "5.3", compat.integers)
    assert.equals(v >= "5.4", compat.to_be_closed)
  end)

  it("isyieldable: false on the main thread, true in a coroutine", function()
    assert.is_false(compat.isyieldable())
    assert.is_true(coroutine.wrap(function() return compat.isyieldable() end)())
  end)

  it("isyieldable under pcall in a coroutine: true; only Lua 5.1 cannot yield there", function()
    local co = coroutine.create(function()
      return pcall(function()
        local yieldable = compat.isyieldable()
        coroutine.yield("yielded")
        return yieldable
      end)
    end)
    local ok, what, msg = coroutine.resume(co)
    assert.is_true(ok)
    if compat.lua == "5.1" then
      -- 5.1 answers "in a coroutine", and the yield raises Lua's own error
      assert.is_false(what)
      assert.matches("yield across", msg)
    else
      assert.equals("yielded", what)
      local ok2, pok, yieldable = coroutine.resume(co)
      assert.is_true(ok2 and pok)
      assert.is_true(yieldable)
    end
  end)

  it("tointeger: integral numbers only", function()
    assert.equals(3, compat.tointeger(3))
    assert.equals(3, compat.tointeger(3.0))
    assert.is_nil(compat.tointeger(3.5))
    assert.is_nil(compat.tointeger("3"))
    assert.is_nil(compat.tointeger(1 / 0))
    assert.is_nil(compat.tointeger(0 / 0))
    if compat.integers then
      assert.equals("integer", math.type(compat.tointeger(3.0)))
    end
  end)

  it("integer_string: all the digits of an integral number, no exponent and no .0", function()
    assert.equals("9007199254740992", compat.integer_string(2 ^ 53))
    assert.equals("-42", compat.integer_string(-42))
    assert.equals("42", compat.integer_string(42.0))
    assert.equals("1.5", compat.integer_string(1.5))
    assert.equals("abc", compat.integer_string("abc"))
  end)

  it("finalizer: a table's function runs once when it is collected (newproxy before 5.2)", function()
    local calls, seen = 0, nil
    do
      local t = compat.finalizer({ name = "t" }, function(self)
        calls = calls + 1
        seen = self.name
      end)
      assert.equals("t", t.name)
    end
    for _ = 1, 4 do collectgarbage() end
    assert.equals(1, calls)
    assert.equals("t", seen)
  end)

  it("finalizer: an error in the function is contained", function()
    do compat.finalizer({}, function() error("boom") end) end
    assert.has_no.errors(function() for _ = 1, 4 do collectgarbage() end end)
  end)
end)

describe("longpoll on " .. (luajit and "LuaJIT" or "Lua " .. v), function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  it("has close() on every version, the same function as __close", function()
    local req = longpoll.request{ url = srv:url("/hold") }:start()
    assert.equals(getmetatable(req).__close, req.close)
    req:close()
    assert.equals("canceled", req:status())
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("await works in a coroutine and raises outside one", function()
    local req = longpoll.request{ url = srv:url("/hold?ms=20&status=200&body=%5B1%5D") }
    assert.has_error(function() req:await() end,
      "longpoll.request:await: not inside a coroutine (use run())")
    local co = coroutine.wrap(function() return req:await() end)
    assert.equals(req, co())
    assert.is_true(req:wait(10))
    assert.same({ 1 }, co())
  end)

  -- LuaRocks for 5.1 builds with Lua 5.1's headers; that module is the one
  -- LuaJIT users get from it, and must load and work there too
  local tree51 = os.getenv("LONGPOLL_TREE_51")
  local run = (luajit and tree51 and tree51 ~= "") and it or pending
  run("the module built with Lua 5.1's headers works in LuaJIT", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local longpoll = require "longpoll"
      local url = ...
      local v = assert(longpoll.request{ url = url .. "/json" }:run())
      local held = longpoll.request{ url = url .. "/hold" }:start()
      assert(held:cancel())
      local _, err = held:run()
      io.write(tostring(jit and jit.version), " ", tostring(v.ok), " ", err.kind, "\n")
    ]])
    f:close()
    local out, ok = proc.run(("LUA_PATH=%q LUA_CPATH=%q timeout 60 luajit %s %s"):format(
      tree51 .. "/share/lua/5.1/?.lua;;", tree51 .. "/lib/lua/5.1/?.so;;", script, srv:url("")))
    os.remove(script)
    assert.is_true(ok, out)
    assert.matches("^LuaJIT 2%.1[^ ]* true canceled\n$", out)
  end)
end)
