-- longpoll.subscribe and Lua 5.4's `<close>` (the other versions call sub:close(),
-- subscribe_consume_spec.lua). .busted runs *_54_spec files on 5.4 only.
local longpoll = require "longpoll"
local testserver = require "support.testserver"

describe("longpoll.subscribe <close>", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  it("cancels the subscription at the end of its scope: the held poll is cut", function()
    local outside
    do
      local sub <close> = longpoll.subscribe{ url = srv:url("/poll/close54"), cursor = "since",
        query = { timeout_ms = "60000" } }
      sub:start()
      outside = sub
      assert.is_true(srv:wait_held(1, 5))
    end
    assert.is_true(srv:wait_held(0, 5))
    assert.equals("canceled", outside:status())
    local msgs, err = outside:poll()
    assert.is_nil(msgs)
    assert.equals("canceled", err.kind)
  end)
end)
