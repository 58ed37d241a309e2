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

-- Bounded wait (`seconds`, default 10, 5 ms steps) for pred(); returns its last value.
function M.eventually(pred, seconds)
  local deadline = socket.gettime() + (seconds or 10)
  for _ = 1, 100000 do
    local v = pred()
    if v or socket.gettime() > deadline then return v end
    socket.sleep(0.005)
  end
end

-- closing(sub) -> sub, closed after the running test, pass or fail: what `<close>` does
-- on 5.4, on every version. A spec file calls after_each(subs.close_all) in its describe.
local open = {}
function M.closing(x)
  open[#open + 1] = x
  return x
end

function M.close_all()
  for i = #open, 1, -1 do
    open[i]:close()
    open[i] = nil
  end
end

return M
