-- A LÖVE game that long-polls a server for messages without ever blocking a
-- frame: love.update starts a poll and checks done(), and takes the results
-- only once it finished. Any key cancels the poll (and the next one resumes).
-- A love.thread (poller.lua) polls the same channel from a second Lua state.
--   love examples/love http://127.0.0.1:8080
--   curl -d hello http://127.0.0.1:8080/publish/love     (another player)
-- LUA_PATH and LUA_CPATH must find longpoll built for LuaJIT (see README).
--
-- Scripted run (the spec): LONGPOLL_LOVE_SCRIPT=n presses a key once n messages
-- reached the game and the thread and a poll is held, quits a second later
-- and prints the frame figures; LONGPOLL_LOVE_SCREENSHOT=path saves a
-- screenshot there half a second after the key press.
local longpoll = require "longpoll"

local clock = love.timer.getTime
local CHANNEL = "love"

local base
local poll, since, paused, retry_at = nil, "0", false, 0
local status = "starting"
local lines, counts = {}, { game = 0, thread = 0 }
local thread, thread_out

-- frame figures: seconds spent in longpoll calls, per frame
local spent, frame_start = 0, clock()
local stats = { frames = 0, total = 0, worst = 0, worst_frame = 0, over = 0, per_frame = {} }

local script = tonumber(os.getenv("LONGPOLL_LOVE_SCRIPT") or "")
local shot_path = os.getenv("LONGPOLL_LOVE_SCREENSHOT")
local started, pressed_at, shot_taken, skip_frame

local function add(who, text)
  lines[#lines + 1] = { who = who, text = text }
  if #lines > 12 then table.remove(lines, 1) end
  print(who .. ": " .. text)
end

function love.load(args)
  base = args[1] or os.getenv("LONGPOLL_DEMO_URL") or "http://127.0.0.1:8080"
  love.graphics.setFont(love.graphics.newFont(15))
  thread_out = love.thread.getChannel("longpoll-thread")
  thread = love.thread.newThread("poller.lua")
  thread:start(base, CHANNEL)
  started = clock()
  print(("polling %s/poll/%s (longpoll %s, %s)"):format(base, CHANNEL, longpoll.version, jit and jit.version or _VERSION))
end

function love.update(dt)
  frame_start = frame_start or clock()
  -- the longest frame, leaving out the first two and the one after the screenshot
  if stats.frames > 2 and not skip_frame and dt > stats.worst_frame then stats.worst_frame = dt end
  skip_frame = false
  -- the game's poll: start one when none runs, take its results once done
  local t0 = clock()
  local started_poll, finished, msgs, err = false, false, nil, nil
  if not poll and not paused and t0 >= retry_at then
    poll = longpoll.request{ url = base .. "/poll/" .. CHANNEL, query = { since = since }, timeout = 30 }:start()
    started_poll = true
  elseif poll and poll:done() then
    finished, msgs, err = true, poll:run() -- finished: returns at once
    poll = nil
  end
  spent = spent + (clock() - t0)

  if started_poll then
    status = ("polling %s for messages after %s"):format(CHANNEL, since)
  elseif finished and msgs then
    for _, m in ipairs(msgs) do
      since = m.id
      counts.game = counts.game + 1
      add("game", ("message %s: %s"):format(m.id, m.data))
    end
  elseif finished then
    status = "poll failed: " .. tostring(err) .. " (again in 1 s)"
    print(status)
    retry_at = clock() + 1
  end

  -- what the thread received
  for _ = 1, 100 do
    local m = thread_out:pop()
    if not m then break end
    if m.kind == "message" then
      counts.thread = counts.thread + 1
      add("thread", ("message %s: %s"):format(m.id, m.data))
    else
      add("thread", m.kind .. ": " .. tostring(m.text))
    end
  end

  if script then
    local now = clock()
    if not pressed_at and counts.game >= script and counts.thread >= script
        and poll and poll:status() == "running" then
      pressed_at = now
      love.event.push("keypressed", "space", "space", false)
    elseif pressed_at and shot_path and not shot_taken and now - pressed_at > 0.5 then
      shot_taken = true
      love.graphics.captureScreenshot(function(image)
        local f = assert(io.open(shot_path, "wb"))
        f:write(image:encode("png"):getString())
        f:close()
        skip_frame = true -- encoding the PNG made this frame long
        print("screenshot: " .. shot_path)
      end)
    elseif pressed_at and now - pressed_at > 1 then
      love.event.quit(0)
    elseif now - started > 30 then
      print("script: gave up after 30 s")
      love.event.quit(1)
    end
  end
end

function love.keypressed(key)
  if poll then
    local t0 = clock()
    local ended = poll:cancel()
    local _, err = poll:run() -- canceled: returns at once
    local took = clock() - t0
    spent = spent + took
    if ended then
      poll, paused = nil, true
      status = ("key '%s': poll %s in %.0f us; press a key to poll again"):format(key, err.kind, took * 1e6)
      print(("key %s: cancel() -> true, run() -> nil, %s after %.1f us"):format(key, err.kind, took * 1e6))
    end -- else it had just finished: love.update takes its results
  elseif paused then
    paused = false
    print("key " .. key .. ": polling again")
  end
end

function love.draw()
  local g = love.graphics
  g.clear(0.09, 0.1, 0.13)
  g.setColor(paused and { 1, 0.55, 0.35 } or { 0.55, 0.9, 0.6 })
  g.print(status, 16, 14)
  g.setColor(0.75, 0.78, 0.85)
  g.print(("game: %d messages    thread: %d messages"):format(counts.game, counts.thread), 16, 40)
  for i, l in ipairs(lines) do
    g.setColor(l.who == "game" and { 0.95, 0.95, 0.95 } or { 0.6, 0.75, 1 })
    g.print(("%-6s %s"):format(l.who, l.text), 16, 56 + i * 20)
  end
  g.setColor(0.6, 0.6, 0.65)
  g.print(("frame %d  ·  longpoll this frame: %.0f us, worst so far %.0f us"):format(
    stats.frames + 1, spent * 1e6, stats.worst * 1e6), 16, 330)

  -- the frame is over: account for it, then pace the loop to 60 fps
  local now = clock()
  stats.frames = stats.frames + 1
  stats.total = stats.total + spent
  stats.per_frame[stats.frames] = spent
  if spent > stats.worst then stats.worst = spent end
  if spent > 0.0005 then stats.over = stats.over + 1 end
  spent = 0
  local rest = 1 / 60 - (now - frame_start)
  if rest > 0 then love.timer.sleep(rest) end
  frame_start = nil
end

function love.threaderror(_, err)
  print("thread error: " .. tostring(err))
  love.event.quit(1)
end

function love.quit()
  love.thread.getChannel("longpoll-control"):push("stop")
  thread:wait() -- the thread sees "stop" within 0.1 s
  local m = thread_out:pop()
  while m do
    if m.kind == "stopped" then print("thread: poll " .. m.text .. " at quit") end
    m = thread_out:pop()
  end
  if poll then poll:cancel() end
  local sorted = stats.per_frame
  table.sort(sorted)
  local p99 = sorted[math.max(1, math.ceil(#sorted * 0.99))] or 0
  print(("frames %d; longpoll per frame: worst %.1f us, p99 %.1f us, mean %.1f us, %d frames over 0.5 ms; "
    .. "longest frame %.1f ms"):format(stats.frames, stats.worst * 1e6, p99 * 1e6,
      stats.total / math.max(1, stats.frames) * 1e6, stats.over, stats.worst_frame * 1e3))
  print(("messages: game %d, thread %d"):format(counts.game, counts.thread))
end
