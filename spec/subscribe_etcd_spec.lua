-- longpoll.subscribe against an etcd v2 watch (the spec server's /v2/keys, which behaves
-- like etcd: no server hold timeout, one global index, a bounded event history): the
-- client-side hold (#9.3) and cursors that recover from a cleared index (#9.4).
local longpoll = require "longpoll"
local testserver = require "support.testserver"

local subs = require "support.subs"
local uv = require "luv"
local closing = subs.closing
local eventually = subs.eventually


describe("longpoll.subscribe with etcd's v2 watch", function()
  after_each(subs.close_all)
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)
  before_each(function() srv:reset() end)

  local function set(key, value)
    local status = srv:request("PUT", "/v2/keys/" .. key .. "?value=" .. value)
    assert.is_true(status == 200 or status == 201)
  end

  -- etcd's index now (X-Etcd-Index of a read)
  local function etcd_index(key)
    local _, _, headers = srv:request("GET", "/v2/keys/" .. key)
    return tonumber(headers["x-etcd-index"])
  end

  -- the README's watch: waitIndex = the last event's modifiedIndex + 1, from the index
  -- after a read (a watch without waitIndex misses what changes between two polls)
  local function watch(key, extra)
    local o = { url = srv:url("/v2/keys/" .. key), query = { wait = "true" }, hold = 0.3,
      resume = etcd_index(key) + 1,
      cursor = "offset", cursor_field = "waitIndex", id_field = "node.modifiedIndex",
      messages = function(event) return { event } end }
    for k, v in pairs(extra or {}) do o[k] = v end
    if o.timeout then o.hold = nil end
    return longpoll.subscribe(o)
  end

  -- poll() until n values arrived (bounded), appending event values to got
  local function values(sub, got, n)
    eventually(function()
      for _, ev in ipairs(assert(sub:poll())) do got[#got + 1] = ev.node.value end
      return #got >= n
    end)
    return got
  end

  it("hands out every change in order across client-side holds", function()
    local errors = 0
    local sub = closing(watch("a", { on_error = function() errors = errors + 1 end }))
    sub:start()
    assert.is_true(srv:wait_held(1, 5))
    set("a", "v1")
    local got = values(sub, {}, 1)
    set("a", "v2")
    set("other", "x")                            -- another key moves the index, not the watch
    set("a", "v3")
    values(sub, got, 3)
    -- quiet: the watch is bounded by `hold` and polled again, the changes keep coming
    local hits = srv:stats().hits["/v2/keys/a"]
    assert.is_truthy(eventually(function()
      assert(sub:poll())
      return srv:stats().hits["/v2/keys/a"] >= hits + 3
    end))
    set("a", "v4")
    values(sub, got, 4)
    assert.same({ "v1", "v2", "v3", "v4" }, got)
    assert.equals(0, errors)
    assert.equals(6, sub:cursor())                -- v4's modifiedIndex (5) + 1
  end)

  it("a poll that reaches `hold` is no news: no failure, no backoff, polled again at once (#9.3)",
    function()
      -- a backoff of 30 s would stop the polls below: each one that reaches the hold is
      -- followed by the next at once
      local errors, states = 0, {}
      local sub = closing(watch("b", { hold = 0.2, backoff = { floor = 30, ceiling = 30 },
        on_error = function() errors = errors + 1 end }))
      assert.is_truthy(eventually(function()
        assert(sub:poll())
        states[sub:status()] = true
        return (srv:stats().hits["/v2/keys/b"] or 0) >= 4
      end))
      assert.equals(0, errors)
      assert.is_nil(states.retrying)
      set("b", "v1")
      assert.same({ "v1" }, values(sub, {}, 1))

      -- the same bound given as `timeout` is a failure each time, and backoff grows
      local seen = {}
      local timed = closing(watch("b", { timeout = 0.2, backoff = { floor = 30, ceiling = 30 },
        on_error = function(err, info)
          seen[#seen + 1] = err.kind
          return info.failures < 3 and 0 or nil
        end }))
      assert.is_truthy(eventually(function()
        assert(timed:poll())
        return #seen >= 3
      end))
      assert.same({ "timeout", "timeout", "timeout" }, seen)
      assert.equals("retrying", timed:status())
    end)

  it("messages() waits out holds in the thread and hands out the change", function()
    -- bounded: a backoff wait (a hold taken for a failure) or 10 s without the change raise
    local deadline = longpoll.now() + 10
    local sub = closing(watch("c", { hold = 0.1,
      sleep = function(s) error("a backoff wait of " .. s .. " s") end,
      clock = function()
        assert(longpoll.now() < deadline, "no change within 10 s")
        return longpoll.now()
      end }))
    -- the change is made after a few holds passed, while this thread blocks: by another OS
    -- thread (a Lua state of its own, by luv), with LuaSocket as the spec server's control
    -- requests are made (no child process: under scripts/asan.sh it would inherit the
    -- preload of libasan, under which the curl tool hangs)
    local t = uv.new_thread(function(path, cpath, url)
      package.path, package.cpath = path, cpath
      local socket, http = require "socket", require "socket.http"
      socket.sleep(1)
      http.TIMEOUT = 5
      local ok, status = http.request{ url = url, method = "PUT" }
      assert(ok and (status == 200 or status == 201), "the PUT failed: " .. tostring(status))
    end, package.path, package.cpath, srv:url("/v2/keys/c?value=v1"))
    finally(function() t:join() end)
    local ev = sub:messages()()
    assert.equals("v1", ev.node.value)
    assert.is_true(srv:stats().hits["/v2/keys/c"] >= 3)   -- polls that reached the hold
  end)

  describe("a cleared index (400, errorCode 401)", function()
    -- 25 changes: the server keeps the last 20 events, so index 1 is cleared
    local function history(key)
      for i = 1, 25 do set(key, "h" .. i) end
    end

    -- on_error for etcd: a cleared index resumes after the current one (X-Etcd-Index);
    -- to_cursor(index) makes the cursor of the strategy in use
    local function recover(calls, to_cursor)
      return function(err, info)
        calls[#calls + 1] = err.status
        if err.status == 400 and err.response.body:find('"errorCode":401', 1, true) then
          local index = tonumber(err.response.headers["x-etcd-index"])
          return 0, to_cursor(index + 1, info.cursor)
        end
      end
    end

    it('"offset": on_error returns the next cursor and the watch goes on (#9.4)', function()
      history("d")
      local calls = {}
      local sub = closing(watch("d", { resume = 1,
        on_error = recover(calls, function(next_index) return next_index end) }))
      sub:start()
      assert.is_truthy(eventually(function() assert(sub:poll()); return #calls > 0 end))
      assert.equals(26, sub:cursor())             -- moved by on_error
      assert.is_true(srv:wait_held(1, 5))
      set("d", "new")
      assert.same({ "new" }, values(sub, {}, 1))
      assert.same({ 400 }, calls)
      assert.equals(27, sub:cursor())
    end)

    it("a cursor function: on_error returns the next options (#9.4)", function()
      history("e")
      local function after(prev, _, events)
        local ev = events[#events]
        if ev then prev.query.waitIndex = ev.node.modifiedIndex + 1 end
        return prev
      end
      local calls = {}
      local sub = closing(longpoll.subscribe{ url = srv:url("/v2/keys/e"), hold = 0.3,
        query = { wait = "true", waitIndex = "1" }, cursor = after,
        messages = function(event) return { event } end,
        on_error = recover(calls, function(next_index, opts)
          opts.query.waitIndex = next_index
          return opts
        end) })
      sub:start()
      assert.is_truthy(eventually(function() assert(sub:poll()); return #calls > 0 end))
      assert.equals(26, sub:cursor().query.waitIndex)
      assert.is_true(srv:wait_held(1, 5))
      set("e", "new")
      assert.same({ "new" }, values(sub, {}, 1))
      assert.same({ 400 }, calls)
      assert.equals(27, sub:cursor().query.waitIndex)
    end)

    it("without a cursor from on_error the subscription stops; a bad one raises", function()
      history("f")
      local sub = closing(watch("f", { resume = 1 }))
      assert.is_truthy(eventually(function() return sub:poll() == nil end))
      local _, err = sub:poll()
      assert.equals("http", err.kind)
      assert.equals(400, err.status)

      local bad = closing(watch("f", { resume = 1, on_error = function() return 0, "soon" end }))
      bad:start()
      local ok, raised
      eventually(function()
        ok, raised = pcall(bad.poll, bad)
        return not ok
      end)
      assert.is_false(ok)
      assert.matches("on_error returned a cursor that must be an integer offset", tostring(raised))
      assert.equals("callback", bad:error().kind)
    end)
  end)
end)
