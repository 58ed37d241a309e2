-- `local req <close> = ...` (Lua 5.4 only: *_54_spec files run under 5.4
-- alone, see .busted); close() stands in for it elsewhere (cancel_spec.lua)
local longpoll = require "longpoll"
local testserver = require "support.testserver"

describe("a to-be-closed request (5.4)", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)
  before_each(function() assert.truthy(srv:wait_held(0, 5)) end)

  it("is canceled at scope end and stays readable", function()
    local outside
    do
      local req <close> = longpoll.request{ url = srv:url("/hold") }:start()
      outside = req
      assert.truthy(srv:wait_held(1, 5))
    end
    assert.equals("canceled", outside:status())
    assert.equals("canceled", select(2, outside:run()).kind)
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("that finished keeps its result", function()
    local outside
    do
      local req <close> = longpoll.request{ url = srv:url("/json") }
      req:run()
      outside = req
    end
    assert.equals("done", outside:status())
    assert.is_true(outside:run().ok)
  end)

  it("is canceled when its scope is left by an error", function()
    local outside
    local ok = pcall(function()
      local req <close> = longpoll.request{ url = srv:url("/hold") }:start()
      outside = req
      assert.truthy(srv:wait_held(1, 5))
      error("leaving")
    end)
    assert.is_false(ok)
    assert.equals("canceled", outside:status())
    assert.truthy(srv:wait_held(0, 5))
  end)
end)
