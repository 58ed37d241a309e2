-- The seed scenario: long-poll a server for messages, then start a poll the
-- server holds open and cancel it the way a "Cancel" button would.
--   lua5.4 examples/cancel.lua http://127.0.0.1:8080
-- (scripts/demo.sh starts the spec server and runs this against it)
local longpoll = require "longpoll"

local base = arg[1] or os.getenv("LONGPOLL_DEMO_URL") or "http://127.0.0.1:8080"

-- publish two messages, then long-poll them back as Lua tables
for _, text in ipairs({ "hello", "world" }) do
  assert(longpoll.request{ url = base .. "/publish/demo", body = text }:run())
end
local msgs, resp = longpoll.request{
  url = base .. "/poll/demo", query = { since = "0" }, timeout = 30,
}:run()
assert(msgs, resp)
print(("received %d messages (HTTP %d):"):format(#msgs, resp.status))
for _, m in ipairs(msgs) do print(("  id=%s data=%s"):format(m.id, m.data)) end

-- now a poll with nothing new: the server holds it open
local last = msgs[#msgs].id
local req = longpoll.request{ url = base .. "/poll/demo", query = { since = last }, timeout = 60 }
req:start()
print(("polling for news after id %s (%s) ..."):format(last, req:status()))
req:wait(0.5) -- half a second later the user presses "Cancel"

local t0 = longpoll.now()
req:cancel()
local value, err = req:run()
local took = longpoll.now() - t0
print(("canceled: value=%s kind=%s after %.1f us"):format(tostring(value), err.kind, took * 1e6))
print("error: " .. tostring(err))
assert(err.kind == "canceled")
