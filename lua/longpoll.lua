-- longpoll: cancelable HTTP long-polls on a libcurl worker thread.
-- The C core (longpoll.core) does the transfers; this layer adds the JSON
-- codec, `await` for coroutine schedulers and `subscribe`.
local core = require "longpoll.core"
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
  now = core.now,
  sleep = core.sleep,
}

local methods = core.request_metatable.__index
local isyieldable, yield = coroutine.isyieldable, coroutine.yield

-- req:await(): start if needed and yield `req` until it finishes; the
-- scheduler resumes the coroutine when it likes (fd readable, done() true)
function methods:await()
  if not isyieldable() then
    error("longpoll.request:await: not inside a coroutine (use run())", 2)
  end
  self:start()
  while not self:done() do yield(self) end
  return self:run()
end

-- longpoll.subscribe(opts): loaded on first use (see longpoll/subscribe.lua)
function M.subscribe(opts)
  return require("longpoll.subscribe")(opts)
end

return M
