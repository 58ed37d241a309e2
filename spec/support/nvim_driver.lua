-- Drives examples/nvim inside `nvim --headless` for spec/nvim_spec.lua:
--   nvim --headless -u NONE -i NONE --cmd 'set rtp^=examples/nvim' \
--     -c 'runtime plugin/longpoll_demo.lua' -c 'luafile spec/support/nvim_driver.lua' <base-url>
-- :LongpollStart, waits for the two messages published before, publishes a
-- third that the held poll must receive, :LongpollCancel, waits for the
-- cancel; writes the buffer to stdout and quits (exit 1 on a timeout).
local base = vim.fn.argv(0)
local longpoll = require "longpoll"

local function lines() return vim.api.nvim_buf_get_lines(0, 0, -1, false) end
local function has(pattern)
  return function()
    for _, l in ipairs(lines()) do if l:find(pattern) then return true end end
    return false
  end
end
local function step(what, ok)
  if not ok then
    io.stdout:write("timeout: " .. what .. "\n", table.concat(lines(), "\n"), "\n")
    vim.cmd("cquit 1")
  end
end

vim.cmd("LongpollStart " .. base)
step("two messages", vim.wait(20000, has("^2: "), 5))
-- a third message while the poll is held: the fd wakes the loop
assert(longpoll.request{ url = base .. "/publish/nvim", body = "three" }:run())
step("the third message", vim.wait(20000, has("^3: three"), 5))
local t0 = vim.loop.hrtime()
vim.cmd("LongpollCancel")
step("the cancel", vim.wait(20000, has("^%-%- poll canceled"), 1))
io.stdout:write(table.concat(lines(), "\n"), "\n")
io.stdout:write(("canceled in %.0f us (command to buffer line)\n"):format((vim.loop.hrtime() - t0) / 1e3))
vim.cmd("qall!")
