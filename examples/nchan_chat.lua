-- A tiny terminal chat over Nchan: alice and bob each hold a long-poll subscription to one
-- room (longpoll.subscribe with cursor = "etag") and publish with longpoll.request.
--
--   lua5.4 examples/nchan_chat.lua [--script] [BASE_URL]
--
-- BASE_URL is an nginx with Nchan where POST /pub/<room> publishes and GET /sub/<room> is a
-- long-poll subscriber (spec/support/nchan.conf has both). Without it, a private nginx is
-- started from spec/support/nchan.lua (needs nginx and libnginx-mod-nchan) and stopped at
-- the end.
-- Interactive: type lines "alice: text" or "bob: text" (empty line or EOF quits); every
-- line is published and what each of them sees is printed.
-- --script plays a fixed conversation in a fresh room instead and exits 1 unless both saw
-- every message, in order, once.

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
  server = require("support.nchan").start{ subscriber_timeout = "10s" }
  base = server:url("")
end
base = base:gsub("/$", "")

-- a fresh room per scripted run: Nchan hands a new subscriber the room's stored history
local room = script and ("chat" .. os.time() .. math.random(100000)) or "lobby"

-- Publish one chat line as JSON; Nchan passes the Content-Type on to the subscribers.
local function say(from, text)
  local ok, err = longpoll.request{ url = base .. "/pub/" .. room, timeout = 5,
    body = { from = from, text = text } }:run()
  if not ok then error("publish failed: " .. tostring(err)) end
end

local users = {}
for _, name in ipairs{ "alice", "bob" } do
  local u = { name = name, seen = {} }
  u.sub = longpoll.subscribe{
    url = base .. "/sub/" .. room, cursor = "etag", timeout = 30,
    on_message = function(msg)
      u.seen[#u.seen + 1] = msg
      print(("%s sees %s: %s"):format(name, msg.from, msg.text))
    end,
    on_error = function(err, info)
      io.stderr:write(("%s: %s (%s)\n"):format(name, tostring(err),
        info.retry and ("retry in %.1f s"):format(info.delay) or "giving up"))
    end,
  }
  users[#users + 1] = u
end

local function sleep(s)
  local ok, socket = pcall(require, "socket")
  if ok then socket.sleep(s) else os.execute("sleep " .. s) end
end

-- Game loop: poll() both subscriptions (never blocks) until each saw `n` messages, or 10 s.
local function pump(n)
  for _ = 1, 2000 do
    local done = true
    for _, u in ipairs(users) do
      local msgs, err = u.sub:poll()
      if not msgs then error(u.name .. ": " .. tostring(err)) end
      if #u.seen < n then done = false end
    end
    if done then return true end
    sleep(0.005)
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
  post(lines[1][1], lines[1][2])         -- before anyone listens: it waits in the room
  pump(1)
  for i = 2, 5 do post(lines[i][1], lines[i][2]); pump(i) end
  for i = 6, #lines do post(lines[i][1], lines[i][2]) end   -- a burst
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

for _, u in ipairs(users) do u.sub:cancel() end
if server then server:stop(); server:cleanup() end
os.exit(status)
