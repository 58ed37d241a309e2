/*
 * fork_test.c - a host that loads longpoll and then forks, as a pre-fork
 * server does: it runs a Lua script with a few process functions of its own,
 * and after the script returns it closes the state and exits with the
 * script's number (in the parent and in every child alike).
 *
 *   fork()              -> pid in the parent, 0 in the child (nil, message)
 *   wait(pid, seconds)  -> exit code, or nil when it did not end in time
 *                          (then it is killed) or was killed by a signal
 *   pipe()              -> read fd, write fd (close-on-exec)
 *   send(fd, s)         writes s            recv(fd, seconds) -> 1 byte or nil
 *   readable(fd)        -> true when poll(2) says fd is readable now
 *   closefd(fd)
 * A child is killed when its parent ends.
 *
 * usage: fork_test <script.lua> [args...]    LUA_PATH/LUA_CPATH as for lua
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef LUA_OK /* Lua 5.1 */
#define LUA_OK 0
#endif

static int l_fork(lua_State *L) {
  pid_t pid, parent = getpid();
  fflush(stdout);               /* nothing buffered is printed twice */
  fflush(stderr);
  pid = fork();
  /* a child never outlives its parent (a failed run leaves none behind) */
  if (pid == 0 && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
    _exit(9);
  if (pid < 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)pid);
  return 1;
}

static int l_wait(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  double seconds = luaL_optnumber(L, 2, 30);
  int status, i;
  for (i = 0; i < seconds * 100; i++) {
    pid_t got = waitpid(pid, &status, WNOHANG);
    if (got == pid) {
      if (!WIFEXITED(status)) return 0;
      lua_pushinteger(L, WEXITSTATUS(status));
      return 1;
    }
    if (got < 0 && errno != EINTR) return 0;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return 0;
}

static int l_pipe(lua_State *L) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return luaL_error(L, "pipe: %s", strerror(errno));
  lua_pushinteger(L, p[0]);
  lua_pushinteger(L, p[1]);
  return 2;
}

static int l_send(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  ssize_t n = write((int)luaL_checkinteger(L, 1), s, len);
  lua_pushboolean(L, n == (ssize_t)len);
  return 1;
}

static int l_recv(lua_State *L) {
  struct pollfd p;
  char c;
  p.fd = (int)luaL_checkinteger(L, 1);
  p.events = POLLIN;
  if (poll(&p, 1, (int)(luaL_optnumber(L, 2, 30) * 1000)) != 1 || read(p.fd, &c, 1) != 1)
    return 0;
  lua_pushlstring(L, &c, 1);
  return 1;
}

static int l_readable(lua_State *L) {
  struct pollfd p;
  p.fd = (int)luaL_checkinteger(L, 1);
  p.events = POLLIN;
  lua_pushboolean(L, poll(&p, 1, 0) == 1 && (p.revents & POLLIN));
  return 1;
}

static int l_closefd(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

int main(int argc, char **argv) {
  static const luaL_Reg fns[] = {
    {"fork", l_fork}, {"wait", l_wait}, {"pipe", l_pipe}, {"send", l_send},
    {"recv", l_recv}, {"readable", l_readable}, {"closefd", l_closefd}, {NULL, NULL}
  };
  lua_State *L;
  int i, code = 1;
  if (argc < 2) return 2;
  L = luaL_newstate();
  if (!L) return 3;
  luaL_openlibs(L);
  for (i = 0; fns[i].name; i++) {
    lua_pushcfunction(L, fns[i].func);
    lua_setglobal(L, fns[i].name);
  }
  if (luaL_loadfile(L, argv[1]) != LUA_OK) {
    fprintf(stderr, "fork_test: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 4;
  }
  for (i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
  if (lua_pcall(L, argc - 2, 1, 0) != LUA_OK) {
    fprintf(stdout, "[%d] error: %s\n", (int)getpid(), lua_tostring(L, -1));
  } else {
    code = (int)lua_tointeger(L, -1);
  }
  lua_close(L);
  fflush(stdout);
  return code;
}
