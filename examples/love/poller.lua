-- The love.thread of examples/love: a second Lua state on its own OS thread.
-- It long-polls the same channel as the game, in the blocking style a thread
-- may use (the game itself never blocks), through the same process-wide
-- engine. It sends what it receives on the "longpoll-thread" channel and
-- cancels its poll and ends when the game pushes "stop" on "longpoll-control".
local longpoll = require "longpoll"
require "love.timer"

local base, channel = ...
local out = love.thread.getChannel("longpoll-thread")
local control = love.thread.getChannel("longpoll-control")
local since = "0"

while true do
  local req = longpoll.request{ url = base .. "/poll/" .. channel, query = { since = since }, timeout = 30 }
  -- block in slices so a "stop" from the game is seen while the poll is held
  while not req:wait(0.1) do
    if control:pop() == "stop" then
      req:cancel()
      local _, err = req:run()
      out:push({ kind = "stopped", text = err.kind })
      return
    end
  end
  local msgs, err = req:run()
  if msgs then
    for _, m in ipairs(msgs) do
      since = m.id
      out:push({ kind = "message", id = m.id, data = m.data })
    end
  else
    out:push({ kind = "error", text = tostring(err) })
    if control:demand(1) == "stop" then return end -- back off a second
  end
end
