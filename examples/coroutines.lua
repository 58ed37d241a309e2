-- One coroutine awaits a long-poll; another cancels it. A tiny scheduler
-- resumes each coroutine in turn, as a game engine or a server would.
--   lua5.4 examples/coroutines.lua http://127.0.0.1:8080
local longpoll = require "longpoll"

local base = arg[1] or os.getenv("LONGPOLL_DEMO_URL") or "http://127.0.0.1:8080"
local req = longpoll.request{ url = base .. "/poll/chat", query = { since = "999999" } }

local tasks = {
  coroutine.create(function()
    print("waiter: awaiting news")
    local msgs, err = req:await()        -- yields until the request finishes
    print(("waiter: got %s, %s"):format(tostring(msgs), err and err.kind))
  end),
  coroutine.create(function()
    for _ = 1, 3 do coroutine.yield() end  -- a few ticks later...
    print("canceler: cancel() -> " .. tostring(req:cancel()))
  end),
}

for tick = 1, 1000 do
  local alive = 0
  for _, co in ipairs(tasks) do
    if coroutine.status(co) == "suspended" then
      assert(coroutine.resume(co))
      alive = alive + 1
    end
  end
  if alive == 0 then print("all done after " .. tick .. " ticks") break end
  req:wait(0.01) -- idle until something finishes, at most one tick
end
