/*
 * stream_engine_test.c - the engine's stream mode (lp_req_take, pause and
 * resume) used from several threads, as the binding and a C host would: the
 * worker splits and queues, readers on other threads take, a full queue
 * pauses the transfer and taking resumes it; two readers share one stream;
 * a cancel from a third thread ends a reader's wait. Built plain and under
 * ThreadSanitizer (spec/host_spec.lua).
 *
 * usage: stream_engine_test <base url of the spec server>
 *        prints "stream_engine: ok"
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <poll.h>

#include "c_test.h"

#define N 20000

/* a stream of spec server lines {"n":i,...} of `size` bytes, max_queued q */
static lp_req *make_stream(const char *base, const char *query, size_t q) {
  lp_req *r = make(base, query);
  CHECK(lp_req_stream(r, LP_STREAM_LINES, 1 << 16, q));
  return r;
}

static long number_of(const lp_msg *m) {
  const char *p = strstr(m->data, "\"n\":");
  return p ? strtol(p + 4, NULL, 10) : -1;
}

struct reader {
  lp_req *r;
  long count, last, bad;
  char *seen;                   /* seen[i]: message i taken (shared readers) */
};

static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;

/* take until the stream finished and its queue is empty; each reader's own
   messages must come in increasing order */
static void *read_all(void *arg) {
  struct reader *d = arg;
  for (;;) {
    lp_msg *m = lp_req_take(d->r, 3), *next;
    if (!m) {
      if (lp_state_finished(lp_req_state(d->r)) && lp_req_queued(d->r) == 0) break;
      CHECK(lp_req_wait(d->r, 10.0));
      continue;
    }
    for (; m; m = next) {
      long n = number_of(m);
      next = m->next;
      if (n <= d->last) d->bad++;
      d->last = n;
      d->count++;
      if (d->seen && n >= 1 && n <= N) {
        pthread_mutex_lock(&seen_mu);
        if (d->seen[n]) d->bad++;
        d->seen[n] = 1;
        pthread_mutex_unlock(&seen_mu);
      }
      free(m);
    }
  }
  return NULL;
}

struct waiter { lp_req *r; int got; };

static void *wait_thread(void *arg) {
  struct waiter *w = arg;
  w->got = lp_req_wait(w->r, 30.0);
  return NULL;
}

int main(int argc, char **argv) {
  char query[128];
  lp_engine *e;
  lp_req *r;
  pthread_t t[2];
  struct reader d[2];
  char *seen;
  int fd;
  struct pollfd pfd;
  if (argc < 2) return 2;
  e = lp_engine_acquire();
  CHECK(e);

  /* one reader on another thread, a queue of 8: the worker pauses and the
     reader's takes resume it, many times; every message, in order */
  snprintf(query, sizeof query, "/stream/lines?n=%d&size=100", N);
  r = make_stream(argv[1], query, 8);
  memset(d, 0, sizeof d);
  d[0].r = r;
  CHECK(lp_req_start(e, r) == 1);
  CHECK(pthread_create(&t[0], NULL, read_all, &d[0]) == 0);
  CHECK(pthread_join(t[0], NULL) == 0);
  CHECK(lp_req_state(r) == LP_DONE);
  CHECK(d[0].count == N && d[0].last == N && d[0].bad == 0);
  CHECK(atomic_load(&r->st->nmsgs) == N);
  CHECK(atomic_load(&r->st->npauses) > 0);
  lp_req_release(r);

  /* two readers share one stream: each message taken once, by one of them */
  seen = calloc(N + 1, 1);
  CHECK(seen);
  r = make_stream(argv[1], query, 16);
  memset(d, 0, sizeof d);
  d[0].r = d[1].r = r;
  d[0].seen = d[1].seen = seen;
  CHECK(lp_req_start(e, r) == 1);
  CHECK(pthread_create(&t[0], NULL, read_all, &d[0]) == 0);
  CHECK(pthread_create(&t[1], NULL, read_all, &d[1]) == 0);
  CHECK(pthread_join(t[0], NULL) == 0);
  CHECK(pthread_join(t[1], NULL) == 0);
  CHECK(d[0].count + d[1].count == N && d[0].bad == 0 && d[1].bad == 0);
  for (long i = 1; i <= N; i++) CHECK(seen[i]);
  free(seen);
  lp_req_release(r);

  /* the fd is readable while a message is queued, not once it was taken;
     a cancel from this thread ends the wait of another at once */
  r = make_stream(argv[1], "/stream/lines?n=1&end=0", 8);
  CHECK(lp_req_start(e, r) == 1);
  fd = lp_req_fd(r);
  CHECK(fd >= 0);
  pfd.fd = fd;
  pfd.events = POLLIN;
  CHECK(poll(&pfd, 1, 10000) == 1);
  {
    lp_msg *m = lp_req_take(r, 10);
    CHECK(m && !m->next && number_of(m) == 1);
    free(m);
  }
  CHECK(poll(&pfd, 1, 50) == 0);
  {
    struct waiter w = { r, -1 };
    CHECK(pthread_create(&t[0], NULL, wait_thread, &w) == 0);
    CHECK(lp_req_cancel(r) == 1);
    CHECK(pthread_join(t[0], NULL) == 0);
    CHECK(w.got == 1);
  }
  CHECK(lp_req_state(r) == LP_CANCELED);
  CHECK(poll(&pfd, 1, 0) == 1);
  lp_req_release(r);

  lp_engine_release(e);
  printf("stream_engine: ok\n");
  return 0;
}
