-- busted output handler: gtest-style lines per test, then one summary line
-- "N passed, N failed" (errors count as failed). With LONGPOLL_COUNTS set,
-- the two numbers are also appended to that file, with LONGPOLL_LABEL (e.g.
-- "lua5.1"), so scripts/test.sh can add up several busted runs and say which
-- one failed; with LONGPOLL_FAILURES set, each failed test is appended there
-- as "<label> <file> @ <line>: <name>", then up to four lines of its message,
-- indented.
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.gtest")(options)
  local label = os.getenv("LONGPOLL_LABEL") or ""

  local function append(path, line)
    if path and path ~= "" then
      local f = assert(io.open(path, "a"))
      f:write(line, "\n")
      f:close()
    end
  end

  -- before gtest's own summary (priority): a spec file that does not load (a
  -- syntax error) is an error whose trace lacks short_src, on which gtest's
  -- summary crashes; name the file there
  busted.subscribe({ "suite", "end" }, function()
    for _, t in ipairs(handler.errors) do
      local e = t.element or {}
      e.trace = e.trace or {}
      e.trace.short_src = e.trace.short_src or t.name or "?"
      e.trace.currentline = e.trace.currentline or 0
    end
    return nil, true
  end, { priority = 1 })

  -- after gtest's summary: the counts
  busted.subscribe({ "suite", "end" }, function()
    local passed = #handler.successes
    local failed = #handler.failures + #handler.errors
    io.write(("%d passed, %d failed\n"):format(passed, failed))
    io.flush()
    append(os.getenv("LONGPOLL_COUNTS"), ("%d %d %s"):format(passed, failed, label))
    for _, list in ipairs({ handler.failures, handler.errors }) do
      for _, t in ipairs(list) do
        local trace = t.element and t.element.trace or {}
        append(os.getenv("LONGPOLL_FAILURES"), ("%s %s @ %s: %s"):format(label,
          tostring(trace.short_src or "?"), tostring(trace.currentline or "?"), tostring(t.name)))
        -- and why, in a few lines: CI keeps only the end of the output
        local n = 0
        for line in (tostring(t.message or "") .. "\n"):gmatch("([^\n]*)\n") do
          if line:match("%S") then
            append(os.getenv("LONGPOLL_FAILURES"), "    " .. line:sub(1, 200))
            n = n + 1
            if n == 4 then break end
          end
        end
      end
    end
    return nil, true
  end)
  return handler
end
