-- Loaded by busted before the specs: choose which build of longpoll they see.
--   LONGPOLL_TREE=<dir>  a LuaRocks tree the rockspec installed into (the
--                        install path users take; the test command uses it)
--   LONGPOLL_BUILD=<dir> a CMake build directory (default: build)
local tree = os.getenv("LONGPOLL_TREE")
if tree and tree ~= "" then
  package.path = tree .. "/share/lua/5.4/?.lua;" .. tree .. "/share/lua/5.4/?/init.lua;" .. package.path
  package.cpath = tree .. "/lib/lua/5.4/?.so;" .. package.cpath
else
  package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
  package.cpath = (os.getenv("LONGPOLL_BUILD") or "build") .. "/?.so;" .. package.cpath
end
package.path = "spec/?.lua;" .. package.path

-- luv keeps one default loop per process: loaded once here, before busted
-- insulates each spec file, it is never opened twice (a second luaopen_luv in
-- one state after the first one's loop was closed crashes libuv)
pcall(require, "luv")
