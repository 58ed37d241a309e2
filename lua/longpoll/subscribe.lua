-- longpoll.subscribe(opts) -> subscription: checks the options (a wrong one raises at the
-- caller's line, naming it) and makes the subscription (longpoll.subscription) with its
-- cursor strategy (longpoll.cursors). The reference is docs/subscribe.md.
local longpoll = require "longpoll"
local core = require "longpoll.core"
local compat = require "longpoll.compat"
local cursors = require "longpoll.cursors"
local subscription = require "longpoll.subscription"

local copy = cursors.copy

-- the options every subscription takes besides the request's (a strategy adds its own)
local OPTIONS = {
  cursor = true, messages = true, resume = true, on_message = true, on_error = true,
  backoff = true, buffer = true, hold = true, clock = true, sleep = true,
}

local BACKOFF = { floor = 0.5, ceiling = 30, idle = 0.1 }

local subscribe

-- Raise message at the line that called subscribe() (however deep in here it is found).
local function raise(message)
  local level = 2
  for l = 2, 32 do
    local info = debug.getinfo(l, "f")
    if not info then break end
    if info.func == subscribe then
      level = l + 1
      break
    end
  end
  error(message, level)
end

local function argerror(name, what)
  raise(("longpoll.subscribe: option '%s' %s"):format(name, what))
end

-- f(...) for option `name`, whose value f copies: a table too deep to copy (a cycle)
-- raises naming the option.
local function copying(name, f, ...)
  local ok, a, b = pcall(f, ...)
  if not ok then
    if a ~= cursors.TOO_DEEP then error(a, 0) end
    argerror(name, a)
  end
  return a, b
end

-- The backoff table with its defaults filled in.
local function backoff(t)
  local b = copy(BACKOFF)
  if t == nil then return b end
  if type(t) ~= "table" then argerror("backoff", "must be a table") end
  for k, v in pairs(t) do
    if b[k] == nil then argerror("backoff." .. tostring(k), "is unknown") end
    if type(v) ~= "number" or v < 0 or v ~= v then
      argerror("backoff." .. k, "must be a number of seconds >= 0")
    end
    b[k] = v
  end
  if b.ceiling < b.floor then argerror("backoff.ceiling", "must be >= backoff.floor") end
  return b
end

function subscribe(opts)
  if type(opts) ~= "table" then
    raise("longpoll.subscribe: expects a table of options")
  end
  local strategy, sname = cursors.strategy(opts.cursor)
  if not strategy then argerror("cursor", "must be " .. cursors.names()) end
  local base, cfg = {}, { strategy = strategy }
  for k, v in pairs(opts) do
    if k == "context" then
      if getmetatable(v) ~= core.context_metatable then
        argerror("context", "must be a longpoll.context")
      end
      cfg.context = v
    elseif core.options[k] then
      base[k] = copying(k, copy, v)
    elseif not OPTIONS[k] and strategy.options[k] == nil then
      local other
      for name, s in pairs(cursors.strategies) do
        if s.options[k] ~= nil then other = name end
      end
      argerror(tostring(k), other and ("is not used by cursor \"%s\""):format(sname)
        or "is unknown")
    end
  end
  for k, default in pairs(strategy.options) do
    local v = opts[k]
    if v == nil then v = default end
    if type(default) == "string" and type(v) ~= "string" then argerror(k, "must be a string") end
    cfg[k] = v
  end
  local locate = opts.messages
  if locate ~= nil and type(locate) ~= "string" and type(locate) ~= "function" then
    argerror("messages", "must be a field name or a function")
  end
  cfg.locate = locate
  for _, k in ipairs{ "on_message", "on_error", "clock", "sleep" } do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then argerror(k, "must be a function") end
    cfg[k] = opts[k]
  end
  cfg.backoff = backoff(opts.backoff)
  cfg.buffer = opts.buffer
  if cfg.buffer == nil then cfg.buffer = 1000 end
  if not compat.tointeger(cfg.buffer) or cfg.buffer < 1 then
    argerror("buffer", "must be an integer >= 1")
  end
  if opts.hold ~= nil then
    if type(opts.hold) ~= "number" or not (opts.hold > 0) then
      argerror("hold", "must be a number of seconds > 0")
    end
    if opts.timeout ~= nil then argerror("hold", "and 'timeout' exclude each other") end
    cfg.hold, base.timeout = opts.hold, opts.hold
  end
  if strategy.setup then
    local bad, what = strategy.setup(cfg, base)
    if bad then argerror(bad, what) end
  end
  local cursor = strategy.start and strategy.start(cfg, base)
  if opts.resume ~= nil then
    local why
    cursor, why = copying("resume", strategy.check, cfg, opts.resume)
    if why then argerror("resume", why) end
  end
  cfg.clock = cfg.clock or longpoll.now   -- (no sleep: the subscription's context waits)
  -- the first request is built now: bad request options raise here, not at the first poll
  local sub, why = subscription.new(cfg, base, cursor)
  if not sub then raise(why) end
  return sub
end

return subscribe
