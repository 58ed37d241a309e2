/*
 * longpoll_context.h - what the request binding (longpoll.c) uses of the
 * context binding (longpoll_context.c).
 */
#ifndef LONGPOLL_CONTEXT_H
#define LONGPOLL_CONTEXT_H

#include "lp_compat.h"
#include "lp_scope.h"

/* the scope of the longpoll.context at index i, or NULL when it is not one */
lp_scope *lp_context_test(lua_State *L, int i);
/* set module.context (the constructor) and module.context_metatable; the
   module table at index `module` must hold `error` (core.error) already */
void lp_context_open(lua_State *L, int module);

#endif
