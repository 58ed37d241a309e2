-- Helpers shared by the subscribe specs.
local socket = require "socket"

local M = {}

-- { prefix .. from, ..., prefix .. to }
function M.texts(prefix, from, to)
  local t = {}
  for i = from, to do t[#t + 1] = prefix .. i end
  return t
end

-- Drive sub:poll() until `n` messages arrived in total, appending text_of(msg)
-- (default: the message itself) to `got` (bounded: `seconds`, default 15, 5 ms steps).
function M.poll_until(sub, got, n, text_of, seconds)
  local deadline = socket.gettime() + (seconds or 15)
  for _ = 1, 100000 do
    local msgs, err = sub:poll()
    assert(msgs, err and tostring(err))
    for _, m in ipairs(msgs) do got[#got + 1] = text_of and text_of(m) or m end
    if #got >= n or socket.gettime() > deadline then break end
    socket.sleep(0.005)
  end
  return got
end

return M
