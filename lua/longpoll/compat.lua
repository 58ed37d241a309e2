-- longpoll.compat: the Lua version differences of the Lua layer, in one
-- place (the C ones are in csrc/lp_compat.h). The rest of lua/ is written
-- once for Lua 5.1, LuaJIT 2.1, 5.3 and 5.4 and asks this module where they
-- differ. README, "Lua versions", says what each difference means for users.
local M = {}

local floor, huge = math.floor, math.huge
local math_type, tointeger = math.type, math.tointeger

-- "5.1", "5.3", "5.4" or "luajit"
M.lua = (rawget(_G, "jit") and "luajit") or _VERSION:match("^Lua (%d+%.%d+)$")

-- true where numbers have an integer subtype (5.3+); elsewhere every number is
-- a double and the "integers" below are the integral ones
M.integers = math_type ~= nil

-- true where `local x <close> = ...` exists (5.4); elsewhere call x:close()
M.to_be_closed = _VERSION >= "Lua 5.4"

-- true inside a coroutine that may yield. 5.1 has no coroutine.isyieldable
-- and cannot see a C-call boundary (pcall, a metamethod): there it answers
-- "in a coroutine" (coroutine.running() is nil on the main thread), and a
-- yield across such a boundary raises Lua's own error. LuaJIT 2.1 and 5.3+
-- have coroutine.isyieldable (and LuaJIT can yield across pcall).
M.isyieldable = coroutine.isyieldable or function()
  return coroutine.running() ~= nil
end

-- x as an integer if it is a number with an integral value (5.3+: of the
-- integer subtype after conversion), else nil; math.tointeger for numbers
if tointeger then
  function M.tointeger(x)
    if type(x) ~= "number" then return nil end
    return tointeger(x)
  end
else
  function M.tointeger(x)
    if type(x) == "number" and x == floor(x) and x ~= huge and x ~= -huge then return x end
    return nil
  end
end

-- the decimal digits of an integral number, never an exponent or ".0"
-- (tostring(2^53) is "9.007199254741e+15" in 5.1 and LuaJIT), for ids and
-- cursors sent back to a server; other values as tostring
function M.integer_string(x)
  local i = M.tointeger(x)
  if i == nil then return tostring(x) end
  if M.integers and math_type(i) == "integer" then return tostring(i) end
  return ("%.0f"):format(i)
end

-- f(t) is called (protected, once) when the table t becomes garbage, or at
-- lua_close. Tables have no __gc before 5.2: 5.1 and LuaJIT get a userdata
-- from newproxy whose own __gc stands in. The sentinel is kept in t under a
-- private key (not a weak side table: 5.1's are not ephemerons and the
-- sentinel's finalizer refers to t). Returns t.
local SENTINEL = {}
local newproxy = rawget(_G, "newproxy")
function M.finalizer(t, f)
  local function gc() pcall(f, t) end
  local s
  if newproxy then
    s = newproxy(true)
    getmetatable(s).__gc = gc
  else
    s = setmetatable({}, { __gc = gc })
  end
  rawset(t, SENTINEL, s)
  return t
end

return M
