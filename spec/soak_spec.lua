-- The soak (bench/lua/soak_run.lua): subscriptions against a server that is
-- killed and restarted every few seconds and drops, resets, stalls and delays
-- polls; numbered messages: received = published, in order, none twice; RSS
-- of the last window within 5 % of the first. LONGPOLL_SOAK=<seconds> sizes it
-- (CI: 60 per Lua version; bench/soak.sh runs an hour).
local proc = require "support.proc"
local LUA = require "support.lua"

describe("a soak against a server that restarts, drops and stalls", function()
  it("delivers every published message once, in order, with RSS flat", function()
    local seconds = tonumber(os.getenv("LONGPOLL_SOAK") or "") or 60
    local every = seconds >= 600 and "20 120" or "3 10"
    -- the driver is lua5.4 with its own paths; the client (the Lua under test) gets ours
    local out, ok = proc.run(("LONGPOLL_SOAK_PATH=%s LONGPOLL_SOAK_CPATH=%s timeout %d lua5.4 bench/lua/soak_run.lua %s %d %s"):format(
      proc.shell_quote(package.path), proc.shell_quote(package.cpath), seconds + 600, LUA, seconds, every))
    local log = os.getenv("LONGPOLL_STRESS_LOG")
    if log then
      local f = assert(io.open(log, "a"))
      f:write(LUA, ": ", out)
      f:close()
    end
    assert.is_true(ok, out)
    local got, published = out:match("soak: ok %d+ s, (%d+) messages on %d+ channels %(published (%d+)%)")
    assert.truthy(got, out)
    assert.equals(published, got)
    assert.is_true(tonumber(got) > 0, out)
    assert.is_true(tonumber(out:match("soak: (%d+) restarts")) >= 1, out)
    local first, last = out:match("rss KB first %d+ s max (%d+) mean %d+, last %d+ s max (%d+)")
    -- the short form's first window (a sixth of it) is partly warm-up: 1 MB of slack
    local slack = seconds < 3600 and 1024 or 0
    if not (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) then
      assert.is_true(tonumber(last) <= tonumber(first) * 1.05 + slack, out)
    end
  end)
end)
