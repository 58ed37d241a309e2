-- Loaded by busted before the specs: choose which build of longpoll they see,
-- for the Lua busted runs under (busted --lua=lua5.1|luajit|lua5.3|lua5.4).
--   LONGPOLL_TREE=<dir>  a LuaRocks tree the rockspec installed into (the
--                        install path users take; the test command uses it):
--                        <dir>/lib/lua/<5.x>/, so LuaJIT finds the 5.1 build
--                        there unless pointed at a tree of its own
--   LONGPOLL_BUILD=<dir> a CMake build directory (default: build for 5.4,
--                        build-5.1, build-5.3 or build-luajit)
--   LONGPOLL_LUA         the interpreter specs run Lua subprocesses with
--                        (spec/support/lua.lua; default: the one running)
package.path = "spec/?.lua;" .. package.path
local version = _VERSION:match("%d+%.%d+")
local tree = os.getenv("LONGPOLL_TREE")
if tree and tree ~= "" then
  package.path = ("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;"):format(tree, version, tree, version)
    .. package.path
  package.cpath = ("%s/lib/lua/%s/?.so;"):format(tree, version) .. package.cpath
else
  local build = os.getenv("LONGPOLL_BUILD")
  if not build or build == "" then build = require "support.build" end
  package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
  package.cpath = build .. "/?.so;" .. package.cpath
end

-- luv keeps one default loop per process: loaded once here, before busted
-- insulates each spec file, it is never opened twice (a second luaopen_luv in
-- one state after the first one's loop was closed crashes libuv)
pcall(require, "luv")
