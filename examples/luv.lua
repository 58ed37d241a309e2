-- Three long-polls on one luv loop: each request's fd() is watched with
-- uv.new_poll, whose callback runs when the request has finished, so the
-- loop never blocks on the network. Two channels get a message published
-- (by a fourth request on the same loop); the third poll is canceled.
--   lua5.4 examples/luv.lua http://127.0.0.1:8080
local longpoll = require "longpoll"
local uv = require "luv"

local base = arg[1] or os.getenv("LONGPOLL_DEMO_URL") or "http://127.0.0.1:8080"
local polls, answered = {}, 0

-- calls on_done(req) on the loop once req has finished
local function watch(req, on_done)
  local poll = uv.new_poll(req:start():fd())
  poll:start("r", function()
    poll:close()
    on_done(req)
  end)
end

for _, ch in ipairs({ "a", "b", "c" }) do
  polls[ch] = longpoll.request{ url = base .. "/poll/luv-" .. ch, query = { since = "0" }, timeout = 30 }
  watch(polls[ch], function(req)
    local msgs, err = req:run() -- finished: returns at once
    print(("%s: %s"):format(ch, msgs and msgs[1].data or err.kind))
    answered = answered + 1
    if answered == 2 then print("cancel c -> " .. tostring(polls.c:cancel())) end
  end)
end

local function publish(channels)
  if #channels == 0 then return end
  local ch = table.remove(channels, 1)
  watch(longpoll.request{ url = base .. "/publish/luv-" .. ch, body = "hello " .. ch }, function(req)
    assert(req:run())
    publish(channels)
  end)
end
publish({ "a", "b" })

local t0 = uv.hrtime()
uv.run() -- returns when no poll handle is left
print(("loop done after %.3f s"):format((uv.hrtime() - t0) / 1e9))
