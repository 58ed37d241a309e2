-- busted output handler: gtest-style lines per test, then one summary line
-- "N passed, N failed" (errors count as failed). With LONGPOLL_COUNTS set,
-- the two numbers are also appended to that file so scripts/test.sh can add
-- up several busted runs.
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.gtest")(options)
  busted.subscribe({ "suite", "end" }, function()
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
    return nil, true
  end)
  return handler
end
