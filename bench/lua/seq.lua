-- bench/lua/seq.lua: sequential decoded round trips with lua-longpoll.
--
--   lua5.4 bench/lua/seq.lua N URL        (URL: .../small.json, a 90-byte JSON array)
--
-- N times: longpoll.request{ url = URL }:run() with decode "auto" (JSON content type: the
-- body is decoded with lua-cjson into a table of 2 messages). Every request is a new request
-- object, as an application would make; the engine reuses the keep-alive connection. 20
-- warm-up requests first. Prints
--   RESULT longpoll_seq n= req_s= us_each= items_each= secs=
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local B = require "benchlib"
local longpoll = require "longpoll"

local n, url = tonumber(arg[1]), arg[2]
if not (n and n > 0 and url) then
  io.stderr:write("usage: lua5.4 seq.lua N URL\n")
  os.exit(2)
end

local request = longpoll.request
local function get()
  local v, resp = request{ url = url }:run()
  if not v then B.die("%s", tostring(resp)) end
  if resp.status ~= 200 or type(v) ~= "table" then
    B.die("%s: status %s, value %s", url, tostring(resp.status), type(v))
  end
  return #v
end

for _ = 1, 20 do get() end      -- warm-up: connect, first allocations

local items = 0
local t0 = B.now_us()
for _ = 1, n do items = items + get() end
local secs = (B.now_us() - t0) / 1e6
print(("RESULT longpoll_seq n=%d req_s=%.0f us_each=%.1f items_each=%d secs=%.3f")
  :format(n, n / secs, secs * 1e6 / n, items // n, secs))
