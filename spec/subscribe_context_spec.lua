-- longpoll.subscribe under a longpoll.context: the polls run under it, and every wait of
-- a blocking consumer (the poll on the wire, the backoff sleep) ends at once when it ends,
-- canceled from another OS thread (a second Lua state, by luv) or at its deadline.
local longpoll = require "longpoll"
local testserver = require "support.testserver"
local uv = require "luv"

local subs = require "support.subs"
local closing = subs.closing

-- Cancel the context with this id (ctx:share()) from another OS thread, a Lua state of its
-- own, `delay` seconds from now. Returns the thread (join it).
local function cancel_from_thread(id, delay)
  return uv.new_thread(function(path, cpath, ctx_id, seconds)
    package.path, package.cpath = path, cpath
    local lp = require "longpoll"
    local ctx = lp.context(ctx_id)
    lp.sleep(seconds)
    assert(ctx:cancel(), "the context had ended before the other thread canceled it")
  end, package.path, package.cpath, id, delay)
end

describe("longpoll.subscribe with a context", function()
  after_each(subs.close_all)
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)
  before_each(function()
    srv:reset()
    assert.truthy(srv:wait_held(0, 5))
  end)

  -- a "since" subscription on /poll/<ch> (the server holds a poll up to 30 s)
  local function since(ch, extra)
    local o = { url = srv:url("/poll/" .. ch), cursor = "since" }
    for k, v in pairs(extra or {}) do o[k] = v end
    return closing(longpoll.subscribe(o))
  end

  it("names a wrong context", function()
    assert.has_error(function() since("x", { context = {} }) end,
      "longpoll.subscribe: option 'context' must be a longpoll.context")
  end)

  it("a cancel from another thread ends messages() waiting on a held poll, quietly", function()
    local ctx = longpoll.context()
    local sub = since("c1", { context = ctx })
    assert.are_not.equal(ctx, sub:context())   -- a context of its own, a child of ctx
    local t = cancel_from_thread(ctx:share(), 0.3)
    local got, t0 = 0, longpoll.now()
    for _ in sub:messages() do got = got + 1 end
    local took = longpoll.now() - t0
    t:join()
    assert.equals(0, got)
    assert.is_true(took < 20, took)             -- the server would hold it 30 s
    assert.equals("canceled", sub:status())
    assert.equals("canceled", sub:error().kind)
    assert.matches("^canceled: context canceled %(GET ", sub:error().message)
    assert.is_true(sub:context():done())
    assert.truthy(srv:wait_held(0, 5))          -- the poll's connection closed
  end)

  it("a cancel from another thread ends run() in a backoff sleep at once", function()
    local ctx = longpoll.context()
    srv:fail{ mode = "503", count = 1000 }
    local failures = 0
    local sub = since("c2", { context = ctx, backoff = { floor = 60, ceiling = 60 },
      on_error = function() failures = failures + 1 end })
    local t = cancel_from_thread(ctx:share(), 0.5)
    local t0 = longpoll.now()
    local msg, err = sub:run()
    local took = longpoll.now() - t0
    t:join()
    assert.is_nil(msg)
    assert.equals("canceled", err.kind)
    assert.equals(1, failures)                  -- one 503, then the 60 s sleep, cut short
    assert.is_true(took < 30, took)
    assert.equals("canceled", sub:status())
  end)

  it("the subscription's own context, canceled from another thread, ends it as cancel() would", function()
    local sub = since("c3")
    local t = cancel_from_thread(sub:context():share(), 0.3)
    local msg, err = sub:run()
    t:join()
    assert.is_nil(msg)
    assert.equals("canceled", err.kind)
    assert.equals("canceled", sub:status())
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("a deadline ends it as a timeout: run() returns it, messages() raises it", function()
    local sub = since("d1", { context = longpoll.context{ timeout = 0.3 } })
    local msg, err = sub:run()
    assert.is_nil(msg)
    assert.equals("timeout", err.kind)
    assert.matches("context deadline exceeded", err.message, 1, true)
    assert.equals("failed", sub:status())
    srv:fail{ mode = "503", count = 1000 }
    sub = since("d2", { context = longpoll.context{ timeout = 0.3 },
      backoff = { floor = 60, ceiling = 60 } })
    local t0 = longpoll.now()
    local ok, raised = pcall(function() for _ in sub:messages() do end end)
    local took = longpoll.now() - t0
    assert.is_false(ok)
    assert.equals("timeout", raised.kind)
    assert.is_true(took < 30, took)             -- at the deadline, not after 60 s of backoff
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("cancel() on the user's context ends it at the next poll(); under an ended one it stops at once", function()
    local ctx = longpoll.context()
    local sub = since("p1", { context = ctx })
    assert.same({}, sub:poll())
    assert.truthy(srv:wait_held(1, 5))
    ctx:cancel()
    local msgs, err = sub:poll()
    assert.is_nil(msgs)
    assert.equals("canceled", err.kind)
    assert.truthy(srv:wait_held(0, 5))
    local hits = srv:stats().hits["/poll/p2"] or 0
    sub = since("p2", { context = ctx })
    msgs, err = sub:poll()
    assert.is_nil(msgs)
    assert.equals("canceled", err.kind)
    assert.equals(hits, srv:stats().hits["/poll/p2"] or 0)   -- nothing was sent
  end)

  it("messages queued when the context ends are not handed out", function()
    local ctx = longpoll.context()
    srv:publish("q1", { "a", "b", "c" })
    local sub = since("q1", { context = ctx })
    local first
    for m in sub:messages() do first = m break end
    assert.equals("a", first.data)
    assert.equals(2, sub:pending())
    ctx:cancel()
    local rest = 0
    for _ in sub:messages() do rest = rest + 1 end
    assert.equals(0, rest)
    assert.equals("canceled", sub:status())
  end)
end)
