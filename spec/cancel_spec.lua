-- cancel(), fd(), __gc, close() and exit with requests in flight
local longpoll = require "longpoll"
local compat = require "longpoll.compat"
local testserver = require "support.testserver"
local socket = require "socket"

local proc = require "support.proc"
local lua = require "support.lua"

-- counts of this process's open descriptors, eventfds and threads
local function count_dir(path) return proc.count("ls " .. path) end
local function count_eventfds(pid) return proc.count("ls -l /proc/" .. pid .. "/fd | grep eventfd") end
local self_pid = proc.self_pid

describe("cancel", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)
  before_each(function() assert.truthy(srv:wait_held(0, 5)) end)

  it("ends a held request with kind 'canceled' and closes its connection", function()
    local req = longpoll.request{ url = srv:url("/hold") }:start()
    assert.truthy(srv:wait_held(1, 5))
    assert.is_true(req:cancel())
    assert.is_true(req:done())
    local value, err = req:run()
    assert.is_nil(value)
    assert.equals("canceled", err.kind)
    assert.is_nil(err.status)
    assert.matches("canceled", tostring(err), 1, true)
    assert.equals("canceled", req:status())
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("ends a request that was never started, without contacting the server", function()
    local before = srv:stats().hits["/hold"] or 0
    local req = longpoll.request{ url = srv:url("/hold") }
    assert.is_true(req:cancel())
    assert.equals("canceled", req:status())
    local _, err = req:run()
    assert.equals("canceled", err.kind)
    assert.equals(req, req:start())
    assert.equals("canceled", req:status())
    assert.equals(before, srv:stats().hits["/hold"] or 0)
  end)

  it("returns true once, then false", function()
    local req = longpoll.request{ url = srv:url("/hold") }:start()
    assert.is_true(req:cancel())
    assert.is_false(req:cancel())
    assert.is_false(req:cancel())
  end)

  it("leaves a finished request's result standing", function()
    local req = longpoll.request{ url = srv:url("/json") }
    local v1 = req:run()
    assert.is_false(req:cancel())
    local v2 = req:run()
    assert.equals(v1, v2)
    assert.equals("done", req:status())
    local failed = longpoll.request{ url = srv:url("/status/500") }
    failed:run()
    assert.is_false(failed:cancel())
    assert.equals("http", select(2, failed:run()).kind)
  end)

  it("wins over a body being read: the result is canceled, not a network error", function()
    local req = longpoll.request{ url = srv:url("/drip?bytes=1000&interval_ms=10"), timeout = 30 }
    assert.is_false(req:wait(0.15)) -- some bytes have arrived by now
    assert.is_true(req:cancel())
    local _, err = req:run()
    assert.equals("canceled", err.kind)
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("wins over a deadline that fires right after", function()
    for _ = 1, 20 do
      local req = longpoll.request{ url = srv:url("/hold"), timeout = 0.001 }:start()
      if req:cancel() then
        assert.equals("canceled", select(2, req:run()).kind)
      else
        assert.equals("timeout", select(2, req:run()).kind)
      end
    end
  end)

  it("from another coroutine while one awaits", function()
    local req = longpoll.request{ url = srv:url("/hold") }
    local result
    local waiter = coroutine.wrap(function()
      local value, err = req:await()
      result = { value = value, err = err }
    end)
    local canceler = coroutine.wrap(function()
      assert.truthy(srv:wait_held(1, 5))
      coroutine.yield()
      assert.is_true(req:cancel())
    end)
    assert.equals(req, waiter())        -- waiting: yields the request
    canceler()                          -- sees the request held
    assert.equals(req, waiter())        -- still waiting
    canceler()                          -- cancels
    waiter()                            -- resumes with the result
    assert.is_nil(result.value)
    assert.equals("canceled", result.err.kind)
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("300 held requests at once, all canceled", function()
    local reqs = {}
    for i = 1, 300 do reqs[i] = longpoll.request{ url = srv:url("/hold") }:start() end
    assert.truthy(srv:wait_held(300, 20))
    for i = 1, 300 do assert.is_true(reqs[i]:cancel()) end
    for i = 1, 300 do assert.equals("canceled", select(2, reqs[i]:run()).kind) end
    assert.truthy(srv:wait_held(0, 10))
  end)
end)

describe("fd", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  local function wrap(fd)
    return { getfd = function() return fd end, dirty = function() return false end }
  end

  it("is made on first call, stable, and readable once finished (socket.select)", function()
    local req = longpoll.request{ url = srv:url("/hold") }:start()
    local fd = req:fd()
    assert.is_true(compat.tointeger(fd) == fd and fd >= 0)
    assert.equals(fd, req:fd())
    local r = socket.select({ wrap(fd) }, nil, 0.05)
    assert.equals(0, #r)
    req:cancel()
    r = socket.select({ wrap(fd) }, nil, 5)
    assert.equals(1, #r)
  end)

  it("is readable at once when made after the request finished", function()
    local req = longpoll.request{ url = srv:url("/json") }
    req:run()
    local r = socket.select({ wrap(req:fd()) }, nil, 0)
    assert.equals(1, #r)
  end)

  it("wakes a luv poll handle when the request completes", function()
    local uv = require "luv"
    local req = longpoll.request{ url = srv:url("/hold?ms=50&status=200&body=%5B7%5D") }:start()
    local poll = uv.new_poll(req:fd())
    local timer = uv.new_timer()
    local fired = 0
    poll:start("r", function()
      fired = fired + 1
      poll:stop()
      timer:stop()
    end)
    uv.update_time()                                 -- the loop may have sat idle
    timer:start(10000, 0, function() poll:stop() end) -- a bound, never reached
    uv.run("default")                                -- returns when both stopped
    poll:close()
    timer:close()
    uv.run("default")
    assert.equals(1, fired)
    assert.is_true(req:done())
    assert.same({ 7 }, req:run())
  end)

  it("a select loop serves many requests as they finish", function()
    local reqs, by_fd = {}, {}
    for i = 1, 20 do
      reqs[i] = longpoll.request{ url = srv:url("/hold?ms=" .. (20 * i)) }:start()
      by_fd[reqs[i]:fd()] = reqs[i]
    end
    local finished = 0
    for _ = 1, 100 do
      local list = {}
      for fd in pairs(by_fd) do list[#list + 1] = wrap(fd) end
      if #list == 0 then break end
      local ready = socket.select(list, nil, 5)
      assert.is_true(#ready > 0)
      for _, w in ipairs(ready) do
        local req = by_fd[w:getfd()]
        assert.is_true(req:done())
        by_fd[w:getfd()] = nil
        finished = finished + 1
      end
    end
    assert.equals(20, finished)
  end)
end)

describe("lifetime", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)
  before_each(function() assert.truthy(srv:wait_held(0, 5)) end)

  -- the request stays reachable until the server holds it: dropped at once,
  -- a collection cycle ending in the next allocations (as happened under
  -- valgrind) canceled it before it was sent, and the first wait failed
  it("an unreachable running request is canceled by __gc", function()
    local req = longpoll.request{ url = srv:url("/hold") }:start()
    req:fd()
    collectgarbage()            -- reachable: a collection leaves it running
    assert.truthy(srv:wait_held(1, 5))
    assert.equals("running", req:status())
    req = nil
    collectgarbage()
    collectgarbage()
    assert.truthy(srv:wait_held(0, 5))
  end)

  -- close() ends a request's scope on every version; `<close>` calls the same
  -- function on 5.4 (close_54_spec.lua)
  it("close() cancels a running request, which stays readable; a second close() does nothing", function()
    local req = longpoll.request{ url = srv:url("/hold") }:start()
    assert.truthy(srv:wait_held(1, 5))
    req:close()
    assert.equals("canceled", req:status())
    assert.equals("canceled", select(2, req:run()).kind)
    assert.truthy(srv:wait_held(0, 5))
    req:close()
    assert.equals("canceled", req:status())
  end)

  it("close() on a finished request keeps its result, and on a new one sends nothing", function()
    local req = longpoll.request{ url = srv:url("/json") }
    req:run()
    req:close()
    assert.equals("done", req:status())
    assert.is_true(req:run().ok)
    local hits = srv:stats().total
    local never = longpoll.request{ url = srv:url("/json") }
    never:close()
    assert.equals("canceled", never:status())
    assert.equals("canceled", select(2, never:run()).kind)
    assert.equals(hits, srv:stats().total)
  end)

  it("close is the request's __close", function()
    local req = longpoll.request{ url = srv:url("/json") }
    assert.is_function(req.close)
    assert.equals(getmetatable(req).__close, req.close)
  end)

  it("creating and dropping many requests leaks no descriptor or thread", function()
    local pid = self_pid()
    collectgarbage()
    local fds = count_dir("/proc/" .. pid .. "/fd")
    local eventfds = count_eventfds(pid)
    local threads = count_dir("/proc/" .. pid .. "/task")
    for round = 1, 5 do
      for i = 1, 100 do
        local req = longpoll.request{ url = srv:url(i % 2 == 0 and "/hold" or "/json") }:start()
        req:fd()
        if i % 3 == 0 then req:cancel() end
      end
      collectgarbage()
      collectgarbage()
      assert.truthy(srv:wait_held(0, 10), "round " .. round)
    end
    collectgarbage()
    collectgarbage()
    -- every eventfd made by fd() is closed; idle connections may stay in
    -- libcurl's pool, but not one per request (500 were made)
    -- (the worker frees the records it still held a moment later: bounded wait)
    local left
    for _ = 1, 500 do
      left = count_eventfds(pid)
      if left == eventfds then break end
      longpoll.request{ url = srv:url("/json") }:wait(0.01)
    end
    assert.equals(eventfds, left)
    assert.is_true(count_dir("/proc/" .. pid .. "/fd") - fds < 100)
    assert.equals(threads, count_dir("/proc/" .. pid .. "/task"))
  end)

  local function child(script)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local env = ("LUA_PATH=%q LUA_CPATH=%q"):format(package.path, package.cpath)
    local out, ok, how, code = proc.run(("%s timeout 20 %s %s %s"):format(env, lua, path, srv.port))
    os.remove(path)
    return ok, how, code, out
  end

  for _, ending in ipairs({ "os.exit(0, true)", "os.exit(0)", "-- end of script" }) do
    it("the process exits cleanly with 100 requests in flight: " .. ending, function()
      local ok, how, code, out = child(([[
        local longpoll = require "longpoll"
        local port = ...
        local reqs = {}
        for i = 1, 100 do
          reqs[i] = longpoll.request{ url = "http://127.0.0.1:" .. port .. "/hold" }:start()
        end
        local t0 = os.time()
        while longpoll.wait_any(reqs, 0.01) == nil and os.time() - t0 < 10 do
          local s = require("socket.http").request("http://127.0.0.1:" .. port .. "/_stats")
          if s and s:match('"held":100[,}]') then break end
        end
        io.write("held\n")
        %s
      ]]):format(ending))
      assert.is_true(ok, out)
      assert.equals("exit", how)
      assert.equals(0, code)
      assert.equals("held\n", out)
      assert.truthy(srv:wait_held(0, 5))
    end)
  end

  it("a coroutine awaiting a request that is collected with it leaves nothing held", function()
    local co = coroutine.create(function()
      return longpoll.request{ url = srv:url("/hold") }:await()
    end)
    coroutine.resume(co)
    collectgarbage()            -- reachable through co: still held
    assert.truthy(srv:wait_held(1, 5))
    co = nil
    collectgarbage()
    collectgarbage()
    assert.truthy(srv:wait_held(0, 5))
  end)
end)
