/*
 * lp_compat.h - every Lua-version-specific C API detail of the binding, in one
 * place. The binding is written against the Lua 5.4 API; this header supplies
 * what Lua 5.3, Lua 5.1 and LuaJIT 2.1 lack, so the same longpoll.c builds
 * against any of them.
 *
 * LuaJIT builds either with its own headers (luajit-2.1/) or with Lua 5.1's
 * (what `luarocks --lua-version=5.1` passes on Debian): LuaJIT implements the
 * 5.1 API and ABI, so a module built with 5.1 headers loads in both. Both
 * header sets give LUA_VERSION_NUM 501 and get the same code below; only
 * lp_isyieldable uses LuaJIT's lua_isyieldable when its headers say it exists
 * (LuaJIT's lua.h is the only 5.1-numbered one that defines LUA_OK).
 *
 * Names: the 5.2-5.4 API names the binding calls (luaL_setfuncs, lua_getfield
 * returning a type, ...) are redirected here to static lp_compat_* versions
 * where a version lacks them or they behave differently; what has no
 * standard name (user values) is lp_*.
 */
#ifndef LP_COMPAT_H
#define LP_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if !defined(LUA_VERSION_NUM) || LUA_VERSION_NUM < 501 || LUA_VERSION_NUM > 504
#error "lua-longpoll builds against Lua 5.1, LuaJIT 2.1, Lua 5.3 or Lua 5.4"
#endif

#if LUA_VERSION_NUM == 502
#error "Lua 5.2 is not supported (5.1, LuaJIT 2.1, 5.3 and 5.4 are)"
#endif

/* 1 where numbers have an integer subtype (5.3+) */
#define LP_INTEGERS (LUA_VERSION_NUM >= 503)

#if LUA_VERSION_NUM >= 504

/* a full userdata with `nuv` user values */
#define lp_newuserdata(L, size, nuv) lua_newuserdatauv((L), (size), (nuv))
/* push user value `n` of the userdata at `idx`; returns its type */
#define lp_getuv(L, idx, n) lua_getiuservalue((L), (idx), (n))
/* pop a value into user value `n` of the userdata at `idx`; 0 if no such slot */
#define lp_setuv(L, idx, n) lua_setiuservalue((L), (idx), (n))
/* true inside a coroutine that may yield */
#define lp_isyieldable(L) lua_isyieldable(L)

#else /* 5.1, LuaJIT 2.1, 5.3: one user value (5.1: the environment table) */

#if LUA_VERSION_NUM == 501
#include <errno.h>
#include <string.h>

#ifdef LUA_OK                   /* LuaJIT 2.1's own lua.h */
#define LP_LUAJIT_HEADERS 1
#else
#define LUA_OK 0
#endif

static inline int lp_compat_absindex(lua_State *L, int i) {
  return (i > 0 || i <= LUA_REGISTRYINDEX) ? i : lua_gettop(L) + i + 1;
}
#define lua_absindex lp_compat_absindex

/* 5.1's getters return nothing; 5.3+ return the type of the pushed value */
#define lua_getfield(L, i, k) (lua_getfield((L), (i), (k)), lua_type((L), -1))
#define lua_rawget(L, i) (lua_rawget((L), (i)), lua_type((L), -1))
#define lua_rawgeti(L, i, n) (lua_rawgeti((L), (i), (n)), lua_type((L), -1))
#define lua_gettable(L, i) (lua_gettable((L), (i)), lua_type((L), -1))
#define lua_rawlen(L, i) lua_objlen((L), (i))
/* t[p] for a light userdata p, raw (5.2+) */
static inline int lp_compat_rawgetp(lua_State *L, int i, const void *p) {
  i = lp_compat_absindex(L, i);
  lua_pushlightuserdata(L, (void *)p);
  return lua_rawget(L, i);
}
#define lua_rawgetp lp_compat_rawgetp
static inline void lp_compat_rawsetp(lua_State *L, int i, const void *p) {
  i = lp_compat_absindex(L, i);
  lua_pushlightuserdata(L, (void *)p);
  lua_insert(L, -2);
  lua_rawset(L, i);
}
#define lua_rawsetp lp_compat_rawsetp
#define luaL_len(L, i) ((lua_Integer)lua_objlen((L), (i)))
#ifndef luaL_newlibtable        /* LuaJIT's headers have it */
#define luaL_newlibtable(L, l) \
  lua_createtable((L), 0, (int)(sizeof(l) / sizeof((l)[0]) - 1))
#endif

/* no integer subtype: a number is an "integer" when its value is integral
   and fits lua_Integer (what lua_tointeger can return unchanged) */
static inline int lp_compat_isinteger(lua_State *L, int i) {
  lua_Number n;
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
  n = lua_tonumber(L, i);
  return n >= -9223372036854775808.0 && n < 9223372036854775808.0 &&
         (lua_Number)(lua_Integer)n == n;
}
#define lua_isinteger lp_compat_isinteger

static inline void lp_compat_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}
#define luaL_setmetatable lp_compat_setmetatable

static inline void *lp_compat_testudata(lua_State *L, int i, const char *tname) {
  void *p = lua_touserdata(L, i);
  if (p == NULL || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}
#define luaL_testudata lp_compat_testudata

/* what tostring() shows: __tostring, or the plain conversion */
static inline const char *lp_compat_tolstring(lua_State *L, int i, size_t *len) {
  i = lua_absindex(L, i);
  if (luaL_callmeta(L, i, "__tostring")) {
    if (!lua_isstring(L, -1)) luaL_error(L, "'__tostring' must return a string");
  } else {
    switch (lua_type(L, i)) {
    case LUA_TNUMBER: case LUA_TSTRING: lua_pushvalue(L, i); break;
    case LUA_TBOOLEAN: lua_pushstring(L, lua_toboolean(L, i) ? "true" : "false"); break;
    case LUA_TNIL: lua_pushliteral(L, "nil"); break;
    default:
      lua_pushfstring(L, "%s: %p", luaL_typename(L, i), lua_topointer(L, i));
    }
  }
  return lua_tolstring(L, -1, len);
}
#define luaL_tolstring lp_compat_tolstring

static inline int lp_compat_fileresult(lua_State *L, int stat, const char *fname) {
  int en = errno;
  if (stat) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  if (fname) lua_pushfstring(L, "%s: %s", fname, strerror(en));
  else lua_pushstring(L, strerror(en));
  lua_pushinteger(L, en);
  return 3;
}
#define luaL_fileresult lp_compat_fileresult

/* true inside a coroutine that may yield. LuaJIT knows; Lua 5.1 cannot tell
   a C-call boundary (pcall, metamethod) from C, so it answers "not the main
   thread" and a yield across such a boundary raises Lua's own error */
#ifdef LP_LUAJIT_HEADERS
#define lp_isyieldable(L) lua_isyieldable(L)
#else
static inline int lp_isyieldable(lua_State *L) {
  int main = lua_pushthread(L);
  lua_pop(L, 1);
  return !main;
}
#endif

#define lp_pushuvtable(L, i) lua_getfenv((L), (i))
#define lp_setuvtable(L, i) lua_setfenv((L), (i))

#else /* 5.3 */

#define lp_isyieldable(L) lua_isyieldable(L)
#define lp_pushuvtable(L, i) lua_getuservalue((L), (i))
#define lp_setuvtable(L, i) lua_setuservalue((L), (i))

#endif

/* 5.4's luaL_setfuncs also takes a NULL function as a placeholder (false),
   which metatables use for __index; 5.3's would make a closure of NULL */
static inline void lp_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name; l++) {
    int i;
    if (!l->func) {
      lua_pushboolean(L, 0);
    } else {
      for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
      lua_pushcclosure(L, l->func, nup);
    }
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#undef luaL_setfuncs
#define luaL_setfuncs lp_compat_setfuncs

/* user values: 5.4 has `nuv` slots per userdata; older versions have one
   (5.3: any value, 5.1: a table), so the slots live in a table there */
static inline void *lp_newuserdata(lua_State *L, size_t size, int nuv) {
  void *p = lua_newuserdata(L, size);
  if (nuv > 0) {
    lua_createtable(L, nuv, 0);
    lp_setuvtable(L, -2);
  }
  return p;
}

static inline int lp_getuv(lua_State *L, int idx, int n) {
  lp_pushuvtable(L, idx);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNONE;
  }
  lua_rawgeti(L, -1, n);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

static inline int lp_setuv(lua_State *L, int idx, int n) {
  idx = lua_absindex(L, idx);
  lp_pushuvtable(L, idx);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 2);
    return 0;
  }
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
  return 1;
}

#endif

#endif
