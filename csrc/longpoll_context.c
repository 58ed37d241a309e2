/*
 * longpoll_context.c - the Lua binding of cancel scopes: `longpoll.context`
 * objects over lp_scope (lp_scope.h), Go's context in Lua.
 *
 * Each object holds one share of its scope. Several objects may hold the
 * same scope: in other Lua states (ctx:share() gives an id that
 * longpoll.context(id) turns back into the scope in any state of the
 * process) or in this one. The scope lives while any object, request or
 * child holds it; collecting an object only drops its share (it does not
 * cancel: others may depend on the scope, as in Go), while close() and
 * `<close>` cancel.
 *
 * Every function has core.error as upvalue 1: errors are the objects run()
 * returns.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "longpoll_context.h"

#define LP_SCOPE_MT "longpoll.scope"   /* the registry key of the metatable */
#define LP_MAX_SECONDS (86400.0 * 365)  /* as a request's timeout */

typedef struct lctxobj {
  lp_scope *s;                  /* NULL once collected */
} lctxobj;

lp_scope *lp_context_test(lua_State *L, int i) {
  lctxobj *o = (lctxobj *)luaL_testudata(L, i, LP_SCOPE_MT);
  return o ? o->s : NULL;
}

/* the one checked accessor every method uses */
static lp_scope *check_context(lua_State *L, int i) {
  lp_scope *s = lp_context_test(L, i);
  if (!s) luaL_argerror(L, i, lua_pushfstring(L, "longpoll.context expected, got %s",
                                              luaL_typename(L, i)));
  return s;
}

/* a new, empty object on the stack: it takes its share only once it is
   made, so nothing leaks if Lua runs out of memory */
static lctxobj *new_object(lua_State *L) {
  lctxobj *o = (lctxobj *)lp_newuserdata(L, sizeof *o, 0);
  o->s = NULL;
  luaL_setmetatable(L, LP_SCOPE_MT);
  return o;
}

/* the object on top takes the share of a new scope */
static void hold_new(lua_State *L, lctxobj *o, lp_scope *parent, double timeout) {
  if (!(o->s = lp_scope_new(parent, timeout))) luaL_error(L, "longpoll.context: out of memory");
}

/* read {timeout =, parent =} at index t (nil: none) into *timeout and
   *parent; `who` names the function in messages */
static void read_options(lua_State *L, int t, const char *who, double *timeout,
                         lp_scope **parent) {
  *timeout = 0;
  if (lua_isnoneornil(L, t)) return;
  if (lua_type(L, t) != LUA_TTABLE)
    luaL_error(L, "%s: expects a table of options (got %s)", who, luaL_typename(L, t));
  lua_pushnil(L);
  while (lua_next(L, t)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (k && strcmp(k, "timeout") == 0) {
      lua_Number n = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
      if (!(n > 0 && n <= LP_MAX_SECONDS))
        luaL_error(L, "%s: option 'timeout' must be a positive number of seconds", who);
      *timeout = (double)n;
    } else if (k && strcmp(k, "parent") == 0 && parent) {
      if (!(*parent = lp_context_test(L, -1)))
        luaL_error(L, "%s: option 'parent' must be a longpoll.context", who);
    } else if (k) {
      luaL_error(L, "%s: unknown option '%s'", who, k);
    } else {
      luaL_error(L, "%s: unknown option of type %s", who, luaL_typename(L, -2));
    }
    lua_pop(L, 1);
  }
}

/* longpoll.context([opts]) -> a new scope; longpoll.context(id) -> the
   shared scope with that id (ctx:share() in any Lua state) */
static int context_new(lua_State *L) {
  lp_scope *parent = NULL;
  double timeout;
  if (lua_type(L, 1) == LUA_TNUMBER) {
    lua_Number id = lua_tonumber(L, 1);
    lctxobj *o = new_object(L);
    if (id >= 1 && id < 9007199254740992.0 && id == floor(id))
      o->s = lp_scope_find((unsigned long long)id);
    if (!o->s) luaL_argerror(L, 1, "no context has this id (an id of ctx:share() lasts while the context is held)");
    return 1;
  }
  read_options(L, 1, "longpoll.context", &timeout, &parent);
  hold_new(L, new_object(L), parent, timeout);
  return 1;
}

/* ctx:context([opts]) -> a child scope (opts: timeout) */
static int context_child(lua_State *L) {
  lp_scope *parent = check_context(L, 1);
  double timeout;
  read_options(L, 2, "longpoll.context:context", &timeout, NULL);
  hold_new(L, new_object(L), parent, timeout);
  return 1;
}

/* ctx:cancel() -> true when this call ended the scope */
static int context_cancel(lua_State *L) {
  lua_pushboolean(L, lp_scope_cancel(check_context(L, 1)));
  return 1;
}

/* ctx:done() -> boolean, never blocks */
static int context_done(lua_State *L) {
  lua_pushboolean(L, lp_scope_err(check_context(L, 1)) != LP_OK);
  return 1;
}

/* ctx:err() -> nil while active, else an error object whose kind is
   "canceled" or "timeout" */
static int context_err(lua_State *L) {
  lp_kind k = lp_scope_err(check_context(L, 1));
  if (k == LP_OK) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushstring(L, lp_kind_name(k));
  lua_pushstring(L, lp_scope_why(k));
  lua_call(L, 2, 1);
  return 1;
}

/* ctx:wait([seconds]) -> done; blocks this OS thread until the scope ends */
static int context_wait(lua_State *L) {
  lp_scope *s = check_context(L, 1);
  lua_Number t = luaL_optnumber(L, 2, -1);
  luaL_argcheck(L, t == t, 2, "must be a number of seconds");
  lua_pushboolean(L, lp_scope_wait(s, t < 0 ? -1 : (double)t));
  return 1;
}

/* ctx:fd() -> integer readable once the scope ended, or nil, message */
static int context_fd(lua_State *L) {
  int fd = lp_scope_fd(check_context(L, 1));
  if (fd < 0) return luaL_fileresult(L, 0, NULL);
  lua_pushinteger(L, fd);
  return 1;
}

/* ctx:deadline() -> the deadline on longpoll.now()'s clock, or nil */
static int context_deadline(lua_State *L) {
  double d = lp_scope_deadline(check_context(L, 1));
  if (d > 0) lua_pushnumber(L, (lua_Number)d); else lua_pushnil(L);
  return 1;
}

/* ctx:share() -> an id that longpoll.context(id) turns into this scope in
   any Lua state of the process, while the scope is held */
static int context_share(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lp_scope_share(check_context(L, 1)));
  return 1;
}

/* ctx:close() and __close: cancel; the object stays usable */
static int context_close(lua_State *L) {
  lp_scope_cancel(check_context(L, 1));
  return 0;
}

/* __gc: drop this object's share; safe to run twice */
static int context_gc(lua_State *L) {
  lctxobj *o = (lctxobj *)luaL_checkudata(L, 1, LP_SCOPE_MT);
  lp_scope_release(o->s);
  o->s = NULL;
  return 0;
}

/* #ctx -> the unfinished requests directly under it */
static int context_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lp_scope_count(check_context(L, 1)));
  return 1;
}

/* two objects of one scope are equal */
static int context_eq(lua_State *L) {
  lua_pushboolean(L, lp_context_test(L, 1) == lp_context_test(L, 2));
  return 1;
}

/* e.g. "longpoll.context: active, 3 requests, deadline in 1.5 s" */
static int context_tostring(lua_State *L) {
  lctxobj *o = (lctxobj *)luaL_checkudata(L, 1, LP_SCOPE_MT);
  lp_kind k;
  double d;
  size_t n;
  if (!o->s) {
    lua_pushliteral(L, "longpoll.context: (collected)");
    return 1;
  }
  k = lp_scope_err(o->s);
  if (k != LP_OK) {
    lua_pushfstring(L, "longpoll.context: %s", lp_kind_name(k));
    return 1;
  }
  n = lp_scope_count(o->s);
  lua_pushfstring(L, "longpoll.context: active, %d request%s", (int)n, n == 1 ? "" : "s");
  d = lp_scope_deadline(o->s);
  if (d > 0) {
    char left[32];
    snprintf(left, sizeof left, "%.3g", d - lp_clock());
    lua_pushfstring(L, ", deadline in %s s", left);
    lua_concat(L, 2);
  }
  return 1;
}

static const luaL_Reg meth[] = {
  {"cancel", context_cancel}, {"done", context_done}, {"err", context_err},
  {"wait", context_wait}, {"fd", context_fd}, {"deadline", context_deadline},
  {"share", context_share}, {"context", context_child}, {"close", context_close},
  {NULL, NULL}
};

static const luaL_Reg metameth[] = {
  {"__index", NULL}, {"__gc", context_gc}, {"__close", context_close},
  {"__len", context_len}, {"__eq", context_eq}, {"__tostring", context_tostring},
  {NULL, NULL}
};

void lp_context_open(lua_State *L, int module) {
  module = lua_absindex(L, module);
  lua_getfield(L, module, "error");
  luaL_newmetatable(L, LP_SCOPE_MT);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, metameth, 1);
  luaL_newlibtable(L, meth);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, meth, 1);
  lua_setfield(L, -2, "__index");
  lua_setfield(L, module, "context_metatable");
  lua_pushcclosure(L, context_new, 1);
  lua_setfield(L, module, "context");
}
