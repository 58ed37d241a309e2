-- longpoll: cancelable HTTP long-polls on a libcurl worker thread.
-- The C core (longpoll.core) does the transfers; this layer adds the JSON
-- codec, `await` for coroutine schedulers and `subscribe`.
local core = require "longpoll.core"
local compat = require "longpoll.compat"
local cjson = require "cjson"

-- a private cjson instance: the user's settings of the global one stay theirs
local json = cjson.new()
json.decode_invalid_numbers(false)
core.codec(json.encode, json.decode, json.null)

local M = {
  version = core.version,
  _VERSION = core.version,
  null = json.null,
  request = core.request,
  wait_any = core.wait_any,
  configure = core.configure,
  context = core.context,
  now = core.now,
  sleep = core.sleep,
}

local methods = core.request_metatable.__index
local ctx_methods = core.context_metatable.__index
local isyieldable, yield = compat.isyieldable, coroutine.yield

-- A context is ready once it ended
ctx_methods.ready = ctx_methods.done

-- A request (and a context) is a readiness object for the event loops that
-- take one: a cqueues pollable (pollfd, events, timeout) and, in LuaSocket's
-- select protocol (socket.select, copas), getfd and dirty; receive() answers
-- nil, "timeout" until it is ready, so copas.receive(req) waits for it.
for _, m in ipairs{ methods, ctx_methods } do
  m.pollfd = m.fd
  m.getfd = m.fd
  m.dirty = m.ready
  function m.events() return "r" end
  function m.timeout() return nil end
  function m:receive()
    if self:ready() then return true end
    return nil, "timeout"
  end
end

-- req:await(): start if needed and suspend the calling coroutine until the
-- request finishes, then return its results. It waits through
-- longpoll.await_hook(req) when set (copas: copas.receive), through
-- cqueues.poll(req) in a coroutine that cqueues runs, or else yields `req`
-- to a plain scheduler that resumes it when it likes (fd readable, done()).
local function suspend_until_ready(self, who, instead)
  if not isyieldable() then
    error(("%s: not inside a coroutine (use %s())"):format(who, instead), 3)
  end
  if self.start then self:start() end
  local cq = package.loaded.cqueues
  while not self:ready() do
    if M.await_hook then
      M.await_hook(self)
    elseif cq and cq.running and select(2, cq.running()) then
      cq.poll(self)
    else
      yield(self)
    end
  end
end

-- longpoll._suspend(obj): await's wait without its results, for longpoll.subscription's
-- next() (the poll on the wire, a stream's next message, a backoff context); not public
function M._suspend(obj)
  suspend_until_ready(obj, "longpoll.subscription:next", "messages")
end

-- raise at the line that called method `who` when req cannot be read that way
-- (stream: as a stream), before anything starts or yields
local function expect(req, stream, who)
  local why = core.misuse(req, stream)
  if why then error(("longpoll.request:%s: %s"):format(who, why), 3) end
end

function methods:await()
  expect(self, false, "await")
  suspend_until_ready(self, "longpoll.request:await", "run")
  return self:run()
end

-- ctx:await(): suspend the calling coroutine until the context ends (as
-- req:await() waits for a request), then return ctx:err()
function ctx_methods:await()
  suspend_until_ready(self, "longpoll.context:await", "wait")
  return self:err()
end

-- req:await_next(): the coroutine form of req:next() for stream requests:
-- suspends the calling coroutine (as await does) until a message is queued
-- or the stream ended, then returns what next() returns
function methods:await_next()
  expect(self, true, "await_next")
  suspend_until_ready(self, "longpoll.request:await_next", "next")
  return self:next(0)
end

-- for msg in req:messages() do ... end: every message of a stream request,
-- blocking this OS thread between them (as next()); the loop ends when the
-- stream ends cleanly or is canceled, and raises the error object when it
-- fails (err.kind as next() gives it)
function methods:messages()
  expect(self, true, "messages")
  return function()
    local msg, err = self:next()
    if msg == nil and err and err.kind ~= "canceled" then error(err, 0) end
    return msg
  end
end

-- longpoll.subscribe(opts): longpoll/subscribe.lua, loaded on first use; the
-- function itself (not a wrapper), so its option errors point at the caller
setmetatable(M, { __index = function(t, k)
  if k == "subscribe" then
    t.subscribe = require "longpoll.subscribe"
    return t.subscribe
  end
end })

return M
