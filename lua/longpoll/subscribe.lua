--[[ longpoll.subscribe — a long-poll loop with a resume cursor, backoff and three ways to consume.

  local sub = longpoll.subscribe{
    url = "http://127.0.0.1:8080/sub/chat",  -- and every other option of longpoll.request:
                                             -- method, headers, query, body, timeout, ...
    cursor = "etag",                         -- how the next poll asks for what comes next
    messages = nil,                          -- where the messages are in the decoded body
    resume = saved,                          -- a value from sub:cursor(): go on from there
    on_message = function(msg, sub) end,     -- optional
    on_error = function(err, info) end,      -- optional: decide what a failure does
    backoff = { floor = 0.5, ceiling = 30, idle = 0.1 },
  }

  for msg in sub:messages() do ... end       -- blocking iterator
  local msgs = sub:poll()                    -- game loop: never blocks
  local msg = sub:next()                     -- in a coroutine: yields like req:await()
  sub:cancel()                               -- or `local sub <close> = ...`, or drop it (GC)

Nothing is sent until sub:start(), poll(), next(), run() or the first step of a messages()
loop. At most one poll is on the wire at a time; the next one starts as soon as the previous
answer is read (while fewer than `buffer` messages wait), so a poll is usually waiting at the
server while you handle messages. Bad options raise at once, naming the option; the request
options are checked by building the first request. A subscription belongs to the Lua state
(and OS thread) that made it, like a request.

CURSOR STRATEGIES (`cursor`, required)
  "etag"    Nchan and HTTP caching. Each 200 answer is one message (the decoded body); its
            Etag and Last-Modified are sent back as If-None-Match and If-Modified-Since.
            The cursor is { etag = "1", last_modified = "Wed, 25 Nov 2026 18:01:28 GMT" }.
            A 410 is retried: Nchan answers it to the polls it holds when nginx stops or
            restarts (and when the channel is deleted; it is created again by a publish).
  "offset"  Telegram getUpdates. Query field `cursor_field` (default "offset") is set to the
            last message's `id_field` (default "update_id") + 1. The cursor is that number.
            Messages whose id is below the offset sent are dropped (never delivered twice).
  "since"   The last message's `id_field` (default "id") is sent back as `cursor_field`
            (default "since"), in the query or, with cursor_in = "body", as a field of the
            JSON body. The cursor is that id as received (string or number). When ids are
            numeric, messages not above the id sent are dropped.
  "index"   Consul blocking queries. Response header `cursor_header` (default
            "X-Consul-Index") is sent back as query field `cursor_field` (default "index"),
            with `wait` (e.g. "5s"; a number means seconds) as query field "wait"; when
            `timeout` is not given it becomes wait * 17/16 + 5 s (Consul adds up to
            wait/16 of jitter). An answer whose index did not change is "no news", whatever
            its body. The cursor is the index string.
  function  cursor(previous_opts, response, messages) -> next_opts, called after every
            answer (messages may be empty). previous_opts is a copy of the request options
            of that poll; return the options of the next poll (nil: the same again). The
            cursor is that options table (plain values), and `resume` takes it back.
  sub:cursor() moves as messages are handed to you (returned, yielded or passed to
  on_message), not as they arrive: a cursor saved after handling message k resumes with
  k + 1 even if more were already buffered. With "index" and function cursors the resume
  point can only move per answer: it moves when the last message of an answer is handed out.

WHERE THE MESSAGES ARE (`messages`)
  nil (default): "etag": the body is one message (a JSON body decoded, else the string);
  others: the decoded body must be an array of messages (an empty table is an empty array).
  A string: a field of the decoded object ("result" for {ok = true, result = [...]}),
  dotted for nested fields ("data.items"). A function(value, response) -> array of
  messages, or nil, reason (a decode error).

NO NEWS IS NOT A FAILURE
  204, 304, 408 and an empty list are the server's hold timeout: the next poll starts at
  once, with no backoff. backoff.idle (default 0.1 s) is the least time between the starts of
  two polls when the first brought no news, so a server that answers at once instead of
  holding is not hammered.

FAILURES AND BACKOFF
  Retried: kinds "timeout", "connect", "resolve", "network", and "http" with status 429 or
  5xx. The wait before retry n (n = 1, 2, ... consecutive failures) is drawn uniformly from
  [floor, min(ceiling, floor * 2^n)] (full jitter above the floor); a success or a hold
  timeout resets n. A 429 or 503 with Retry-After (seconds or an HTTP date) waits that long.
  Not retried (the subscription stops): "http" 4xx other than 408/429 (and 410 with "etag"),
  "decode" (including a body without the messages or a message without its id), "tls",
  "too_large", "canceled". Messages already buffered are still handed out; then poll()/next()
  return nil, err, messages() ends and sub:error() returns err (the request's error object:
  err.kind, err.message, err.status, err.response; err.retry_after when one was given).
  on_error(err, info) is called for every failure, retried or not, with info = { retry =
  <the default decision>, delay = <seconds before the retry>, failures = <consecutive
  count>, subscription = sub }. Return true to retry after info.delay, a number to retry
  after that many seconds, false to stop, nil for the default. An error raised by on_error
  stops the subscription (kind "callback") and propagates.

CONSUMING (all cancelable at once by sub:cancel(), `<close>` or GC)
  sub:messages()  iterator for a generic for: blocks the thread until the next message; the
                  loop ends when the subscription stops (see sub:error()). Breaking out leaves
                  the subscription running: call messages() again to go on. Backoff waits
                  sleep (opts.sleep).
  sub:poll()      never blocks: collects a finished poll, starts the next when due, returns
                  the array of messages that arrived since the last call (often empty); nil,
                  err once the subscription stopped and nothing is left.
  sub:next()      inside a coroutine: returns the next message; while a poll is on the wire
                  it yields the request (as req:await() does: watch req:fd() or resume any
                  time); while a backoff runs it yields the number of seconds left. Raises
                  outside a coroutine. Returns nil, err once stopped.
  sub:run()       blocks, handing every message to on_message, until stopped: nil, err.
  on_message(msg, sub) sees every message exactly once, at the moment it is handed out by
  any of these. If it raises, the error propagates and the message stays first in line (it
  is handed out again by the next call; the cursor did not move past it).

WITH NCHAN (nginx + nchan_subscriber longpoll; spec/subscribe_nchan_spec.lua has the details)
  cursor = "etag", and a `timeout` above nchan_subscriber_timeout. A poll held that long is
  answered 408 (no news). Give the channel an nchan_message_buffer_length that covers the
  messages a subscriber may fall behind by: the default keeps only the newest 10. Nchan's
  memory store is lost when nginx restarts (even on reload): what was not yet received is
  gone, and its message ids ("<time>:<tag>", tags counted per second from 0) start again, so
  a message published after a restart within the same second as the last one received can
  be taken as seen. Nchan's Redis storage keeps messages and ids across restarts.

OTHER METHODS AND OPTIONS
  sub:start() -> sub        starts the first poll (no-op once started).
  sub:cancel() -> boolean   true when this call ended a running subscription; the poll on
                            the wire is canceled, buffered messages are dropped (the cursor
                            did not move past them). Callable from on_message.
  sub:cursor() -> value     the resume point: nil, a string, a number or a table of plain
                            values; pass it as `resume` after a restart.
  sub:status() -> string    "ready", "running", "retrying" (waiting out a backoff),
                            "failed", "canceled".
  sub:error() -> err|nil    why it stopped.
  sub:pending() -> n        messages buffered, not yet handed out.
  buffer (default 1000)     no new poll starts while this many messages wait to be handed out.
  clock, sleep              functions (seconds): default LuaSocket's gettime/sleep, else luv's
                            (hrtime/sleep), else os.time and the sleep command.
  Unknown options and options of a strategy not chosen raise an error naming them.
]]

local M = {}

local REQUEST_KEYS = {
  url = true, method = true, headers = true, query = true, body = true, timeout = true,
  connect_timeout = true, max_body = true, decode = true, follow_redirects = true,
  verify = true, cainfo = true, user_agent = true, http_version = true,
}

-- subscribe-only options; the strategy options list which strategies accept them
local SUB_KEYS = {
  cursor = true, messages = true, resume = true, on_message = true, on_error = true,
  backoff = true, buffer = true, clock = true, sleep = true,
  cursor_field = { offset = true, since = true, index = true },
  id_field = { offset = true, since = true },
  cursor_in = { since = true },
  cursor_header = { index = true },
  wait = { index = true },
}

local RETRY_KINDS = { timeout = true, connect = true, resolve = true, network = true }


local function lib()
  return package.loaded.longpoll or require "longpoll"
end

local function argerror(name, what)
  error(("longpoll.subscribe: option '%s' %s"):format(name, what), 3)
end

-- An error object like the core's (kind, message, __tostring, __concat).
local function new_error(kind, message, fields)
  local core = package.loaded["longpoll.core"]
  local mt = core and core.error_metatable or {
    __tostring = function(e) return e.message end,
    __concat = function(a, b) return tostring(a) .. tostring(b) end,
  }
  local e = { kind = kind, message = kind .. ": " .. message }
  for k, v in pairs(fields or {}) do e[k] = v end
  return setmetatable(e, mt)
end

-- A deep copy of a table of plain values (cursors and request options).
local function copy(v, depth)
  if type(v) ~= "table" then return v end
  depth = (depth or 0) + 1
  if depth > 32 then error("longpoll.subscribe: table too deep to copy", 2) end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x, depth) end
  return t
end

-- True for a table whose keys are exactly 1..#t (an empty table counts).
local function is_array(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

-- A number as a query value: integers without ".0".
local function numstr(x)
  if type(x) == "number" then return tostring(math.tointeger(x) or x) end
  return tostring(x)
end

-- Seconds in a Consul-style duration ("5s", "1m", "250ms", "1h") or a number.
local function duration(v)
  if type(v) == "number" then return v end
  local n, unit = tostring(v):match("^(%d+%.?%d*)(%a*)$")
  local mult = ({ [""] = 1, ms = 0.001, s = 1, m = 60, h = 3600 })[unit or ""]
  return n and mult and tonumber(n) * mult or nil
end

-- Days since 1970-01-01 of a civil date (proleptic Gregorian).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
  Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- Seconds to wait from a Retry-After value (delta-seconds or an IMF-fixdate), or nil.
local function retry_after(v)
  if type(v) ~= "string" then return nil end
  local n = tonumber(v:match("^%s*(%d+%.?%d*)%s*$"))
  if n then return n end
  local d, mon, y, hh, mm, ss = v:match("(%d+) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d)")
  if not d or not MONTHS[mon] then return nil end
  local t = days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400
    + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
  return math.max(0, t - os.time())
end

-- The default clock and sleep: LuaSocket, else luv, else os.time and the sleep command.
local function default_timers()
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.gettime and socket.sleep then
    return socket.gettime, socket.sleep
  end
  local okuv, uv = pcall(require, "luv")
  if okuv and type(uv) == "table" and uv.hrtime and uv.sleep then
    return function() return uv.hrtime() / 1e9 end,
      function(s) uv.sleep(math.max(0, math.ceil(s * 1000))) end
  end
  return os.time, function(s)
    if s > 0 then os.execute(("sleep %.3f"):format(s)) end
  end
end

---------------------------------------------------------------------------------------------
-- cursor strategies: check(cfg, opts) validates their options and resume value;
-- apply(cfg, o, c) puts cursor c into request options o;
-- advance(cfg, c, list, resp) -> items, next cursor (or nil, reason for a decode error),
-- where items[i] = { msg, cursor after it (nil: does not move) }.
---------------------------------------------------------------------------------------------
local strategies = {}

strategies.etag = {
  -- Nchan answers the polls it holds with 410 when it shuts down (or the channel is deleted)
  retry_status = { [410] = true },
  check = function(_, opts)
    local r = opts.resume
    if r ~= nil and (type(r) ~= "table"
        or (r.etag ~= nil and type(r.etag) ~= "string")
        or (r.last_modified ~= nil and type(r.last_modified) ~= "string")) then
      argerror("resume", "must be a cursor of \"etag\": { etag = ..., last_modified = ... }")
    end
    return copy(r)
  end,
  apply = function(_, o, c)
    if not c then return end
    o.headers = o.headers or {}
    if c.etag then o.headers["If-None-Match"] = c.etag end
    if c.last_modified then o.headers["If-Modified-Since"] = c.last_modified end
  end,
  advance = function(_, c, list, resp)
    local h = resp.headers
    local nc = { etag = h.etag or (c and c.etag), last_modified = h["last-modified"]
      or (c and c.last_modified) }
    local items = {}
    for i, m in ipairs(list) do items[i] = { m, i == #list and nc or nil } end
    return items, nc
  end,
  messages = function(value, resp)
    if resp.body == "" then return { "" } end
    return { value }
  end,
}

-- The numeric id of message m (offset and since), or nil, reason.
local function message_id(cfg, m, i)
  local id = type(m) == "table" and m[cfg.id_field] or nil
  if id == nil then
    return nil, ("message %d has no '%s'"):format(i, cfg.id_field)
  end
  return id
end

strategies.offset = {
  defaults = { cursor_field = "offset", id_field = "update_id" },
  check = function(_, opts)
    local r = opts.resume
    if r ~= nil and not math.tointeger(tonumber(r)) then
      argerror("resume", "must be an integer offset for cursor \"offset\"")
    end
    return r ~= nil and math.tointeger(tonumber(r)) or nil
  end,
  apply = function(cfg, o, c)
    if c == nil then return end
    o.query = o.query or {}
    o.query[cfg.cursor_field] = numstr(c)
  end,
  advance = function(cfg, c, list)
    local items = {}
    for i, m in ipairs(list) do
      local id, why = message_id(cfg, m, i)
      if id == nil then return nil, why end
      local n = math.tointeger(tonumber(id))
      if not n then return nil, ("message %d: '%s' is not an integer"):format(i, cfg.id_field) end
      if c == nil or n >= c then
        c = n + 1
        items[#items + 1] = { m, c }
      end
    end
    return items, c
  end,
}

strategies.since = {
  defaults = { cursor_field = "since", id_field = "id", cursor_in = "query" },
  check = function(cfg, opts)
    local r = opts.resume
    if r ~= nil and type(r) ~= "string" and type(r) ~= "number" then
      argerror("resume", "must be a string or number id for cursor \"since\"")
    end
    if cfg.cursor_in ~= "query" and cfg.cursor_in ~= "body" then
      argerror("cursor_in", "must be \"query\" or \"body\"")
    end
    if cfg.cursor_in == "body" and opts.body ~= nil and type(opts.body) ~= "table" then
      argerror("body", "must be a table (or nil) with cursor_in = \"body\"")
    end
    return r
  end,
  apply = function(cfg, o, c)
    if cfg.cursor_in == "body" then
      o.body = o.body or {}
      if c ~= nil then o.body[cfg.cursor_field] = c end
    elseif c ~= nil then
      o.query = o.query or {}
      o.query[cfg.cursor_field] = numstr(c)
    end
  end,
  advance = function(cfg, c, list)
    local items = {}
    for i, m in ipairs(list) do
      local id, why = message_id(cfg, m, i)
      if id == nil then return nil, why end
      local n, last = tonumber(id), tonumber(c)
      if not (n and last and n <= last) then
        c = id
        items[#items + 1] = { m, c }
      end
    end
    return items, c
  end,
}

strategies.index = {
  defaults = { cursor_field = "index", cursor_header = "X-Consul-Index" },
  check = function(cfg, opts)
    local r = opts.resume
    if r ~= nil and not tonumber(r) then
      argerror("resume", "must be an index (number or numeric string) for cursor \"index\"")
    end
    if type(cfg.cursor_header) ~= "string" then argerror("cursor_header", "must be a string") end
    cfg.header_key = cfg.cursor_header:lower()
    if cfg.wait ~= nil then
      local s = duration(cfg.wait)
      if not s or s <= 0 then argerror("wait", "must be seconds or a duration like \"5s\"") end
      cfg.wait_query = type(cfg.wait) == "number" and numstr(cfg.wait) .. "s" or cfg.wait
      cfg.wait_seconds = s
    end
    return r ~= nil and numstr(r) or nil
  end,
  apply = function(cfg, o, c)
    o.query = o.query or {}
    if c ~= nil then o.query[cfg.cursor_field] = numstr(c) end
    if cfg.wait_query then o.query.wait = cfg.wait_query end
  end,
  advance = function(cfg, c, list, resp)
    local nc = resp.headers[cfg.header_key]
    if nc == nil or not tonumber(nc) then
      return nil, ("no numeric %s header in the answer"):format(cfg.cursor_header)
    end
    if c ~= nil and tonumber(nc) == tonumber(c) then return {}, c end
    local items = {}
    for i, m in ipairs(list) do items[i] = { m, i == #list and nc or nil } end
    return items, nc
  end,
}

-- A user function: the cursor is the request options table of the next poll.
local function function_strategy(fn)
  return {
    check = function(_, opts)
      if opts.resume ~= nil and type(opts.resume) ~= "table" then
        argerror("resume", "must be a table of request options for a cursor function")
      end
      return opts.resume ~= nil and copy(opts.resume) or nil
    end,
    apply = function(_, o, c)
      if c == nil then return end
      for k, v in pairs(c) do o[k] = copy(v) end
    end,
    on_hold = true,
    advance = function(_, c, list, resp, used)
      local nc = fn(copy(used), resp, list)
      if nc == nil then nc = c or copy(used) end
      if type(nc) ~= "table" then
        error("longpoll.subscribe: the cursor function must return a table of request options", 0)
      end
      nc = copy(nc)
      local items = {}
      for i, m in ipairs(list) do items[i] = { m, i == #list and nc or nil } end
      return items, nc
    end,
  }
end

-- The message list of a decoded body, by the `messages` option; or nil, reason.
local function extract(cfg, value, resp)
  local m = cfg.messages
  if type(m) == "function" then
    local list, why = m(value, resp)
    if list == nil then return nil, why or "the messages function returned nil" end
    if type(list) ~= "table" then return nil, "the messages function did not return a table" end
    return list
  end
  if m == nil and cfg.strategy.messages then return cfg.strategy.messages(value, resp) end
  if type(m) == "string" then
    for key in m:gmatch("[^.]+") do
      if type(value) ~= "table" then
        return nil, ("no field '%s' in the answer"):format(m)
      end
      value = value[key]
    end
    if value == nil then return nil, ("no field '%s' in the answer"):format(m) end
  end
  if not is_array(value) then
    return nil, m and ("'%s' is not an array of messages"):format(m)
      or "the answer is not an array of messages (see the `messages` option)"
  end
  return value
end

---------------------------------------------------------------------------------------------
-- the subscription
---------------------------------------------------------------------------------------------
local Sub = {}
local meta = { __index = Sub, __name = "longpoll.subscription" }

local function failed(self) return self._state == "failed" or self._state == "canceled" end

-- The request options of the next poll: the user's options with the fetch cursor in them.
function Sub:_options()
  local o = {}
  for k, v in pairs(self._base) do o[k] = copy(v) end
  self._cfg.strategy.apply(self._cfg, o, self._fetch)
  return o
end

-- Start the next poll.
function Sub:_launch()
  local o = self._next_req_opts or self:_options()
  self._next_req_opts = nil
  self._used = o
  local req = self._prebuilt or lib().request(o)
  self._prebuilt = nil
  self._req = req
  self._started_at = self._clock()
  self._state = "running"
  req:start()
end

-- Stop for good with err; returns nothing.
function Sub:_stop(err, state)
  self._state = state or "failed"
  self._err = err
  if self._req then self._req:cancel() end
  self._req = nil
end

-- A failure: ask on_error, then schedule the retry or stop.
function Sub:_failure(err)
  local retry = false
  local delay = 0
  local status = type(err) == "table" and err.status
  if RETRY_KINDS[err.kind] then
    retry = true
  elseif err.kind == "http" and status and (status == 429 or (status >= 500 and status <= 599)
      or (self._cfg.strategy.retry_status or {})[status]) then
    retry = true
  end
  self._failures = self._failures + 1
  local b = self._cfg.backoff
  local cap = math.min(b.ceiling, b.floor * 2 ^ self._failures)
  delay = b.floor + math.random() * math.max(0, cap - b.floor)
  local ra = (status == 429 or status == 503) and err.response
    and retry_after(err.response.headers and err.response.headers["retry-after"])
  if ra then
    delay = ra
    if type(err) == "table" then rawset(err, "retry_after", ra) end
  end
  if self._cfg.on_error then
    local info = { retry = retry, delay = delay, failures = self._failures, subscription = self }
    local ok, d = pcall(self._cfg.on_error, err, info)
    if not ok then
      self:_stop(new_error("callback", "on_error raised: " .. tostring(d), { cause = err }))
      error(d, 0)
    end
    if d == true then retry, delay = true, info.delay
    elseif d == false then retry = false
    elseif type(d) == "number" then retry, delay = true, math.max(0, d)
    end
  end
  if self._state == "canceled" then return end     -- on_error canceled it
  if retry then
    self._not_before = self._clock() + delay
    self._state = "retrying"
  else
    self:_stop(err)
  end
end

-- Handle the results of the finished poll.
function Sub:_collect(value, resp)
  local cfg = self._cfg
  if value == nil then
    local err = resp
    if err.kind == "canceled" then return self:_stop(err, "canceled") end
    if not (err.kind == "http" and err.status == 408 and err.response) then
      return self:_failure(err)
    end
    resp = err.response
  end
  local list, why, items, nc
  if resp.status == 204 or resp.status == 304 or resp.status == 408 then
    -- the server's hold timeout: only a cursor function hears of it
    if not cfg.strategy.on_hold then return self:_news(0, self._started_at) end
    list = {}
  else
    list, why = extract(cfg, value, resp)
  end
  if list then items, nc = cfg.strategy.advance(cfg, self._fetch, list, resp, self._used) end
  if not items then
    why = why or nc
    return self:_failure(new_error("decode", ("%s (%s %s)"):format(why, self._used.method
      or (self._used.body ~= nil and "POST" or "GET"), resp.url or self._used.url),
      { status = resp.status, response = resp }))
  end
  if #items == 0 then
    -- no news: the resume point may still move (an index that went backwards, a function)
    if self._head > #self._queue then self._cursor = copy(nc) end
  end
  self._fetch = nc
  for _, it in ipairs(items) do self._queue[#self._queue + 1] = it end
  return self:_news(#items, self._started_at)
end

-- A poll that answered (with or without messages): reset the backoff, pace idle polls.
function Sub:_news(n, started)
  self._failures = 0
  self._state = "running"
  if n == 0 then
    self._not_before = started + self._cfg.backoff.idle
  else
    self._not_before = -math.huge
  end
end

-- Advance without blocking: collect a finished poll, start the next one when due.
function Sub:_step()
  local req = self._req
  if req then
    if not req:done() then return end
    self._req = nil
    self:_collect(req:run())
  end
  if failed(self) or self._state == "ready" then return end
  if (#self._queue - self._head + 1) < self._cfg.buffer and self._clock() >= self._not_before then
    self:_launch()
  end
end

-- Hand out the first buffered message (through on_message); nil when none.
function Sub:_deliver()
  local q, h = self._queue, self._head
  local e = q[h]
  if e == nil then return nil end
  local on_message = self._cfg.on_message
  if on_message then on_message(e[1], self) end
  if self._queue == q and q[h] == e then
    q[h] = nil
    self._head = h + 1
    if self._head > #q then self._queue, self._head = {}, 1 end
  end
  if e[2] ~= nil then self._cursor = e[2] end
  return e[1], true
end

-- Seconds until the pending backoff or idle pause ends (0 when due).
function Sub:_delay_left()
  return math.max(0, self._not_before - self._clock())
end

function Sub:start()
  if self._state == "ready" then
    self._state = "running"
    self:_launch()
  end
  return self
end

function Sub:poll()
  self:start()
  if not failed(self) then self:_step() end
  local out = {}
  while self._head <= #self._queue do
    local msg, got = self:_deliver()
    if not got then break end
    out[#out + 1] = msg
    if self._state == "canceled" then break end
  end
  if #out == 0 and failed(self) then return nil, self._err end
  if not failed(self) then self:_step() end   -- keep a poll waiting at the server
  return out
end

-- the next message, or nil, err once the subscription stopped; a poll on the
-- wire is waited for with wait_req(req), a backoff with wait_delay(seconds)
function Sub:_next(wait_req, wait_delay)
  for _ = 1, math.huge do
    if self._head <= #self._queue then
      local msg = self:_deliver()
      if not failed(self) then self:_step() end
      return msg
    end
    if failed(self) then return nil, self._err end
    self:_step()
    if self._head > #self._queue and not failed(self) then
      if self._req then
        wait_req(self._req)
      else
        local left = self:_delay_left()
        if left > 0 then wait_delay(left) end
      end
    end
  end
end

local function await_req(req) req:await() end
local function run_req(req) req:run() end

function Sub:next()
  if not coroutine.isyieldable() then
    error("longpoll.subscribe: next() is not inside a coroutine (use messages() or poll())", 2)
  end
  self:start()
  return self:_next(await_req, coroutine.yield)
end

function Sub:messages()
  return function()
    self:start()
    return (self:_next(run_req, self._sleep)) -- one value: the for loop ends at nil
  end
end

function Sub:run()
  for _ in self:messages() do end
  return nil, self._err
end

function Sub:cancel()
  if failed(self) then return false end
  local url = self._base.url
  self:_stop(new_error("canceled", "subscription canceled (" .. tostring(url) .. ")"), "canceled")
  self._queue, self._head = {}, 1
  return true
end

function Sub:cursor() return copy(self._cursor) end
function Sub:status() return self._state end
function Sub:error() return self._err end
function Sub:pending() return #self._queue - self._head + 1 end

meta.__close = function(self) self:cancel() end
-- the request may have been finalized first (same cycle, or lua_close): it cancels itself then
meta.__gc = function(self) pcall(Sub.cancel, self) end
meta.__tostring = function(self)
  return ("longpoll.subscription: %s (%s)"):format(tostring(self._base.url), self._state)
end

-- longpoll.subscribe(opts) -> subscription
function M.subscribe(opts)
  if type(opts) ~= "table" then
    error("longpoll.subscribe: expects a table of options", 2)
  end
  local cursor = opts.cursor
  local sname = type(cursor) == "string" and cursor or (type(cursor) == "function" and "function")
  local strategy = type(cursor) == "function" and function_strategy(cursor) or strategies[sname]
  if not strategy then
    argerror("cursor", "must be \"etag\", \"offset\", \"since\", \"index\" or a function")
  end
  local base = {}
  for k, v in pairs(opts) do
    local sk = SUB_KEYS[k]
    if REQUEST_KEYS[k] then
      base[k] = copy(v)
    elseif sk == nil then
      argerror(tostring(k), "is unknown")
    elseif type(sk) == "table" and not sk[sname] then
      argerror(k, ("is not used by cursor \"%s\""):format(sname))
    end
  end
  local cfg = { strategy = strategy, messages = opts.messages, on_message = opts.on_message,
    on_error = opts.on_error }
  for k, v in pairs(strategy.defaults or {}) do cfg[k] = v end
  for _, k in ipairs{ "cursor_field", "id_field", "cursor_in", "cursor_header", "wait" } do
    if opts[k] ~= nil then cfg[k] = opts[k] end
  end
  for _, k in ipairs{ "cursor_field", "id_field" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then argerror(k, "must be a string") end
  end
  if cfg.messages ~= nil and type(cfg.messages) ~= "string" and type(cfg.messages) ~= "function" then
    argerror("messages", "must be a field name or a function")
  end
  for _, k in ipairs{ "on_message", "on_error", "clock", "sleep" } do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then argerror(k, "must be a function") end
  end
  local b = { floor = 0.5, ceiling = 30, idle = 0.1 }
  if opts.backoff ~= nil then
    if type(opts.backoff) ~= "table" then argerror("backoff", "must be a table") end
    for k, v in pairs(opts.backoff) do
      if b[k] == nil then argerror("backoff." .. tostring(k), "is unknown") end
      if type(v) ~= "number" or v < 0 or v ~= v then
        argerror("backoff." .. k, "must be a number of seconds >= 0")
      end
      b[k] = v
    end
    if b.ceiling < b.floor then argerror("backoff.ceiling", "must be >= backoff.floor") end
  end
  cfg.backoff = b
  cfg.buffer = opts.buffer or 1000
  if not math.tointeger(cfg.buffer) or cfg.buffer < 1 then
    argerror("buffer", "must be an integer >= 1")
  end
  local resume = strategy.check(cfg, opts)
  if cfg.wait_seconds and base.timeout == nil then
    base.timeout = cfg.wait_seconds * 17 / 16 + 5
  end
  local clock, sleep = opts.clock, opts.sleep
  if not clock or not sleep then
    local c, s = default_timers()
    clock, sleep = clock or c, sleep or s
  end
  local self = setmetatable({
    _cfg = cfg, _base = base, _fetch = resume, _cursor = copy(resume),
    _queue = {}, _head = 1, _state = "ready", _failures = 0, _not_before = -math.huge,
    _clock = clock, _sleep = sleep,
  }, meta)
  -- build the first request now: bad request options raise here, not at the first poll
  self._next_req_opts = self:_options()
  self._prebuilt = lib().request(self._next_req_opts)
  return self
end

return M.subscribe
