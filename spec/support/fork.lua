-- Run by spec/host/fork_test.c (spec/fork_spec.lua): a host process that
-- loaded longpoll, with requests in flight, forks (fork(), wait(), pipe(),
-- send(), recv(), readable(), closefd() come from the host). Prints
-- "child ok" and "parent ok"; any failure raises (the host prints it and
-- exits 1).
--   fork_test spec/support/fork.lua <spec server base> [<nginx https base> <cafile>]
local base, tls, cafile = ...
local longpoll = require "longpoll"

local function until_true(pred, what)
  for _ = 1, 3000 do
    if pred() then return end
    longpoll.sleep(0.01)
  end
  error("gave up waiting for " .. what)
end

local function held_count()
  return assert(longpoll.request{ url = base .. "/_stats" }:run()).held
end

local function value(url)
  local v, err = longpoll.request{ url = base .. url }:run()
  assert(v, tostring(err))
  return v
end

local function nchan_subscribers()
  local v = longpoll.request{ url = tls .. "/pub/forked", cainfo = cafile,
                              headers = { Accept = "text/json" } }:run()
  return v and v.subscribers
end

-- before the fork: one finished, three in flight (one watched through fd())
local done = longpoll.request{ url = base .. "/hold?ms=0&status=200&body=%5B1%5D" }
assert(done:run()[1] == 1)
local held = longpoll.request{ url = base .. "/hold" }:start()
local watched = longpoll.request{ url = base .. "/poll/forked?since=0" }:start()
local fd = watched:fd()
until_true(function() return held_count() == 2 end, "the server to hold 2 polls")
local h2
if tls then   -- a held stream on an HTTP/2 connection over TLS
  h2 = longpoll.request{ url = tls .. "/sub/forked", cainfo = cafile }:start()
  until_true(function() return nchan_subscribers() == 1 end, "nginx to hold the stream")
end

local c2p_r, c2p_w = pipe()
local p2c_r, p2c_w = pipe()
local pid = assert(fork())

if pid == 0 then
  closefd(c2p_r)
  closefd(p2c_w)
  -- what was in flight at the fork fails here, at once; the parent's copy runs on
  local inflight = { held = held, watched = watched, h2 = h2 }
  for name, r in pairs(inflight) do
    local v, err = r:run()
    assert(v == nil and err.kind == "network" and err.message:find("forked", 1, true),
      name .. ": " .. tostring(err or v))
  end
  assert(readable(fd), "the fd of a request that failed here is readable")
  assert(done:run()[1] == 1)                           -- finished before: it stands
  assert(value("/hold?ms=0&status=200&body=%5B3%5D")[1] == 3)  -- a worker of its own
  local mine = longpoll.request{ url = base .. "/hold" }:start()
  assert(not mine:wait(0.1) and mine:cancel() and select(2, mine:run()).kind == "canceled")
  if tls then
    assert(longpoll.request{ url = tls .. "/json", cainfo = cafile }:run().ok == true)
  end
  local gpid = assert(fork())                          -- a second generation
  if gpid == 0 then
    return value("/hold?ms=0&status=200&body=%5B4%5D")[1] == 4 and 0 or 1
  end
  assert(wait(gpid, 60) == 0, "the grandchild failed")
  print("child ok")
  -- alive, with its work done: the parent looks at the server now
  send(c2p_w, "c")
  assert(recv(p2c_r, 60) == "p", "the parent never answered")
  return 0
end

closefd(c2p_w)
closefd(p2c_r)
assert(recv(c2p_r, 90) == "c", "the child did not get through")
-- the child's wake-ups were its own
assert(not watched:done() and not readable(fd), "the child's wake-up reached the parent")
-- the child holds no copy of the parent's connections: a cancel reaches the
-- server while the child lives
assert(held:cancel())
until_true(function() return held_count() == 1 end, "the server to see the cancel while the child lives")
send(p2c_w, "p")
assert(wait(pid, 60) == 0, "the child failed")

-- the parent's requests in flight went on
assert(longpoll.request{ url = base .. "/publish/forked", method = "POST", body = "after the fork" }:run())
local msgs = assert(watched:run())
assert(msgs[1].data == "after the fork", "watched: " .. tostring(msgs[1] and msgs[1].data))
if tls then
  -- nothing was sent on the parent's TLS connection by the child (a
  -- close_notify or GOAWAY would have ended the stream): it is answered
  assert(longpoll.request{ url = tls .. "/pub/forked", method = "POST", body = "after the fork",
                           cainfo = cafile, decode = "none" }:run())
  local v, err = h2:run()
  assert(v == "after the fork", "h2: " .. tostring(v or err))
end

-- pre-fork workers: three at once, twenty requests each
local kids = {}
for i = 1, 3 do
  local k = assert(fork())
  if k == 0 then
    for j = 1, 20 do
      if value("/hold?ms=0&status=200&body=%5B" .. j .. "%5D")[1] ~= j then return 1 end
    end
    return 0
  end
  kids[i] = k
end
for i = 1, 3 do assert(wait(kids[i], 60) == 0, "worker " .. i .. " failed") end
print("parent ok")
return 0
