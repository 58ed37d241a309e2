-- bench/lua/publisher.lua: publishes to random Nchan channels for a while (for frames.lua).
--
--   lua5.4 bench/lua/publisher.lua BASE_URL PREFIX COUNT SECONDS INTERVAL_MS
--
-- Every INTERVAL_MS, POSTs one small JSON message to BASE_URL/pub/PREFIX_<k>, k random in
-- 1..COUNT, for SECONDS (LuaSocket, a fresh connection each, bounded by SECONDS + 2 s).
-- Prints  PUBLISHED n= failed=
local http = require "socket.http"
local socket = require "socket"
local ltn12 = require "ltn12"

local base, prefix, count, secs, interval =
  arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5])
if not (base and prefix and count and secs and interval) then
  io.stderr:write("usage: lua5.4 publisher.lua BASE_URL PREFIX COUNT SECONDS INTERVAL_MS\n")
  os.exit(2)
end
http.TIMEOUT = 1
math.randomseed(os.time())
local n, failed = 0, 0
local t0 = socket.gettime()
local next_t = t0
for i = 1, math.ceil(secs * 1000 / interval) do
  local k = math.random(count)
  local body = ('{"seq":%d,"channel":%d,"data":"tick"}'):format(i, k)
  local _, code = http.request{
    url = ("%s/pub/%s_%d"):format(base, prefix, k), method = "POST",
    headers = { ["content-type"] = "application/json", ["content-length"] = #body },
    source = ltn12.source.string(body), sink = ltn12.sink.null(),
  }
  if code == 201 or code == 202 then n = n + 1 else failed = failed + 1 end
  next_t = next_t + interval / 1000
  local now = socket.gettime()
  if now - t0 > secs + 2 then break end
  if next_t > now then socket.sleep(next_t - now) end
end
print(("PUBLISHED n=%d failed=%d"):format(n, failed))
