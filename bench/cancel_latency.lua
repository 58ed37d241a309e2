-- Cancel latency: N requests held open by the spec server; for each, the time
-- from cancel() to run() returning "canceled" on the same Lua thread, and the
-- time until the server sees the connection gone (all of them).
--   lua5.4 bench/cancel_latency.lua [N]      (needs the module on the paths)
package.path = "spec/?.lua;" .. package.path
local longpoll = require "longpoll"
local testserver = require "support.testserver"
local uv = require "luv"

local n = tonumber(arg[1]) or 300
local srv = testserver.start()
local reqs = {}
for i = 1, n do reqs[i] = longpoll.request{ url = srv:url("/hold") }:start() end
assert(srv:wait_held(n, 30), "server did not hold every request")

local samples = {}
local t_all = uv.hrtime()
for i = 1, n do
  local req = reqs[i]
  local t0 = uv.hrtime()
  req:cancel()
  local _, err = req:run()
  samples[i] = (uv.hrtime() - t0) / 1e3 -- microseconds
  assert(err.kind == "canceled")
end
local gone = srv:wait_held(0, 30)
local t_gone = (uv.hrtime() - t_all) / 1e6
srv:stop()

table.sort(samples)
local function pct(p) return samples[math.max(1, math.ceil(#samples * p))] end
print(("cancel->run latency over %d held requests: p50 %.1f us, p99 %.1f us, max %.1f us"):format(
  n, pct(0.50), pct(0.99), samples[#samples]))
print(("all %d connections gone at the server within %.0f ms (%s; includes /_stats polling)"):format(
  n, t_gone, gone and "ok" or "NOT ALL"))
print(("RESULT longpoll_cancel n=%d p50_us=%.1f p99_us=%.1f max_us=%.1f"):format(
  n, pct(0.50), pct(0.99), samples[#samples]))
