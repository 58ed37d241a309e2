-- The Lua storm (issue 9): N requests made, started, canceled, waited on,
-- awaited, streamed, closed and dropped at random, with garbage made and the
-- collector stepped between operations; every result checked. Run as its own
-- process by spec/storm_spec.lua (and bench/stress.sh storm), under any Lua:
--
--   <lua> spec/support/storm.lua <base url of the spec server> <N> [seed]
--
-- Prints one line:
--   storm: ok N requests (...); fds A -> B; idle connections C -> D;
--   threads E -> F; rss KB G -> H; lua KB I -> J
-- the figures after a warm-up and after the storm, once every request is
-- gone and collected: descriptors other than connections to the server (A,
-- B: the same), the keep-alive connections libcurl keeps idle for reuse (C,
-- D: at most one per request that was in flight at once), threads (the
-- same), resident memory and Lua's heap. Any improper result raises (exit 1)
-- with the request's story.
local base, n, seed = arg[1], tonumber(arg[2]), tonumber(arg[3] or "1")
assert(base and n, "usage: storm.lua <base url> <N> [seed]")
math.randomseed(seed)
local random = math.random

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local pid = tonumber(read("/proc/self/stat"):match("^(%d+)"))

-- TCP connections of this process to `port` (from /proc/net/tcp*: the
-- socket inodes with that remote port)
local function conn_inodes(port)
  local set = {}
  for _, file in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    for line in (read(file) or ""):gmatch("[^\n]+") do
      local rport, inode = line:match("^%s*%d+: %x+:%x+ %x+:(%x+) %x+ %x+:%x+ %x+:%x+ %x+%s+%d+%s+%d+%s+(%d+)")
      if rport and tonumber(rport, 16) == port then set[inode] = true end
    end
  end
  return set
end

local server_port = tonumber(base:match(":(%d+)"))

-- this process's descriptors as "fd target" pairs, read in process with luv
-- (an `ls` through io.popen sometimes saw both ends of its own pipe, when it
-- listed before the parent closed the write end: one descriptor "leaked")
local uv = require "luv"
local function fd_listing()
  local out = {}
  local dir = assert(uv.fs_scandir("/proc/" .. pid .. "/fd"))
  while true do
    local name = uv.fs_scandir_next(dir)
    if not name then break end
    local target = uv.fs_readlink("/proc/" .. pid .. "/fd/" .. name)
    if target then out[#out + 1] = " " .. name .. " -> " .. target .. "\n" end
  end
  return table.concat(out)
end

-- descriptors (luv's scandir handle is one of ours while it reads, the same
-- in every measurement): connections to the server apart from the others;
-- threads; resident KB
local function measure()
  collectgarbage("collect")
  collectgarbage("collect")
  local listing = fd_listing()
  local conns, fds = conn_inodes(server_port), 0
  local m = { conns = 0, targets = {} }
  for fd, target in listing:gmatch(" (%d+) %-> ([^\n]+)") do
    local inode = target:match("^socket:%[(%d+)%]$")
    if inode and conns[inode] then
      m.conns = m.conns + 1
    else
      fds = fds + 1
      m.targets[#m.targets + 1] = fd .. ":" .. target
    end
  end
  local status = read("/proc/self/status")
  m.fds = fds
  m.threads = tonumber(status:match("Threads:%s*(%d+)"))
  m.rss = tonumber(status:match("VmRSS:%s*(%d+)"))
  m.lua = math.floor(collectgarbage("count"))
  return m
end

-- bounded waits for what settles asynchronously (the worker closes a
-- canceled connection, libcurl's resolver threads end)
local function settle(pred)
  for _ = 1, 250 do
    local m = measure()
    if pred(m) then return m end
    local p = io.popen("sleep 0.02")
    p:read("*a")
    p:close()
  end
  return measure()
end

local longpoll = require "longpoll"

-- endpoints: path maker, what a finished request gives when nobody canceled it
local PLAIN = 1
local kinds = {
  { name = "json", path = function(id) return "/hold?ms=0&status=200&type=application/json&body=%5B" .. id .. "%5D" end },
  { name = "hold", path = function(id) return ("/hold?ms=%d&status=200&type=application/json&body=%%5B%d%%5D"):format(random(0, 20), id) end },
  { name = "drip", path = function() return "/drip?bytes=8&interval_ms=2" end },
  { name = "big", path = function() return "/big?bytes=" .. random(1000, 200000) end },
  { name = "silence", path = function() return "/silence" end },
  { name = "reset", path = function() return "/reset" end },
  { name = "status", path = function() return "/status/503" end },
  { name = "stream", path = function() return "/stream/ndjson?n=20&interval_ms=1&chunk=50" end },
}

local function fail(rec, fmt, ...)
  error(("storm (seed " .. seed .. "): request %d (%s, %s): " .. fmt):format(rec.id, rec.kind.name, table.concat(rec.story, " "), ...), 0)
end

-- a finished request's results, checked against what it asked for
local function check(rec, a, b)
  local name = rec.kind.name
  if rec.canceled then
    if a ~= nil or type(b) ~= "table" or b.kind ~= "canceled" then
      fail(rec, "canceled, but run() gave %s, %s", tostring(a), tostring(b))
    end
    return
  end
  if a == nil then
    local kind = type(b) == "table" and b.kind
    local ok = (name == "reset" and kind == "network") or (name == "status" and kind == "http" and b.status == 503)
      or (rec.timeout and kind == "timeout")
    if not ok then fail(rec, "failed: %s", tostring(b)) end
    return
  end
  if name == "json" or name == "hold" then
    if rec.decode == "none" then
      if a ~= "[" .. rec.id .. "]" then fail(rec, "body %q", tostring(a)) end
    elseif type(a) ~= "table" or a[1] ~= rec.id then
      fail(rec, "value %s", tostring(a))
    end
  elseif name == "drip" or name == "big" then
    if type(a) ~= "string" or not a:match("^x+$") or (name == "drip" and #a ~= 8) then
      fail(rec, "body of %d bytes", type(a) == "string" and #a or -1)
    end
  else
    fail(rec, "succeeded: %s", tostring(a))
  end
end

local pool, POOL = {}, 32
local made, ops, results = 0, 0, { ok = 0, failed = 0, canceled = 0, dropped = 0 }

local function new_request(id)
  local kind = kinds[random(#kinds)]
  local rec = { id = id, kind = kind, story = {} }
  local opts = { url = base .. kind.path(id) }
  if kind.name == "stream" then
    opts.stream, opts.max_queued = "ndjson", random(1, 8)
  else
    rec.decode = ({ "auto", "json", "none" })[random(3)]
    if kind.name ~= "json" and kind.name ~= "hold" then rec.decode = "none" end
    opts.decode = rec.decode
  end
  if random(8) == 1 then
    rec.timeout = random(1, 50) / 1000
    opts.timeout = rec.timeout
  end
  if random(4) == 1 then opts.headers = { Connection = "close" } end
  rec.req = longpoll.request(opts)
  return rec
end

local function note(rec, s) rec.story[#rec.story + 1] = s end

local function cancel(rec)
  local was = rec.req:status()
  local ended = rec.req:cancel()
  note(rec, "cancel:" .. tostring(ended))
  if ended then
    if was ~= "ready" and was ~= "running" then fail(rec, "cancel() ended a %s request", was) end
    rec.canceled = true
    if rec.req:status() ~= "canceled" then fail(rec, "status %s after cancel", rec.req:status()) end
  end
end

-- read a stream: messages {"n":1..20} in order, then its end
local function drain_stream(rec, seconds)
  rec.next = rec.next or 1
  while true do
    local m, err = rec.req:next(seconds)
    if m == nil then
      if err then
        if not rec.canceled and not (rec.timeout and err.kind == "timeout") then fail(rec, "stream failed: %s", tostring(err)) end
        if rec.canceled and err.kind ~= "canceled" then fail(rec, "canceled stream ended with %s", tostring(err)) end
      elseif rec.req:done() and not rec.canceled and rec.next ~= 21 then
        fail(rec, "stream ended after %d messages", rec.next - 1)
      end
      return rec.req:done()
    end
    if type(m) ~= "table" or m.n ~= rec.next then fail(rec, "message %s, expected n=%d", tostring(m and m.n), rec.next) end
    rec.next = rec.next + 1
  end
end

-- finish with a request: its result checked, then let go
local function finish(rec)
  if rec.kind.name == "silence" and not rec.canceled and not rec.timeout then cancel(rec) end
  if rec.kind.name == "stream" then
    local ended = false
    for _ = 1, 100 do
      ended = drain_stream(rec, 10)
      if ended then break end
    end
    if not ended then fail(rec, "stream never ended") end
  else
    if not rec.req:wait(30) then fail(rec, "no result within 30 s") end
    check(rec, rec.req:run())
  end
  local st = rec.req:status()
  st = st == "done" and "ok" or st
  if not results[st] then fail(rec, "status %s at the end", st) end
  results[st] = results[st] + 1
end

local garbage = {}
local function pressure()
  local r = random(10)
  if r <= 3 then
    for i = 1, random(1, 50) do garbage[random(256)] = { i, tostring(i) .. "x", {} } end
  elseif r <= 6 then
    collectgarbage("step", random(1, 64))
  elseif r == 7 and random(50) == 1 then
    collectgarbage("collect")
  end
end

local function op(slot, upto)
  local rec = pool[slot]
  if not rec then
    if made < upto then
      made = made + 1
      pool[slot] = new_request(made)
    end
    return
  end
  local r, req = random(100), rec.req
  ops = ops + 1
  if r <= 20 then
    if req:status() == "ready" then
      if random(8) == 1 then cancel(rec) end
      req:start()
      note(rec, "start")
    end
  elseif r <= 35 then
    cancel(rec)
  elseif r <= 45 then
    note(rec, "wait")
    req:wait(random(0, 3) / 1000)
  elseif r <= 52 then
    note(rec, "fd")
    req:fd()
  elseif r <= 57 then
    note(rec, "close")
    req:close()
    -- close() ended it unless it had finished already (which may happen
    -- between a status() before and the close itself): its status tells
    if req:status() == "canceled" then rec.canceled = true end
  elseif r <= 62 and rec.kind.name == "stream" then
    note(rec, "poll")
    if req:status() ~= "ready" then drain_stream(rec, 0) end
  elseif r <= 67 then          -- await in a coroutine, then cancel or wait it out
    if rec.kind.name == "stream" then return end
    note(rec, "await")
    local co = coroutine.create(function() return req:await() end)
    local ok, y = coroutine.resume(co)
    if not ok then fail(rec, "await raised: %s", tostring(y)) end
    if coroutine.status(co) == "suspended" then
      if random(2) == 1 then cancel(rec) end
      if random(3) == 1 then return end   -- the suspended coroutine is dropped
      if rec.kind.name == "silence" and not rec.canceled and not rec.timeout then cancel(rec) end
      if not req:wait(30) then fail(rec, "await: no result within 30 s") end
      local ok2, a, b = coroutine.resume(co)
      if not ok2 then fail(rec, "await raised: %s", tostring(a)) end
      check(rec, a, b)
    end
  elseif r <= 72 then          -- wait_any over the pool
    local list = {}
    for _, x in pairs(pool) do if x.req:status() ~= "ready" then list[#list + 1] = x.req end end
    if #list > 0 then longpoll.wait_any(list, random(0, 2) / 1000) end
  elseif r <= 80 then          -- dropped: the collector cancels it
    note(rec, "drop")
    pool[slot] = nil
    results.dropped = results.dropped + 1
  elseif r <= 92 then
    if req:status() ~= "ready" or random(2) == 1 then
      note(rec, "finish")
      finish(rec)
      pool[slot] = nil
    end
  end
end

-- made requests up to `upto`, then finish the pool
local function storm(upto)
  while made < upto or next(pool) do
    local slot = random(POOL)
    if made >= upto and not pool[slot] then
      slot = next(pool)
      finish(pool[slot])
      pool[slot] = nil
    else
      op(slot, upto)
    end
    pressure()
  end
end

-- warm-up: a storm of its own, so that what a first use allocates once
-- (libcurl, OpenSSL, the worker) and the allocator's high-water mark of
-- POOL requests in flight are in the starting figures
local warm = math.max(1000, math.floor(n / 20))
storm(warm)
-- the worker may still be closing canceled connections: the same count twice
local start = measure()
start = settle(function(m)
  local same = m.fds == start.fds and m.conns == start.conns
  start = m
  return same
end)
made, ops = 0, 0
for k in pairs(results) do results[k] = 0 end
storm(n)
garbage = nil
local after = settle(function(m) return m.threads <= start.threads and m.fds <= start.fds end)

print(("storm: ok %d requests (seed " .. seed .. ", %d ops; %d done, %d failed, %d canceled, %d dropped); fds %d -> %d; idle connections %d -> %d; threads %d -> %d; rss KB %d -> %d; lua KB %d -> %d")
  :format(made, ops, results.ok, results.failed, results.canceled, results.dropped,
    start.fds, after.fds, start.conns, after.conns, start.threads, after.threads,
    start.rss, after.rss, start.lua, after.lua))
if after.fds ~= start.fds then
  print("descriptors at the start: " .. table.concat(start.targets, " "))
  print("descriptors at the end: " .. table.concat(after.targets, " "))
end
