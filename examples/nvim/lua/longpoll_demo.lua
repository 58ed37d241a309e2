-- A Neovim plugin that long-polls a channel and shows its messages in a
-- buffer. The request's fd() is watched with vim.loop.new_poll (luv), so
-- the editor never waits for the network; :LongpollCancel cancels the poll
-- the server holds open, and the fd wakes the loop at once.
--   nvim --cmd 'set rtp+=examples/nvim' -c 'LongpollStart http://127.0.0.1:8080'
-- (plugin/longpoll_demo.lua defines the commands; LUA_PATH and LUA_CPATH
-- must find longpoll built for LuaJIT, see README)
local longpoll = require "longpoll"
local uv = vim.loop

local M = { channel = "nvim" }
local current -- { req =, handle = } while a poll runs

-- the scratch buffer "longpoll://<channel>", made on first use
local function buffer()
  if M.buf and vim.api.nvim_buf_is_valid(M.buf) then return M.buf end
  M.buf = vim.api.nvim_create_buf(true, true)
  vim.api.nvim_buf_set_name(M.buf, "longpoll://" .. M.channel)
  vim.api.nvim_buf_set_lines(M.buf, 0, -1, false, { "-- messages on " .. M.channel })
  return M.buf
end

local function append(line)
  vim.api.nvim_buf_set_lines(buffer(), -1, -1, false, { line })
end

local poll_next

-- the poll finished: show what it brought, then poll again (unless canceled)
local function finished(req)
  current = nil
  local msgs, err = req:run() -- finished: returns at once
  if msgs then
    for _, m in ipairs(msgs) do
      M.since = m.id
      append(("%s: %s"):format(m.id, m.data))
    end
    poll_next()
  elseif err.kind == "canceled" then
    append("-- poll canceled")
  else
    append("-- poll failed: " .. tostring(err) .. " (again in 1 s)")
    vim.defer_fn(function() if not current then poll_next() end end, 1000)
  end
end

function poll_next()
  local req = longpoll.request{
    url = M.url .. "/poll/" .. M.channel, query = { since = M.since }, timeout = 30,
  }
  local handle = uv.new_poll(req:start():fd())
  current = { req = req, handle = handle }
  handle:start("r", function()
    handle:close()
    -- a luv callback may not touch buffers: finish on the main loop
    vim.schedule(function() finished(req) end)
  end)
end

-- :LongpollStart [url]: show the buffer and poll the channel from the start
function M.start(url)
  M.url = (url and url ~= "") and url or M.url or "http://127.0.0.1:8080"
  M.since = M.since or "0"
  vim.api.nvim_set_current_buf(buffer())
  if not current then poll_next() end
end

-- :LongpollCancel: cancel the running poll (its fd wakes the loop at once)
function M.cancel()
  if current then current.req:cancel() end
end

return M
