-- examples/love in LÖVE 11 (LuaJIT) under xvfb-run, in its scripted mode:
-- messages reach the game and its love.thread, a key press cancels the held
-- poll, no frame waits for the network; prints the module's frame figures
local testserver = require "support.testserver"
local proc = require "support.proc"

local function have(cmd)
  local _, ok = proc.run("command -v " .. cmd .. " >/dev/null")
  return ok == true
end

-- LÖVE embeds LuaJIT: it loads the build the LuaJIT pass of the suite uses
local runs = rawget(_G, "jit") and have("love") and have("xvfb-run")
local why = not rawget(_G, "jit") and "runs in the LuaJIT pass (LÖVE embeds LuaJIT)"
  or "needs love and xvfb-run (Debian: love xvfb)"

describe("examples/love in LÖVE", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  local test = runs and it or function(name) pending(name .. ": " .. why) end
  test("game and thread receive messages, a key cancels the poll, no frame blocks", function()
    srv:reset()
    srv:publish("love", { "one", "two", "three" })
    local shot = os.tmpname()
    local out, ok, how, code = proc.run(("LUA_PATH=%q LUA_CPATH=%q LONGPOLL_LOVE_SCRIPT=3 LONGPOLL_LOVE_SCREENSHOT=%q "
      .. "timeout 120 xvfb-run -a love examples/love %s"):format(package.path, package.cpath, shot, srv:url("")))
    local png = proc.read_file(shot) or ""
    os.remove(shot)
    assert.is_true(ok, out)
    assert.equals("exit", how)
    assert.equals(0, code)
    for i, text in ipairs({ "one", "two", "three" }) do
      assert.matches(("\ngame: message %d: %s\n"):format(i, text), out, 1, true)
      assert.matches(("\nthread: message %d: %s\n"):format(i, text), out, 1, true)
    end
    -- the key press canceled the held poll, and the game did not poll again
    assert.matches("\nkey space: cancel() -> true, run() -> nil, canceled after ", out, 1, true)
    assert.matches("\nthread: poll canceled at quit\n", out, 1, true)
    assert.matches("\nmessages: game 3, thread 3\n", out, 1, true)
    assert.equals("\137PNG", png:sub(1, 4))
    local frames, worst, p99, mean, over, longest = out:match(
      "\nframes (%d+); longpoll per frame: worst ([%d.]+) us, p99 ([%d.]+) us, mean ([%d.]+) us, (%d+) frames over 0.5 ms; longest frame ([%d.]+) ms")
    assert.is_not_nil(frames, out)
    print(("  LÖVE: %s frames, longpoll per frame worst %s us, p99 %s us, mean %s us, %s over 0.5 ms; longest frame %s ms")
      :format(frames, worst, p99, mean, over, longest))
    assert.truthy(srv:wait_held(0, 5))
  end)
end)
