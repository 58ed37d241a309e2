/*
 * bench/c/benchc.c: a Lua 5.4 module of measures for the benchmarks,
 * require "benchc":
 *   thread_cpu_us()  this thread's CPU time in microseconds
 *                    (CLOCK_THREAD_CPUTIME_ID): time the thread spends
 *                    preempted by other processes does not count, so per-call
 *                    costs read the same on a busy shared machine as on an
 *                    idle one (wall-clock figures do not)
 *   heap_bytes()     bytes the C allocator has handed out and not got back
 *                    (glibc mallinfo2: uordblks + hblkhd), the whole process:
 *                    Lua, libcurl, the module
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <time.h>
#include <lua.h>
#include <lauxlib.h>

static int thread_cpu_us(lua_State *L) {
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
    return luaL_error(L, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
  lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e6 + (lua_Number)ts.tv_nsec / 1e3);
  return 1;
}

static int heap_bytes(lua_State *L) {
  struct mallinfo2 mi = mallinfo2();
  lua_pushinteger(L, (lua_Integer)(mi.uordblks + mi.hblkhd));
  return 1;
}

int luaopen_benchc(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, thread_cpu_us);
  lua_setfield(L, -2, "thread_cpu_us");
  lua_pushcfunction(L, heap_bytes);
  lua_setfield(L, -2, "heap_bytes");
  return 1;
}
