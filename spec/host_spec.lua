-- The C host (examples/host/host.c): Lua states on several host threads use
-- longpoll at once, the host's own thread cancels their polls through the Lua
-- API, and each state closes with requests in flight. The spec builds it
-- with cc against the Lua library of the version it runs under (the README's
-- build line), so the suite's pass per version covers 5.1, LuaJIT, 5.3, 5.4
local testserver = require "support.testserver"
local proc = require "support.proc"

-- pkg-config's name for the Lua running the specs
local pc = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")

-- runs a host binary against the server; LUA_PATH and LUA_CPATH tell it where longpoll is
local function run_host(bin, srv, args, cpath, env)
  return proc.run(("%sLUA_PATH=%q LUA_CPATH=%q timeout 300 %s %s %s"):format(
    env or "", package.path, cpath or package.cpath, bin, srv:url(""), args))
end

describe("a C host", function()
  local srv, bin
  setup(function()
    srv = testserver.start()
    bin = os.tmpname()
  end)
  teardown(function()
    srv:stop()
    os.remove(bin)
  end)

  it("builds against " .. pc .. " without warnings", function()
    local out, ok = proc.run(("cc -O2 -Wall -Wextra -o %s examples/host/host.c $(pkg-config --cflags --libs %s) -lpthread")
      :format(bin, pc))
    assert.is_true(ok, out)
    assert.equals("", out)
  end)

  it("two states on two threads: the host's thread cancels each one's poll", function()
    local out, ok, _, code = run_host(bin, srv, "")
    assert.is_true(ok, out)
    assert.equals(0, code)
    assert.matches("state 0.0: await returned canceled, %d+ us after the host's cancel%(%)\n", out)
    assert.matches("state 1.0: await returned canceled, %d+ us after the host's cancel%(%)\n", out)
    assert.matches("\nhost: 2 threads x 1 rounds ok, 1 thread left\n$", out)
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("4 threads x 5 rounds, each state closed with 10 requests in flight, leave no thread", function()
    local out, ok, _, code = run_host(bin, srv, "4 5")
    assert.is_true(ok, out)
    assert.equals(0, code)
    local _, canceled = out:gsub("await returned canceled", "")
    assert.equals(20, canceled)
    assert.matches("\nhost: 4 threads x 5 rounds ok, 1 thread left\n$", out)
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("one longpoll.context in three Lua states on three threads: a cancel in one wakes run() and wait() in the others", function()
    local ctx_bin = bin .. "_context"
    local out, ok = proc.run(("cc -O2 -Wall -Wextra -o %s spec/host/context_host.c $(pkg-config --cflags --libs %s) -lpthread")
      :format(ctx_bin, pc))
    assert.is_true(ok, out)
    assert.equals("", out)
    local code
    out, ok, _, code = run_host(ctx_bin, srv, "")
    os.remove(ctx_bin)
    assert.is_true(ok, out)
    assert.equals(0, code)
    assert.equals("context_host: ok\n", out)
    -- its ThreadSanitizer build (CMake, build-tsan/context_host) with the module's
    local tsan = os.getenv("LONGPOLL_HOST_TEST_TSAN")
    if tsan and tsan ~= "" and _VERSION == "Lua 5.4" then
      out, ok, _, code = run_host(tsan:gsub("host_test$", "context_host"), srv, "",
        tsan:match("^(.*)/[^/]*$") .. "/?.so;" .. package.cpath,
        "TSAN_OPTIONS='halt_on_error=1 exitcode=66 suppressions=spec/host/tsan.supp' ")
      assert.is_nil(out:find("ThreadSanitizer", 1, true), out)
      assert.is_true(ok, out)
      assert.equals("context_host: ok\n", out)
    end
    assert.truthy(srv:wait_held(0, 5))
  end)

  -- a C test of csrc/ without Lua (spec/host/<name>.c), built by CMake beside
  -- the host (scripts/setup.sh), and its ThreadSanitizer build when there is one
  local function c_test(name)
    local host = os.getenv("LONGPOLL_HOST_TEST") or require("support.build") .. "/host_test"
    local tsan = os.getenv("LONGPOLL_HOST_TEST_TSAN")
    for _, bin in ipairs({ (host:gsub("host_test$", name)), tsan and tsan:gsub("host_test$", name) or nil }) do
      local out, ok, how, code = proc.run(("TSAN_OPTIONS='halt_on_error=1 exitcode=66' timeout 120 %s %s"):format(
        bin, srv:url("")))
      assert.is_nil(out:find("ThreadSanitizer", 1, true), out)
      assert.is_true(ok, bin .. ": " .. out)
      assert.equals("exit", how)
      assert.equals(0, code)
      assert.equals(name:gsub("_test$", "") .. ": ok\n", out)
    end
    assert.truthy(srv:wait_held(0, 5))
  end

  it("the C engine serves several threads waiting on one request, and a cancel between them", function()
    c_test("engine_test")
  end)

  it("the C cancel scopes: cancel from another thread, deadlines, leaving, threads at once", function()
    c_test("scope_test")
  end)

  it("the C engine's stream mode: readers on other threads, pause and resume, a shared stream, cancel", function()
    c_test("stream_engine_test")
  end)

  -- scripts/test.sh builds a ThreadSanitizer variant of the host and the
  -- module for Lua 5.4 (build-tsan/host_test)
  local tsan = os.getenv("LONGPOLL_HOST_TEST_TSAN")
  local run_tsan = tsan and tsan ~= "" and _VERSION == "Lua 5.4" and it or pending
  run_tsan("runs race-free under ThreadSanitizer", function()
    local dir = tsan:match("^(.*)/[^/]*$")
    -- spec/host/tsan.supp: two reports that are not races of the module's (said there)
    local out, ok, _, code = run_host(tsan, srv, "4 3 2", dir .. "/?.so;" .. package.cpath,
      "TSAN_OPTIONS='halt_on_error=1 exitcode=66 suppressions=spec/host/tsan.supp' ")
    assert.is_nil(out:find("ThreadSanitizer", 1, true), out)
    assert.is_true(ok, out)
    assert.equals(0, code)
    assert.matches("\nhost: 4 threads x 3 rounds ok, 2 threads left\n$", out)
  end)
end)
