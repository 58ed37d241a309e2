-- The response fuzzer: a raw server (spec/support/rawserver.lua) answers each
-- request with a valid HTTP response mutated at random (spec/fuzz/responses.lua:
-- bit flips, truncation, folded and duplicated headers, huge values, lying
-- lengths, broken chunks, split writes, late second responses, resets, holds);
-- the module must end every request with a proper result (a value and a
-- response, or an error object with a known kind), within a bound, and keep
-- working (a good request after every batch). Cases are numbered and follow
-- from (seed, case), so a failure prints what replays it.
--
--   lua5.4 spec/fuzz/run.lua [--seed S] [--cases N] [--start K] [--concurrency C]
--                            [--progress FILE] [--log FILE]
--
-- --progress FILE: the cases in flight, rewritten as they start (what to replay
-- after a crash); --log FILE: one line per case: number, result kind, seconds.
--
-- Run from the repository root; LUA_PATH/LUA_CPATH choose the module (the
-- build under test). Exit status 0 when every case passed. Prints one line at
-- the end: "fuzz: N cases (seed S, from K), F failed, T s, results: ...".
package.path = "spec/?.lua;lua/?.lua;" .. package.path

local opt = { seed = nil, cases = 1000, start = 1, concurrency = 32, progress = nil, log = nil }
do
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-(%w+)$")
    local v = tonumber(arg[i + 1]) or arg[i + 1]
    if not k or opt[k] == nil and k ~= "seed" and k ~= "progress" and k ~= "log" or v == nil then
      io.stderr:write("usage: lua5.4 spec/fuzz/run.lua [--seed S] [--cases N] [--start K] "
        .. "[--concurrency C] [--progress FILE] [--log FILE]\n")
      os.exit(2)
    end
    opt[k] = v
    i = i + 2
  end
end
opt.seed = math.tointeger(opt.seed) or (os.time() * 1000 + math.random(0, 999))

-- processes we start check no leaks of their own (see spec/support/sanitize_helper.lua)
local asan = os.getenv("ASAN_OPTIONS")
if asan then
  local ok, uv = pcall(require, "luv")
  if ok then uv.os_setenv("ASAN_OPTIONS", (asan:gsub("detect_leaks=1", "detect_leaks=0"))) end
end

local longpoll = require "longpoll"
local responses = require "fuzz.responses"
local rawserver = require "support.rawserver"

local KINDS = { canceled = true, timeout = true, resolve = true, connect = true, tls = true,
  network = true, http = true, decode = true, too_large = true }
local HARD_BOUND = 15 -- seconds a case may take (its timeout option is 2 s)

local here = (os.getenv("PWD") or ".") .. "/spec/fuzz/responses.lua"
local srv = rawserver.start{ script = here, args = { seed = opt.seed } }
local t0 = longpoll.now()
local counts, failed = {}, 0

local function fail(case, why)
  failed = failed + 1
  io.write(("FAIL seed=%d case=%d: %s\n  replay: lua5.4 spec/fuzz/run.lua --seed %d --start %d --cases 1\n")
    :format(opt.seed, case, why, opt.seed, case))
  io.flush()
end

-- an error object as the API promises it; nil when it is one, else what is wrong
local function bad_error(err)
  if err == nil then return "nil without an error object" end
  local ok, kind = pcall(function() return err.kind end)
  if not ok or not KINDS[kind] then return "error of unknown kind " .. tostring(kind) end
  if type(err.message) ~= "string" or tostring(err) == "" then return "error without a message" end
  if kind == "http" and math.type(err.status) ~= "integer" then return "http error without a status" end
  return nil, kind
end

local function check_plain(req, o)
  local v, r = req:run()
  if v == nil then
    local why, kind = bad_error(r)
    return why, kind
  end
  if type(r) ~= "table" then return "a value without a response table" end
  local st = r.status
  if not (math.type(st) == "integer" and (st >= 200 and st < 300 or st == 304)) then
    return "success with status " .. tostring(st)
  end
  if type(r.body) ~= "string" then return "response without a body string" end
  if o.max_body and #r.body > o.max_body then return "body over max_body" end
  if o.decode == "none" and type(v) ~= "string" then return "decode none gave a " .. type(v) end
  return nil, "ok"
end

-- a finished stream request: what it queued, then how it ended
local function check_stream(req)
  for _ = 1, 100000 do
    local msgs, err = req:poll()
    if msgs == nil then return bad_error(err) end
    if #msgs == 0 then return nil, "ok" end
  end
  return "stream never ended"
end

-- up to `concurrency` cases in flight; a new one starts as one finishes
local good = rawserver.start{ steps = { "request", { send = "HTTP/1.1 200 OK\r\n"
  .. "Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"good\":true}" }, "again" } }
local last = opt.start + opt.cases - 1
local next_case, inflight, finished = opt.start, {}, 0

local function progress()
  if not opt.progress then return end
  local lo, hi = next_case, next_case - 1
  for _, b in ipairs(inflight) do lo = math.min(lo, b.case) hi = math.max(hi, b.case) end
  local f = io.open(opt.progress, "w")
  if f then
    f:write(("seed=%d in flight: cases %d-%d\n"):format(opt.seed, lo, hi))
    f:close()
  end
end

local log = opt.log and assert(io.open(opt.log, "w"))
local function finish(b)
  local ok, why, kind = pcall(b.opts.stream and check_stream or check_plain, b.req, b.opts)
  if not ok then why = "raised: " .. tostring(why) end
  if why then fail(b.case, why) else counts[kind] = (counts[kind] or 0) + 1 end
  if log then log:write(b.case, " ", tostring(kind or why), " ", ("%.2f"):format(longpoll.now() - b.t), "\n") end
  finished = finished + 1
  -- the process keeps working: a good request every 50 cases (on a server of
  -- its own: a fuzz server may answer a kept-alive connection before it asks)
  if finished % 50 == 0 then
    local v, r = longpoll.request{ url = good:url("/good"), timeout = 10 }:run()
    if not (type(v) == "table" and v.good == true) then
      fail(b.case, "a good request failed: " .. tostring(r))
    end
  end
end

for _ = 1, 100 * opt.cases + 1000 do
  if next_case > last and #inflight == 0 then break end
  while #inflight < opt.concurrency and next_case <= last do
    local o = responses.client_opts(opt.seed, next_case, srv:url(("/case/%d/0"):format(next_case)))
    local ok, req = pcall(longpoll.request, o)
    if ok then
      inflight[#inflight + 1] = { case = next_case, req = req:start(), opts = o, t = longpoll.now() }
    else
      fail(next_case, "request() raised: " .. tostring(req))
    end
    next_case = next_case + 1
    progress()
  end
  local reqs = {}
  for i, b in ipairs(inflight) do reqs[i] = b.req end
  longpoll.wait_any(reqs, 0.05)
  for i = #inflight, 1, -1 do
    local b = inflight[i]
    if b.req:done() then
      table.remove(inflight, i)
      finish(b)
    elseif longpoll.now() - b.t > HARD_BOUND then
      table.remove(inflight, i)
      fail(b.case, ("not finished after %d s (timeout option 2 s)"):format(HARD_BOUND))
      b.req:cancel()
    elseif b.opts.stream then
      local ok, msgs, err = pcall(b.req.poll, b.req)
      if not ok then
        table.remove(inflight, i)
        fail(b.case, "poll() raised: " .. tostring(msgs))
      elseif msgs == nil and bad_error(err) then
        table.remove(inflight, i)
        fail(b.case, bad_error(err))
      end
    end
  end
end
good:stop()

local kinds = {}
for k, n in pairs(counts) do kinds[#kinds + 1] = k .. "=" .. n end
table.sort(kinds)
srv:stop()
io.write(("fuzz: %d cases (seed %d, from %d), %d failed, %.1f s, results: %s\n"):format(
  opt.cases, opt.seed, opt.start, failed, longpoll.now() - t0, table.concat(kinds, " ")))
io.stdout:flush() -- a leak report at exit ends the process without flushing
os.exit(failed == 0 and 0 or 1, true)
