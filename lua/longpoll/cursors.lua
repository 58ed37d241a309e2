-- longpoll.cursors: how a subscription resumes (its cursor strategies) and where the
-- messages are in an answer. Users read docs/subscribe.md; this file is for those who add
-- a strategy.
--
-- A strategy is a table in `strategies` below, under the name users give as `cursor`:
--   options            { option = default, ... }: the subscribe options it takes, with
--                      their defaults (false: none); they are copied into cfg
--   setup(cfg, request_opts) -> nil | option, complaint
--                      optional: checks and derives its options once (it may set request
--                      options that depend on them, e.g. a timeout)
--   check(cfg, c) -> cursor | nil, complaint
--                      a cursor from the user (`resume`, or one on_error returns) as the
--                      strategy keeps it; complaint when it is not one
--   start(cfg, request_opts) -> cursor
--                      optional: the cursor when `resume` is not given (default nil)
--   apply(cfg, request_opts, c)
--                      puts cursor c (nil: none yet) into the options of the next poll
--   advance(cfg, c, list, response, sent) -> items, next_cursor | nil, reason
--                      reads an answer whose messages are `list` (sent: the options of
--                      that poll): items[i] = { message, resume point after it (nil: does
--                      not move) } for the messages to hand out; reason makes the poll a
--                      "decode" failure
--   default_messages(value, response) -> list
--                      optional: the message list when the `messages` option is not given
--                      (without it, the decoded body must be the array)
--   retry_status       optional { [status] = true }: more HTTP statuses that are retried
--   hears_holds        optional: advance also sees hold timeouts (with an empty list)
--   stream             optional: the poll is a stream request (`stream = <this>`) that
--                      stays open; advance gets its messages as they arrive, and the
--                      stream's clean end is not a failure (longpoll.subscription)
--   refuse(response) -> nil | complaint
--                      optional, with stream: looks at the answer as soon as its headers
--                      are in, before any message is taken; a complaint fails the poll as
--                      "decode" (its messages are never handed out)
local compat = require "longpoll.compat"

local tointeger = compat.tointeger
-- a value for a query field: integral numbers without ".0" or an exponent
local query_value = compat.integer_string

local M = {}

-- A deep copy of a table of plain values (cursors and request options); raises
-- TOO_DEEP (no position: longpoll.subscribe names the option) past 32 levels (a cycle).
local TOO_DEEP = "is too deep to copy (a cycle?)"
M.TOO_DEEP = TOO_DEEP
local function copy(v, depth)
  if type(v) ~= "table" then return v end
  depth = (depth or 0) + 1
  if depth > 32 then error(TOO_DEEP, 0) end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x, depth) end
  return t
end
M.copy = copy

-- The value at a dotted path ("result", "data.items") in a decoded answer, or nil.
local function field_at(value, path)
  for key in path:gmatch("[^.]+") do
    if type(value) ~= "table" then return nil end
    value = value[key]
  end
  return value
end

-- True for a table whose keys are exactly 1..#t (an empty table counts).
local function is_array(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

-- Seconds in a Consul-style duration ("5s", "1m", "250ms", "1h") or a number.
local function duration(v)
  if type(v) == "number" then return v end
  local n, unit = tostring(v):match("^(%d+%.?%d*)(%a*)$")
  local mult = ({ [""] = 1, ms = 0.001, s = 1, m = 60, h = 3600 })[unit or ""]
  return n and mult and tonumber(n) * mult or nil
end

-- Items of an answer whose resume point moves once, after its last message.
local function per_answer(list, c)
  local items = {}
  for i, m in ipairs(list) do items[i] = { m, i == #list and c or nil } end
  return items
end

-- Items of an answer whose resume point moves per message: step(cfg, c, id) -> the cursor
-- after a message with that id (nil: already seen, dropped) | nil, complaint.
local function per_message(cfg, c, list, step)
  local items = {}
  for i, m in ipairs(list) do
    local id = field_at(m, cfg.id_field)
    if id == nil then return nil, ("message %d has no '%s'"):format(i, cfg.id_field) end
    local nc, why = step(cfg, c, id)
    if why then return nil, ("message %d: %s"):format(i, why) end
    if nc ~= nil then
      c = nc
      items[#items + 1] = { m, c }
    end
  end
  return items, c
end

local function set_query(o, name, value)
  o.query = o.query or {}
  o.query[name] = query_value(value)
end

local strategies = {}
M.strategies = strategies

-- Nchan and HTTP caching: Etag / Last-Modified sent back as If-None-Match /
-- If-Modified-Since; each answer is one message.
strategies.etag = {
  options = {},
  -- Nchan answers the polls it holds with 410 when it shuts down (or the channel is deleted)
  retry_status = { [410] = true },
  check = function(_, c)
    if type(c) ~= "table" or (c.etag ~= nil and type(c.etag) ~= "string")
        or (c.last_modified ~= nil and type(c.last_modified) ~= "string") then
      return nil, "must be a cursor of \"etag\": { etag = ..., last_modified = ... }"
    end
    return { etag = c.etag, last_modified = c.last_modified }
  end,
  apply = function(_, o, c)
    if not c then return end
    o.headers = o.headers or {}
    o.headers["If-None-Match"] = c.etag
    o.headers["If-Modified-Since"] = c.last_modified
  end,
  advance = function(_, c, list, resp)
    local h = resp.headers
    local nc = { etag = h.etag or (c and c.etag),
      last_modified = h["last-modified"] or (c and c.last_modified) }
    return per_answer(list, nc), nc
  end,
  default_messages = function(value, resp)
    if resp.body == "" then return { "" } end
    return { value }
  end,
}

-- Telegram getUpdates, etcd v2 watch: the last message's id + 1 sent back.
strategies.offset = {
  options = { cursor_field = "offset", id_field = "update_id" },
  check = function(_, c)
    local n = tointeger(tonumber(c))
    if not n then return nil, "must be an integer offset for cursor \"offset\"" end
    return n
  end,
  apply = function(cfg, o, c)
    if c ~= nil then set_query(o, cfg.cursor_field, c) end
  end,
  advance = function(cfg, c, list)
    return per_message(cfg, c, list, function(_, last, id)
      local n = tointeger(tonumber(id))
      if not n then return nil, ("'%s' is not an integer"):format(cfg.id_field) end
      if last == nil or n >= last then return n + 1 end
    end)
  end,
}

-- The last message's id sent back as is, in the query or the JSON body.
strategies.since = {
  options = { cursor_field = "since", id_field = "id", cursor_in = "query" },
  setup = function(cfg, o)
    if cfg.cursor_in ~= "query" and cfg.cursor_in ~= "body" then
      return "cursor_in", "must be \"query\" or \"body\""
    end
    if cfg.cursor_in == "body" and o.body ~= nil and type(o.body) ~= "table" then
      return "body", "must be a table (or nil) with cursor_in = \"body\""
    end
  end,
  check = function(_, c)
    if type(c) ~= "string" and type(c) ~= "number" then
      return nil, "must be a string or number id for cursor \"since\""
    end
    return c
  end,
  apply = function(cfg, o, c)
    if cfg.cursor_in == "body" then
      o.body = o.body or {}
      o.body[cfg.cursor_field] = c
    elseif c ~= nil then
      set_query(o, cfg.cursor_field, c)
    end
  end,
  advance = function(cfg, c, list)
    -- numeric ids not above the one sent were seen already
    return per_message(cfg, c, list, function(_, last, id)
      -- sent back as is: a string or a number, nothing else (a table would
      -- go out as "table: 0x...", and check() refuses it as a resume point)
      if type(id) ~= "string" and type(id) ~= "number" then
        return nil, ("'%s' is not a string or number"):format(cfg.id_field)
      end
      local n, l = tonumber(id), tonumber(last)
      if not (n and l and n <= l) then return id end
    end)
  end,
}

-- Consul blocking queries: a response header sent back as a query field, with ?wait=.
strategies.index = {
  options = { cursor_field = "index", cursor_header = "X-Consul-Index", wait = false },
  setup = function(cfg, o)
    if type(cfg.cursor_header) ~= "string" then return "cursor_header", "must be a string" end
    cfg.header_key = cfg.cursor_header:lower()
    if cfg.wait then
      local s = duration(cfg.wait)
      if not s or s <= 0 then return "wait", "must be seconds or a duration like \"5s\"" end
      cfg.wait_query = type(cfg.wait) == "number" and query_value(cfg.wait) .. "s" or cfg.wait
      -- Consul adds up to wait/16 of jitter to the wait
      if o.timeout == nil then o.timeout = s * 17 / 16 + 5 end
    end
  end,
  check = function(_, c)
    if not tonumber(c) then
      return nil, "must be an index (number or numeric string) for cursor \"index\""
    end
    return query_value(c)
  end,
  apply = function(cfg, o, c)
    if c ~= nil then set_query(o, cfg.cursor_field, c) end
    if cfg.wait_query then set_query(o, "wait", cfg.wait_query) end
  end,
  advance = function(cfg, c, list, resp)
    local nc = resp.headers[cfg.header_key]
    if nc == nil or not tonumber(nc) then
      return nil, ("no numeric %s header in the answer"):format(cfg.cursor_header)
    end
    -- an index that did not change is no news, whatever the body
    if c ~= nil and tonumber(nc) == tonumber(c) then return {}, c end
    return per_answer(list, nc), nc
  end,
}

-- A user function(previous_opts, response, messages) -> next_opts: the cursor is the
-- request options table of the next poll.
function M.from_function(fn)
  return {
    options = {},
    hears_holds = true,
    start = function(_, o) return copy(o) end,
    check = function(_, c)
      if type(c) ~= "table" then return nil, "must be a table of request options" end
      return copy(c)
    end,
    apply = function(_, o, c)
      if c == nil then return end
      for k, v in pairs(c) do o[k] = copy(v) end
    end,
    advance = function(_, c, list, resp, sent)
      local nc = fn(copy(sent), resp, list)
      if nc == nil then nc = c or copy(sent) end
      if type(nc) ~= "table" then
        error("longpoll.subscribe: the cursor function must return a table of request options", 0)
      end
      nc = copy(nc)
      return per_answer(list, nc), nc
    end,
  }
end

-- Server-Sent Events: one stream request stays open and each event is a message; when the
-- stream ends it is opened again with the last event id as Last-Event-ID, after the
-- server's `retry` (longpoll.subscription). The cursor is that id (a string).
strategies.sse = {
  options = {},
  stream = "sse",
  setup = function(cfg, o)
    if o.stream ~= nil and o.stream ~= "sse" then return "stream", "must be \"sse\" with cursor \"sse\"" end
    if cfg.locate ~= nil then return "messages", "is not used by cursor \"sse\": each event is a message" end
    -- `hold` is the request's timeout
    local bound = cfg.hold and "hold" or o.timeout ~= nil and "timeout"
    if bound then return bound, "would end the stream: not with cursor \"sse\"" end
  end,
  check = function(_, c)
    if type(c) ~= "string" then return nil, "must be a cursor of \"sse\": the last event id (a string)" end
    return c
  end,
  apply = function(_, o, c)
    o.stream = "sse"
    o.headers = o.headers or {}
    local accept, last = false, nil
    for k in pairs(o.headers) do
      local lk = k:lower()
      if lk == "accept" then accept = true elseif lk == "last-event-id" then last = k end
    end
    if not accept then o.headers.Accept = "text/event-stream" end
    if c ~= nil then o.headers[last or "Last-Event-ID"] = c end
  end,
  -- an EventSource fails a connection whose 200 answer is not an event stream (WHATWG
  -- HTML, "announce the connection"): an HTML page of a misconfigured proxy is no events
  refuse = function(resp)
    if resp.status < 200 or resp.status > 299 or resp.status == 204 then return nil end
    local ctype = resp.headers["content-type"]
    if (ctype or ""):match("^%s*([^;%s]*)"):lower() == "text/event-stream" then return nil end
    return ("the answer is not an event stream (Content-Type: %s)"):format(ctype or "none")
  end,
  -- the resume point after an event is the last event id it carries
  advance = function(_, c, list)
    local items = {}
    for i, ev in ipairs(list) do
      if ev.id ~= nil then c = ev.id end
      items[i] = { ev, c }
    end
    return items, c
  end,
}

-- The strategy a `cursor` option names, and that name ("function" for a function); nil
-- when it names none.
function M.strategy(cursor)
  if type(cursor) == "function" then return M.from_function(cursor), "function" end
  if type(cursor) == "string" and strategies[cursor] then return strategies[cursor], cursor end
end

-- The names users may give as `cursor`, for messages: "\"etag\", ... or a function".
function M.names()
  local t = {}
  for name in pairs(strategies) do t[#t + 1] = ("%q"):format(name) end
  table.sort(t)
  return table.concat(t, ", ") .. " or a function"
end

-- The message list of an answer (`locate`: the `messages` option), or nil, reason.
function M.message_list(strategy, locate, value, resp)
  if type(locate) == "function" then
    local list, why = locate(value, resp)
    if list == nil then return nil, why or "the messages function returned nil" end
    if type(list) ~= "table" then return nil, "the messages function did not return a table" end
    return list
  end
  if locate == nil and strategy.default_messages then
    return strategy.default_messages(value, resp)
  end
  if locate ~= nil then
    value = field_at(value, locate)
    if value == nil then return nil, ("no field '%s' in the answer"):format(locate) end
  end
  if not is_array(value) then
    return nil, locate and ("'%s' is not an array of messages"):format(locate)
      or "the answer is not an array of messages (see the `messages` option)"
  end
  return value
end

return M
