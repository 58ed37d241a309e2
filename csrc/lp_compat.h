/*
 * lp_compat.h - every Lua-version-specific C API call of the binding, in one
 * place. Lua 5.4 is the target; 5.1/LuaJIT/5.3 will add branches here only.
 */
#ifndef LP_COMPAT_H
#define LP_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM >= 504
/* a full userdata with `nuv` user values */
#define lp_newuserdata(L, size, nuv) lua_newuserdatauv((L), (size), (nuv))
/* push user value `n` of the userdata at `idx`; returns its type */
#define lp_getuv(L, idx, n) lua_getiuservalue((L), (idx), (n))
/* pop a value into user value `n` of the userdata at `idx` */
#define lp_setuv(L, idx, n) lua_setiuservalue((L), (idx), (n))
/* true inside a coroutine that may yield */
#define lp_isyieldable(L) lua_isyieldable(L)
#else
#error "lua-longpoll currently builds against Lua 5.4 only"
#endif

#endif
