/*
 * host_test.c - a C host that embeds Lua (5.1, LuaJIT 2.1, 5.3 or 5.4) and
 * uses longpoll from several Lua states on several OS threads at once. Each thread opens a state, runs
 * requests, cancels one, leaves some in flight and closes the state; after all
 * threads joined, no worker thread may be left in the process.
 *
 * usage: host_test <port> <package.path> <package.cpath> [threads] [rounds] [left]
 * `left` is the number of threads expected at the end (default 1; ThreadSanitizer
 * adds a background thread of its own).
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef LUA_OK                  /* Lua 5.1 */
#define LUA_OK 0
#endif

static const char *g_port, *g_path, *g_cpath;
static int g_rounds = 5;

static const char chunk[] =
  "local longpoll = require 'longpoll'\n"
  "local port, id = ...\n"
  "local base = 'http://127.0.0.1:' .. port\n"
  "local v = longpoll.request{ url = base .. '/json' }:run()\n"
  "assert(v and v.ok == true, 'json request failed')\n"
  "local held = longpoll.request{ url = base .. '/hold' }:start()\n"
  "assert(not held:wait(0.05), 'held request finished early')\n"
  "assert(held:cancel() == true, 'cancel did not end it')\n"
  "local _, err = held:run()\n"
  "assert(err.kind == 'canceled', 'expected canceled, got ' .. tostring(err))\n"
  "local co = coroutine.wrap(function()\n"
  "  return longpoll.request{ url = base .. '/hold?ms=20&status=200&body=%5B1%5D' }:await()\n"
  "end)\n"
  "local r = co()\n"
  "assert(r:wait(10))\n"
  "local got = co()\n"
  "assert(got[1] == 1, 'await result')\n"
  "inflight = {}\n"
  "for i = 1, 10 do inflight[i] = longpoll.request{ url = base .. '/hold' }:start() end\n"
  "return 'ok'\n";

static int count_threads(void) {
  int n = 0;
  struct dirent *d;
  DIR *dir = opendir("/proc/self/task");
  if (!dir) return -1;
  while ((d = readdir(dir)))
    if (d->d_name[0] != '.') n++;
  closedir(dir);
  return n;
}

static void *run_thread(void *arg) {
  long id = (long)arg;
  for (int round = 0; round < g_rounds; round++) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, g_path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, g_cpath);
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, chunk, sizeof chunk - 1, "=host_chunk") != LUA_OK) {
      fprintf(stderr, "thread %ld: %s\n", id, lua_tostring(L, -1));
      exit(1);
    }
    lua_pushstring(L, g_port);
    lua_pushinteger(L, id);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK || strcmp(lua_tostring(L, -1), "ok") != 0) {
      fprintf(stderr, "thread %ld round %d: %s\n", id, round, lua_tostring(L, -1));
      exit(1);
    }
    lua_close(L);               /* 10 requests still in flight */
  }
  return NULL;
}

int main(int argc, char **argv) {
  int nthreads = 4, left = 1;
  pthread_t t[64];
  if (argc < 4) {
    fprintf(stderr, "usage: %s port path cpath [threads] [rounds]\n", argv[0]);
    return 2;
  }
  g_port = argv[1];
  g_path = argv[2];
  g_cpath = argv[3];
  if (argc > 4) nthreads = atoi(argv[4]);
  if (argc > 5) g_rounds = atoi(argv[5]);
  if (argc > 6) left = atoi(argv[6]);
  if (nthreads < 1 || nthreads > 64 || g_rounds < 1) return 2;
  for (long i = 0; i < nthreads; i++)
    if (pthread_create(&t[i], NULL, run_thread, (void *)i) != 0) return 1;
  for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
  if (count_threads() != left) {
    fprintf(stderr, "%d threads left after every state closed\n", count_threads());
    return 1;
  }
  printf("host: %d threads x %d rounds ok, %d thread%s left\n", nthreads, g_rounds, left,
         left == 1 ? "" : "s");
  return 0;
}
