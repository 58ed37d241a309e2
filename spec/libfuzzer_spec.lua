-- The libFuzzer targets of the parsers the project owns (#7), each for a
-- short run from its seed corpus (spec/libfuzzer/corpus/<name>): option
-- validation with header lines and URL/query building (options_fuzz), the
-- header splitting of responses (headers_fuzz), subscribe's cursor
-- extraction (cursor_fuzz). Built by scripts/setup.sh into build-fuzz/ with
-- clang (-DLONGPOLL_FUZZ=ON); each file's header says what it checks.
-- LONGPOLL_FUZZ_SECONDS sets each run's length (15).
local proc = require "support.proc"

-- the targets are C with Lua 5.4 inside: run once, in the 5.4 pass; not in
-- the ASan stage (its preloaded gcc runtime and clang's in the targets clash)
local asan = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true)
local describe_54 = _VERSION == "Lua 5.4" and not rawget(_G, "jit") and not asan and describe or pending

describe_54("the libFuzzer targets", function()
  local seconds = tonumber(os.getenv("LONGPOLL_FUZZ_SECONDS") or "") or 15
  for _, name in ipairs{ "options", "headers", "cursor" } do
    it(name .. "_fuzz finds nothing in a short run", function()
      local bin = "build-fuzz/" .. name .. "_fuzz"
      local f = io.open(bin)
      assert.is_not_nil(f, bin .. " is not built (CC=clang cmake -DLONGPOLL_FUZZ=ON)")
      f:close()
      local dict = io.open("spec/libfuzzer/" .. name .. ".dict") and
        ("-dict=spec/libfuzzer/%s.dict"):format(name) or ""
      -- a scratch copy of the seeds: the run adds to its corpus
      local dir = os.tmpname()
      os.remove(dir)
      local out, copied = proc.run(("mkdir %s && cp spec/libfuzzer/corpus/%s/* %s"):format(dir, name, dir))
      assert.is_true(copied, out)
      out = proc.run(("timeout %d %s -max_total_time=%d %s -artifact_prefix=%s/ -print_final_stats=1 %s 2>&1"):format(
        seconds + 60, bin, seconds, dict, dir, dir))
      proc.run("rm -rf " .. dir)
      local runs = tonumber(out:match("stat::number_of_executed_units:%s*(%d+)"))
      assert.is_nil(out:find("ERROR: libFuzzer", 1, true), out:sub(-3000))
      assert.is_not_nil(runs, out:sub(-3000))
      assert.is_true(runs > 1000, out:sub(-3000))
      local log = os.getenv("LONGPOLL_STRESS_LOG")
      if log then
        local l = assert(io.open(log, "a"))
        l:write(name, "_fuzz: ", runs, " runs in ", seconds, " s\n")
        l:close()
      end
    end)
  end
end)
