/*
 * stress_test.c - the C engine (lp_engine.h) under a storm of requests from
 * several threads, each canceled at a random moment: before it starts, right
 * after (resolving, connecting), while headers arrive, mid-body, at the
 * instant it completes, twice from two threads, from another thread, after
 * its owner let go of it, or never. Every result must be a proper one: a
 * finished request is DONE with its own body (the server echoes an id the
 * request chose), FAILED with a kind and a message where the server meant a
 * failure, or CANCELED only when something canceled it; a cancel that
 * returned 1 ended it. No wait may hang. At the end the engine is released
 * and the descriptors and threads are back to what they were (leaks: ASan's
 * LeakSanitizer at exit; races: the ThreadSanitizer build).
 *
 * usage: stress_test <spec server base url> [options]
 *   --raw <url>      a rawserver (spec/support/stress_raw.lua) that writes
 *                    headers slowly
 *   --h2 <url>       an HTTPS base of nginx + Nchan (HTTP/2 by ALPN; /sub/<ch>
 *                    held polls, /json); --cafile <file> trusts it
 *   --threads N      owner threads (4)       --requests N  per thread (250)
 *   --seed S         (1)                      --left N      threads expected at
 *                                                           the end (1; TSan: 2)
 *   --forks N        a thread forks N times meanwhile; each child runs requests
 *                    of its own on the engine it inherited (not under TSan,
 *                    which does not support threads in a child of a fork).
 *                    It forks while the test's own threads rest (the fork
 *                    gate below): GCC 12's libasan has no fork handler, and a
 *                    fork while another thread holds a lock of ASan's
 *                    allocator leaves the child blocked on it for ever
 *                    (seen: 1 child in ~4,000, in calloc from lp_req_new).
 * prints "stress: ok <n> requests: <done> done, <failed> failed, <canceled>
 * canceled, <let go> let go", or the first improper result and exits 1.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "c_test.h"

enum scenario {
  S_FAST,       /* /hold?ms=0: answered at once, body = id */
  S_HOLD,       /* /hold?ms=0..30, body = id */
  S_DRIP,       /* /drip: 16 bytes over ~50 ms (mid-body) */
  S_BIG,        /* /big: 100..600 KB (mid-body, many writes) */
  S_SILENCE,    /* never answers: always canceled */
  S_RESOLVE,    /* "localhost": through libcurl's resolver thread */
  S_RESET,      /* 1000 of 100000 bytes, then RST: a network failure */
  S_TRUNC,      /* 1000 of 100000 bytes, then FIN: a network failure */
  S_STREAM,     /* ndjson stream, a queue of 4 (pauses), messages in order */
  S_SLOWHEAD,   /* --raw: header lines a few ms apart */
  S_H2HOLD,     /* --h2: a held poll on a shared HTTP/2 connection */
  S_H2FAST,     /* --h2: /json on the same connection */
  S_COUNT
};
static const char *const s_names[S_COUNT] = {
  "fast", "hold", "drip", "big", "silence", "resolve", "reset", "truncated",
  "stream", "slowhead", "h2hold", "h2fast"
};

enum cancel_mode {
  C_NONE,       /* wait for the result */
  C_BEFORE,     /* cancel, then start: start refuses it */
  C_AT_START,   /* cancel right after start */
  C_DELAY,      /* cancel 0..40 ms after start */
  C_COMPLETION, /* cancel the moment the first body bytes are seen */
  C_TWICE,      /* this thread and the canceler thread at once */
  C_OTHER,      /* the canceler thread, 0..40 ms after start */
  C_LETGO,      /* the owner lets go at once; the canceler may cancel later */
  C_COUNT
};
static const char *const c_names[C_COUNT] = {
  "none", "before", "at-start", "delay", "completion", "twice", "other", "let-go"
};

static const char *g_base, *g_raw, *g_h2, *g_cafile;
static char g_localhost[256];         /* g_base with localhost for 127.0.0.1 */
static int g_threads = 4, g_requests = 250, g_left = 1, g_forks;
static unsigned g_seed = 1;
static lp_engine *g_e;
static atomic_int g_failed;
static atomic_long g_done, g_fail, g_canceled, g_letgo, g_cancel_wins;
static atomic_long g_by[S_COUNT][3];  /* per scenario: done, failed, canceled */

/* ---- the canceler thread: cancels requests handed to it when due ---- */

typedef struct job {
  lp_req *r;                    /* holds a reference */
  double due;
  int owned;                    /* 0: the owner let go; free the job here */
  atomic_int ret;               /* what lp_req_cancel returned; -1 before */
  atomic_int done;
  struct job *next;
} job;

static pthread_mutex_t g_jmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_jcv = PTHREAD_COND_INITIALIZER;
static job *g_jobs;
static int g_jstop;

static double now(void) { return lp_clock(); }

static void sleep_s(double s) {
  struct timespec ts;
  if (s <= 0) return;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  nanosleep(&ts, NULL);
}

/* the CLOCK_REALTIME moment `left` seconds from now, for a timed wait */
static struct timespec abs_time(double left) {
  struct timespec ts;
  long long ns;
  clock_gettime(CLOCK_REALTIME, &ts);
  ns = (long long)ts.tv_nsec + (long long)(left * 1e9);
  ts.tv_sec += (time_t)(ns / 1000000000LL);
  ts.tv_nsec = (long)(ns % 1000000000LL);
  return ts;
}

static void hand_over(job *j) {
  pthread_mutex_lock(&g_jmu);
  j->next = g_jobs;
  g_jobs = j;
  pthread_cond_signal(&g_jcv);
  pthread_mutex_unlock(&g_jmu);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* a cancel that returned 1 ended the request */
static void check_ended(lp_req *r) {
  if (lp_req_state(r) != LP_CANCELED)
    fail("a cancel returned 1, the state is %d", (int)lp_req_state(r));
}

/* ---- the fork gate ----
 * GCC 12's libasan does not take its allocator's locks around fork(): a
 * child forked while another thread is inside ASan's malloc or free inherits
 * a lock nobody will release, and blocks on its first allocation of that size
 * class (gdb on a hung child: __sanitizer::Mutex::Lock under
 * SizeClassAllocator64, from calloc in lp_req_new; glibc's own malloc is
 * fork-safe). This is the sanitizer's, not the module's: the module forks
 * correctly at any moment in a release build (spec/fork_spec.lua), but under
 * ASan the forker first lets the test's threads come to rest: each owner
 * between two requests, then the canceler, which ends its let-go requests at
 * once so that no transfer is left for the worker to run. */
static pthread_mutex_t g_gmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gcv = PTHREAD_COND_INITIALIZER;
static int g_gpending;          /* a fork is due: owners rest */
static int g_gowners;           /* owner threads still running */
static int g_gresting;          /* owners resting */
static atomic_int g_gask;       /* the canceler is asked to rest */
static int g_gcrest;            /* the canceler rests */

static int gate_timedwait(double until) {
  struct timespec ts;
  double left = until - now();
  if (left <= 0) return ETIMEDOUT;
  ts = abs_time(left);
  return pthread_cond_timedwait(&g_gcv, &g_gmu, &ts);
}

/* an owner, between two requests */
static void gate_rest(void) {
  pthread_mutex_lock(&g_gmu);
  if (g_gpending) {
    g_gresting++;
    pthread_cond_broadcast(&g_gcv);
    while (g_gpending) pthread_cond_wait(&g_gcv, &g_gmu);
    g_gresting--;
  }
  pthread_mutex_unlock(&g_gmu);
}

static void gate_owner_exit(void) {
  pthread_mutex_lock(&g_gmu);
  g_gowners--;
  pthread_cond_broadcast(&g_gcv);
  pthread_mutex_unlock(&g_gmu);
}

/* the canceler, holding g_jmu with only let-go jobs left: cancel them now,
   then rest until the fork is done */
static void gate_canceler_rest(void) {
  job *j = g_jobs;
  g_jobs = NULL;
  pthread_mutex_unlock(&g_jmu);
  while (j) {
    job *n = j->next;
    if (lp_req_cancel(j->r)) check_ended(j->r);
    lp_req_release(j->r);
    free(j);
    j = n;
  }
  pthread_mutex_lock(&g_gmu);
  g_gcrest = 1;
  pthread_cond_broadcast(&g_gcv);
  while (atomic_load(&g_gask)) pthread_cond_wait(&g_gcv, &g_gmu);
  g_gcrest = 0;
  pthread_mutex_unlock(&g_gmu);
  pthread_mutex_lock(&g_jmu);
}

static void gate_close(void) {
  double until = now() + 30.0;
  int err = 0;
  pthread_mutex_lock(&g_gmu);
  g_gpending = 1;
  while (g_gresting < g_gowners && err != ETIMEDOUT) err = gate_timedwait(until);
  atomic_store(&g_gask, 1);
  pthread_mutex_unlock(&g_gmu);
  pthread_mutex_lock(&g_jmu);
  pthread_cond_signal(&g_jcv);
  pthread_mutex_unlock(&g_jmu);
  pthread_mutex_lock(&g_gmu);
  while (!g_gcrest && err != ETIMEDOUT) err = gate_timedwait(until);
  pthread_mutex_unlock(&g_gmu);
  if (err == ETIMEDOUT) fail("the test's threads did not come to rest for a fork within 30 s");
  sleep_s(0.005);               /* the worker ends the canceled transfers */
}

static void gate_open(void) {
  pthread_mutex_lock(&g_gmu);
  g_gpending = 0;
  atomic_store(&g_gask, 0);
  pthread_cond_broadcast(&g_gcv);
  pthread_mutex_unlock(&g_gmu);
}

static void *canceler_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g_jmu);
  for (;;) {
    job **p = &g_jobs, *due = NULL;
    double next = -1, t;
    if (atomic_load(&g_gask)) {
      int owned = 0;
      job *j;
      for (j = g_jobs; j; j = j->next) owned |= j->owned;
      if (!owned) {
        gate_canceler_rest();
        continue;
      }
    }
    t = now();
    while (*p) {
      job *j = *p;
      if (j->due <= t) {
        *p = j->next;
        j->next = due;
        due = j;
        continue;
      }
      if (next < 0 || j->due < next) next = j->due;
      p = &j->next;
    }
    if (due) {
      pthread_mutex_unlock(&g_jmu);
      while (due) {
        job *j = due;
        int ret;
        due = j->next;
        ret = lp_req_cancel(j->r);
        if (ret) check_ended(j->r);
        if (j->owned) {
          atomic_store(&j->ret, ret);
          lp_req_release(j->r);
          atomic_store(&j->done, 1);  /* the owner frees j */
        } else {
          lp_req_release(j->r);
          free(j);
        }
      }
      pthread_mutex_lock(&g_jmu);
      continue;
    }
    if (g_jstop && !g_jobs) break;
    if (next < 0) {
      pthread_cond_wait(&g_jcv, &g_jmu);
    } else {
      double left = next - now();
      if (left > 0) {
        struct timespec ts = abs_time(left);
        pthread_cond_timedwait(&g_jcv, &g_jmu, &ts);
      }
    }
  }
  pthread_mutex_unlock(&g_jmu);
  return NULL;
}

/* ---- owners ---- */

static pthread_mutex_t g_fmu = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&g_fmu);
  if (atomic_fetch_add(&g_failed, 1) == 0) {
    fprintf(stdout, "stress: ");
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fprintf(stdout, "\n");
    fflush(stdout);
  }
  pthread_mutex_unlock(&g_fmu);
}

static unsigned rnd(unsigned *s, unsigned n) {
  unsigned x = *s;              /* xorshift32 */
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *s = x;
  return n ? x % n : x;
}

typedef struct plan {
  int s, c;
  unsigned id;
  unsigned arg;                 /* hold ms, big bytes */
} plan;

static int expect_failure(int s) { return s == S_RESET || s == S_TRUNC; }

static lp_req *build(const plan *p) {
  char path[160];
  const char *base = g_base;
  lp_req *r;
  switch (p->s) {
  case S_FAST: snprintf(path, sizeof path, "/hold?ms=0&status=200&body=%u", p->id); break;
  case S_HOLD: snprintf(path, sizeof path, "/hold?ms=%u&status=200&body=%u", p->arg, p->id); break;
  case S_DRIP: snprintf(path, sizeof path, "/drip?bytes=16&interval_ms=3"); break;
  case S_BIG: snprintf(path, sizeof path, "/big?bytes=%u", p->arg); break;
  case S_SILENCE: snprintf(path, sizeof path, "/silence"); break;
  case S_RESOLVE:
    base = g_localhost;
    snprintf(path, sizeof path, "/hold?ms=0&status=200&body=%u", p->id);
    break;
  case S_RESET: snprintf(path, sizeof path, "/reset"); break;
  case S_TRUNC: snprintf(path, sizeof path, "/truncated"); break;
  case S_STREAM: snprintf(path, sizeof path, "/stream/ndjson?n=40&interval_ms=1&chunk=64"); break;
  case S_SLOWHEAD: base = g_raw; snprintf(path, sizeof path, "/%u", p->id); break;
  case S_H2HOLD: base = g_h2; snprintf(path, sizeof path, "/sub/stress%u", p->id % 8); break;
  case S_H2FAST: base = g_h2; snprintf(path, sizeof path, "/json"); break;
  }
  r = make(base, path);
  r->opts.timeout_ms = 20000;
  if (p->s == S_STREAM) {
    CHECK(lp_req_stream(r, LP_STREAM_NDJSON, 4096, 4));
  }
  if (p->s == S_H2HOLD || p->s == S_H2FAST) {
    r->opts.http_version = CURL_HTTP_VERSION_2TLS;
    if (g_cafile) CHECK((lp_opts_extra(&r->opts)->cainfo = strdup(g_cafile)));
  }
  return r;
}

/* the messages of a stream: {"n":1,...}, {"n":2,...}, ... in order from *next */
static int take_stream(lp_req *r, int *next) {
  lp_msg *m = lp_req_take(r, 64);
  int ok = 1;
  while (m) {
    lp_msg *n = m->next;
    int got = -1;
    if (sscanf(m->data, "{\"n\":%d", &got) != 1 || got != *next) ok = 0;
    (*next)++;
    free(m);
    m = n;
  }
  return ok;
}

/* what arrived of r's response (nothing: an empty one) */
static const lp_result no_result;
#define RES(r) ((r)->res ? (r)->res : &no_result)

static int body_is(const lp_req *r, const char *want, size_t len) {
  return RES(r)->body.len == len && (len == 0 || memcmp(RES(r)->body.data, want, len) == 0);
}

static int all_x(const lp_req *r, size_t len) {
  size_t i;
  if (RES(r)->body.len != len) return 0;
  for (i = 0; i < len; i++)
    if (RES(r)->body.data[i] != 'x') return 0;
  return 1;
}

/* a DONE request carries its own answer */
static int proper_done(const plan *p, const lp_req *r, int msgs_ok, int next) {
  char id[16];
  int n = snprintf(id, sizeof id, "%u", p->id);
  if (r->kind != LP_OK || RES(r)->head.len < 5 || memcmp(RES(r)->head.data, "HTTP/", 5) != 0)
    return 0;
  switch (p->s) {
  case S_FAST: case S_HOLD: case S_RESOLVE:
    return RES(r)->status == 200 && body_is(r, id, (size_t)n);
  case S_SLOWHEAD: return RES(r)->status == 200 && body_is(r, id, (size_t)n);
  case S_DRIP: return RES(r)->status == 200 && all_x(r, 16);
  case S_BIG: return RES(r)->status == 200 && all_x(r, p->arg);
  case S_STREAM: return RES(r)->status == 200 && msgs_ok && next == 41;
  case S_H2FAST: return RES(r)->status == 200 && RES(r)->http_version == CURL_HTTP_VERSION_2_0;
  case S_H2HOLD: return RES(r)->status == 408 || RES(r)->status == 200 || RES(r)->status == 304;
  default: return 0;            /* reset, truncated, silence never succeed */
  }
}

static void run_one(const plan *p) {
  lp_req *r = build(p);
  job *j = NULL;
  int mine = -1, started, next = 1, msgs_ok = 1, k;
  lp_state s;
  if (p->c == C_BEFORE) {
    mine = lp_req_cancel(r);
    if (mine != 1) fail("cancel of a request not started returned %d", mine);
  }
  started = lp_req_start(g_e, r);
  if (p->c == C_BEFORE) {
    if (started) fail("a canceled request started");
  } else if (!started) {
    fail("start returned 0");
  }
  switch (p->c) {
  case C_AT_START:
    mine = lp_req_cancel(r);
    break;
  case C_DELAY:
    sleep_s((double)(p->arg % 41) / 1000.0);
    mine = lp_req_cancel(r);
    break;
  case C_COMPLETION: {
    double end = now() + 20.0;
    while (!lp_state_finished(lp_req_state(r)) && atomic_load(&r->rx) == 0 &&
           (!r->st || atomic_load(&r->st->nqueued) == 0) && now() < end)
      sched_yield();
    mine = lp_req_cancel(r);
    break;
  }
  case C_TWICE: case C_OTHER: case C_LETGO:
    j = calloc(1, sizeof *j);
    CHECK(j);
    lp_req_retain(r);
    j->r = r;
    j->owned = p->c != C_LETGO;
    atomic_init(&j->ret, -1);
    j->due = now() + (p->c == C_TWICE ? 0 : (double)(p->arg % 41) / 1000.0);
    if (p->c == C_LETGO && p->arg % 4 == 0) j->due = now() + 0.5; /* may finish first */
    hand_over(j);
    if (p->c == C_TWICE) mine = lp_req_cancel(r);
    if (p->c == C_LETGO) {      /* the canceler holds the last reference */
      lp_req_release(r);
      atomic_fetch_add(&g_letgo, 1);
      return;
    }
    break;
  }
  /* read a stream as it comes (its queue of 4 pauses the transfer) */
  for (k = 0; k < 100000 && !lp_state_finished(lp_req_state(r)); k++) {
    if (p->s == S_STREAM && !take_stream(r, &next)) msgs_ok = 0;
    if (lp_req_wait(r, 20.0) == 0) break;
  }
  if (!lp_state_finished(lp_req_state(r)) && lp_req_wait(r, 30.0) == 0) {
    fail("%s/%s: no result within 50 s", s_names[p->s], c_names[p->c]);
    lp_req_cancel(r);
  }
  if (p->s == S_STREAM && !take_stream(r, &next)) msgs_ok = 0;
  if (j) {                      /* the canceler's cancel is part of the result */
    double end = now() + 30.0;
    while (!atomic_load(&j->done) && now() < end) sleep_s(0.001);
    if (!atomic_load(&j->done)) fail("the canceler never got to a request");
    else if (atomic_load(&j->ret) == 1) mine = mine == 1 ? 2 : 1;
    else if (mine < 0) mine = 0;
    free(j);
  }
  s = lp_req_state(r);
  if (mine == 2) fail("%s/%s: two cancels both ended it", s_names[p->s], c_names[p->c]);
  if (mine == 1 && s != LP_CANCELED)
    fail("%s/%s: a cancel returned 1 but the state is %d", s_names[p->s], c_names[p->c], (int)s);
  if (mine == 1) atomic_fetch_add(&g_cancel_wins, 1);
  if (s == LP_DONE) {
    if (!proper_done(p, r, msgs_ok, next))
      fail("%s/%s: improper result: status %ld, kind %s, %zu body bytes",
           s_names[p->s], c_names[p->c], RES(r)->status, lp_kind_name(r->kind), RES(r)->body.len);
    atomic_fetch_add(&g_done, 1);
    atomic_fetch_add(&g_by[p->s][0], 1);
  } else if (s == LP_FAILED) {
    /* a server meant failure (reset, truncated); a stream paused on its
       queue can see its connection drop too: nothing else may fail */
    if (!expect_failure(p->s) || r->kind == LP_OK || r->kind >= LP_NKINDS || !r->msg || !r->msg[0])
      fail("%s/%s: failed: kind %s, status %ld, %s", s_names[p->s], c_names[p->c],
           lp_kind_name(r->kind), RES(r)->status, r->msg);
    atomic_fetch_add(&g_fail, 1);
    atomic_fetch_add(&g_by[p->s][1], 1);
  } else if (s == LP_CANCELED) {
    if (p->c == C_NONE)
      fail("%s/%s: canceled though nobody canceled it", s_names[p->s], c_names[p->c]);
    if (r->why != LP_ECANCELED)
      fail("%s/%s: canceled for %s", s_names[p->s], c_names[p->c], lp_kind_name(r->why));
    if (mine != 1)
      fail("%s/%s: canceled, but no cancel returned 1", s_names[p->s], c_names[p->c]);
    atomic_fetch_add(&g_canceled, 1);
    atomic_fetch_add(&g_by[p->s][2], 1);
  } else {
    fail("%s/%s: state %d after the wait", s_names[p->s], c_names[p->c], (int)s);
  }
  if (p->s == S_STREAM && s == LP_CANCELED && !msgs_ok)
    fail("stream: messages out of order before the cancel");
  lp_req_drop_response(r);
  lp_req_release(r);
}

static void *owner_main(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + g_seed;
  int i, scenarios = g_h2 ? S_COUNT : g_raw ? S_SLOWHEAD + 1 : S_SLOWHEAD;
  if (!seed) seed = 1;
  for (i = 0; i < g_requests && !atomic_load(&g_failed); i++) {
    plan p;
    p.s = (int)rnd(&seed, (unsigned)scenarios);
    p.c = (int)rnd(&seed, C_COUNT);
    p.id = (unsigned)(uintptr_t)arg * 1000000u + (unsigned)i;
    p.arg = rnd(&seed, 0);
    if (p.s == S_HOLD) p.arg %= 31;
    if (p.s == S_BIG) p.arg = 100000 + p.arg % 500000;
    /* what never ends by itself is always canceled */
    if ((p.s == S_SILENCE || p.s == S_H2HOLD) && (p.c == C_NONE || p.c == C_COMPLETION))
      p.c = C_DELAY;
    gate_rest();
    run_one(&p);
  }
  gate_owner_exit();
  return NULL;
}

/* in a forked child: three requests of its own, each with its own answer */
static int child_requests(unsigned seed) {
  int i;
  for (i = 0; i < 3; i++) {
    char path[64];
    lp_req *r;
    int ok;
    snprintf(path, sizeof path, "/hold?ms=0&status=200&body=%u", seed + (unsigned)i);
    r = make(g_base, path);
    r->opts.timeout_ms = 20000;
    snprintf(path, sizeof path, "%u", seed + (unsigned)i);
    ok = lp_req_start(g_e, r) && lp_req_wait(r, 30.0) && lp_req_state(r) == LP_DONE &&
         body_is(r, path, strlen(path));
    lp_req_release(r);
    if (!ok) return 0;
  }
  return 1;
}

/* forks while the owners run: each child must get a working engine */
static void *forker_main(void *arg) {
  unsigned seed = g_seed * 7919u + 1;
  int i;
  (void)arg;
  for (i = 0; i < g_forks && !atomic_load(&g_failed); i++) {
    pid_t pid;
    int status = 0;
    double end;
    sleep_s((double)(5 + rnd(&seed, 46)) / 1000.0);
    gate_close();
    pid = fork();
    if (pid == 0) _exit(child_requests(9000000u + (unsigned)i * 10u) ? 0 : 1);
    gate_open();
    if (pid < 0) {
      fail("fork: %s", strerror(errno));
      break;
    }
    end = now() + 60.0;
    while (waitpid(pid, &status, WNOHANG) == 0 && now() < end) sleep_s(0.005);
    if (now() >= end) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fail("a forked child hung");
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fail("a forked child failed (status %d)", status);
    }
  }
  return NULL;
}

static int count_dir(const char *path) {
  int n = 0;
  struct dirent *d;
  DIR *dir = opendir(path);
  if (!dir) return -1;
  while ((d = readdir(dir)))
    if (d->d_name[0] != '.') n++;
  closedir(dir);
  return n - (strcmp(path, "/proc/self/fd") == 0);  /* the DIR's own */
}

int main(int argc, char **argv) {
  pthread_t *t, canceler, forker;
  int fds0, fds1, thr1, i;
  const char *p;
  double t0;
  if (argc < 2) return 2;
  g_base = argv[1];
  for (i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--raw") == 0) g_raw = argv[i + 1];
    else if (strcmp(argv[i], "--h2") == 0) g_h2 = argv[i + 1];
    else if (strcmp(argv[i], "--cafile") == 0) g_cafile = argv[i + 1];
    else if (strcmp(argv[i], "--threads") == 0) g_threads = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--requests") == 0) g_requests = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--seed") == 0) g_seed = (unsigned)strtoul(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--left") == 0) g_left = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--forks") == 0) g_forks = atoi(argv[i + 1]);
    else return 2;
  }
  CHECK(g_threads > 0 && g_threads <= 64 && g_requests >= 0);
  p = strstr(g_base, "127.0.0.1");
  CHECK(p && strlen(g_base) < 200);
  snprintf(g_localhost, sizeof g_localhost, "%.*slocalhost%s", (int)(p - g_base), g_base, p + 9);

  fds0 = count_dir("/proc/self/fd");
  t0 = now();
  g_e = lp_engine_acquire();
  CHECK(g_e);
  CHECK(pthread_create(&canceler, NULL, canceler_main, NULL) == 0);
  t = calloc((size_t)g_threads, sizeof *t);
  CHECK(t);
  g_gowners = g_threads;
  for (i = 0; i < g_threads; i++)
    CHECK(pthread_create(&t[i], NULL, owner_main, (void *)(uintptr_t)(i + 1)) == 0);
  CHECK(pthread_create(&forker, NULL, forker_main, NULL) == 0);
  for (i = 0; i < g_threads; i++) pthread_join(t[i], NULL);
  pthread_join(forker, NULL);
  pthread_mutex_lock(&g_jmu);
  g_jstop = 1;
  pthread_cond_signal(&g_jcv);
  pthread_mutex_unlock(&g_jmu);
  pthread_join(canceler, NULL);
  free(t);
  lp_engine_release(g_e);

  fds1 = count_dir("/proc/self/fd");
  thr1 = count_dir("/proc/self/task");
  if (fds1 != fds0) fail("%d descriptors open at the end, %d at the start", fds1, fds0);
  if (thr1 != g_left) fail("%d threads at the end, expected %d", thr1, g_left);
  if (atomic_load(&g_failed)) return 1;
  fprintf(stderr, "stress: %.1f s; by scenario (done/failed/canceled):", now() - t0);
  for (i = 0; i < S_COUNT; i++)
    fprintf(stderr, " %s %ld/%ld/%ld", s_names[i], atomic_load(&g_by[i][0]),
            atomic_load(&g_by[i][1]), atomic_load(&g_by[i][2]));
  fprintf(stderr, "; cancels that ended a request: %ld\n", atomic_load(&g_cancel_wins));
  printf("stress: ok %ld requests: %ld done, %ld failed, %ld canceled, %ld let go; %d forks\n",
         atomic_load(&g_done) + atomic_load(&g_fail) + atomic_load(&g_canceled) +
           atomic_load(&g_letgo),
         atomic_load(&g_done), atomic_load(&g_fail), atomic_load(&g_canceled),
         atomic_load(&g_letgo), g_forks);
  return 0;
}
