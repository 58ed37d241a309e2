-- The examples run as users run them, against the spec server
local testserver = require "support.testserver"
local proc = require "support.proc"
local lua = require "support.lua"

describe("examples", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  local function run(script)
    local out, ok, how, code = proc.run(("LUA_PATH=%q LUA_CPATH=%q timeout 60 %s %s %s"):format(
      package.path, package.cpath, lua, script, srv:url("")))
    assert.is_true(ok, out)
    assert.equals("exit", how)
    assert.equals(0, code)
    return out
  end

  it("cancel.lua receives the published messages and cancels the held poll", function()
    srv:reset()
    local out = run("examples/cancel.lua")
    assert.matches("received 2 messages %(HTTP 200%)", out)
    assert.matches("id=1 data=hello", out, 1, true)
    assert.matches("id=2 data=world", out, 1, true)
    assert.matches("polling for news after id 2 (running) ...", out, 1, true)
    assert.matches("canceled: value=nil kind=canceled after [%d.]+ us", out)
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("coroutines.lua cancels from one coroutine what another awaits", function()
    local out = run("examples/coroutines.lua")
    assert.matches("waiter: awaiting news", out, 1, true)
    assert.matches("canceler: cancel() -> true", out, 1, true)
    assert.matches("waiter: got nil, canceled", out, 1, true)
    assert.matches("all done after %d+ ticks", out)
  end)

  it("game_loop.lua gets every message published during its frames", function()
    srv:reset()
    local out = run("examples/game_loop.lua")
    assert.matches("120 frames, 4 messages", out, 1, true)
    for _, f in ipairs({ 20, 50, 80, 110 }) do
      assert.matches(": tick " .. f .. "\n", out, 1, true)
    end
  end)
end)
