-- Three long-polls on one cqueues loop, each awaited in its own cqueues
-- thread: req:await() waits through cqueues.poll (a request is a cqueues
-- pollable), so the loop runs the other threads meanwhile. A fourth thread
-- publishes to two channels; the third poll gets nothing and is canceled.
--   lua5.4 examples/cqueues.lua http://127.0.0.1:8080
local longpoll = require "longpoll"
local cqueues = require "cqueues"

local base = arg[1] or os.getenv("LONGPOLL_DEMO_URL") or "http://127.0.0.1:8080"
local cq = cqueues.new()
local polls, answered = {}, 0

for _, ch in ipairs({ "a", "b", "c" }) do
  polls[ch] = longpoll.request{ url = base .. "/poll/cq-" .. ch, query = { since = "0" }, timeout = 30 }
  cq:wrap(function()
    local msgs, err = polls[ch]:await()
    print(("%s: %s"):format(ch, msgs and msgs[1].data or err.kind))
    answered = answered + 1
    if answered == 2 then print("cancel c -> " .. tostring(polls.c:cancel())) end
  end)
end

cq:wrap(function()
  for _, ch in ipairs({ "a", "b" }) do
    assert(longpoll.request{ url = base .. "/publish/cq-" .. ch, body = "hello " .. ch }:await())
  end
end)

local t0 = cqueues.monotime()
assert(cq:loop())
print(("loop done after %.3f s"):format(cqueues.monotime() - t0))
