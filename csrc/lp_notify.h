/*
 * lp_notify.h - what threads and event loops wait on, shared by the request
 * record and the cancel scope: a list of blocked threads and an eventfd.
 * Nothing here knows Lua or libcurl.
 *
 * An object that can be waited on (a request, a scope) embeds an lp_notify
 * and guards it with its own mutex: it calls lp_notify_wake with that mutex
 * held, right after it became ready, and waiters check readiness and
 * register under the same mutex, so no wake-up is lost.
 */
#ifndef LP_NOTIFY_H
#define LP_NOTIFY_H

#include <pthread.h>
#include <stddef.h>

typedef struct lp_wnode lp_wnode;   /* a waiting thread's entry */

typedef struct lp_notify {
  lp_wnode *waiters;            /* the threads blocked on the object */
  int efd;                      /* eventfd made by lp_notify_fd, or -1 */
} lp_notify;

/* one object to wait on: the mutex that guards `n`, and whether the object
   is ready (called with or without that mutex held: an atomic read) */
typedef struct lp_waitable {
  pthread_mutex_t *mu;
  lp_notify *n;
  int (*ready)(const void *obj);
  const void *obj;
} lp_waitable;

#define LP_NOTIFY_INIT {NULL, -1}

/* wake every waiter and make the eventfd readable; with the owner's mutex held */
void lp_notify_wake(lp_notify *n);
/* wake the blocked threads only, for a change some waiters wait for but that
   does not make the owner ready (a stream's headers arrived): the others
   look again and wait on, and the eventfd stays as it is; with the owner's
   mutex held */
void lp_notify_wake_threads(lp_notify *n);
/* the eventfd, made on first call (readable at once when `ready`); -1 on
   error. With the owner's mutex held */
int lp_notify_fd(lp_notify *n, int ready);
/* make the eventfd not readable (the owner is not ready any more: a stream's
   queue was emptied); with the owner's mutex held */
void lp_notify_clear(lp_notify *n);
/* close the eventfd; when the owner is freed (nobody waits any more) */
void lp_notify_close(lp_notify *n);
/* the index of a ready object of `w`, waiting up to `seconds` (< 0, NaN or
   >= 1e9: forever; a wake-up with none ready waits on); `count` when none
   got ready in time, or with errno
   ENOMEM when count > 8 and the waiter entries could not be allocated.
   Any number of threads may wait on one object. */
size_t lp_notify_wait(const lp_waitable *w, size_t count, double seconds);
/* seconds on the monotonic clock */
double lp_clock(void);

#endif
