/*
 * host.c - a C program that embeds Lua (5.1, LuaJIT 2.1, 5.3 or 5.4) and uses
 * longpoll from several Lua states on several OS threads at once.
 *
 * Each host thread opens a Lua state, loads longpoll, runs a request, then
 * awaits a long-poll in a coroutine. The thread is the coroutine's scheduler:
 * it waits for the request's fd() with poll(2) *outside* the state, so the
 * host's own (main) thread can call into the state meanwhile and cancel the
 * poll through the Lua API. One mutex per state says who may call into it.
 * Each state is closed with requests still in flight; after every thread
 * joined, no worker thread of the module may be left in the process.
 *
 *   cc -O2 -o host examples/host/host.c $(pkg-config --cflags --libs lua5.4) -lpthread
 *   LUA_PATH=... LUA_CPATH=... ./host http://127.0.0.1:8080 [threads] [rounds] [left]
 *
 * threads (default 2) and rounds (1) set the load; `left` is the number of
 * threads expected at the end (default 1; ThreadSanitizer adds one of its own).
 * LUA_PATH and LUA_CPATH say where longpoll is installed (luaL_openlibs reads
 * them, as the stand-alone interpreter does).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef LUA_OK /* Lua 5.1 */
#define LUA_OK 0
#endif

#define MAX_THREADS 64
#define BOUND_MS 30000 /* every wait here ends after 30 s at the latest */

/* What each state runs. The host calls step() and cancel() by name. */
static const char chunk[] =
  "local longpoll = require 'longpoll'\n"
  "local base = ...\n"
  "local v = assert(longpoll.request{ url = base .. '/json' }:run())\n"
  "assert(v.ok == true, 'unexpected /json body')\n"
  "local held = longpoll.request{ url = base .. '/hold' }\n"
  "local task = coroutine.create(function()\n"
  "  local value, err = held:await()\n"
  "  return value and 'a value' or err.kind\n"
  "end)\n"
  "-- resumes the task: the fd to wait for, or -1 and how the poll ended\n"
  "function step()\n"
  "  local ok, r = coroutine.resume(task)\n"
  "  if not ok then error(r, 0) end\n"
  "  if coroutine.status(task) == 'dead' then return -1, r end\n"
  "  return r:fd()\n"
  "end\n"
  "function cancel() return held:cancel() end\n"
  "-- polls still held when the host closes the state: lua_close cancels them\n"
  "inflight = {}\n"
  "for i = 1, 10 do inflight[i] = longpoll.request{ url = base .. '/hold' }:start() end\n";

struct state {
  pthread_mutex_t lock; /* held by whichever thread calls into L */
  lua_State *L;
  pthread_t thread;
  long id;
  /* under g_mu: */
  int round;
  int awaiting;  /* the poll runs: the host may cancel it */
  int canceled;  /* the host has canceled it: the thread may close L */
  double t_cancel;
};

static const char *g_base;
static int g_rounds = 1;
static struct state g_states[MAX_THREADS];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const struct state *s, const char *what, const char *msg) {
  fprintf(stderr, "state %ld.%d: %s: %s\n", s->id, s->round, what, msg ? msg : "?");
  exit(1);
}

/* the absolute time `ms` from now, for pthread_cond_timedwait */
static struct timespec deadline(int ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

/* Calls the state's step(), holding its lock: the fd to wait for, or -1
 * with the coroutine's result copied into out. */
static int call_step(struct state *s, char *out, size_t outlen) {
  int fd;
  pthread_mutex_lock(&s->lock);
  lua_getglobal(s->L, "step");
  if (lua_pcall(s->L, 0, 2, 0) != LUA_OK) die(s, "step", lua_tostring(s->L, -1));
  fd = (int)lua_tointeger(s->L, -2);
  if (fd < 0) {
    const char *r = lua_tostring(s->L, -1);
    snprintf(out, outlen, "%s", r ? r : "nothing");
  }
  lua_pop(s->L, 2);
  pthread_mutex_unlock(&s->lock);
  return fd;
}

/* One round: open a state, await the poll until the host canceled it, close
 * the state with its other requests in flight. */
static void run_round(struct state *s) {
  char result[64] = "";
  double woke = 0;
  int fd;

  s->L = luaL_newstate();
  if (!s->L) die(s, "luaL_newstate", "out of memory");
  luaL_openlibs(s->L);
  if (luaL_loadbuffer(s->L, chunk, sizeof chunk - 1, "=host_chunk") != LUA_OK)
    die(s, "load", lua_tostring(s->L, -1));
  lua_pushstring(s->L, g_base);
  if (lua_pcall(s->L, 1, 0, 0) != LUA_OK) die(s, "chunk", lua_tostring(s->L, -1));

  fd = call_step(s, result, sizeof result); /* starts the poll */
  pthread_mutex_lock(&g_mu);
  s->awaiting = 1;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);

  while (fd >= 0) {
    struct pollfd p = {fd, POLLIN, 0};
    int n = poll(&p, 1, BOUND_MS);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die(s, "poll", n == 0 ? "the poll did not finish in 30 s" : strerror(errno));
    if (woke == 0) woke = now();
    fd = call_step(s, result, sizeof result);
  }

  /* the state stays open until the host is done with it */
  pthread_mutex_lock(&g_mu);
  while (!s->canceled) {
    struct timespec ts = deadline(BOUND_MS);
    if (pthread_cond_timedwait(&g_cv, &g_mu, &ts) == ETIMEDOUT) die(s, "wait", "the host never canceled");
  }
  printf("state %ld.%d: await returned %s, %.0f us after the host's cancel()\n", s->id, s->round,
         result, (woke - s->t_cancel) * 1e6);
  pthread_mutex_unlock(&g_mu);
  if (strcmp(result, "canceled") != 0) die(s, "await", result);

  pthread_mutex_lock(&s->lock);
  lua_close(s->L); /* 10 requests still in flight */
  s->L = NULL;
  pthread_mutex_unlock(&s->lock);
}

static void *run_thread(void *arg) {
  struct state *s = arg;
  for (int round = 0; round < g_rounds; round++) {
    pthread_mutex_lock(&g_mu);
    s->round = round;
    s->awaiting = 0;
    s->canceled = 0;
    pthread_mutex_unlock(&g_mu);
    run_round(s);
  }
  return NULL;
}

/* The host's own thread: cancel each state's poll through the Lua API once
 * it runs, taking the state's lock like any caller into that state. */
static void cancel_all(int nthreads) {
  for (int done = 0; done < nthreads * g_rounds; done++) {
    struct state *s = NULL;
    pthread_mutex_lock(&g_mu);
    while (!s) {
      for (int i = 0; i < nthreads && !s; i++)
        if (g_states[i].awaiting && !g_states[i].canceled) s = &g_states[i];
      if (!s) {
        struct timespec ts = deadline(BOUND_MS);
        if (pthread_cond_timedwait(&g_cv, &g_mu, &ts) == ETIMEDOUT) {
          fprintf(stderr, "host: no state awaits a poll after 30 s\n");
          exit(1);
        }
      }
    }
    pthread_mutex_unlock(&g_mu);

    pthread_mutex_lock(&s->lock);
    lua_getglobal(s->L, "cancel");
    double t = now();
    if (lua_pcall(s->L, 0, 1, 0) != LUA_OK) die(s, "cancel", lua_tostring(s->L, -1));
    int ended = lua_toboolean(s->L, -1);
    lua_pop(s->L, 1);
    pthread_mutex_unlock(&s->lock);
    if (!ended) die(s, "cancel", "cancel() returned false: the poll had already finished");

    pthread_mutex_lock(&g_mu);
    s->t_cancel = t;
    s->canceled = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
  }
}

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

int main(int argc, char **argv) {
  int nthreads = 2, left = 1;
  if (argc < 2) {
    fprintf(stderr, "usage: %s base-url [threads] [rounds] [left]\n", argv[0]);
    return 2;
  }
  g_base = argv[1];
  if (argc > 2) nthreads = atoi(argv[2]);
  if (argc > 3) g_rounds = atoi(argv[3]);
  if (argc > 4) left = atoi(argv[4]);
  if (nthreads < 1 || nthreads > MAX_THREADS || g_rounds < 1) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);

  for (long i = 0; i < nthreads; i++) {
    struct state *s = &g_states[i];
    s->id = i;
    if (pthread_mutex_init(&s->lock, NULL) != 0) return 1;
    if (pthread_create(&s->thread, NULL, run_thread, s) != 0) return 1;
  }
  cancel_all(nthreads);
  for (int i = 0; i < nthreads; i++) {
    pthread_join(g_states[i].thread, NULL);
    pthread_mutex_destroy(&g_states[i].lock);
  }
  int n = count_threads();
  if (n != left) {
    fprintf(stderr, "%d threads left after every state closed\n", n);
    return 1;
  }
  printf("host: %d threads x %d rounds ok, %d thread%s left\n", nthreads, g_rounds, left,
         left == 1 ? "" : "s");
  return 0;
}
