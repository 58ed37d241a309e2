-- bench/lua/pending.lua: N long-polls pending at once from one Lua state.
--
--   lua5.4 bench/lua/pending.lua N BASE_URL CHANNEL      (ulimit -n > N + a few)
--
-- Baseline: the module loaded, one request completed (worker thread up, libcurl
-- initialised), a full GC; VmRSS then. Then N requests to BASE_URL/sub/CHANNEL (a fresh Nchan
-- channel), started at once; "held" means nginx's nchan_stub_status counts N more
-- subscribers and none of the requests finished. Measured while they are held:
--   rss_kib_each   (VmRSS after a full GC - baseline) / N  (before the GC: _before_gc)
--   threads        /proc/self/status Threads
--   idle_cpu_pct   utime+stime delta (/proc/self/stat) over 3 s of sleep, % of one core,
--                  from 1 s after all are held (settle_cpu_ms: CPU spent in that 1 s);
--                  idle_cpu_pct_ns: the same from the threads' schedstat (ns resolution)
--   timer_cpu_pct  the same over the 3 s from 9.8 s after the first start: the requests'
--                  connect_timeout (default 10 s) timers come due in that window
--                  (TIMER_WINDOW=0 in the environment skips it)
-- Then cancel-all: cancel() each (must return true) until every done() is true
-- (cancel_all_ms; wait_any agrees); until the worker closed the last connection
-- (closed_ms: the highest-numbered socket of the process, which the last request opened,
-- is gone from /proc/self/fd; the worker tears transfers down in cancel order); and until
-- nginx counts them gone (gone_ms).
-- Environment (all optional):
--   PENDING_CONFIGURE  longpoll.configure settings first, "name=n,name=n" (buffer_size=1024)
--   PENDING_SUB_BASE   where the polls go instead of BASE_URL (https://127.0.0.1:PORT: HTTP/2
--                      by ALPN), PENDING_CAFILE the CA file for it; the status stays on BASE_URL
--   PENDING_LABEL      appended to the RESULT name (longpoll_pending_<label>)
-- Also reported: connections = our established TCP connections to the polls' port (ss);
-- heap_bytes_each = C heap in use (glibc mallinfo2, bench/.build/benchc.so) after a full GC
-- over the baseline, per poll: what RSS shows without the pages malloc touched around.
-- Prints
--   RESULT longpoll_pending n= rss_kib_each= threads= idle_cpu_pct= cancel_all_ms= gone_ms= ...
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local B = require "benchlib"
local longpoll = require "longpoll"
package.cpath = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../.build/?.so;" .. package.cpath
local has_benchc, benchc = pcall(require, "benchc")
local heap = has_benchc and benchc.heap_bytes or function() return 0 end

local n, base, channel = tonumber(arg[1]), arg[2], arg[3]
if not (n and base and channel) then
  io.stderr:write("usage: lua5.4 pending.lua N BASE_URL CHANNEL\n")
  os.exit(2)
end
local status_url = base .. "/nchan_status"
local function env(name) local v = os.getenv(name) return v ~= "" and v or nil end
local sub_base = env("PENDING_SUB_BASE") or base
local url = sub_base .. "/sub/" .. channel
local cafile = env("PENDING_CAFILE")
local settings = {}
for k, v in (os.getenv("PENDING_CONFIGURE") or ""):gmatch("([%w_]+)=(%d+)") do
  settings[k] = math.tointeger(tonumber(v))
end
longpoll.configure(settings)
local label = env("PENDING_LABEL")
local function established()            -- our connections to the polls' port
  local port = sub_base:match(":(%d+)$") or (sub_base:match("^https") and "443" or "80")
  local p = assert(io.popen(("ss -Htn state established '( dport = :%s )' | wc -l"):format(port)))
  local c = tonumber(p:read("*l"))
  p:close()
  return c
end
local IDLE_S = 3

-- baseline
assert(longpoll.request{ url = base .. "/small.json" }:run(), "warm-up request failed")
local subs0 = B.subscribers(status_url) or B.die("cannot read %s", status_url)
collectgarbage("collect")
local rss0 = B.proc_status("VmRSS")
local heap0 = heap()
local threads0 = B.proc_status("Threads")

local t_start = B.now_us()
local reqs = {}
for i = 1, n do reqs[i] = longpoll.request{ url = url, cainfo = cafile }:start() end
local ok, got = B.wait_subscribers(status_url, function(s) return s >= subs0 + n end, 60, 0.05)
if not ok then B.die("nginx holds %s of %d", tostring(got and got - subs0), n) end
for i = 1, n do
  if reqs[i]:done() then B.die("request %d finished before cancel: %s", i, tostring(select(2, reqs[i]:run()))) end
end
local held_ms = (B.now_us() - t_start) / 1e3
local maxfd, maxfd_link = B.last_socket()
local connections = established()
local rss_raw = B.proc_status("VmRSS")
collectgarbage("collect")
local rss1 = B.proc_status("VmRSS")
local heap1 = heap()
local threads = B.proc_status("Threads")

-- idle: the Lua thread sleeps, the worker holds N transfers
local function cpu_over(secs)   -- % of a core by utime+stime, by schedstat; ms by schedstat
  local ticks0, ns0, w0 = B.cpu_ticks(), B.cpu_ns(), B.now_us()
  B.sleep(secs)
  local ticks1, ns1, w1 = B.cpu_ticks(), B.cpu_ns(), B.now_us()
  local wall = (w1 - w0) / 1e6
  return (ticks1 - ticks0) / 100 / wall * 100, (ns1 - ns0) / 1e9 / wall * 100, (ns1 - ns0) / 1e6
end                             -- (USER_HZ is 100 on Linux)
local _, _, settle_ms = cpu_over(1)
local idle_pct, idle_pct_ns = cpu_over(IDLE_S)
local timer_pct, timer_pct_ns, timer_ms = -1, -1, -1
if os.getenv("TIMER_WINDOW") ~= "0" then
  local wait = 9.8 - (B.now_us() - t_start) / 1e6
  if wait > 0 then B.sleep(wait) end
  timer_pct, timer_pct_ns, timer_ms = cpu_over(3)
end

-- cancel all
local t0 = B.now_us()
local ended = 0  -- (pinned to one CPU, this loop and the worker's teardown share it)
for i = 1, n do if reqs[i]:cancel() then ended = ended + 1 end end
local all_done
for _ = 1, 1000 do                      -- settled by cancel() itself: one pass suffices
  all_done = true
  for i = 1, n do if not reqs[i]:done() then all_done = false; break end end
  if all_done then break end
  B.sleep(0.001)
end
local t1 = B.now_us()
if ended ~= n or not all_done then B.die("cancel ended %d of %d (all done: %s)", ended, n, tostring(all_done)) end
local first = longpoll.wait_any(reqs, 0)
if first ~= reqs[1] then B.die("wait_any does not see request 1 finished") end
local _, err = reqs[n]:run()
if not (err and err.kind == "canceled") then B.die("request %d: %s", n, tostring(err)) end
local closed_ms = -1
if B.wait_closed(maxfd, maxfd_link, 20) then closed_ms = (B.now_us() - t0) / 1e3 end
local gone, left = B.wait_subscribers(status_url, function(s) return s <= subs0 end, 30, 0.002)
local gone_ms = (B.now_us() - t0) / 1e3
if not gone then B.die("nginx still counts %s subscribers after 30 s", tostring(left and left - subs0)) end

print(("RESULT longpoll_pending%s n=%d rss_kib_each=%.2f threads=%d idle_cpu_pct=%.2f cancel_all_ms=%.1f closed_ms=%.0f gone_ms=%.0f "
  .. "held_ms=%.0f rss_delta_kib=%d rss_kib_each_before_gc=%.2f idle_cpu_pct_ns=%.3f threads_before=%d "
  .. "settle_cpu_ms=%.1f timer_cpu_pct=%.1f timer_cpu_pct_ns=%.1f timer_cpu_ms=%.0f connections=%d "
  .. "heap_bytes_each=%.0f")
  :format(label and "_" .. label or "", n, (rss1 - rss0) / n, threads, idle_pct, (t1 - t0) / 1e3, closed_ms,
    gone_ms, held_ms, rss1 - rss0, (rss_raw - rss0) / n, idle_pct_ns, threads0, settle_ms, timer_pct,
    timer_pct_ns, timer_ms, connections, (heap1 - heap0) / n))
