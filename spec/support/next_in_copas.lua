-- lua spec/support/next_in_copas.lua URL: spec/support/next_threads.lua in copas threads,
-- with longpoll.await_hook = copas.receive; prints its result as JSON. A process of its
-- own: copas 1.2 must be loaded before socket.http, which the spec process has loaded.
local copas = require "copas"
local longpoll = require "longpoll"
local cjson = require "cjson"
local next_threads = require "support.next_threads"

longpoll.await_hook = copas.receive
local running = 0
local r = next_threads(arg[1], {
  spawn = function(f)
    running = running + 1
    copas.addthread(function()
      f()
      running = running - 1
    end)
  end,
  -- copas 1.2 has no sleep: a context that ends after s, awaited through the hook
  sleep = function(s) longpoll.context{ timeout = s }:await() end,
  run = function(seconds)
    local deadline = longpoll.now() + seconds
    while running > 0 and longpoll.now() < deadline do copas.step(0.1) end
  end,
})
print(cjson.encode(r))
