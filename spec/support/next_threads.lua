-- sub:next() in the threads of a coroutine scheduler (spec/loops_spec.lua; in a child
-- process for copas, spec/support/next_in_copas.lua). url: a /poll channel of the spec
-- server where m1 and m2 were published and one 503 failure queued, so next() waits out
-- a backoff of 0.2 s, then a poll brings m1 and m2, then the third poll is held. One
-- thread consumes with next() three times; another ticks meanwhile and, once two messages
-- came (and held(), when given, says the third poll is held at the server), cancels the
-- subscription. loop: spawn(f) runs f as a thread, sleep(s) waits in one, run(seconds)
-- runs the loop until its threads ended (at most `seconds`), held() optional.
-- Returns what the spec checks: { failures = {"503 0.2"}, got = {"m1", "m2", "canceled"},
-- backoff_ticks = the ticks while the subscription was "retrying": > 0 when the backoff
-- let the other thread run }. What a thread raises is the loop's to
-- report (no pcall here: Lua 5.1 cannot yield across it).
local longpoll = require "longpoll"

return function(url, loop)
  local r = { failures = {}, got = {}, backoff_ticks = 0 }
  local done = false
  local sub = longpoll.subscribe{ url = url, cursor = "since", query = { timeout_ms = "60000" },
    backoff = { floor = 0.2, ceiling = 0.2 },
    on_error = function(err, info)
      r.failures[#r.failures + 1] = ("%s %.1f"):format(err.status, info.delay)
    end }
  loop.spawn(function()
    for _ = 1, 3 do
      local m, err = sub:next()
      r.got[#r.got + 1] = m and m.data or err.kind
    end
    done = true
  end)
  loop.spawn(function()
    for _ = 1, 3000 do
      if #r.got == 2 and sub:status() ~= "canceled" and (not loop.held or loop.held()) then
        sub:cancel()
      end
      if done then break end
      if sub:status() == "retrying" then r.backoff_ticks = r.backoff_ticks + 1 end
      loop.sleep(0.005)
    end
  end)
  loop.run(10)
  sub:cancel()
  return r
end
