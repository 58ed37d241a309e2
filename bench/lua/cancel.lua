-- bench/lua/cancel.lua: cancel latency of lua-longpoll on the Lua thread.
--
--   lua5.4 bench/lua/cancel.lua N BASE_URL CHANNEL [SAMPLES_FILE]
--     (module on LUA_PATH/LUA_CPATH; BASE_URL e.g. http://127.0.0.1:18080)
--
-- N requests to BASE_URL/sub/CHANNEL (a fresh Nchan channel: nginx holds them). "Held" is
-- checked, not assumed: nginx's nchan_stub_status must count N more subscribers and none of
-- the requests may have finished. Then, one at a time:
--   t0 = uv.hrtime(); req:cancel(); local _, err = req:run(); t1 = uv.hrtime()
-- and err.kind must be "canceled". Also: the time until nginx counts the N subscribers gone
-- (the worker closed every connection). Samples (µs, one a line) go to SAMPLES_FILE.
-- Prints
--   RESULT longpoll_cancel n= p50_us= p99_us= max_us= min_us= mean_us= gone_ms= held_ms=
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local B = require "benchlib"
local longpoll = require "longpoll"

local n, base, channel, samples_file = tonumber(arg[1]), arg[2], arg[3], arg[4]
if not (n and base and channel) then
  io.stderr:write("usage: lua5.4 cancel.lua N BASE_URL CHANNEL [SAMPLES_FILE]\n")
  os.exit(2)
end
local status_url = base .. "/nchan_status"
local subs0 = B.subscribers(status_url) or B.die("cannot read %s", status_url)

local t_start = B.now_us()
local reqs = {}
for i = 1, n do reqs[i] = longpoll.request{ url = base .. "/sub/" .. channel }:start() end
local ok, got = B.wait_subscribers(status_url, function(s) return s >= subs0 + n end, 30)
if not ok then B.die("nginx holds %s of %d", tostring(got and got - subs0), n) end
for i = 1, n do
  if reqs[i]:done() then B.die("request %d finished before cancel: %s", i, tostring(select(2, reqs[i]:run()))) end
end
local held_ms = (B.now_us() - t_start) / 1e3

collectgarbage("collect")       -- start clean; the GC stays on (incremental, as shipped)
local lat = {}
local t_all = B.now_us()
for i = 1, n do
  local req = reqs[i]
  local t0 = B.now_us()
  req:cancel()
  local _, err = req:run()
  lat[i] = B.now_us() - t0
  if not (err and err.kind == "canceled") then
    B.die("request %d: expected canceled, got %s", i, tostring(err))
  end
end
local gone, left = B.wait_subscribers(status_url, function(s) return s <= subs0 end, 30, 0.002)
local gone_ms = (B.now_us() - t_all) / 1e3
if not gone then B.die("nginx still counts %s subscribers", tostring(left and left - subs0)) end

if samples_file then B.write_samples(samples_file, lat) end
local s, mean = B.summary(lat)
print(("RESULT longpoll_cancel n=%d p50_us=%.1f p99_us=%.1f max_us=%.1f min_us=%.1f mean_us=%.1f gone_ms=%.1f held_ms=%.0f")
  :format(n, B.pct(s, 50), B.pct(s, 99), s[n], s[1], mean, gone_ms, held_ms))
