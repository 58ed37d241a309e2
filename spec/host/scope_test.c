/*
 * scope_test.c - cancel scopes (lp_scope.h) used directly from several
 * threads, as a host program embedding the engine would: a cancel from
 * another thread wakes threads waiting on a request and on a scope; a
 * parent's deadline ends a child's requests as timeouts, with nobody
 * waiting; finished requests leave their scope; shared ids; and threads
 * that make, cancel and drop scopes and requests at once (for TSan).
 *
 * usage: scope_test <base url of the spec server>   prints "scope: ok"
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_test.h"
#include "lp_scope.h"

static const char *base;
static lp_engine *eng;

/* a request under s, started */
static lp_req *start_under(lp_scope *s, const char *path) {
  lp_req *r = make(base, path);
  lp_scope_add(s, r);
  lp_req_start(eng, r);
  return r;
}

static int readable(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

struct job { lp_req *r; lp_scope *s; double seconds; int got; };

static void *wait_req(void *arg) {
  struct job *j = arg;
  j->got = lp_req_wait(j->r, j->seconds);
  return NULL;
}

static void *wait_scope(void *arg) {
  struct job *j = arg;
  j->got = lp_scope_wait(j->s, j->seconds);
  return NULL;
}

static void *cancel_later(void *arg) {
  struct job *j = arg;
  struct timespec ts = {0, 200 * 1000000L};
  nanosleep(&ts, NULL);
  j->got = lp_scope_cancel(j->s);
  return NULL;
}

/* a tree: a parent with two children holding requests; another thread
   cancels the parent while one thread waits on a request of a child and one
   on the other child: both wake, everything ends as canceled */
static void cancel_tree(void) {
  lp_scope *p = lp_scope_new(NULL, 0), *a, *b;
  lp_req *reqs[30];
  pthread_t t[3];
  struct job jr, js, jc;
  int i, fd;
  CHECK(p);
  a = lp_scope_new(p, 0);
  b = lp_scope_new(p, 60);
  CHECK(a && b);
  for (i = 0; i < 30; i++) reqs[i] = start_under(i % 3 == 0 ? p : i % 3 == 1 ? a : b, "/hold");
  CHECK(lp_scope_count(p) == 10 && lp_scope_count(a) == 10 && lp_scope_count(b) == 10);
  fd = lp_scope_fd(a);
  CHECK(fd >= 0 && !readable(fd, 0));
  jr.r = reqs[1];
  jr.seconds = -1;
  js.s = b;
  js.seconds = 30;
  jc.s = p;
  CHECK(pthread_create(&t[0], NULL, wait_req, &jr) == 0);
  CHECK(pthread_create(&t[1], NULL, wait_scope, &js) == 0);
  CHECK(pthread_create(&t[2], NULL, cancel_later, &jc) == 0);
  for (i = 0; i < 3; i++) pthread_join(t[i], NULL);
  CHECK(jr.got == 1 && js.got == 1 && jc.got == 1);
  CHECK(readable(fd, 0));
  CHECK(lp_scope_err(p) == LP_ECANCELED && lp_scope_err(a) == LP_ECANCELED &&
        lp_scope_err(b) == LP_ECANCELED);
  CHECK(lp_scope_count(p) == 0 && lp_scope_count(a) == 0 && lp_scope_count(b) == 0);
  for (i = 0; i < 30; i++) {
    CHECK(lp_req_state(reqs[i]) == LP_CANCELED && reqs[i]->why == LP_ECANCELED);
    CHECK(strcmp(lp_req_why_text(reqs[i]), "context canceled") == 0);
    lp_req_release(reqs[i]);
  }
  CHECK(lp_scope_cancel(p) == 0 && lp_scope_cancel(a) == 0);
  /* a request or a child made under an ended scope ends at once */
  reqs[0] = make(base, "/hold");
  CHECK(lp_scope_add(a, reqs[0]) == 0 && lp_req_state(reqs[0]) == LP_CANCELED);
  lp_req_release(reqs[0]);
  {
    lp_scope *c = lp_scope_new(p, 0);
    CHECK(c && lp_scope_err(c) == LP_ECANCELED && lp_scope_wait(c, 0) == 1);
    lp_scope_release(c);
  }
  lp_scope_release(b);
  lp_scope_release(a);
  lp_scope_release(p);
}

/* a request the scope's list holds alone, itself the last holder of its
   child scope: canceling the parent frees both (no lock may be held then:
   the child's freeing takes the parent's lock) */
static void last_share(void) {
  lp_scope *p = lp_scope_new(NULL, 0), *c = lp_scope_new(p, 0);
  lp_req *r = make(base, "/hold");
  CHECK(lp_scope_add(c, r) == 1);
  lp_req_release(r);            /* the list's share is left */
  lp_scope_release(c);          /* r's share is left */
  CHECK(lp_scope_cancel(p) == 1);
  lp_scope_release(p);
}

/* the parent's deadline (0.3 s) bounds a child's request as a timeout; the
   eventfds turn by themselves, with no call into the scopes meanwhile */
static void deadline_from_parent(void) {
  lp_scope *p = lp_scope_new(NULL, 0.3), *c = lp_scope_new(p, 0);
  lp_req *r = start_under(c, "/hold");
  int pfd = lp_scope_fd(p), cfd = lp_scope_fd(c), rfd = lp_req_fd(r);
  double t0 = lp_clock();
  CHECK(lp_scope_deadline(c) == lp_scope_deadline(p) && lp_scope_deadline(p) > t0);
  CHECK(!readable(cfd, 0));
  CHECK(readable(rfd, 10000) && readable(cfd, 5000) && readable(pfd, 5000));
  CHECK(lp_clock() >= lp_scope_deadline(p));
  CHECK(lp_req_state(r) == LP_CANCELED && r->why == LP_ETIMEOUT);
  CHECK(strcmp(lp_req_why_text(r), "context deadline exceeded") == 0);
  CHECK(lp_scope_err(c) == LP_ETIMEOUT && lp_scope_err(p) == LP_ETIMEOUT);
  CHECK(lp_scope_cancel(c) == 0);
  lp_req_release(r);
  lp_scope_release(c);
  lp_scope_release(p);

  /* a child's own deadline, earlier than its parent's, is its own; the
     parent lives on */
  p = lp_scope_new(NULL, 60);
  c = lp_scope_new(p, 0.1);
  CHECK(lp_scope_deadline(c) < lp_scope_deadline(p));
  r = start_under(c, "/hold");
  CHECK(lp_req_wait(r, 10) == 1 && r->why == LP_ETIMEOUT);
  CHECK(lp_scope_err(c) == LP_ETIMEOUT && lp_scope_err(p) == LP_OK);
  lp_req_release(r);
  lp_scope_release(c);
  /* a wait on a scope ends at its deadline */
  c = lp_scope_new(p, 0.1);
  CHECK(lp_scope_wait(c, -1) == 1 && lp_scope_err(c) == LP_ETIMEOUT);
  lp_scope_release(c);
  CHECK(lp_scope_wait(p, 0.05) == 0);
  lp_scope_release(p);
}

/* finished requests leave their scope: the list stays empty over a loop */
static void finished_leave(void) {
  lp_scope *s = lp_scope_new(NULL, 0);
  int i;
  for (i = 0; i < 200; i++) {
    lp_req *r = start_under(s, i % 2 ? "/json" : "/hold");
    if (i % 2 == 0) CHECK(lp_req_cancel(r) == 1);
    CHECK(lp_req_wait(r, 10) == 1);
    CHECK(lp_scope_count(s) == 0);
    lp_req_release(r);
  }
  /* children that end or are dropped leave their parent */
  for (i = 0; i < 200; i++) {
    lp_scope *c = lp_scope_new(s, i % 2 ? 0.001 : 0);
    if (i % 3 == 0) lp_scope_cancel(c);
    lp_scope_release(c);
  }
  CHECK(lp_scope_err(s) == LP_OK);
  lp_scope_release(s);
}

static void shared(void) {
  lp_scope *s = lp_scope_new(NULL, 0), *t;
  unsigned long long id = lp_scope_share(s);
  CHECK(id && lp_scope_share(s) == id);
  t = lp_scope_find(id);
  CHECK(t == s);
  lp_scope_release(t);
  lp_scope_release(s);
  CHECK(lp_scope_find(id) == NULL);
}

/* threads make requests and children under one root, cancel and drop them
   at random, while another cancels the root */
struct storm { lp_scope *root; unsigned seed; };

static void *storm_thread(void *arg) {
  struct storm *st = arg;
  int i;
  for (i = 0; i < 60; i++) {
    unsigned x = (unsigned)rand_r(&st->seed);
    lp_scope *c = lp_scope_new(st->root, x % 4 == 0 ? 0.01 : 0);
    lp_req *r;
    CHECK(c);
    r = start_under(x % 3 ? c : st->root, x % 5 ? "/hold" : "/json");
    if (x % 7 == 0) lp_scope_cancel(c);
    if (x % 11 == 0) lp_req_cancel(r);
    if (x % 2) lp_req_wait(r, 0.002);
    lp_scope_release(c);
    if (x % 13 == 0) lp_scope_cancel(st->root);
    lp_req_cancel(r);
    lp_req_release(r);
  }
  return NULL;
}

static void storm(void) {
  pthread_t t[4];
  struct storm st[4];
  lp_scope *root = lp_scope_new(NULL, 0);
  int i;
  for (i = 0; i < 4; i++) {
    st[i].root = root;
    st[i].seed = (unsigned)i + 1;
    CHECK(pthread_create(&t[i], NULL, storm_thread, &st[i]) == 0);
  }
  for (i = 0; i < 4; i++) pthread_join(t[i], NULL);
  CHECK(lp_scope_count(root) == 0);
  lp_scope_cancel(root);
  lp_scope_release(root);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  base = argv[1];
  eng = lp_engine_acquire();
  CHECK(eng);
  cancel_tree();
  last_share();
  deadline_from_parent();
  finished_leave();
  shared();
  storm();
  lp_engine_release(eng);
  printf("scope: ok\n");
  return 0;
}
