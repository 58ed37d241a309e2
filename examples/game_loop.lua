-- A 60 fps frame loop that keeps a long-poll going and checks done() each
-- frame: the frame never blocks on the network.
--   lua5.4 examples/game_loop.lua http://127.0.0.1:8080
local longpoll = require "longpoll"

local base = arg[1] or os.getenv("LONGPOLL_DEMO_URL") or "http://127.0.0.1:8080"
local frames, since, received = 120, "0", 0
local poll

for frame = 1, frames do
  local t0 = longpoll.now()
  if not poll then
    poll = longpoll.request{ url = base .. "/poll/game", query = { since = since }, timeout = 30 }:start()
  elseif poll:done() then
    local msgs, err = poll:run()
    if msgs then
      for _, m in ipairs(msgs) do
        received = received + 1
        since = m.id
        print(("frame %3d: message %s: %s"):format(frame, m.id, m.data))
      end
    else
      print(("frame %3d: poll failed: %s"):format(frame, tostring(err)))
    end
    poll = nil
  end
  if frame % 30 == 20 then -- somebody else publishes now and then
    longpoll.request{ url = base .. "/publish/game", body = "tick " .. frame }:run()
  end
  -- ... update and draw the scene here ...
  longpoll.sleep(math.max(0, 1 / 60 - (longpoll.now() - t0)))  -- the rest of the frame
end
if poll then poll:cancel() end -- the scene changed: stop polling at once
print(("%d frames, %d messages"):format(frames, received))
