-- The Lua interpreter under test, for specs that run Lua in a subprocess
-- (examples, exit with requests in flight): $LONGPOLL_LUA, which
-- scripts/test.sh sets per version, else the Lua running the specs.
-- Fixtures (spec/support/server.lua) stay on lua5.4 whatever this is.
local env = os.getenv("LONGPOLL_LUA")
if env and env ~= "" then return env end
return rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
