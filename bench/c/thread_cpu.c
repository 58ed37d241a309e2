/*
 * bench/c/thread_cpu.c: a Lua 5.4 module for the benchmarks,
 * require "thread_cpu".now_us() -> this thread's CPU time in microseconds
 * (CLOCK_THREAD_CPUTIME_ID). Time a thread spends preempted by other
 * processes does not count, so per-call costs read the same on a busy
 * shared machine as on an idle one (wall-clock figures do not).
 */
#define _GNU_SOURCE
#include <time.h>
#include <lua.h>
#include <lauxlib.h>

static int now_us(lua_State *L) {
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
    return luaL_error(L, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
  lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e6 + (lua_Number)ts.tv_nsec / 1e3);
  return 1;
}

int luaopen_thread_cpu(lua_State *L) {
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, now_us);
  lua_setfield(L, -2, "now_us");
  return 1;
}
