-- bench/lua/alloc.lua: Lua heap bytes left for the collector per completed request.
--
--   lua5.4 bench/lua/alloc.lua URL [N]        (URL: .../small.json; N default 2000)
--
-- N sequential longpoll.request{ url = URL }:run() (decode "auto": the 90-byte JSON array
-- decoded by lua-cjson) with the collector stopped, after 20 warm-up requests and a full
-- collection; bytes = growth of collectgarbage("count") / N: everything the request, its
-- results and the decoded value allocated on the Lua heap (the request object, the options
-- table the caller builds, the body, the response, the value). Then the same reading
-- response.headers (built when first read). Prints
--   RESULT longpoll_alloc n= bytes_per_request= bytes_per_request_headers=
local longpoll = require "longpoll"

local url, n = arg[1], tonumber(arg[2] or 2000)
if not url then
  io.stderr:write("usage: lua5.4 alloc.lua URL [N]\n")
  os.exit(2)
end
local request = longpoll.request

local function per_request(read_headers)
  collectgarbage("collect")
  collectgarbage("stop")
  local k0 = collectgarbage("count")
  for _ = 1, n do
    local v, resp = request{ url = url }:run()
    if not v then error(tostring(resp)) end
    if read_headers and not resp.headers["content-type"] then error("no content-type") end
  end
  local bytes = (collectgarbage("count") - k0) * 1024 / n
  collectgarbage("restart")
  return bytes
end

for _ = 1, 20 do assert(request{ url = url }:run()) end
local plain = per_request(false)
local headers = per_request(true)
print(("RESULT longpoll_alloc n=%d bytes_per_request=%.0f bytes_per_request_headers=%.0f")
  :format(n, plain, headers))
