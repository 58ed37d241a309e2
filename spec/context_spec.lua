-- longpoll.context: cancel scopes (Go's context) over requests
local longpoll = require "longpoll"
local testserver = require "support.testserver"

describe("longpoll.context", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)
  before_each(function() assert.truthy(srv:wait_held(0, 10)) end)

  it("is active until canceled; cancel() is true once, done(), err(), wait(), tostring", function()
    local ctx = longpoll.context()
    assert.is_false(ctx:done())
    assert.is_nil(ctx:err())
    assert.is_nil(ctx:deadline())
    assert.equals(0, #ctx)
    assert.equals("longpoll.context: active, 0 requests", tostring(ctx))
    assert.is_false(ctx:wait(0.05))
    assert.is_true(ctx:cancel())
    assert.is_false(ctx:cancel())
    assert.is_true(ctx:done())
    assert.is_true(ctx:wait(0))
    assert.is_true(ctx:wait())
    local err = ctx:err()
    assert.equals("canceled", err.kind)
    assert.equals("canceled: context canceled", tostring(err))
    local req = longpoll.request{ url = srv:url("/") }
    req:cancel()
    assert.equals(getmetatable(select(2, req:run())), getmetatable(err))  -- one kind of error
    assert.equals("longpoll.context: canceled", tostring(ctx))
  end)

  it("names a wrong option", function()
    assert.has_error(function() longpoll.context{ timout = 1 } end,
      "longpoll.context: unknown option 'timout'")
    assert.has_error(function() longpoll.context{ timeout = 0 } end,
      "longpoll.context: option 'timeout' must be a positive number of seconds")
    assert.has_error(function() longpoll.context{ timeout = "1" } end,
      "longpoll.context: option 'timeout' must be a positive number of seconds")
    assert.has_error(function() longpoll.context{ parent = {} } end,
      "longpoll.context: option 'parent' must be a longpoll.context")
    assert.has_error(function() longpoll.context():context{ parent = longpoll.context() } end,
      "longpoll.context:context: unknown option 'parent'")
    assert.has_error(function() longpoll.request{ url = srv:url("/"), context = {} } end,
      "longpoll.request: option 'context' must be a longpoll.context")
    assert.truthy(longpoll.request{ url = srv:url("/"), context = longpoll.context() })
  end)

  it("cancel() of a parent ends its children and 1,000 requests at once; the server sees them closed", function()
    local root = longpoll.context()
    local kids = { root:context(), root:context{ timeout = 60 }, longpoll.context{ parent = root } }
    local grandchild = kids[1]:context()
    local scopes = { root, kids[1], kids[2], kids[3], grandchild }
    local reqs = {}
    for i = 1, 1000 do
      reqs[i] = longpoll.request{ url = srv:url("/hold"), context = scopes[i % #scopes + 1] }:start()
    end
    assert.equals(200, #root)
    assert.truthy(srv:wait_held(1000, 30))
    local t0 = longpoll.now()
    assert.is_true(root:cancel())
    local took = longpoll.now() - t0
    for i = 1, #scopes do
      assert.is_true(scopes[i]:done())
      assert.equals("canceled", scopes[i]:err().kind)
      assert.equals(0, #scopes[i])
    end
    for i = 1, 1000 do
      assert.is_true(reqs[i]:done())           -- at once: no wait
      local value, err = reqs[i]:run()
      assert.is_nil(value)
      assert.equals("canceled", err.kind)
      assert.equals("canceled", reqs[i]:status())
      assert.is_false(reqs[i]:cancel())
    end
    assert.matches("^canceled: context canceled %(GET http://127%.0%.0%.1:%d+/hold%)$",
      select(2, reqs[1]:run()).message)
    assert.truthy(srv:wait_held(0, 30))
    assert.is_true(took < 5, took)             -- a bound, not a speed claim
  end)

  it("a child made or a request added under an ended scope ends at once", function()
    local ctx = longpoll.context()
    ctx:cancel()
    local child = ctx:context()
    assert.is_true(child:done())
    assert.equals("canceled", child:err().kind)
    local before = srv:stats().hits["/hold"] or 0
    local req = longpoll.request{ url = srv:url("/hold"), context = child }
    assert.is_true(req:done())
    assert.equals("canceled", req:status())
    assert.equals("canceled", select(2, req:run()).kind)
    assert.equals(before, srv:stats().hits["/hold"] or 0)
  end)

  it("a parent's deadline ends a child's requests as timeouts, with nobody waiting", function()
    local parent = longpoll.context{ timeout = 0.3 }
    local child = parent:context()
    assert.equals(parent:deadline(), child:deadline())
    assert.is_true(parent:deadline() > longpoll.now())
    local req = longpoll.request{ url = srv:url("/hold"), context = child }:start()
    assert.truthy(srv:wait_held(1, 5))
    -- only the worker's timer can end them while this thread sleeps
    local t0 = longpoll.now()
    repeat longpoll.sleep(0.05) until req:done() or longpoll.now() - t0 > 10
    assert.is_true(req:done())
    assert.is_true(longpoll.now() >= parent:deadline())
    local value, err = req:run()
    assert.is_nil(value)
    assert.equals("timeout", err.kind)
    assert.matches("^timeout: context deadline exceeded %(GET ", err.message)
    assert.equals("failed", req:status())     -- as a request's own timeout
    assert.is_false(req:cancel())
    assert.equals("timeout", child:err().kind)
    assert.equals("timeout", parent:err().kind)
    assert.equals("longpoll.context: timeout", tostring(child))
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("a request's own timeout and its scope's deadline: the earlier wins", function()
    local ctx = longpoll.context{ timeout = 60 }
    local value, err = longpoll.request{ url = srv:url("/hold"), context = ctx, timeout = 0.2 }:run()
    assert.is_nil(value)
    assert.equals("timeout", err.kind)
    assert.is_nil(err.message:find("context", 1, true))
    assert.is_nil(ctx:err())
    ctx = longpoll.context{ timeout = 0.2 }
    value, err = longpoll.request{ url = srv:url("/hold"), context = ctx, timeout = 60 }:run()
    assert.is_nil(value)
    assert.equals("timeout", err.kind)
    assert.matches("context deadline exceeded", err.message, 1, true)
    -- a child's own earlier deadline ends it alone
    local parent = longpoll.context{ timeout = 60 }
    local child = parent:context{ timeout = 0.1 }
    assert.is_true(child:deadline() < parent:deadline())
    assert.is_true(child:wait(10))
    assert.equals("timeout", child:err().kind)
    assert.is_nil(parent:err())
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("a stream request ends with its context: timeout at the deadline, canceled at cancel()", function()
    srv:publish("ctx-s", { "a" })
    local req = longpoll.request{ url = srv:url("/sse/ctx-s"), stream = "sse",
      context = longpoll.context{ timeout = 0.3 } }
    assert.equals("a", req:next(10).data)
    local msg, err = req:next(10)                 -- the server holds the stream open
    assert.is_nil(msg)
    assert.equals("timeout", err.kind)
    assert.equals("failed", req:status())
    local ctx = longpoll.context()
    req = longpoll.request{ url = srv:url("/sse/ctx-s"), stream = "sse", context = ctx }
    assert.equals("a", req:next(10).data)
    ctx:cancel()
    msg, err = req:next(10)
    assert.is_nil(msg)
    assert.equals("canceled", err.kind)
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("ctx:wait() ends at the deadline, and at a cancel; fd() is one descriptor", function()
    local ctx = longpoll.context{ timeout = 0.1 }
    assert.is_true(ctx:wait())
    assert.equals("timeout", ctx:err().kind)
    ctx = longpoll.context()
    local fd = ctx:fd()
    assert.equals("number", type(fd))
    assert.equals(fd, ctx:fd())
    assert.is_false(ctx:wait(0.01))
    ctx:cancel()
    assert.is_true(ctx:wait(0))
  end)

  it("await() yields in a coroutine until the context ends; it is a readiness object like a request", function()
    local ctx = longpoll.context()
    assert.has_error(function() ctx:await() end,
      "longpoll.context:await: not inside a coroutine (use wait())")
    local co = coroutine.create(function() return ctx:await() end)
    local ok, yielded = coroutine.resume(co)
    assert.is_true(ok)
    assert.equals(ctx, yielded)                 -- as req:await() yields the request
    assert.equals(ctx:fd(), ctx:getfd())
    assert.equals(ctx:fd(), ctx:pollfd())
    assert.equals("r", ctx:events())
    assert.is_false(ctx:dirty())
    assert.same({ nil, "timeout" }, { ctx:receive() })
    ctx:cancel()
    assert.is_true(ctx:dirty())
    assert.is_true(ctx:receive())
    local err
    ok, err = coroutine.resume(co)
    assert.is_true(ok)
    assert.equals("canceled", err.kind)
    assert.equals("dead", coroutine.status(co))
  end)

  it("finished requests leave their scope: its count stays bounded in a loop", function()
    local ctx = longpoll.context()
    for i = 1, 300 do
      local req = longpoll.request{ url = srv:url(i % 3 == 0 and "/hold" or "/json"), context = ctx }
      if i % 3 == 0 then req:start(); req:cancel() else req:run() end
      assert.equals(0, #ctx)
      if i % 3 == 1 then
        -- a request never started and dropped leaves too (its __gc cancels it)
        longpoll.request{ url = srv:url("/json"), context = ctx }
        assert.is_true(#ctx <= 1)
        collectgarbage()
        collectgarbage()
        assert.equals(0, #ctx)
      end
    end
    assert.is_nil(ctx:err())
  end)

  it("close() cancels (what <close> does on 5.4); collecting a context does not", function()
    local ctx = longpoll.context()
    local req = longpoll.request{ url = srv:url("/hold"), context = ctx }:start()
    assert.truthy(srv:wait_held(1, 5))
    ctx:close()
    assert.equals("canceled", select(2, req:run()).kind)
    assert.truthy(srv:wait_held(0, 5))
    do
      local held = longpoll.context()
      req = longpoll.request{ url = srv:url("/hold"), context = held }:start()
    end
    collectgarbage()
    collectgarbage()
    assert.truthy(srv:wait_held(1, 5))
    assert.is_false(req:done())
    req:cancel()
  end)

  it("share() gives an id that longpoll.context(id) turns back into the same scope", function()
    local ctx = longpoll.context()
    local id = ctx:share()
    assert.equals(id, ctx:share())
    local same = longpoll.context(id)
    assert.equals(ctx, same)
    assert.is_true(same:cancel())
    assert.is_true(ctx:done())
    ctx, same = nil, nil
    collectgarbage()
    collectgarbage()
    assert.has_error(function() longpoll.context(id) end,
      "bad argument #1 to 'context' (no context has this id (an id of ctx:share() lasts while the context is held))")
    assert.has_error(function() longpoll.context(0) end)
  end)
end)
