/*
 * context_host.c - one longpoll.context shared by three Lua states on three
 * OS threads, as a host (a game with worker threads, LÖVE's love.thread)
 * would use it: the main state makes the context and shares its id; one
 * thread's state blocks in run() on a held request under it, another's in
 * ctx:wait(); the main thread cancels, and both wake with "canceled".
 *
 *   cc -O2 -o context_host spec/host/context_host.c $(pkg-config --cflags --libs lua5.4) -lpthread
 *   LUA_PATH=... LUA_CPATH=... ./context_host http://127.0.0.1:8080
 * prints "context_host: ok". LUA_PATH and LUA_CPATH say where longpoll is
 * (luaL_openlibs reads them, as in examples/host/host.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef LUA_OK                  /* Lua 5.1 */
#define LUA_OK 0
#endif

static const char run_chunk[] =
  "local longpoll = require 'longpoll'\n"
  "local base, id = ...\n"
  "local ctx = longpoll.context(id)\n"
  "local req = longpoll.request{ url = base .. '/hold', context = ctx:context() }\n"
  "blocking()\n"
  "local value, err = req:run()\n"
  "assert(value == nil and err.kind == 'canceled', tostring(err))\n"
  "assert(err.message:find('context canceled', 1, true), err.message)\n"
  "return 'ok'\n";

static const char wait_chunk[] =
  "local longpoll = require 'longpoll'\n"
  "local base, id = ...\n"
  "local ctx = longpoll.context(id)\n"
  "blocking()\n"
  "assert(ctx:wait(60) == true, 'wait timed out')\n"
  "assert(ctx:err().kind == 'canceled')\n"
  "return 'ok'\n";

static const char main_chunk[] =
  "local longpoll = require 'longpoll'\n"
  "ctx = longpoll.context()\n"
  "return ctx:share()\n";

static void fail(const char *who, lua_State *L) {
  fprintf(stderr, "%s: %s\n", who, lua_tostring(L, -1));
  exit(1);
}

/* a state with the standard libraries (package.path from LUA_PATH) */
static lua_State *open_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  return L;
}

struct job {
  const char *chunk, *base;
  lua_Number id;
  int blocking, finished;       /* guarded by mu */
  pthread_mutex_t *mu;
};

/* blocking(): the chunk is about to block (upvalue: its job) */
static int blocking(lua_State *L) {
  struct job *j = lua_touserdata(L, lua_upvalueindex(1));
  pthread_mutex_lock(j->mu);
  j->blocking = 1;
  pthread_mutex_unlock(j->mu);
  return 0;
}

static void *run_thread(void *arg) {
  struct job *j = arg;
  lua_State *L = open_state();
  lua_pushlightuserdata(L, j);
  lua_pushcclosure(L, blocking, 1);
  lua_setglobal(L, "blocking");
  if (luaL_loadbuffer(L, j->chunk, strlen(j->chunk), "=thread") != LUA_OK) fail("load", L);
  lua_pushstring(L, j->base);
  lua_pushnumber(L, j->id);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK || strcmp(lua_tostring(L, -1), "ok") != 0)
    fail("thread", L);
  lua_close(L);
  pthread_mutex_lock(j->mu);
  j->finished = 1;
  pthread_mutex_unlock(j->mu);
  return NULL;
}

/* 1 once the job blocks, -1 if it finished first, 0 meanwhile */
static int state(struct job *j) {
  int f;
  pthread_mutex_lock(j->mu);
  f = j->finished ? -1 : j->blocking;
  pthread_mutex_unlock(j->mu);
  return f;
}

int main(int argc, char **argv) {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  struct timespec tick = {0, 10 * 1000000L}, pause = {0, 200 * 1000000L};
  struct job jobs[2];
  pthread_t t[2];
  lua_State *L;
  int i;
  if (argc < 2) return 2;
  L = open_state();
  if (luaL_loadbuffer(L, main_chunk, sizeof main_chunk - 1, "=main") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK)
    fail("main", L);
  for (i = 0; i < 2; i++) {
    jobs[i].chunk = i == 0 ? run_chunk : wait_chunk;
    jobs[i].base = argv[1];
    jobs[i].id = lua_tonumber(L, -1);
    jobs[i].blocking = jobs[i].finished = 0;
    jobs[i].mu = &mu;
    if (pthread_create(&t[i], NULL, run_thread, &jobs[i]) != 0) return 1;
  }
  for (i = 0; i < 2; i++) {     /* each about to block (bounded: 60 s) */
    int k;
    for (k = 0; k < 6000 && state(&jobs[i]) == 0; k++) nanosleep(&tick, NULL);
    if (state(&jobs[i]) != 1) {
      fprintf(stderr, "thread %d did not block\n", i);
      return 1;
    }
  }
  nanosleep(&pause, NULL);      /* and blocked: run() sends, wait() sleeps */
  lua_settop(L, 0);
  if (luaL_loadstring(L, "assert(ctx:cancel() == true)") != LUA_OK ||
      lua_pcall(L, 0, 0, 0) != LUA_OK)
    fail("cancel", L);
  for (i = 0; i < 2; i++) pthread_join(t[i], NULL);
  lua_close(L);
  printf("context_host: ok\n");
  return 0;
}
