-- A tiny terminal chat over Nchan: alice and bob each listen to one room and publish to it
-- with a POST, in one of two ways:
--   long-poll (default): each holds a subscription (longpoll.subscribe, cursor = "etag"),
--     and the loop steps both with poll(), which never blocks;
--   --sse: each holds one EventSource stream (longpoll.request{ stream = "sse" }); nothing
--     is polled: every message is pushed down the open streams the moment it is published,
--     and the loop sleeps in longpoll.wait_any until one of them has a message queued.
--
--   lua5.4 examples/chat.lua [--sse] [--script] [BASE_URL]
--
-- BASE_URL is an nginx with Nchan where POST /pub/<room> publishes, GET /sub/<room> is a
-- long-poll subscriber and GET /es/<room> an EventSource one (spec/support/nchan.conf has
-- them). Without it, a private nginx is started from spec/support/nchan.lua (needs nginx
-- and libnginx-mod-nchan) and stopped at the end.
-- Interactive: type lines "alice: text" or "bob: text" (empty line or EOF quits); every
-- line is published and what each of them sees is printed.
-- --script plays a fixed conversation in a fresh room instead and exits 1 unless both saw
-- every message, in order, once.

local here = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = here .. "/lua/?.lua;" .. here .. "/lua/?/init.lua;" .. here .. "/spec/?.lua;"
  .. package.path
package.cpath = package.cpath .. ";" .. here .. "/build/?.so" -- an installed longpoll first

local longpoll = require "longpoll"

local script, sse, base = false, false, nil
for _, a in ipairs(arg) do
  if a == "--script" then script = true elseif a == "--sse" then sse = true else base = a end
end

local server
if not base then
  server = require("support.nchan").start{ subscriber_timeout = "10s" }
  base = server:url("")
end
base = base:gsub("/$", "")

-- a fresh room per scripted run: Nchan hands a new subscriber the room's stored history
local room = script and ("chat" .. os.time() .. math.random(100000)) or "lobby"

-- Publish one chat line as JSON; Nchan passes it on with its Content-Type.
local function say(from, text)
  local ok, err = longpoll.request{ url = base .. "/pub/" .. room, timeout = 5,
    body = { from = from, text = text } }:run()
  if not ok then error("publish failed: " .. tostring(err)) end
end

-- Each user: take() returns the chat lines {from, text} that arrived since the last call
-- (never blocks, raises when the listener failed); wait(seconds) sleeps until more may be
-- there.
local users, wait = {}, nil
if sse then
  local streams = {}
  for _, name in ipairs{ "alice", "bob" } do
    local stream = longpoll.request{ url = base .. "/es/" .. room, stream = "sse",
      headers = { Accept = "text/event-stream" } }:start()
    streams[#streams + 1] = stream
    users[#users + 1] = { name = name, listener = stream, take = function()
      local events, err = stream:poll()
      if not events then error(name .. ": " .. tostring(err)) end
      for i, ev in ipairs(events) do events[i] = ev.data end   -- the JSON data, decoded
      return events
    end }
  end
  function wait(seconds) longpoll.wait_any(streams, seconds) end
else
  for _, name in ipairs{ "alice", "bob" } do
    local sub = longpoll.subscribe{
      url = base .. "/sub/" .. room, cursor = "etag", timeout = 30,
      on_error = function(err, info)
        io.stderr:write(("%s: %s (%s)\n"):format(name, tostring(err),
          info.retry and ("retry in %.1f s"):format(info.delay) or "giving up"))
      end,
    }
    users[#users + 1] = { name = name, listener = sub, take = function()
      local msgs, err = sub:poll()
      if not msgs then error(name .. ": " .. tostring(err)) end
      return msgs
    end }
  end
  function wait(seconds) longpoll.sleep(math.min(seconds, 0.005)) end
end

-- The loop: take what arrived for each user until each saw `n` lines, or 10 s passed.
local function pump(n)
  local deadline = longpoll.now() + 10
  for _, u in ipairs(users) do u.seen = u.seen or {} end
  while true do
    local all = true
    for _, u in ipairs(users) do
      for _, line in ipairs(u.take()) do
        u.seen[#u.seen + 1] = line
        print(("%s sees %s: %s"):format(u.name, line.from, line.text))
      end
      if #u.seen < n then all = false end
    end
    local left = deadline - longpoll.now()
    if all or left <= 0 then return all end
    wait(left)
  end
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
  print(("room %s at %s (%s): type \"alice: text\" or \"bob: text\"; empty line quits")
    :format(room, base, sse and "EventSource streams" or "long-polls"))
  pump(0)
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

for _, u in ipairs(users) do u.listener:cancel() end
if server then server:stop(); server:cleanup() end
os.exit(status)
