-- longpoll.subscription: the subscription object that longpoll.subscribe returns: one
-- poll on the wire at a time, a queue of messages not yet handed out, the resume point,
-- and what a failure does (backoff, on_error). Options are checked by longpoll.subscribe;
-- the cursor strategies are in longpoll.cursors; users read docs/subscribe.md.
local longpoll = require "longpoll"
local core = require "longpoll.core"
local compat = require "longpoll.compat"
local cursors = require "longpoll.cursors"

local copy = cursors.copy

local M = {}

-- failures that a retry may fix; "http" ones by status (see retried())
local RETRY_KINDS = { timeout = true, connect = true, resolve = true, network = true }

local Sub = {}
local meta = { __index = Sub, __name = "longpoll.subscription" }

-- True once the subscription ended, failed or canceled.
local function stopped(self) return self._state == "failed" or self._state == "canceled" end

-- The error a finished poll ended with (a stream: once every message was taken), or nil.
local function result_error(req)
  local _, err
  if core.misuse(req, true) then _, err = req:run() else _, err = req:next(0) end
  return err
end

-- Would the default retry this failure?
local function retried(cfg, err)
  if RETRY_KINDS[err.kind] then return true end
  local status = err.kind == "http" and err.status
  return status and (status == 429 or (status >= 500 and status <= 599)
    or (cfg.strategy.retry_status or {})[status]) or false
end

-- The request options of the next poll: the user's options with the poll cursor in them,
-- under the subscription's own context.
function Sub:_options()
  local o = copy(self._base)
  self._cfg.strategy.apply(self._cfg, o, self._poll_cursor)
  o.context = self._ctx
  return o
end

-- Build the next poll's request from the poll cursor: true, or nil, why when the cursor
-- makes options the core refuses (a header value with CR, a bad option from a function).
function Sub:_prepare()
  local o = self:_options()
  local ok, req = pcall(longpoll.request, o)
  if not ok then return nil, tostring(req) end
  self._next_req, self._next_opts = req, o
  return true
end

-- Start the next poll.
function Sub:_start_poll()
  if not self._next_req then assert(self:_prepare()) end
  local req = self._next_req
  self._sent, self._req = self._next_opts, req
  self._next_req, self._next_opts = nil, nil
  self._started_at = self._clock()
  self._state = "running"
  req:start()
end

-- Stop for good with err.
function Sub:_stop(err, state)
  self._state = state or "failed"
  self._err = err
  if self._req then self._req:cancel() end
  self._req, self._next_req, self._next_opts = nil, nil, nil
end

-- Move the resume point to c once the messages now queued are handed out.
function Sub:_resume_at(c)
  local last = self:pending() > 0 and self._queue[self._tail]
  if last then last[2] = c else self._resume = copy(c) end
end

-- Poll from cursor c (one on_error returned) from now on: true, or nil, why for a bad one.
function Sub:_seek(c)
  local cfg = self._cfg
  local cursor, why = cfg.strategy.check(cfg, c)
  if why then return nil, why end
  local old = self._poll_cursor
  self._poll_cursor = cursor
  local ok, bad = self:_prepare()
  if not ok then
    self._poll_cursor = old
    return nil, "cannot be sent: " .. bad
  end
  self:_resume_at(cursor)
  return true
end

-- A failure: ask on_error, then schedule the retry or stop.
function Sub:_failure(err, req)
  local cfg = self._cfg
  local retry = retried(cfg, err)
  self._failures = self._failures + 1
  local b = cfg.backoff
  local cap = math.min(b.ceiling, b.floor * 2 ^ self._failures)
  local delay = b.floor + math.random() * math.max(0, cap - b.floor)
  -- a Retry-After on a retried answer (429, 503, ...) is honoured up to the ceiling
  local asked = err.response and err.response.retry_after
  if retry and asked then delay = math.min(asked, b.ceiling) end
  if cfg.on_error then
    local info = { retry = retry, delay = delay, failures = self._failures, subscription = self,
      cursor = copy(self._poll_cursor) }
    local ok, decision, cursor = pcall(cfg.on_error, err, info)
    local moved, why
    if ok and cursor ~= nil and decision ~= false and not stopped(self) then
      moved, why = self:_seek(cursor)
      if not moved then
        ok, decision = false, "longpoll.subscribe: on_error returned a cursor that " .. why
      end
    end
    if not ok then
      self:_stop(core.error("callback", "on_error raised: " .. tostring(decision),
        { cause = decision, failure = err }, req))
      error(decision, 0)
    end
    if decision == true or (moved and decision == nil) then
      retry, delay = true, info.delay
    elseif decision == false then
      retry = false
    elseif type(decision) == "number" then
      retry, delay = true, math.max(0, decision)
    end
  end
  if stopped(self) then return end     -- on_error canceled it
  if retry then
    self._not_before = self._clock() + delay
    self._state = "retrying"
    if not self._next_req then assert(self:_prepare()) end
  else
    self:_stop(err)
  end
end

-- A poll that answered, with n messages or none: reset the backoff, pace idle polls.
function Sub:_answered(n)
  self._failures = 0
  self._state = "running"
  self._not_before = n == 0 and self._started_at + self._cfg.backoff.idle or -math.huge
end

-- A hold timeout: the server's (204, 304, 408) or the subscription's own (`hold`).
-- value, second: what the poll's run() returned.
local function is_hold(self, value, second)
  local status = second.status
  if value ~= nil then return status == 204 or status == 304 end
  local err = second
  if err.kind == "http" and err.status == 408 and err.response then return true end
  local hold = self._cfg.hold
  -- the request's timeout is `hold`: libcurl ends it no earlier (up to a millisecond of
  -- rounding); a connect timeout ends it sooner
  return hold and err.kind == "timeout" and self._clock() - self._started_at >= hold - 0.005
end

-- Handle the results of the finished poll req: value, response or nil, err.
function Sub:_collect(req, value, resp)
  local cfg = self._cfg
  if value == nil and resp.kind == "canceled" then return self:_stop(resp, "canceled") end
  local hold = is_hold(self, value, resp)
  if value == nil and not hold then return self:_failure(resp, req) end
  if value == nil then value, resp = {}, resp.response end
  local list, why
  if hold then
    -- no news: only a cursor function hears of it
    if not (cfg.strategy.hears_holds and resp) then return self:_answered(0) end
    list = {}
  else
    list, why = cursors.message_list(cfg.strategy, cfg.locate, value, resp)
  end
  local items, nc
  if list then items, nc = cfg.strategy.advance(cfg, self._poll_cursor, list, resp, self._sent) end
  if not items then
    return self:_failure(core.error("decode", why or nc, { status = resp.status, response = resp },
      req), req)
  end
  local old = self._poll_cursor
  self._poll_cursor = nc
  local ok, bad = self:_prepare()
  if not ok then
    -- a cursor that cannot be sent back: the messages are handed out, the resume point
    -- stays before them, and the poll that brought it failed
    self._poll_cursor = old
    for _, it in ipairs(items) do
      if it[2] == nc then it[2] = nil end
    end
  elseif #items == 0 then
    self:_resume_at(nc)   -- no news, but the resume point may move (an index, a function)
  end
  for _, it in ipairs(items) do
    self._tail = self._tail + 1
    self._queue[self._tail] = it
  end
  if not ok then
    return self:_failure(core.error("decode", "the answer's cursor cannot be sent back: " .. bad,
      { status = resp.status, response = resp }, req), req)
  end
  return self:_answered(#items)
end

-- A stream poll (a strategy with `stream`, cursor "sse"): queue the messages that arrived
-- (while fewer than `buffer` wait); once the stream ended, collect it. A clean end is not
-- a failure: the stream is opened again, with the cursor now, after the server's `retry`
-- or else at once (paced by backoff.idle). True once it ended.
function Sub:_stream_step(req)
  local cfg = self._cfg
  if self._looked_at ~= req and cfg.strategy.refuse then
    -- the answer's headers, as soon as they are in (no message is queued before them)
    local resp = req:response()
    if not (resp or req:done()) then return false end
    self._looked_at = req
    local why = resp and cfg.strategy.refuse(resp)
    if why then
      req:cancel()
      self._req = nil
      self:_failure(core.error("decode", why, { status = resp.status, response = resp }, req), req)
      return true
    end
  end
  local room = cfg.buffer - self:pending()
  local msgs = room > 0 and req:poll(room)
  if msgs and #msgs > 0 then
    local items, nc = cfg.strategy.advance(cfg, self._poll_cursor, msgs)
    self._poll_cursor = nc
    for _, it in ipairs(items) do
      if it[1].retry then self._retry = it[1].retry / 1000 end
      self._tail = self._tail + 1
      self._queue[self._tail] = it
    end
    self._failures = 0
  end
  -- done: ended and every message taken; how it ended is what it answers now (the poll
  -- above may have taken its last messages and left its error for this call)
  if not req:done() then return false end
  self._req = nil
  local err = result_error(req)
  if err then
    if err.kind == "canceled" then self:_stop(err, "canceled") else self:_failure(err, req) end
    return true
  end
  local resp = req:response()
  if resp and resp.status == 204 then
    -- what tells an event source (WHATWG) not to reconnect
    self:_stop(core.error("http", "the event stream answered 204 No Content: not reopened",
      { status = 204, response = resp }, req))
    return true
  end
  self:_answered(0)
  if self._retry then self._not_before = self._clock() + self._retry end
  assert(self:_prepare())
  return true
end

-- The subscription's context ended (sub:cancel(), the user's context canceled or past its
-- deadline): stop for its reason, with the poll's error when that tells the same (it names
-- the URL). Canceled ends it as cancel() does; a deadline is a timeout failure.
function Sub:_ended()
  local err, req = self._ctx:err(), self._req
  if req and req:done() then
    local e = result_error(req)
    if e and e.kind == err.kind then err = e end
  end
  self:_stop(err, err.kind == "canceled" and "canceled" or "failed")
  self:_clear()
end

-- Stopped, having stopped now if the context ended (whatever is queued is dropped then).
local function over(self)
  if not stopped(self) and self._ctx:done() then self:_ended() end
  return stopped(self)
end

-- Advance without blocking: collect a finished poll, start the next one when due.
function Sub:_step()
  local req = self._req
  if over(self) then return end
  if req and self._cfg.strategy.stream then
    if not self:_stream_step(req) then return end
  elseif req then
    if not req:done() then return end
    self._req = nil
    self:_collect(req, req:run())
  end
  if stopped(self) or self._state == "ready" then return end
  if self:pending() < self._cfg.buffer and self._clock() >= self._not_before then
    self:_start_poll()
  end
end

-- The queue of messages not yet handed out is _queue[_head .. _tail], never measured with
-- `#`: once its first entries are taken it starts with holes, where `#` may answer 0.
function Sub:_clear()
  self._queue, self._head, self._tail = {}, 1, 0
end

-- Hand out the first queued message (through on_message): msg, true; nil when none.
function Sub:_hand_out()
  local q, h = self._queue, self._head
  local e = q[h]
  if e == nil then return nil end
  local on_message = self._cfg.on_message
  if on_message then on_message(e[1], self) end
  if self._queue == q and q[h] == e then
    q[h] = nil
    self._head = h + 1
    if self._head > self._tail then self:_clear() end
  end
  if e[2] ~= nil then self._resume = e[2] end
  return e[1], true
end

-- Every wait of a subscription: until the poll req is ready (finished; a stream: a message
-- queued), or `seconds` of backoff passed. In next() (`suspend`) the calling coroutine waits
-- as req:await() and ctx:await() wait (longpoll.await_hook, cqueues, or else it yields the
-- request, or a context that ends with the backoff); in messages() and run() this OS
-- thread blocks. Every wait ends at once when the subscription's context ends (the poll
-- and the backoff context are under it), from any thread; only a `sleep` of the user's
-- own replaces the backoff wait and is not interrupted.
local function block(self, req, seconds, suspend)
  if req then
    if suspend then longpoll._suspend(req) else req:wait() end
  elseif self._sleep then
    self._sleep(seconds)
  elseif suspend then
    local backoff = self._ctx:context{ timeout = seconds }
    backoff:await()
    backoff:cancel()
  else
    self._ctx:wait(seconds)
  end
end

-- The next message, or nil, err once the subscription stopped; waits with block(), in the
-- calling coroutine when `suspend`.
function Sub:_next(suspend)
  self:start()
  for _ = 1, math.huge do
    over(self)
    if self:pending() > 0 then
      local msg = self:_hand_out()
      if not stopped(self) then self:_step() end
      return msg
    end
    if stopped(self) then return nil, self._err end
    self:_step()
    if self:pending() == 0 and not stopped(self) then
      local left = math.max(0, self._not_before - self._clock())
      if self._req then
        block(self, self._req, nil, suspend)
      elseif left > 0 then
        block(self, nil, left, suspend)
      end
    end
  end
end

function Sub:start()
  if self._state == "ready" then self:_start_poll() end
  return self
end

function Sub:poll()
  self:start()
  if not over(self) then self:_step() end
  local out = {}
  while self:pending() > 0 do
    out[#out + 1] = self:_hand_out()
    if self._state == "canceled" then break end
  end
  if #out == 0 and stopped(self) then return nil, self._err end
  if not stopped(self) then self:_step() end   -- keep a poll waiting at the server
  return out
end

function Sub:next()
  if not compat.isyieldable() then
    error("longpoll.subscription:next: not inside a coroutine (use messages() or poll())", 2)
  end
  return self:_next(true)
end

-- Like io.lines: the loop ends quietly at cancel(), and raises the error of a failure.
function Sub:messages()
  return function()
    local msg, err = self:_next(false)
    if msg == nil and err.kind ~= "canceled" then error(err, 0) end
    return msg
  end
end

function Sub:run()
  for _ = 1, math.huge do
    local msg, err = self:_next(false)
    if msg == nil then return nil, err end
  end
end

function Sub:cancel()
  if stopped(self) then return false end
  self._ctx:cancel()          -- the poll, and whatever waits on the context, end
  self:_stop(core.error("canceled", "subscription canceled", nil, self._req or self._next_req),
    "canceled")
  self:_clear()
  return true
end

-- The subscription's own context, a child of the `context` option's: its polls and its
-- backoff waits run under it. Canceling it (here, or in another Lua state through
-- longpoll.context(ctx:share())) ends the subscription.
function Sub:context() return self._ctx end

function Sub:cursor() return copy(self._resume) end
function Sub:status() return self._state end
function Sub:error() return self._err end
function Sub:pending() return self._tail - self._head + 1 end

-- close(): what `<close>` does (5.4), for every version: cancel, nothing returned
function Sub:close() self:cancel() end
meta.__close = Sub.close
meta.__tostring = function(self)
  return ("longpoll.subscription: %s (%s)"):format(self._url, self._state)
end

-- A subscription: cfg (checked options and the strategy), base (request options), the
-- cursor to poll from. Builds the first request: nil, why when the core refuses it.
function M.new(cfg, base, cursor)
  local self = setmetatable({
    _cfg = cfg, _base = base, _poll_cursor = cursor, _resume = copy(cursor),
    _queue = {}, _head = 1, _tail = 0, _state = "ready", _failures = 0, _not_before = -math.huge,
    _clock = cfg.clock, _sleep = cfg.sleep,
    _ctx = cfg.context and cfg.context:context() or longpoll.context(),
  }, meta)
  -- __gc on every version: an unreachable subscription cancels its poll (the request may
  -- have been finalized first, in the same cycle or at lua_close: it canceled itself then)
  compat.finalizer(self, Sub.cancel)
  local ok, why = self:_prepare()
  if not ok then return nil, why end
  -- the URL as the core prints it (userinfo redacted), from the tostring of a request to
  -- it that is never started: "longpoll.request: <METHOD> <url> (<state>)"
  local named = tostring(longpoll.request{ url = base.url })
  self._url = named:match("^longpoll%.request: %S+ (.*) %(%a+%)$")
  return self
end

return M
