-- bench/lua/frames.lua: a 60 fps loop with 100 long-polls in flight; time spent in the module.
--
--   lua5.4 bench/lua/frames.lua BASE_URL PREFIX [POLLS [SECONDS [PUB_INTERVAL_MS [SAMPLES]]]]
--       defaults: 100 polls, 5 s, a publish every 5 ms
--   env BENCH_PUB_PREFIX_CMD: a command prefix for the publisher (e.g. "taskset -c 1")
--
-- POLLS requests long-poll BASE_URL/sub/PREFIX_<i> (fresh Nchan channels: nginx holds them).
-- Once nginx holds them all, bench/lua/publisher.lua starts publishing to random channels
-- every PUB_INTERVAL_MS, so polls complete and are restarted with the Nchan cursor
-- (If-None-Match / If-Modified-Since from the answer's Etag / Last-Modified). Each frame:
--   every poll: req:done(); for each finished one: req:run(), then longpoll.request{...}
--   and :start() for its successor
-- and then sleeps until the next 1/60 s tick. Module time per frame is the wall time of the
-- done() sweep plus each run(), request() and start() call (building the options table is
-- the application's and not counted; Lua GC steps that the module's allocations trigger
-- are; over_500us_with_gc counts the slow frames in which a GC cycle freed memory inside
-- a module call). The same regions are also timed with this thread's CPU clock
-- (bench/.build/benchc.so, when built): cpu_* figures leave out the time the thread
-- sat preempted by other processes, which on a shared machine is most of a slow frame.
-- Prints a histogram of module time per frame and
--   RESULT longpoll_frames[_gcstep] frames= polls= p50_us= p99_us= max_us= over_500us= completions= ...
--     cpu_p99_us= cpu_max_us= cpu_over_500us= (when benchc is there)
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local B = require "benchlib"
local longpoll = require "longpoll"
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.cpath = here .. "/../.build/?.so;" .. package.cpath
local has_cpu, benchc = pcall(require, "benchc")
local cpu = has_cpu and benchc.thread_cpu_us or function() return 0 end

local base, prefix = arg[1], arg[2]
local npolls = tonumber(arg[3]) or 100
local secs = tonumber(arg[4]) or 5
local pub_ms = tonumber(arg[5]) or 5
local samples_file = arg[6]
if not (base and prefix) then
  io.stderr:write("usage: lua5.4 frames.lua BASE_URL PREFIX [POLLS [SECONDS [PUB_INTERVAL_MS [SAMPLES]]]]\n")
  os.exit(2)
end
local status_url = base .. "/nchan_status"
local now = B.now_us
local request = longpoll.request

local function opts_for(i, cursor)
  local o = { url = ("%s/sub/%s_%d"):format(base, prefix, i) }
  if cursor then
    o.headers = { ["If-None-Match"] = cursor.etag, ["If-Modified-Since"] = cursor.lm }
  end
  return o
end

local subs0 = B.subscribers(status_url) or B.die("cannot read %s", status_url)
local polls = {}
for i = 1, npolls do polls[i] = request(opts_for(i)):start() end
local ok, got = B.wait_subscribers(status_url, function(s) return s >= subs0 + npolls end, 30)
if not ok then B.die("nginx holds %s of %d", tostring(got and got - subs0), npolls) end
for i = 1, npolls do if polls[i]:done() then B.die("poll %d finished before publishing", i) end end

-- the publisher runs in its own process for secs (+ a little), reporting when it ends
local pub = assert(io.popen(("%s lua5.4 %s/publisher.lua %s %s %d %g %g"):format(
  os.getenv("BENCH_PUB_PREFIX_CMD") or "", here, base, prefix, npolls, secs + 0.5, pub_ms), "r"))

collectgarbage("collect")
-- BENCH_FRAMES_GC=step: the game steps the collector itself at the end of each
-- frame (outside module time), as the README advises, instead of letting
-- allocations inside module calls trigger GC work
local gc_step = os.getenv("BENCH_FRAMES_GC") == "step"
if gc_step then collectgarbage("stop") end
local PERIOD = 1e6 / 60                          -- µs
local nframes = math.floor(secs * 60)
local module_us, work_us, gc_frames, module_cpu_us = {}, {}, {}, {}
local completions, errors, late = 0, 0, 0
-- per kind of call: total µs, count, max µs (to tell where a frame's time goes)
local calls = { sweep = {0, 0, 0}, run = {0, 0, 0}, request = {0, 0, 0}, start = {0, 0, 0} }
-- did a Lua GC cycle free memory during a module call of this frame? (the heap size is read
-- outside the timed regions: it drops when a cycle's sweep / finalizers ran inside a call)
local gcount = collectgarbage
local frame_gc = false
local function note(kind, us)
  local c = calls[kind]
  c[1], c[2] = c[1] + us, c[2] + 1
  if us > c[3] then c[3] = us end
end
local finished = {}
local t_start = now()
for f = 1, nframes do
  local tf = now()
  -- the sweep: done() on every poll
  local nfin = 0
  frame_gc = false
  local kb = gcount("count")
  local c0 = cpu()
  local t0 = now()
  for i = 1, npolls do
    if polls[i]:done() then nfin = nfin + 1; finished[nfin] = i end
  end
  local spent = now() - t0
  local cspent = cpu() - c0
  note("sweep", spent)
  if gcount("count") < kb then frame_gc = true end
  -- results and restarts
  for k = 1, nfin do
    local i = finished[k]
    local p = polls[i]
    kb = gcount("count")
    c0 = cpu()
    t0 = now()
    local v, resp = p:run()
    local t1 = now()
    cspent = cspent + (cpu() - c0)
    if gcount("count") < kb then frame_gc = true end
    note("run", t1 - t0)
    spent = spent + (t1 - t0)
    local cursor
    if v then
      completions = completions + 1
      cursor = { etag = resp.headers.etag, lm = resp.headers["last-modified"] }
    else
      errors = errors + 1
      if resp.response then
        local h = resp.response.headers
        cursor = { etag = h.etag, lm = h["last-modified"] }
      end
    end
    local o = opts_for(i, cursor)                -- the application's part, not timed
    kb = gcount("count")
    c0 = cpu()
    t0 = now()
    p = request(o)
    local t1 = now()
    p:start()
    local t2 = now()
    cspent = cspent + (cpu() - c0)
    if gcount("count") < kb then frame_gc = true end
    note("request", t1 - t0)
    note("start", t2 - t1)
    spent = spent + (t2 - t0)
    polls[i] = p
  end
  module_us[f] = spent
  module_cpu_us[f] = cspent
  gc_frames[f] = frame_gc
  work_us[f] = now() - tf
  if gc_step then collectgarbage("step", 0) end
  local next_t = t_start + f * PERIOD
  local left = next_t - now()
  if left > 0 then B.sleep(left / 1e6) else late = late + 1 end
end
local wall = (now() - t_start) / 1e6

for i = 1, npolls do polls[i]:cancel() end
local published = pub:read("a") or ""
pub:close()
local npub = tonumber(published:match("PUBLISHED n=(%d+)")) or 0

if samples_file then B.write_samples(samples_file, module_us) end
local s, mean = B.summary(module_us)
local cs = B.summary(module_cpu_us)
local cpu_over = 0
for _, v in ipairs(module_cpu_us) do if v > 500 then cpu_over = cpu_over + 1 end end
local edges = { 25, 50, 100, 200, 500, 1000 }
local counts = {}
for b = 1, #edges + 1 do counts[b] = 0 end
for _, v in ipairs(module_us) do
  local b = 1
  while edges[b] and v >= edges[b] do b = b + 1 end
  counts[b] = counts[b] + 1
end
io.stderr:write(("frames: %d frames in %.2f s (%d late), %d polls, %d completions (%d errors), %d published\n")
  :format(nframes, wall, late, npolls, completions, errors, npub))
io.stderr:write("module time per frame (us):\n")
local over = 0
for b = 1, #edges + 1 do
  local lo = edges[b - 1] or 0
  local label = edges[b] and ("%5d - %-5d"):format(lo, edges[b]) or ("%5d +      "):format(lo)
  io.stderr:write(("  %s %5d %s\n"):format(label, counts[b], ("#"):rep(math.ceil(counts[b] * 50 / nframes))))
end
local over_gc, gc_total = 0, 0
for f, v in ipairs(module_us) do
  if v > 500 then over = over + 1; if gc_frames[f] then over_gc = over_gc + 1 end end
  if gc_frames[f] then gc_total = gc_total + 1 end
end
local hist = {}
for b = 1, #edges + 1 do hist[b] = ("h%s=%d"):format(edges[b - 1] or 0, counts[b]) end
local ws = B.summary(work_us)
local per = {}
for _, k in ipairs{ "sweep", "run", "request", "start" } do
  local c = calls[k]
  per[#per + 1] = ("%s_mean_us=%.1f %s_max_us=%.1f"):format(k, c[2] > 0 and c[1] / c[2] or 0, k, c[3])
  io.stderr:write(("  %-8s %6d calls, mean %7.1f us, max %7.1f us\n"):format(k, c[2], c[2] > 0 and c[1] / c[2] or 0, c[3]))
end
print(("RESULT longpoll_frames%s frames=%d polls=%d p50_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f over_500us=%d "
  .. "over_500us_with_gc=%d gc_frames=%d completions=%d errors=%d published=%d late_frames=%d frame_work_max_us=%.1f %s")
  :format(gc_step and "_gcstep" or "", nframes, npolls, B.pct(s, 50), B.pct(s, 99), s[#s], mean, over, over_gc, gc_total, completions, errors, npub,
    late, ws[#ws], table.concat(hist, " ")) .. " " .. table.concat(per, " ")
  .. (has_cpu and (" cpu_p50_us=%.1f cpu_p99_us=%.1f cpu_max_us=%.1f cpu_over_500us=%d")
    :format(B.pct(cs, 50), B.pct(cs, 99), cs[#cs], cpu_over) or ""))
