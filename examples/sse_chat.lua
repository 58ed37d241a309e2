-- A tiny terminal chat over Server-Sent Events: alice and bob each hold one EventSource
-- stream of the room (longpoll.request{ stream = "sse" } to Nchan's eventsource subscriber)
-- and publish with a POST. One loop serves both streams: longpoll.wait_any returns a stream
-- with a message queued, poll() takes what is there. Nothing is polled: each message is
-- pushed down the open stream the moment it is published.
--
--   lua5.4 examples/sse_chat.lua [--script] [BASE_URL]
--
-- BASE_URL is an nginx with Nchan where POST /pub/<room> publishes and GET /es/<room> is
-- an EventSource subscriber (spec/support/nchan.conf has both). Without it, a private nginx
-- is started from spec/support/nchan.lua (needs nginx and libnginx-mod-nchan) and stopped
-- at the end.
-- Interactive: type lines "alice: text" or "bob: text" (empty line or EOF quits).
-- --script plays a fixed conversation in a fresh room and exits 1 unless both saw every
-- message, in order, once.

local here = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = here .. "/lua/?.lua;" .. here .. "/lua/?/init.lua;" .. here .. "/spec/?.lua;"
  .. package.path
package.cpath = package.cpath .. ";" .. here .. "/build/?.so" -- an installed longpoll first

local longpoll = require "longpoll"

local script, base = false, nil
for _, a in ipairs(arg) do
  if a == "--script" then script = true else base = a end
end

local server
if not base then
  server = require("support.nchan").start{}
  base = server:url("")
end
base = base:gsub("/$", "")

local room = script and ("sse" .. os.time() .. math.random(100000)) or "lobby"

-- Publish one chat line as JSON; Nchan passes it on as the event's data.
local function say(from, text)
  local ok, err = longpoll.request{ url = base .. "/pub/" .. room, timeout = 5,
    body = { from = from, text = text } }:run()
  if not ok then error("publish failed: " .. tostring(err)) end
end

-- Each user's stream: an SSE request that stays open; its data is decoded JSON.
local users, streams = {}, {}
for _, name in ipairs{ "alice", "bob" } do
  local u = { name = name, seen = {} }
  u.stream = longpoll.request{ url = base .. "/es/" .. room, stream = "sse",
    headers = { Accept = "text/event-stream" } }:start()
  users[#users + 1] = u
  streams[#streams + 1] = u.stream
end

-- The loop: wait (up to 10 s) until each user saw `n` messages.
local function pump(n)
  local deadline = longpoll.now() + 10
  while longpoll.now() < deadline do
    local all = true
    for _, u in ipairs(users) do
      local msgs, err = u.stream:poll()
      if not msgs then error(u.name .. ": " .. tostring(err)) end
      for _, ev in ipairs(msgs) do
        u.seen[#u.seen + 1] = ev.data
        print(("%s sees %s: %s"):format(u.name, ev.data.from, ev.data.text))
      end
      if #u.seen < n then all = false end
    end
    if all then return true end
    longpoll.wait_any(streams, deadline - longpoll.now())
  end
  return false
end

local sent = {}
local function post(from, text)
  say(from, text)
  sent[#sent + 1] = { from = from, text = text }
end

local status = 0
if script then
  local lines = {
    { "alice", "hi bob" }, { "bob", "hi alice" }, { "alice", "how are you?" },
    { "bob", "fine, thanks" }, { "bob", "and you?" }, { "alice", "great" }, { "alice", "bye" },
  }
  for i = 1, 4 do post(lines[i][1], lines[i][2]); pump(i) end
  for i = 5, #lines do post(lines[i][1], lines[i][2]) end   -- a burst
  pump(#lines)
  for _, u in ipairs(users) do
    local ok = #u.seen == #sent
    for i, m in ipairs(sent) do
      local s = u.seen[i]
      ok = ok and s ~= nil and s.from == m.from and s.text == m.text
    end
    if not ok then
      status = 1
      print(("%s saw %d of %d messages, or out of order"):format(u.name, #u.seen, #sent))
    end
  end
  if status == 0 then print(("both saw all %d messages in order"):format(#sent)) end
else
  print(("room %s at %s: type \"alice: text\" or \"bob: text\"; empty line quits"):format(room, base))
  for line in io.lines() do
    if line == "" then break end
    local from, text = line:match("^%s*(%w+)%s*:%s*(.-)%s*$")
    if not from then
      print("say it as \"alice: text\" or \"bob: text\"")
    else
      post(from, text)
      pump(#users[1].seen + 1)
    end
  end
end

for _, u in ipairs(users) do u.stream:cancel() end
if server then server:stop(); server:cleanup() end
os.exit(status)
