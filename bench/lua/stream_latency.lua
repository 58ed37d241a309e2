-- bench/lua/stream_latency.lua: from a publish to the message in Lua, over SSE.
--
--   lua5.4 bench/lua/stream_latency.lua BASE CHANNEL [SAMPLES] [SAMPLES_FILE]
--
-- One EventSource subscriber (BASE/es/CHANNEL, Nchan, stream = "sse") and, SAMPLES times
-- (default 1000): t0, POST a small JSON message to BASE/pub/CHANNEL with a longpoll request
-- (started, not waited for), req:next() returns it decoded, t1; then the publish's answer is
-- collected. Prints p50/p99/max of t1 - t0 in µs:
--   RESULT longpoll_stream_latency n= p50_us= p99_us= max_us= min_us= mean_us=
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local B = require "benchlib"
local longpoll = require "longpoll"

local base, ch, n, samples_file = arg[1], arg[2], tonumber(arg[3] or "1000"), arg[4]
if not (base and ch and n) then
  io.stderr:write("usage: lua5.4 stream_latency.lua BASE CHANNEL [SAMPLES] [SAMPLES_FILE]\n")
  os.exit(2)
end

local sub = longpoll.request{ url = base .. "/es/" .. ch, stream = "sse",
  headers = { Accept = "text/event-stream" } }:start()
if not B.wait_subscribers(base .. "/nchan_status", function(k) return k >= 1 end, 5) then
  B.die("the EventSource subscriber did not arrive")
end

local function one(i)
  local body = ('{"seq":%d,"text":"hello"}'):format(i)
  local t0 = B.now_us()
  local pub = longpoll.request{ url = base .. "/pub/" .. ch, body = body, decode = "none" }:start()
  local msg, err = sub:next(5)
  local t1 = B.now_us()
  if not msg then B.die("message %d: %s", i, tostring(err or "none in 5 s")) end
  if type(msg.data) ~= "table" or msg.data.seq ~= i then B.die("message %d: got another", i) end
  local ok, perr = pub:run()
  if not ok then B.die("publish %d: %s", i, tostring(perr)) end
  return t1 - t0
end

for i = 1, 50 do one(-i) end    -- warm-up
local lat = {}
for i = 1, n do lat[i] = one(i) end
sub:cancel()
local s, mean = B.summary(lat)
if samples_file then B.write_samples(samples_file, lat) end
print(("RESULT longpoll_stream_latency n=%d p50_us=%.0f p99_us=%.0f max_us=%.0f min_us=%.0f mean_us=%.1f"):format(
  n, B.pct(s, 50), B.pct(s, 99), s[#s], s[1], mean))
