-- The C host (spec/host/host_test.c): several Lua states on several OS threads
-- use longpoll at once, each closing with requests in flight
local testserver = require "support.testserver"
local proc = require "support.proc"

describe("a C host with Lua states on 4 threads", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  it("runs, cancels and closes with requests in flight, leaving no thread", function()
    local bin = os.getenv("LONGPOLL_HOST_TEST") or "build/host_test"
    local f = io.open(bin)
    assert.is_not_nil(f, bin .. " is not built (cmake -DLONGPOLL_HOST_TEST=ON)")
    f:close()
    local out, ok, how, code = proc.run(("timeout 60 %s %d %q %q 4 5"):format(
      bin, srv.port, package.path, package.cpath))
    assert.is_true(ok, out)
    assert.equals("exit", how)
    assert.equals(0, code)
    assert.equals("host: 4 threads x 5 rounds ok, 1 thread left\n", out)
    assert.truthy(srv:wait_held(0, 5))
  end)

  -- a C test of csrc/ without Lua (spec/host/<name>.c), and its
  -- ThreadSanitizer build when scripts/test.sh made one
  local function c_test(name)
    local tsan = os.getenv("LONGPOLL_HOST_TEST_TSAN")
    for _, bin in ipairs({ "build/" .. name, tsan and tsan:gsub("host_test$", name) or nil }) do
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

  -- scripts/test.sh builds a ThreadSanitizer variant (build-tsan/host_test)
  local tsan = os.getenv("LONGPOLL_HOST_TEST_TSAN")
  local run_tsan = tsan and tsan ~= "" and it or pending
  run_tsan("runs race-free under ThreadSanitizer", function()
    local dir = tsan:match("^(.*)/[^/]*$")
    local cpath = dir .. "/?.so;" .. package.cpath
    local out, ok, how, code = proc.run(("TSAN_OPTIONS='halt_on_error=1 exitcode=66' timeout 300 %s %d %q %q 4 3 2"):format(
      tsan, srv.port, package.path, cpath))
    assert.is_nil(out:find("ThreadSanitizer", 1, true), out)
    assert.is_true(ok, out)
    assert.equals("exit", how)
    assert.equals(0, code)
    assert.equals("host: 4 threads x 3 rounds ok, 2 threads left\n", out)
  end)
end)
