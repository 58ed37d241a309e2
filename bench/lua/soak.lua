-- The soak's client (run by bench/lua/soak_run.lua under the Lua under test):
-- one subscription per channel ("since" cursor) against bench/lua/soak_server.lua
-- while it restarts, drops connections and stalls; every message checked as
-- it arrives (its number is the next one of its channel: in order, none
-- twice, none skipped), RSS sampled. After `seconds`, once the server is calm,
-- it reads on until it has every message the server published, then prints:
--
--   soak: ok <s> s, <n> messages on <k> channels (published <n>), in order,
--   none twice, none lost; rss KB first <w> s max <a> mean <b>, last <w> s
--   max <c> mean <d> (<+x.x> %); fds <e> -> <f>; threads <g> -> <h>; polls ...
--
--   <lua> bench/lua/soak.lua <base url> <seconds> <channels,...>
local longpoll = require "longpoll"
local base, seconds, channel_list = arg[1], tonumber(arg[2]), arg[3]
assert(base and seconds and channel_list, "usage: soak.lua <base> <seconds> <channels>")

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
local pid = tonumber(read("/proc/self/stat"):match("^(%d+)"))
local function status(key) return tonumber(read("/proc/self/status"):match(key .. ":%s*(%d+)")) end
local function fds()
  local p = assert(io.popen("ls /proc/" .. pid .. "/fd | wc -l"))
  local n = tonumber(p:read("*a"))
  p:close()
  return n
end

local subs, next_id, received, failures = {}, {}, 0, 0
local channels = {}
for ch in channel_list:gmatch("[^,]+") do
  channels[#channels + 1] = ch
  next_id[ch] = 1
  subs[ch] = longpoll.subscribe{
    url = base .. "/poll/" .. ch, cursor = "since",
    hold = 3,                    -- a stalled poll is no news after 3 s
    connect_timeout = 2,
    backoff = { floor = 0.05, ceiling = 1 },
    on_error = function() failures = failures + 1 end,
  }
end

local function take(ch, msgs)
  for _, m in ipairs(msgs) do
    local want = next_id[ch]
    if type(m) ~= "table" or m.id ~= want or m.data ~= ch .. ":" .. want then
      error(("soak: %s: expected message %d, got %s (%s)"):format(ch, want,
        tostring(type(m) == "table" and m.id or m), tostring(type(m) == "table" and m.data)), 0)
    end
    next_id[ch] = want + 1
    received = received + 1
  end
end

local function counts()
  local v = longpoll.request{ url = base .. "/_counts", timeout = 2 }:run()
  return v
end

local t0 = longpoll.now()
local every = seconds >= 600 and 10 or math.max(1, seconds / 60)
local samples, next_sample = {}, t0
local fds0, threads0
local done_at = t0 + seconds
local give_up = done_at + 120 + seconds / 10
local final, last_check = nil, 0
while true do
  local now = longpoll.now()
  for _, ch in ipairs(channels) do
    local msgs, err = subs[ch]:poll()
    if msgs == nil then error("soak: the subscription of " .. ch .. " stopped: " .. tostring(err), 0) end
    take(ch, msgs)
  end
  if now >= next_sample then
    samples[#samples + 1] = { t = now - t0, rss = status("VmRSS") }
    next_sample = next_sample + every
    if not fds0 and now - t0 >= every then fds0, threads0 = fds(), status("Threads") end
  end
  if now >= done_at and now - last_check >= 0.5 then
    last_check = now
    local c = counts()
    if c and c.calm then
      local all = true
      for _, ch in ipairs(channels) do
        if next_id[ch] - 1 ~= c.counts[ch] then all = false end
      end
      if all then final = c break end
    end
  end
  if now > give_up then
    local c = counts()
    local have = {}
    for _, ch in ipairs(channels) do
      have[#have + 1] = ("%s %d/%s"):format(ch, next_id[ch] - 1, c and tostring(c.counts[ch]) or "?")
    end
    error("soak: gave up waiting for the last messages: " .. table.concat(have, ", "), 0)
  end
  longpoll.sleep(0.01)
end

local published = 0
for _, ch in ipairs(channels) do published = published + final.counts[ch] end
for _, ch in ipairs(channels) do subs[ch]:cancel() end
subs = nil
collectgarbage("collect")
collectgarbage("collect")
longpoll.sleep(0.5)

-- RSS: the first and the last window (ten minutes, or a sixth of a short run)
local total = samples[#samples].t
local w = math.min(600, seconds / 6)
local function window(from, to)
  local max, sum, n = 0, 0, 0
  for _, s in ipairs(samples) do
    if s.t >= from and s.t <= to then
      max = math.max(max, s.rss)
      sum = sum + s.rss
      n = n + 1
    end
  end
  return max, n > 0 and math.floor(sum / n) or 0
end
local fmax, fmean = window(0, w)
local lmax, lmean = window(total - w, total)
print(("soak: ok %d s, %d messages on %d channels (published %d), in order, none twice, none lost; rss KB first %d s max %d mean %d, last %d s max %d mean %d (%+.1f %%); fds %d -> %d; threads %d -> %d; failed polls %d")
  :format(math.floor(total), received, #channels, published, math.floor(w), fmax, fmean,
    math.floor(w), lmax, lmean, (lmax - fmax) * 100 / fmax, fds0 or -1, fds(), threads0 or -1,
    status("Threads"), failures))
