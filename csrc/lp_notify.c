/*
 * lp_notify.c - blocked threads and eventfds for requests and scopes.
 *
 * A waiting thread has one lp_waiter (a mutex, a condition variable on the
 * monotonic clock, and which entry fired) and one lp_wnode per object it
 * waits on, linked into that object's lp_notify. Lock order: the owner's
 * mutex -> waiter->mu.
 */
#define _GNU_SOURCE
#include "lp_notify.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct lp_waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  lp_wnode *fired;              /* the first entry whose object got ready */
} lp_waiter;

struct lp_wnode {
  lp_waiter *w;
  lp_wnode *next;
};

double lp_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* make an eventfd readable. It cannot fail on a valid eventfd but with
   EAGAIN, when the counter is at its maximum: it is readable then anyway. */
static void efd_signal(int fd) {
  uint64_t one = 1;
  ssize_t n = write(fd, &one, sizeof one);
  (void)n;
}

void lp_notify_wake_threads(lp_notify *n) {
  lp_wnode *node;
  for (node = n->waiters; node; node = node->next) {
    lp_waiter *w = node->w;
    pthread_mutex_lock(&w->mu);
    if (!w->fired) w->fired = node;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
  }
}

void lp_notify_wake(lp_notify *n) {
  lp_notify_wake_threads(n);
  if (n->efd >= 0) efd_signal(n->efd);
}

int lp_notify_fd(lp_notify *n, int ready) {
  if (n->efd < 0) {
    n->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (n->efd >= 0 && ready) efd_signal(n->efd);
  }
  return n->efd;
}

void lp_notify_clear(lp_notify *n) {
  if (n->efd >= 0) {
    uint64_t v;
    ssize_t k = read(n->efd, &v, sizeof v);
    (void)k;                    /* EAGAIN: it was not readable */
  }
}

void lp_notify_close(lp_notify *n) {
  if (n->efd >= 0) close(n->efd);
  n->efd = -1;
}

static void waiter_init(lp_waiter *w) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cv, &a);
  pthread_condattr_destroy(&a);
  pthread_mutex_init(&w->mu, NULL);
  w->fired = NULL;
}

static void waiter_destroy(lp_waiter *w) {
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
}

static void deadline_in(struct timespec *ts, double seconds) {
  time_t whole = (time_t)seconds;             /* seconds < 1e9: no overflow */
  long nsec;
  clock_gettime(CLOCK_MONOTONIC, ts);
  nsec = ts->tv_nsec + (long)((seconds - (double)whole) * 1e9);
  ts->tv_sec += whole + nsec / 1000000000L;
  ts->tv_nsec = nsec % 1000000000L;
}

#define LP_FOREVER(s) (!((s) < 1e9))          /* >= 1e9 s, infinite or NaN */

/* unlink `node` from n's waiters; with the owner's mutex held */
static void unlink_node(lp_notify *n, lp_wnode *node) {
  lp_wnode **p;
  for (p = &n->waiters; *p; p = &(*p)->next)
    if (*p == node) { *p = node->next; return; }
}

size_t lp_notify_wait(const lp_waitable *w, size_t count, double seconds) {
  lp_waiter waiter;
  lp_wnode local[8], *nodes = local;
  size_t i, found = count, registered = 0;
  int forever = seconds < 0 || LP_FOREVER(seconds);
  for (i = 0; i < count; i++)  /* fast path: one is ready already */
    if (w[i].ready(w[i].obj)) return i;
  if (seconds == 0 || count == 0) return count;
  if (count > 8 && !(nodes = malloc(count * sizeof *nodes))) {
    errno = ENOMEM;
    return count;
  }
  waiter_init(&waiter);
  for (i = 0; i < count && found == count; i++) {
    pthread_mutex_lock(w[i].mu);
    if (w[i].ready(w[i].obj)) {
      found = i;
    } else {
      nodes[i].w = &waiter;
      nodes[i].next = w[i].n->waiters;
      w[i].n->waiters = &nodes[i];
      registered = i + 1;
    }
    pthread_mutex_unlock(w[i].mu);
  }
  if (found == count) {
    struct timespec ts;
    if (!forever) deadline_in(&ts, seconds);
    pthread_mutex_lock(&waiter.mu);
    for (;;) {
      int rc = 0;
      while (!waiter.fired && rc == 0)  /* rc: ETIMEDOUT (or an error: never spin on it) */
        rc = forever ? pthread_cond_wait(&waiter.cv, &waiter.mu)
                     : pthread_cond_timedwait(&waiter.cv, &waiter.mu, &ts);
      if (!waiter.fired) break;
      found = (size_t)(waiter.fired - nodes);
      if (w[found].ready(w[found].obj)) break;
      /* woken by lp_notify_wake_threads, or by one that got ready before
         another: clear, look at them all, and wait on (a wake-up after the
         clear is not lost) */
      waiter.fired = NULL;
      pthread_mutex_unlock(&waiter.mu);
      for (found = 0; found < count && !w[found].ready(w[found].obj); found++) {}
      pthread_mutex_lock(&waiter.mu);
      if (found < count) break;
    }
    pthread_mutex_unlock(&waiter.mu);
  }
  for (i = 0; i < registered; i++) {
    pthread_mutex_lock(w[i].mu);
    unlink_node(w[i].n, &nodes[i]);
    pthread_mutex_unlock(w[i].mu);
  }
  waiter_destroy(&waiter);
  if (nodes != local) free(nodes);
  return found;
}
