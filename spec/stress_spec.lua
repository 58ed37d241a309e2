-- The C engine under a storm of requests canceled at random moments
-- (spec/host/stress_test.c), against the spec server, a rawserver that writes
-- headers slowly and, when installed, nginx over HTTPS with HTTP/2: built with
-- ASan+UBSan (build/stress_test) and with ThreadSanitizer (build-tsan/).
-- LONGPOLL_STRESS="<threads> <requests per thread> [forks]" sizes it (CI: 4 x 250,
-- and 20 forks meanwhile in the ASan run, each child running requests of its own);
-- bench/stress.sh runs the long form.
local testserver = require "support.testserver"
local rawserver = require "support.rawserver"
local nchan = require "support.nchan"
local proc = require "support.proc"

local HERE = (os.getenv("PWD") or ".") .. "/spec/support/"

-- C only, no Lua in it: run once, in the Lua 5.4 pass
local describe_c = _VERSION == "Lua 5.4" and not rawget(_G, "jit") and describe or pending

describe_c("the C engine under a storm of canceled requests", function()
  local srv, raw, ngx
  setup(function()
    srv = testserver.start()
    raw = rawserver.start{ script = HERE .. "stress_raw.lua" }
    if nchan.available() then ngx = nchan.start{ subscriber_timeout = "3s" } end
  end)
  teardown(function()
    if ngx then ngx:stop() end
    raw:stop()
    srv:stop()
  end)

  local threads, requests, forks = (os.getenv("LONGPOLL_STRESS") or ""):match("^(%d+) (%d+) ?(%d*)$")
  threads, requests = threads or "4", requests or "250"
  forks = forks ~= "" and forks or "20"

  local function storm(bin, left, env, extra)
    local f = io.open(bin)
    assert.is_not_nil(f, bin .. " is not built (cmake -DLONGPOLL_HOST_TEST=ON)")
    f:close()
    local total = tonumber(threads) * tonumber(requests)
    local cmd = ("%s timeout %d %s %s --raw %s --threads %s --requests %s --seed %d --left %d"):format(
      env, 300 + math.floor(total / 10), bin, srv:url(""), raw:url(""), threads, requests, os.time() % 100000, left)
      .. (extra or "")
    if ngx then cmd = cmd .. (" --h2 %s --cafile %s"):format(ngx:tlsurl(""), ngx.cafile) end
    local out, ok, _, code = proc.run(cmd)
    local log = os.getenv("LONGPOLL_STRESS_LOG")
    if log then
      local f = assert(io.open(log, "a"))
      f:write(bin, "\n", out)
      f:close()
    end
    assert.is_nil(out:find("Sanitizer", 1, true), out)
    assert.is_nil(out:find("runtime error", 1, true), out)
    assert.is_true(ok, ("exit %s: %s"):format(tostring(code), out))
    local n = tonumber(out:match("stress: ok (%d+) requests"))
    assert.equals(total, n, out)
    assert.truthy(srv:wait_held(0, 10))
    return out
  end

  it("gives every request a proper result, leaks nothing and ends with its descriptors, forks meanwhile included (ASan+UBSan)", function()
    local build = (os.getenv("LONGPOLL_HOST_TEST") or "build/host_test"):match("^(.*)/[^/]*$")
    storm(build .. "/stress_test", 1, "ASAN_OPTIONS=detect_leaks=1", " --forks " .. forks)
  end)

  local tsan = os.getenv("LONGPOLL_HOST_TEST_TSAN")
  local run_tsan = tsan and tsan ~= "" and it or pending
  -- no forks: ThreadSanitizer does not support threads in a forked child
  run_tsan("is race-free under ThreadSanitizer", function()
    storm(tsan:gsub("host_test$", "stress_test"), 2, "TSAN_OPTIONS='halt_on_error=1 exitcode=66'")
  end)
end)
