-- bench/lua/stream.lua: stream-mode throughput of lua-longpoll.
--
--   lua5.4 bench/lua/stream.lua FMT URL [RUNS]     (FMT: ndjson or sse; URL: a long body)
--
-- GETs URL with stream = FMT and decode = "json" (NDJSON lines, SSE data decoded with
-- lua-cjson on the Lua thread), taking every message in a `for msg in req:messages()` loop,
-- RUNS times (default 1) after one warm-up. Prints the best run:
--   RESULT longpoll_stream_<fmt> msgs= msg_s= mib_s= ms= pauses=
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local B = require "benchlib"
local longpoll = require "longpoll"

local fmt, url, runs = arg[1], arg[2], tonumber(arg[3] or "1")
if not ((fmt == "ndjson" or fmt == "sse") and url and runs and runs > 0) then
  io.stderr:write("usage: lua5.4 stream.lua ndjson|sse URL [RUNS]\n")
  os.exit(2)
end

local function once()
  local t0 = B.now_us()
  local req = longpoll.request{ url = url, stream = fmt, decode = "json" }
  local n, last = 0, nil
  for msg in req:messages() do
    n = n + 1
    last = msg
  end
  local us = B.now_us() - t0
  if fmt == "sse" then last = last and last.data end
  if n == 0 or type(last) ~= "table" or last.id ~= n then
    B.die("%s: %d messages, the last one not {id = %d}", url, n, n)
  end
  local p = req:progress()
  return n, p.received, us, p.pauses
end

once()
local best
for _ = 1, runs do
  local n, bytes, us, pauses = once()
  if not best or us < best.us then best = { n = n, bytes = bytes, us = us, pauses = pauses } end
end
print(("RESULT longpoll_stream_%s msgs=%d msg_s=%.0f mib_s=%.1f ms=%.1f pauses=%d"):format(
  fmt, best.n, best.n / (best.us / 1e6), best.bytes / 1048576 / (best.us / 1e6), best.us / 1e3,
  best.pauses))
