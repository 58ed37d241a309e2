-- The CMake build directory scripts/setup.sh makes for the Lua running the
-- specs (build for 5.4, build-5.1, build-5.3, build-luajit): the module
-- (<dir>/longpoll/core.so) and the C host test (<dir>/host_test)
local version = _VERSION:match("%d+%.%d+")
if rawget(_G, "jit") then return "build-luajit" end
return version == "5.4" and "build" or "build-" .. version
