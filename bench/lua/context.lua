-- bench/lua/context.lua: the cost of ctx:cancel() on N held requests (issue 10.6).
--
--   lua5.4 bench/lua/context.lua N BASE_URL CHANNEL      (ulimit -n > N + a few)
--
-- N requests to BASE_URL/sub/CHANNEL (a fresh Nchan channel: nginx holds them), all under
-- one longpoll.context; "held" means nginx's nchan_stub_status counts N more subscribers
-- and none of the requests finished. Then one call, ctx:cancel(), and:
--   cancel_ms   how long that call took, as Lua sees it (it returns with every request ended)
--   done_ms     until a pass over the N requests finds every done() true (no sleep needed)
--   closed_ms   until the worker closed every connection (the process's descriptors are
--               back to their count before the requests; counted every 5 ms)
--   gone_ms     until nginx counts them gone
-- and, for comparison, the same N held requests without a context, ended by a Lua loop of
-- N req:cancel() calls: loop_ms (the loop), loop_gone_ms (until nginx counts them gone).
-- Prints
--   RESULT longpoll_context_cancel n= cancel_ms= done_ms= closed_ms= gone_ms= loop_ms= ...
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local B = require "benchlib"
local longpoll = require "longpoll"

local n, base, channel = tonumber(arg[1]), arg[2], arg[3]
if not (n and base and channel) then
  io.stderr:write("usage: lua5.4 context.lua N BASE_URL CHANNEL\n")
  os.exit(2)
end
local status_url = base .. "/nchan_status"
local url = base .. "/sub/" .. channel

assert(longpoll.request{ url = base .. "/small.json" }:run(), "warm-up request failed")
local subs0 = B.subscribers(status_url) or B.die("cannot read %s", status_url)
local fds0 = B.count_fds()

-- N held requests (under ctx when given); returns them and the ms until held
local function hold(ctx)
  local t0 = B.now_us()
  local reqs = {}
  for i = 1, n do reqs[i] = longpoll.request{ url = url, context = ctx }:start() end
  local ok, got = B.wait_subscribers(status_url, function(s) return s >= subs0 + n end, 60, 0.05)
  if not ok then B.die("nginx holds %s of %d", tostring(got and got - subs0), n) end
  for i = 1, n do
    if reqs[i]:done() then B.die("request %d finished before cancel: %s", i, tostring(select(2, reqs[i]:run()))) end
  end
  return reqs, (B.now_us() - t0) / 1e3
end

local function all_done(reqs)
  for i = 1, n do if not reqs[i]:done() then return false end end
  return true
end

-- after the cancel at t0: ms until every socket closed and until nginx counts them gone
local function teardown_ms(t0)
  local closed_ms = -1
  for _ = 1, 4000 do                    -- up to ~20 s
    if B.count_fds() <= fds0 then closed_ms = (B.now_us() - t0) / 1e3; break end
    B.sleep(0.005)
  end
  local gone, left = B.wait_subscribers(status_url, function(s) return s <= subs0 end, 30, 0.002)
  if not gone then B.die("nginx still counts %s subscribers after 30 s", tostring(left and left - subs0)) end
  return closed_ms, (B.now_us() - t0) / 1e3
end

-- one call on a context
local ctx = longpoll.context()
local reqs, held_ms = hold(ctx)
if #ctx ~= n then B.die("the context counts %d requests, not %d", #ctx, n) end
collectgarbage("collect")
local t0 = B.now_us()
local ended = ctx:cancel()
local t1 = B.now_us()
local done = all_done(reqs)
local t2 = B.now_us()
if not (ended and done) then B.die("cancel() gave %s, every request done: %s", tostring(ended), tostring(done)) end
local _, err = reqs[n]:run()
if not (err and err.kind == "canceled") then B.die("request %d: %s", n, tostring(err)) end
if #ctx ~= 0 then B.die("the context still counts %d requests", #ctx) end
local closed_ms, gone_ms = teardown_ms(t0)

-- the same, a loop of req:cancel()
reqs = hold(nil)
collectgarbage("collect")
local l0 = B.now_us()
for i = 1, n do if not reqs[i]:cancel() then B.die("cancel %d returned false", i) end end
local l1 = B.now_us()
local loop_closed_ms, loop_gone_ms = teardown_ms(l0)

print(("RESULT longpoll_context_cancel n=%d cancel_ms=%.2f done_ms=%.2f closed_ms=%.0f gone_ms=%.0f "
  .. "loop_ms=%.2f loop_closed_ms=%.0f loop_gone_ms=%.0f held_ms=%.0f")
  :format(n, (t1 - t0) / 1e3, (t2 - t0) / 1e3, closed_ms, gone_ms,
    (l1 - l0) / 1e3, loop_closed_ms, loop_gone_ms, held_ms))
