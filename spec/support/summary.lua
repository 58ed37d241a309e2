-- busted output handler: gtest-style lines per test, then one summary line
-- "N passed, N failed" (errors count as failed). With LONGPOLL_COUNTS set,
-- the two numbers are also appended to that file so scripts/test.sh can add
-- up several busted runs.
return function(options)
  local handler = require("busted.outputHandlers.gtest")(options)
  local suite_end = handler.suiteEnd
  handler.suiteEnd = function(...)
    local a, b = suite_end(...)
    local passed = #handler.successes
    local failed = #handler.failures + #handler.errors
    io.write(("%d passed, %d failed\n"):format(passed, failed))
    io.flush()
    local counts = os.getenv("LONGPOLL_COUNTS")
    if counts and counts ~= "" then
      local f = assert(io.open(counts, "a"))
      f:write(passed, " ", failed, "\n")
      f:close()
    end
    return a, b
  end
  return handler
end
