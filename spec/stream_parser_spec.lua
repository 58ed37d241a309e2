-- The stream splitter (csrc/lp_stream.c) on its own, through its C programs:
-- spec/stream/stream_test.c (built by scripts/setup.sh into build/, under
-- ASan and UBSan) and the libFuzzer target spec/stream/stream_fuzz.c (into
-- build-fuzz/ with clang)
local proc = require "support.proc"

local function built(path, how)
  local f = io.open(path)
  assert.is_not_nil(f, path .. " is not built (" .. how .. ")")
  f:close()
end

describe("the stream splitter", function()
  it("gives every format's messages the same however the input is cut", function()
    local bin = os.getenv("LONGPOLL_STREAM_TEST") or require("support.build") .. "/stream_test"
    built(bin, "cmake -DLONGPOLL_HOST_TEST=ON")
    local out, ok, how, code = proc.run("timeout 120 " .. bin)
    assert.is_true(ok, out)
    assert.equals("exit", how)
    assert.equals(0, code)
    assert.matches("^stream: %d+ splits ok\n$", out)
  end)

  -- the C code is the same whatever Lua runs the specs: fuzz once, in the 5.4 pass
  local fuzz = _VERSION == "Lua 5.4" and it or pending
  fuzz("survives a short differential fuzzing run", function()
    local bin = os.getenv("LONGPOLL_STREAM_FUZZ") or "build-fuzz/stream_fuzz"
    built(bin, "CC=clang cmake -DLONGPOLL_STREAM_FUZZ=ON")
    -- a scratch copy of the seed corpus: the run adds to it
    local dir = os.tmpname()
    os.remove(dir)
    local out, copied = proc.run("mkdir " .. dir .. " && cp spec/stream/corpus/* " .. dir)
    assert.is_true(copied, out)
    local out, ok = proc.run(("timeout 60 %s -max_total_time=5 -dict=spec/stream/stream_fuzz.dict " ..
      "-artifact_prefix=%s/ -print_final_stats=1 %s 2>&1"):format(bin, dir, dir))
    proc.run("rm -rf " .. dir)
    assert.is_true(ok, out:sub(-3000))
    local runs = tonumber(out:match("stat::number_of_executed_units:%s*(%d+)"))
    assert.is_not_nil(runs, out:sub(-3000))
    assert.is_true(runs > 1000, out:sub(-3000))
  end)
end)
