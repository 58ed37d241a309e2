-- bench/peers/luasocket.lua: the plain-Lua peer, LuaSocket socket.http + lua-cjson.
--
--   lua5.4 bench/peers/luasocket.lua N URL        (URL: .../small.json)
--
-- N sequential GETs, each body decoded with cjson.decode. socket.http has no keep-alive:
-- every request opens and closes a TCP connection (it sends "Connection: close"), and it
-- has no way to cancel a request from outside (only a whole-request socket timeout).
-- Prints  RESULT luasocket_seq n= req_s= us_each=
local http = require "socket.http"
local socket = require "socket"
local cjson = require "cjson"

local n, url = tonumber(arg[1]), arg[2]
if not n or n <= 0 or not url then
  io.stderr:write("usage: lua5.4 luasocket.lua N URL\n")
  os.exit(2)
end
http.TIMEOUT = 10

local function get()
  local body, code = http.request(url)
  if code ~= 200 then
    error(("%s: %s"):format(url, tostring(code)))
  end
  return cjson.decode(body)
end

for _ = 1, 20 do get() end  -- warm-up

local items = 0
local t0 = socket.gettime()
for _ = 1, n do
  items = items + #get()
end
local secs = socket.gettime() - t0
print(("RESULT luasocket_seq n=%d req_s=%.0f us_each=%.1f items_each=%d secs=%.3f")
  :format(n, n / secs, secs * 1e6 / n, items // n, secs))
