/*
 * fuzz_lua.h - what the libFuzzer targets of the binding and the Lua layer
 * share: the binding compiled into the target (its static parsers are
 * reached directly), and one Lua 5.4 state per process with longpoll loaded
 * the way users load it (longpoll.lua over longpoll.core, lua-cjson from the
 * system), the Lua files from this source tree.
 */
#ifndef LP_FUZZ_LUA_H
#define LP_FUZZ_LUA_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lualib.h>

#include "longpoll.c"           /* the binding, statics included */

/* the state, made on first use: package.path starts with the tree's lua/,
   and longpoll.core is this binary's own luaopen */
static inline lua_State *fuzz_state(void) {
  static lua_State *L;
  if (L) return L;
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, LP_SOURCE_DIR "/lua/?.lua;" LP_SOURCE_DIR "/lua/?/init.lua;");
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_longpoll_core);
  lua_setfield(L, -2, "longpoll.core");
  lua_pop(L, 2);
  if (luaL_dostring(L, "longpoll = require 'longpoll'") != LUA_OK) {
    fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
    abort();
  }
  return L;
}

/* a Lua error where none may be: print it and abort (the fuzzer's finding) */
static inline void fuzz_fail(lua_State *L, const char *what) {
  fprintf(stderr, "fuzz: %s: %s\n", what, lua_tostring(L, -1));
  abort();
}

/* bytes of the input, taken from the front */
typedef struct fuzz_in {
  const uint8_t *p;
  size_t n;
} fuzz_in;

static inline unsigned fuzz_byte(fuzz_in *in) {
  if (!in->n) return 0;
  in->n--;
  return *in->p++;
}

/* up to `max` bytes (their count from the next byte) */
static inline size_t fuzz_bytes(fuzz_in *in, size_t max, const char **s) {
  size_t len = fuzz_byte(in) % (max + 1);
  if (len > in->n) len = in->n;
  *s = (const char *)in->p;
  in->p += len;
  in->n -= len;
  return len;
}

/* outcomes of the inputs, by name, printed at exit with LONGPOLL_FUZZ_STATS=1 */
#define FUZZ_MAX_OUTCOMES 16
static struct { const char *name; unsigned long n; } fuzz_outcomes[FUZZ_MAX_OUTCOMES];

static void fuzz_print_outcomes(void) {
  int i;
  for (i = 0; i < FUZZ_MAX_OUTCOMES && fuzz_outcomes[i].name; i++)
    fprintf(stderr, "fuzz outcome %s: %lu\n", fuzz_outcomes[i].name, fuzz_outcomes[i].n);
}

/* count one input's outcome (`name` a string that lives: a literal, or Lua's
   interned one kept by the driver) */
static inline void fuzz_outcome(const char *name) {
  static int registered;
  int i;
  if (!registered) {
    registered = 1;
    if (getenv("LONGPOLL_FUZZ_STATS")) atexit(fuzz_print_outcomes);
  }
  for (i = 0; i < FUZZ_MAX_OUTCOMES; i++) {
    if (!fuzz_outcomes[i].name) fuzz_outcomes[i].name = strdup(name);
    if (strcmp(fuzz_outcomes[i].name, name) == 0) {
      fuzz_outcomes[i].n++;
      return;
    }
  }
}

/* collect now and then: what an input made is garbage after it */
static inline void fuzz_collect(lua_State *L) {
  static unsigned n;
  if (++n % 256 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  lua_settop(L, 0);
}

#endif
