-- The soak (issue 9): bench/lua/soak.lua (subscriptions, under the Lua under
-- test) against bench/lua/soak_server.lua, which this driver kills (SIGKILL)
-- and restarts on the same port every few seconds while the server itself
-- drops, resets, stalls and delays polls. After `seconds` it calms the server
-- (no more chaos, no more messages) and waits for the client's verdict.
--
--   lua5.4 bench/lua/soak_run.lua <client lua> <seconds> [restart every min max (s)]
--
-- The client gets LONGPOLL_SOAK_PATH/LONGPOLL_SOAK_CPATH (else LUA_PATH/LUA_CPATH)
-- as its LUA_PATH/LUA_CPATH: the paths of the Lua under test, which this
-- lua5.4 driver must not load itself (luv for 5.1 in lua5.4). Prints the client's line,
-- then "soak: <n> restarts; server events: ..."; exit 0 when the client said ok.
local uv = require "luv"
local socket = require "socket"
local http = require "socket.http"

local lua, seconds = arg[1], tonumber(arg[2])
local every_min, every_max = tonumber(arg[3] or "5"), tonumber(arg[4] or "30")
assert(lua and seconds, "usage: soak_run.lua <client lua> <seconds> [min max]")
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local CHANNELS = "a,b,c,d"
math.randomseed(os.time())

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
local function alive(pid)
  local s = read("/proc/" .. pid .. "/stat")
  local st = s and s:match("^%d+ %b() (%a)")
  return st ~= nil and st ~= "Z" and st ~= "X"
end
local function sleep(s) uv.sleep(math.floor(s * 1000)) end

local port
do
  local t = uv.new_tcp()
  assert(t:bind("127.0.0.1", 0))
  port = t:getsockname().port
  t:close()
  uv.run("nowait")
end
local base = "http://127.0.0.1:" .. port

local server_pid
local function start_server()
  local out = dir .. "/server.out"
  os.remove(out)
  local p = assert(io.popen(("lua5.4 %s %d %s %s %s >%s 2>>%s & echo $!"):format(
    q(HERE .. "/soak_server.lua"), port, q(dir .. "/state"), q(dir .. "/events"), CHANNELS,
    q(out), q(dir .. "/server.err"))))
  server_pid = tonumber(p:read("*a"))
  p:close()
  for _ = 1, 1000 do
    if (read(out) or ""):find("READY", 1, true) then return end
    if not alive(server_pid) then break end
    sleep(0.01)
  end
  -- the port may still be taken by the last life's connections: once more
  error("soak: the server did not start: " .. (read(dir .. "/server.err") or ""))
end
local function kill_server()
  os.execute("kill -KILL " .. server_pid .. " 2>/dev/null")
  for _ = 1, 500 do
    if not alive(server_pid) then return end
    sleep(0.01)
  end
end

start_server()
local p = assert(io.popen(("LUA_PATH=%s LUA_CPATH=%s %s %s %s %d %s >%s 2>&1 & echo $!"):format(
  q(os.getenv("LONGPOLL_SOAK_PATH") or os.getenv("LUA_PATH") or ""),
  q(os.getenv("LONGPOLL_SOAK_CPATH") or os.getenv("LUA_CPATH") or ""), lua, q(HERE .. "/soak.lua"),
  base, seconds, CHANNELS, q(dir .. "/client.out"))))
local client_pid = tonumber(p:read("*a"))
p:close()

local t0, restarts = socket.gettime(), 0
while socket.gettime() - t0 < seconds and alive(client_pid) do
  sleep(math.min(every_min + math.random() * (every_max - every_min), math.max(0, seconds - (socket.gettime() - t0))))
  if socket.gettime() - t0 >= seconds or not alive(client_pid) then break end
  kill_server()
  sleep(math.random() * 2)            -- down: connections refused
  start_server()
  restarts = restarts + 1
end
for _ = 1, 100 do
  local _, code = http.request{ url = base .. "/_calm", method = "POST" }
  if code == 200 then break end
  sleep(0.1)
end
local limit = socket.gettime() + 180 + seconds / 10
while alive(client_pid) and socket.gettime() < limit do sleep(0.2) end
if alive(client_pid) then os.execute("kill -KILL " .. client_pid) end
os.execute("kill -TERM " .. server_pid .. " 2>/dev/null")

local out = read(dir .. "/client.out") or ""
io.write(out)
local events = {}
for line in (read(dir .. "/events") or ""):gmatch("[^\n]+") do events[line] = (events[line] or 0) + 1 end
print(("soak: %d restarts; server events: %d closed, %d reset, %d stalled, %d 503, %d partial, %d late")
  :format(restarts, events.close or 0, events.reset or 0, events.stall or 0, events["503"] or 0,
    events.partial or 0, events.late or 0))
os.execute("rm -rf " .. q(dir))
os.exit(out:find("soak: ok", 1, true) and 0 or 1)
