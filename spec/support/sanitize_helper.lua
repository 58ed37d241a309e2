-- busted helper for the ASan+UBSan run of scripts/test.sh. The spec process
-- runs with libasan preloaded and leak checking on; the processes it starts
-- keep the preload (a Lua child loads the sanitized module, which needs the
-- runtime first) but check no leaks: interpreters, nginx and the fixtures
-- exit without freeing, which is not the module's to answer for. Then the
-- usual helper.
local uv = require "luv"
local opts = os.getenv("ASAN_OPTIONS") or ""
uv.os_setenv("ASAN_OPTIONS", (opts:gsub("detect_leaks=1", "detect_leaks=0")))
dofile("spec/helper.lua")
