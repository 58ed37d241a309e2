-- Three long-polls on one copas loop, each awaited in its own copas thread.
-- copas resumes a thread only when it yielded through copas itself, so
-- longpoll.await_hook = copas.receive makes req:await() wait the copas way
-- (a request answers "timeout" to receive() until it finished, and copas
-- selects on its fd). Two channels get a message published; the third poll
-- is canceled.
--   lua5.1 examples/copas.lua http://127.0.0.1:8080   (Debian packages copas for 5.1)
local copas = require "copas"
local longpoll = require "longpoll"
longpoll.await_hook = copas.receive

local base = arg[1] or os.getenv("LONGPOLL_DEMO_URL") or "http://127.0.0.1:8080"
local polls, answered, running = {}, 0, 0

local function thread(f)
  running = running + 1
  copas.addthread(function()
    f()
    running = running - 1
  end)
end

for _, ch in ipairs({ "a", "b", "c" }) do
  polls[ch] = longpoll.request{ url = base .. "/poll/copas-" .. ch, query = { since = "0" }, timeout = 30 }
  thread(function()
    local msgs, err = polls[ch]:await()
    print(("%s: %s"):format(ch, msgs and msgs[1].data or err.kind))
    answered = answered + 1
    if answered == 2 then print("cancel c -> " .. tostring(polls.c:cancel())) end
  end)
end

thread(function()
  for _, ch in ipairs({ "a", "b" }) do
    assert(longpoll.request{ url = base .. "/publish/copas-" .. ch, body = "hello " .. ch }:await())
  end
end)

local t0 = longpoll.now()
-- copas.loop() never returns: step until every thread ended (at most 60 s)
while running > 0 and longpoll.now() - t0 < 60 do copas.step(1) end
print(("loop done after %.3f s"):format(longpoll.now() - t0))
