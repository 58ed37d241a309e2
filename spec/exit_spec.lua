-- Process exit with HTTPS requests in flight (#7.3): Lua's plain os.exit(code)
-- does not close the state, so OpenSSL's exit handler runs while the worker
-- may be inside libcurl; the engine stops its worker first.
local nchan = require "support.nchan"
local proc = require "support.proc"

local LUA = require "support.lua"

local CHILD = [[
local longpoll = require "longpoll"
local url, cafile, n = ...
n = tonumber(n)
local reqs = {}
for i = 1, n do
  reqs[i] = longpoll.request{ url = url .. i, cainfo = cafile }:start()
end
-- exit at different moments of the first TLS handshakes
if n % 2 == 0 then reqs[1]:wait(0.002) end
io.write("exiting\n")
os.exit(0)
]]

local describe_nchan = nchan.available() and describe or pending

describe_nchan("exit with HTTPS requests in flight", function()
  local ng, script
  setup(function()
    ng = nchan.start{ subscriber_timeout = "60s" }
    script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(CHILD)
    f:close()
  end)
  teardown(function()
    os.remove(script)
    if ng then ng:stop() end
  end)

  -- runs the child `runs` times; returns the failures (how, code, output)
  local function run_children(runs, cpath, prefix)
    local failures = {}
    for i = 1, runs do
      local out, ok, how, code = proc.run(("%s LUA_PATH=%s LUA_CPATH=%s timeout 60 %s %s %s %s %d"):format(
        prefix or "", proc.shell_quote(package.path), proc.shell_quote(cpath), LUA, script,
        ng:tlsurl("/sub/exit"), ng.cafile, 10 + i % 3))
      if not (ok and how == "exit" and code == 0 and out == "exiting\n") then
        failures[#failures + 1] = ("run %d: %s %s: %s"):format(i, tostring(how), tostring(code), out:sub(1, 400))
      end
    end
    return failures
  end

  it("os.exit(0) never crashes (20 runs)", function()
    local failures = run_children(20, package.cpath)
    assert.equals(0, #failures, table.concat(failures, "\n"))
  end)

  -- scripts/test.sh builds the module with ThreadSanitizer (build-tsan/), for Lua 5.4
  local tsan = LUA == "lua5.4" and os.getenv("LONGPOLL_HOST_TEST_TSAN")
  local libtsan = proc.run("gcc -print-file-name=libtsan.so"):gsub("%s+$", "")
  local run_tsan = tsan and tsan ~= "" and libtsan:find("/", 1, true) and it or pending
  run_tsan("os.exit(0) under ThreadSanitizer: no crash, no report (6 runs)", function()
    local cpath = tsan:match("^(.*)/[^/]*$") .. "/?.so;" .. package.cpath
    local failures = run_children(6, cpath, ("LD_PRELOAD=%s TSAN_OPTIONS='halt_on_error=1 exitcode=66'"):format(libtsan))
    assert.equals(0, #failures, table.concat(failures, "\n"))
  end)
end)
