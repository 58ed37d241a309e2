-- bench/lua/stream_rss.lua: memory of a stream that a fast server sends to a slow reader.
--
--   lua5.4 bench/lua/stream_rss.lua URL BYTES [SAMPLES_FILE]
--
-- URL is the spec server's /stream/lines?n=..&size=65536 (BYTES in all, as fast as the
-- socket takes them). The reader takes each message with next() and sleeps 1 ms after
-- message (64 MB/s at most: slower than the server), with max_queued = 64, so the
-- worker keeps pausing the transfer. VmRSS is read every 64 MiB (after a full GC).
-- Prints
--   RESULT longpoll_stream_rss bytes= msgs= rss_start_kib= rss_max_kib= rss_end_kib=
--          growth_kib= pauses= secs=
-- and with SAMPLES_FILE writes "<MiB read> <RSS KiB>" lines (for a plot).
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local B = require "benchlib"
local longpoll = require "longpoll"

local url, total, samples_file = arg[1], tonumber(arg[2]), arg[3]
if not (url and total) then
  io.stderr:write("usage: lua5.4 stream_rss.lua URL BYTES [SAMPLES_FILE]\n")
  os.exit(2)
end

local function rss() return tonumber(B.proc_status("VmRSS")) end

collectgarbage()
local rss0 = rss()
local t0 = B.now_us()
local req = longpoll.request{ url = url, stream = "lines", decode = "none", max_queued = 64,
  max_message = 1 << 20 }
local n, bytes, peak, next_mark, samples = 0, 0, rss0, 0, {}
while true do
  local msg, err = req:next()
  if msg == nil then
    if err then B.die("%s", tostring(err)) end
    break
  end
  n = n + 1
  bytes = bytes + #msg + 1
  longpoll.sleep(0.001)
  if bytes >= next_mark then
    collectgarbage()
    local r = rss()
    if r > peak then peak = r end
    samples[#samples + 1] = ("%d %d"):format(bytes // 1048576, r)
    next_mark = next_mark + 64 * 1048576
  end
end
local secs = (B.now_us() - t0) / 1e6
collectgarbage()
local rss1 = rss()
if bytes ~= total then B.die("read %d bytes, expected %d", bytes, total) end
if samples_file then
  local f = assert(io.open(samples_file, "w"))
  f:write(table.concat(samples, "\n"), "\n")
  f:close()
end
print(("RESULT longpoll_stream_rss bytes=%d msgs=%d rss_start_kib=%d rss_max_kib=%d rss_end_kib=%d growth_kib=%d pauses=%d secs=%.1f"):format(
  bytes, n, rss0, peak, rss1, peak - rss0, req:progress().pauses, secs))
