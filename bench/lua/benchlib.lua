-- bench/lua/benchlib.lua: helpers shared by the benchmarks of our module (bench/lua/*.lua).
--
--   local B = require "benchlib"     -- the scripts put bench/lua/ on package.path themselves
--   B.now_us()                       -- monotonic clock in µs (luv's uv.hrtime)
--   B.subscribers(status_url)        -- nginx Nchan "subscribers: N", or nil
--   B.wait_subscribers(url, pred, s) -- polls until pred(n) is true, up to s seconds
--   B.pct(sorted, p)                 -- nearest-rank percentile, as bench/peers/common.h
--   B.proc_status(key)               -- a number from /proc/self/status (VmRSS, Threads)
--   B.cpu_ticks()                    -- utime + stime of this process (/proc/self/stat)
--   B.cpu_ns()                       -- on-CPU ns summed over every thread (schedstat)
--   B.write_samples(path, list)      -- one value a line, for gnuplot
--   B.last_socket()                  -- the highest fd, a socket: the last connection made
--   B.wait_closed(fd, link, s)       -- polls until that fd closed; seconds waited, or nil
--   B.count_fds()                    -- how many descriptors the process has open
--   B.die(fmt, ...)                  -- message on stderr, exit 1
-- Control requests (the Nchan status) use LuaSocket on fresh connections, so they never
-- touch the engine being measured.
local uv = require "luv"
local http = require "socket.http"
local socket = require "socket"

local B = {}

local hrtime = uv.hrtime
function B.now_us() return hrtime() / 1e3 end
B.sleep = socket.sleep          -- seconds, fractional (nanosleep)

function B.die(fmt, ...)
  io.stderr:write(("%s: " .. fmt .. "\n"):format(arg and arg[0] or "bench", ...))
  os.exit(1)
end

http.TIMEOUT = 2
function B.subscribers(status_url)
  local body, code = http.request(status_url)
  if code ~= 200 or not body then return nil end
  return tonumber(body:match("\nsubscribers:%s*(%d+)") or body:match("^subscribers:%s*(%d+)"))
end

-- polls the Nchan status every `step` s (default 0.02) until pred(count) holds or
-- `secs` pass; returns ok, last count, seconds waited
function B.wait_subscribers(status_url, pred, secs, step)
  local t0 = socket.gettime()
  local n
  for _ = 1, math.ceil(secs / (step or 0.02)) + 1 do
    n = B.subscribers(status_url)
    if n and pred(n) then return true, n, socket.gettime() - t0 end
    socket.sleep(step or 0.02)
  end
  return false, n, socket.gettime() - t0
end

function B.publish(pub_url, body)
  local resp, code = http.request(pub_url, body)
  return code, resp
end

function B.pct(sorted, p)
  local n = #sorted
  local k = math.floor(p / 100 * n + 0.999999)
  if k < 1 then k = 1 elseif k > n then k = n end
  return sorted[k]
end

function B.summary(samples)       -- sorted copy and mean
  local s, sum = {}, 0
  for i, v in ipairs(samples) do s[i] = v; sum = sum + v end
  table.sort(s)
  return s, sum / #s
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
B.read_file = read_file

function B.proc_status(key)
  local s = read_file("/proc/self/status") or ""
  return tonumber(s:match("\n" .. key .. ":%s*(%d+)"))
end

-- utime + stime (clock ticks, all threads) from /proc/self/stat; fields after "(comm)"
function B.cpu_ticks()
  local s = read_file("/proc/self/stat") or ""
  local rest = s:match("%) (.*)$") or ""
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  -- rest starts at field 3 (state): utime is field 14, stime 15
  return tonumber(f[12]) + tonumber(f[13])
end

-- on-CPU nanoseconds of every thread of this process (/proc/self/task/*/schedstat)
function B.cpu_ns()
  local total = 0
  local dir = "/proc/" .. B.pid() .. "/task"
  local h = assert(uv.fs_scandir(dir))   -- no fork: that would bill our CPU time
  for _ = 1, 10000 do
    local name = uv.fs_scandir_next(h)
    if not name then break end
    local s = read_file(dir .. "/" .. name .. "/schedstat")
    total = total + (tonumber(s and s:match("^(%d+)")) or 0)
  end
  return total
end

function B.pid()
  return tonumber((read_file("/proc/self/stat") or ""):match("^(%d+)"))
end

local function fd_link(fd) return uv.fs_readlink("/proc/self/fd/" .. fd) end

-- the highest descriptor of the process, checked to be a socket (the socket of the last
-- connection made: the worker tears transfers down in cancel order), and its link text
function B.last_socket()
  local maxfd = -1
  local h = assert(uv.fs_scandir("/proc/self/fd"))
  for _ = 1, 1e6 do
    local name = uv.fs_scandir_next(h)
    if not name then break end
    local fd = tonumber(name)
    if fd and fd > maxfd then maxfd = fd end
  end
  local link = fd_link(maxfd) or ""
  for _ = 0, maxfd do                   -- the scan's own directory fd was the highest;
    if link:match("^socket:") then break end   -- HTTP/2: few sockets, further down
    maxfd = maxfd - 1
    link = fd_link(maxfd) or ""
  end
  if not link:match("^socket:") then B.die("highest fd %d is %s, not a socket", maxfd, link) end
  return maxfd, link
end

-- polls every ms (up to `secs`) until fd no longer is `link`; the seconds waited, or nil
function B.wait_closed(fd, link, secs)
  local t0 = socket.gettime()
  for _ = 1, math.ceil(secs * 1000) do
    if fd_link(fd) ~= link then return socket.gettime() - t0 end
    socket.sleep(0.001)
  end
end

function B.count_fds()
  local n = 0
  local h = assert(uv.fs_scandir("/proc/self/fd"))
  for _ = 1, 1e6 do
    if not uv.fs_scandir_next(h) then break end
    n = n + 1
  end
  return n - 1                          -- the scan's own
end

function B.write_samples(path, list)
  local f = assert(io.open(path, "w"))
  for _, v in ipairs(list) do f:write(("%.2f\n"):format(v)) end
  f:close()
end

return B
