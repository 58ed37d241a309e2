/*
 * engine_test.c - the C engine (lp_engine.h) used directly from several
 * threads, as a host program embedding it would: two threads waiting on one
 * request, a cancel from a third thread while they wait, a wait with no limit.
 *
 * usage: engine_test <base url of the spec server>   prints "engine: ok"
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_test.h"

struct waiter { lp_req *r; double seconds; int got; };

static void *wait_thread(void *arg) {
  struct waiter *w = arg;
  w->got = lp_req_wait(w->r, w->seconds);
  return NULL;
}

/* start `n` threads waiting on r for `seconds` each */
static void spawn(pthread_t *t, struct waiter *w, int n, lp_req *r, double seconds) {
  for (int i = 0; i < n; i++) {
    w[i].r = r;
    w[i].seconds = seconds;
    w[i].got = -1;
    CHECK(pthread_create(&t[i], NULL, wait_thread, &w[i]) == 0);
  }
}

int main(int argc, char **argv) {
  pthread_t t[3];
  struct waiter w[3];
  lp_engine *e;
  lp_req *r;
  if (argc < 2) return 2;
  e = lp_engine_acquire();
  CHECK(e);

  /* three threads wait on one request that finishes: all three see it */
  r = make(argv[1], "/hold?ms=100");
  CHECK(lp_req_start(e, r) == 1);
  spawn(t, w, 3, r, 10.0);
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 3; i++) CHECK(w[i].got == 1);
  CHECK(lp_req_state(r) == LP_DONE && r->res && r->res->status == 204);
  lp_req_release(r);

  /* two threads wait without limit (INFINITY) on a held request; this
     thread cancels it: both wake, the result is canceled */
  r = make(argv[1], "/hold");
  CHECK(lp_req_start(e, r) == 1);
  spawn(t, w, 2, r, INFINITY);
  CHECK(lp_req_wait(r, 0.2) == 0);          /* held: nothing yet */
  CHECK(lp_req_cancel(r) == 1);
  CHECK(lp_req_cancel(r) == 0);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 2; i++) CHECK(w[i].got == 1);
  CHECK(lp_req_state(r) == LP_CANCELED);
  lp_req_release(r);

  /* wait_any over more than 8 requests (waiter entries on the heap) */
  {
    lp_req *reqs[12], *first;
    for (int i = 0; i < 12; i++) {
      reqs[i] = make(argv[1], i == 7 ? "/hold?ms=50" : "/hold");
      CHECK(lp_req_start(e, reqs[i]) == 1);
    }
    first = lp_wait_any(reqs, 12, 10.0);
    CHECK(first == reqs[7]);
    for (int i = 0; i < 12; i++) { lp_req_cancel(reqs[i]); lp_req_release(reqs[i]); }
  }

  lp_engine_release(e);
  printf("engine: ok\n");
  return 0;
}
