-- Run by spec/hostile_responses_spec.lua under a small `ulimit -n`: requests
-- while the process has no descriptor left. Prints what it saw, one fact a
-- line ("key value"); raises if the module misbehaves.
--   <lua> spec/support/nofile.lua <base url of the spec server>
local longpoll = require "longpoll"
local base = arg[1]

-- opened before the descriptors run out, read again from the start each time
local stat = assert(io.open("/proc/self/stat"))
local function cpu_seconds()
  stat:seek("set", 0)
  local s = stat:read("*a")
  local utime, stime = s:match("^%d+ %b() %a %S+ %S+ %S+ %S+ %S+ %S+ %S+ %S+ %S+ %S+ (%d+) (%d+)")
  return (tonumber(utime) + tonumber(stime)) / 100
end

-- take every descriptor left (files of /dev/null), keeping them
local files = {}
for _ = 1, 100000 do
  local f = io.open("/dev/null")
  if not f then break end
  files[#files + 1] = f
end
print("files " .. #files)

-- requests with no descriptor for their socket: a clean connect error each
local kinds, reqs = {}, {}
for i = 1, 20 do
  reqs[i] = longpoll.request{ url = base .. "/hold?ms=0&status=200&body=%5B1%5D", connect_timeout = 5 }:start()
end
for i = 1, 20 do
  assert(reqs[i]:wait(30), "a request never finished while the table was full")
  local v, err = reqs[i]:run()
  local what = v and "ok" or err.kind
  kinds[what] = (kinds[what] or 0) + 1
end
for k, n in pairs(kinds) do print("kind " .. k .. " " .. n) end

-- fd() with no descriptor: nil, message, errno (luaL_fileresult)
local held = longpoll.request{ url = base .. "/hold" }
local fd, msg, errno = held:fd()
print("fd " .. tostring(fd) .. " " .. tostring(msg) .. " " .. tostring(errno))

-- the worker does not spin while it cannot open sockets
held:start()
local c0 = cpu_seconds()
longpoll.sleep(1)
print("cpu " .. (cpu_seconds() - c0))
held:cancel()

-- descriptors back: everything works again
for _, f in ipairs(files) do f:close() end
files = nil
local v, err = longpoll.request{ url = base .. "/hold?ms=0&status=200&body=%5B7%5D" }:run()
print("after " .. (v and tostring(v[1]) or tostring(err)))
local r = longpoll.request{ url = base .. "/hold?ms=0&status=200&body=%5B8%5D" }
print("fd after " .. type(r:fd()))
print("after fd " .. tostring((r:run())[1]))
