-- The Lua storm (spec/support/storm.lua, a process of its own under the Lua
-- under test): requests made, started, canceled, awaited, streamed, closed
-- and dropped at random with the collector stepped between operations; every
-- result proper, and descriptors, threads and memory back where they were.
-- LONGPOLL_STORM=<requests> sizes it (CI: 2000 per Lua version; bench/stress.sh
-- storm runs 100,000).
local testserver = require "support.testserver"
local proc = require "support.proc"
local LUA = require "support.lua"

describe("a storm of requests canceled at random points, with GC pressure", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  it("gives proper results and leaves descriptors, threads and memory where they were", function()
    local n = tonumber(os.getenv("LONGPOLL_STORM") or "") or 2000
    local cmd = ("LUA_PATH=%s LUA_CPATH=%s timeout %d %s spec/support/storm.lua %s %d %d"):format(
      proc.shell_quote(package.path), proc.shell_quote(package.cpath), 120 + math.floor(n / 100),
      LUA, srv:url(""), n, os.time() % 100000)
    local out, ok = proc.run(cmd)
    local log = os.getenv("LONGPOLL_STRESS_LOG")
    if log then
      local f = assert(io.open(log, "a"))
      f:write(LUA, ": ", out)
      f:close()
    end
    assert.is_true(ok, out)
    local made, fds0, fds1, c0, c1, th0, th1, rss0, rss1 = out:match(
      "storm: ok (%d+) requests.-fds (%d+) %-> (%d+); idle connections (%d+) %-> (%d+); threads (%d+) %-> (%d+); rss KB (%d+) %-> (%d+)")
    assert.truthy(made, out)
    assert.equals(n, tonumber(made))
    assert.equals(tonumber(fds0), tonumber(fds1), out)     -- every descriptor but idle connections
    assert.is_true(tonumber(c1) <= 32, out)                -- at most one per request in flight at once
    assert.equals(tonumber(th0), tonumber(th1), out)
    -- resident memory: back within 10 % + 4 MB (the allocator's and the
    -- Lua heap's slack) of the figure after the warm-up: a leak of 2 KB a
    -- request shows here; valgrind and ASan see smaller ones, and the
    -- 100,000-request run of bench/stress.sh holds the same bound
    -- (not under ASan: its quarantine keeps freed memory resident)
    if not (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) then
      assert.is_true(tonumber(rss1) <= tonumber(rss0) * 1.10 + 4096, out)
    end
    assert.truthy(srv:wait_held(0, 10))
  end)
end)
