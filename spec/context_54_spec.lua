-- `local ctx <close> = longpoll.context()` (Lua 5.4 only: *_54_spec files run
-- under 5.4 alone, see .busted); ctx:close() stands in for it elsewhere
-- (context_spec.lua)
local longpoll = require "longpoll"
local testserver = require "support.testserver"

describe("a to-be-closed context (5.4)", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  it("cancels its requests and children at scope end, as Go's defer cancel()", function()
    local ctx, child, req
    do
      local scope <close> = longpoll.context()
      ctx, child = scope, scope:context()
      req = longpoll.request{ url = srv:url("/hold"), context = child }:start()
      assert.truthy(srv:wait_held(1, 5))
    end
    assert.equals("canceled", ctx:err().kind)
    assert.equals("canceled", child:err().kind)
    assert.equals("canceled", select(2, req:run()).kind)
    assert.truthy(srv:wait_held(0, 5))
  end)
end)
