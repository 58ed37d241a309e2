-- :LongpollStart [url] shows the messages of the "nvim" channel in a buffer as
-- they arrive; :LongpollCancel cancels the poll the server holds open.
vim.api.nvim_create_user_command("LongpollStart", function(o)
  require("longpoll_demo").start(o.args)
end, { nargs = "?", desc = "long-poll a channel into a buffer" })

vim.api.nvim_create_user_command("LongpollCancel", function()
  require("longpoll_demo").cancel()
end, { desc = "cancel the running long-poll" })
