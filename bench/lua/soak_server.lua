-- The soak's server (bench/lua/soak_run.lua starts, kills and restarts it):
-- numbered messages on a few channels, served by the "since" protocol, with
-- chaos on the way. luv, 127.0.0.1 only.
--
--   lua5.4 bench/lua/soak_server.lua <port> <state file> <event log> <channels,...>
--
--   GET /poll/<ch>?since=N   [{"id":i,"data":"<ch>:<i>"}, ...] for N < i <= published
--                            (at most 50), else held until a publish or 2 s, then []
--   GET /_counts             {"calm":bool,"counts":{"<ch>":published,...}}
--   POST /_calm              no more chaos and no more publishing
-- Published counts live in the state file (written to a temporary file and
-- renamed before a message is visible): a restart (even SIGKILL) loses none.
-- A message is published every 0-200 ms on a random channel. Chaos, per poll
-- (until /_calm): 8 % closed without an answer, 5 % reset, 5 % held and never
-- answered (the client's hold ends it), 5 % 503 with Retry-After: 1, 4 %
-- headers and half a body then a close, 3 % answered late (0-3 s). Each such
-- event is a line in the event log.
local uv = require "luv"
local port, state_file, event_log, channel_list = tonumber(arg[1]), arg[2], arg[3], arg[4]
assert(port and state_file and event_log and channel_list, "usage: soak_server.lua <port> <state> <log> <channels>")

local channels, counts = {}, {}
for ch in channel_list:gmatch("[^,]+") do channels[#channels + 1] = ch; counts[ch] = 0 end
do
  local f = io.open(state_file)
  if f then
    for ch, n in f:read("*a"):gmatch("(%S+) (%d+)") do counts[ch] = tonumber(n) end
    f:close()
  end
end
local calm = false
local log = assert(io.open(event_log, "a"))
local function event(what) log:write(what, "\n") log:flush() end

local function persist()
  local tmp = state_file .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  for _, ch in ipairs(channels) do f:write(ch, " ", counts[ch], "\n") end
  f:close()
  assert(os.rename(tmp, state_file))
end

local waiting = {}   -- ch -> { [conn] = true }: held polls

local function respond(c, status, body, extra)
  if c.closed then return end
  c.tcp:write(("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s")
    :format(status, #body, extra or "", body))
end

local function batch(ch, since)
  local out = {}
  for i = since + 1, math.min(counts[ch], since + 50) do
    out[#out + 1] = ('{"id":%d,"data":"%s:%d"}'):format(i, ch, i)
  end
  return "[" .. table.concat(out, ",") .. "]"
end

local function close(c, how)
  if c.closed then return end
  c.closed = true
  if c.timer then c.timer:stop() c.timer:close() c.timer = nil end
  if c.ch and waiting[c.ch] then waiting[c.ch][c] = nil end
  if how == "reset" then c.tcp:close_reset() else c.tcp:close() end
end

local function answer_poll(c)
  if c.timer then c.timer:stop() c.timer:close() c.timer = nil end
  waiting[c.ch][c] = nil
  respond(c, "200 OK", batch(c.ch, c.since))
  c.busy = false
end

local function serve_poll(c, ch, since)
  c.ch, c.since = ch, since
  local r = math.random(100)
  if not calm then
    if r <= 8 then event("close") return close(c, "close")
    elseif r <= 13 then event("reset") return close(c, "reset")
    elseif r <= 18 then event("stall") c.busy = true return   -- never answered
    elseif r <= 23 then
      event("503")
      respond(c, "503 Service Unavailable", "{}", "Retry-After: 1\r\n")
      return
    elseif r <= 27 then
      event("partial")
      c.tcp:write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"id\":")
      return close(c, "close")
    elseif r <= 30 then
      event("late")
      c.busy = true
      c.timer = uv.new_timer()
      c.timer:start(math.random(0, 3000), 0, function()
        c.timer:close() c.timer = nil
        waiting[ch][c] = true
        answer_poll(c)
      end)
      return
    end
  end
  c.busy = true
  waiting[ch][c] = true
  if counts[ch] > since then return answer_poll(c) end
  c.timer = uv.new_timer()
  c.timer:start(2000, 0, function() answer_poll(c) end)
end

local function serve(c, line)
  local method, path = line:match("^(%u+) (%S+)")
  local ch, query = (path or ""):match("^/poll/([%w_]+)%??(.*)$")
  if ch and counts[ch] then
    return serve_poll(c, ch, tonumber(query:match("since=(%d+)")) or 0)
  elseif path == "/_counts" then
    local parts = {}
    for _, name in ipairs(channels) do parts[#parts + 1] = ('"%s":%d'):format(name, counts[name]) end
    return respond(c, "200 OK", ('{"calm":%s,"counts":{%s}}'):format(tostring(calm), table.concat(parts, ",")))
  elseif path == "/_calm" and method == "POST" then
    calm = true
    return respond(c, "200 OK", "{}")
  end
  respond(c, "404 Not Found", "{}")
end

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", port))
assert(server:listen(256, function(err)
  if err then return end
  local tcp = uv.new_tcp()
  if not server:accept(tcp) then tcp:close() return end
  local c = { tcp = tcp, buf = "" }
  tcp:read_start(function(rerr, data)
    if rerr or not data then return close(c, "close") end
    c.buf = c.buf .. data
    while not c.busy and not c.closed do
      local e = c.buf:find("\r\n\r\n", 1, true)
      if not e then break end
      local head = c.buf:sub(1, e + 3)
      local len = tonumber(head:lower():match("\ncontent%-length:%s*(%d+)")) or 0
      if #c.buf < e + 3 + len then break end
      c.buf = c.buf:sub(e + 4 + len)
      serve(c, head:match("^([^\r\n]*)"))
    end
  end)
end))

-- the publisher: one message every 0-200 ms on a random channel, persisted first
local pub = uv.new_timer()
local function publish()
  if calm then return end
  local ch = channels[math.random(#channels)]
  counts[ch] = counts[ch] + 1
  persist()
  for c in pairs(waiting[ch]) do answer_poll(c) end
  pub:start(math.random(0, 200), 0, publish)
end
for _, ch in ipairs(channels) do waiting[ch] = {} end
math.randomseed(os.time() + port)
pub:start(math.random(0, 200), 0, publish)

for _, name in ipairs({ "sigterm", "sigint" }) do
  local s = uv.new_signal()
  s:start(name, function() uv.stop() end)
end
local sigpipe = uv.new_signal()
sigpipe:start("sigpipe", function() end)
io.stdout:write("READY\n")
io.stdout:flush()
uv.run("default")
