/*
 * lp_engine.c - one worker thread drives every transfer of the process on a
 * libcurl multi handle, with the socket interface (curl_multi_socket_action)
 * over epoll: each wake-up costs the work of the sockets and timers that are
 * due, not of every transfer (curl_multi_perform and curl_multi_poll walk all
 * of them, which at 10,000 held polls made every start or cancel cost a
 * millisecond of worker time). Requests reach the worker through a small
 * locked queue and an eventfd in the same epoll set, so a start or a cancel
 * interrupts the wait at once (the role curl_multi_wakeup plays for
 * curl_multi_poll).
 *
 * Cancel wins: lp_req_cancel settles the request itself (state CANCELED,
 * waiter woken, eventfd written) before it tells the worker, which then only
 * tears the transfer down. The worker finishes a request only if it is still
 * RUNNING when it takes req->mu, so a result can never overwrite a cancel.
 *
 * Scopes (lp_scope.c) end their requests through lp_req_end; a request that
 * finishes leaves its scope (lp_scope_leave) first, with no lock held. The
 * worker fires the deadlines of scopes: its epoll wait ends at the earlier
 * of libcurl's timer and the first deadline.
 *
 * Lock order: g_lock -> (none); scope->mu -> req->mu -> waiter->mu (see
 * lp_scope.c); e->qmu is taken last, never holding it while taking another.
 */
#define _GNU_SOURCE
#include "lp_engine.h"
#include "lp_scope.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define LP_HEAD_MAX (256 * 1024) /* cap on response header bytes */
#define LP_SPIN_SECONDS 100e-6   /* lp_req_wait spins this long before sleeping */
#define LP_SOCK_BUCKETS 1024     /* hash of libcurl's sockets by local port */

typedef struct lp_sock lp_sock;
typedef struct lp_peer lp_peer;

struct lp_engine {
  CURLM *multi;
  pthread_t thread;
  int refs;                     /* guarded by g_lock */
  pthread_mutex_t qmu;          /* guards the queue, stop and config */
  lp_req *qhead, *qtail;
  int stop;                     /* the worker stops (or stopped) */
  int joined, exited;           /* guarded by g_lock: worker joined; by the exit handler */
  lp_config cfg;                /* guarded by qmu: set by lp_engine_configure */
  int cfg_dirty;
  long buffer_size;             /* worker only: cfg.buffer_size as last applied */
  int ep;                       /* epoll set: libcurl's sockets and wfd */
  int wfd;                      /* eventfd: the queue or stop changed */
  double timer_at;              /* worker only: libcurl's timer, or < 0 */
  lp_req *active;               /* worker only: attached transfers */
  CURLSH *share;                /* worker only: TLS sessions across handles */
  int watch_failed;             /* worker only: a transfer's socket could not be watched */
  lp_sock *socks;               /* worker only: libcurl's sockets, by descriptor */
  int nsocks;
  int lhash[LP_SOCK_BUCKETS];   /* sockets by local port */
  int unlearned;                /* sockets whose local port is not read yet */
  int pipewait_broken;          /* libcurl < 8.0.0: see open_ok */
  lp_peer *peers;               /* worker only: servers we multiplex to */
  lp_req *parked;               /* worker only: transfers waiting for a
                                   connection being opened (anext links) */
  int unpark;                   /* worker only: put them back now */
  /* fork (see "fork" below) */
  pthread_cond_t parkcv;        /* with qmu: the worker parked, or may go on */
  int fork_hold, fork_held;     /* guarded by qmu */
  int wake[2];                  /* libcurl's wake-up socketpair, or -1 */
  atomic_int revive;            /* a forked child: start a worker at first use */
  struct lp_forsaken *forsaken; /* a forked child: the parents' handles */
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static lp_engine *g_engine;
static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init = CURLE_FAILED_INIT;

static const char *const kind_names[] = {
  "ok", "canceled", "timeout", "resolve", "connect", "tls",
  "network", "http", "decode", "too_large", "callback"
};

_Static_assert(sizeof kind_names / sizeof kind_names[0] == LP_NKINDS,
               "one name per lp_kind");

const char *lp_kind_name(lp_kind k) { return kind_names[k]; }

int lp_state_finished(lp_state s) { return s >= LP_DONE; }

lp_state lp_req_state(const lp_req *r) { return atomic_load(&r->state); }

#define now_seconds lp_clock

/* make an eventfd readable. It cannot fail on a valid eventfd but with
   EAGAIN, when the counter is at its maximum: it is readable then anyway. */
static void efd_signal(int fd) {
  uint64_t one = 1;
  ssize_t n = write(fd, &one, sizeof one);
  (void)n;
}

/* ---- request record ---- */

#ifndef LP_VERSION
#define LP_VERSION "0.0.0"
#endif
const char lp_get[] = "GET", lp_post[] = "POST";
const char lp_default_user_agent[] = "lua-longpoll/" LP_VERSION;
static char default_ua_line[] = "User-Agent: lua-longpoll/" LP_VERSION;
struct curl_slist lp_default_headers = { default_ua_line, NULL };

void lp_headers_finish(struct curl_slist **l) {
  while (*l) l = &(*l)->next;
  *l = &lp_default_headers;
}

/* free a header list up to lp_default_headers, which is shared */
static void headers_free(struct curl_slist *l) {
  struct curl_slist **p = &l;
  while (*p && *p != &lp_default_headers) p = &(*p)->next;
  *p = NULL;
  curl_slist_free_all(l);
}

lp_req *lp_req_new(const char *url, size_t len) {
  lp_req *r = calloc(1, sizeof *r + (url ? len + 1 : 0));
  if (!r) return NULL;
  atomic_init(&r->refs, 1);
  atomic_init(&r->state, LP_READY);
  pthread_mutex_init(&r->mu, NULL);
  r->notify.efd = -1;
  r->sock = -1;
  r->opts.verify = 1;
  atomic_init(&r->rx_total, -1);
  r->opts.http_version = CURL_HTTP_VERSION_2TLS;
  if (url) {
    memcpy(r->url, url, len);
    r->url[len] = '\0';
    r->opts.url = r->url;
  }
  return r;
}

lp_extra *lp_opts_extra(lp_opts *o) {
  if (!o->x) o->x = calloc(1, sizeof *o->x);
  return o->x;
}

int lp_req_stream(lp_req *r, int format, size_t max_message, size_t max_queued) {
  lp_sstate *st = calloc(1, sizeof *st);
  if (!st) return 0;
  lp_stream_init(&st->parser, (lp_stream_format)format, max_message);
  st->format = format;
  st->max_message = max_message;
  st->max_queued = max_queued;
  r->st = st;
  return 1;
}

void lp_req_retain(lp_req *r) { atomic_fetch_add(&r->refs, 1); }

static void buf_free(lp_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* free what a response left in memory: its buffers (and, with all,
   the rest) */
static void result_free(lp_result *res, int all) {
  if (!res) return;
  buf_free(&res->body);
  buf_free(&res->head);
  if (!all) return;
  free(res->effective_url);
  free(res);
}

void lp_req_drop_response(lp_req *r) {
  lp_state s = atomic_load(&r->state);
  if (s != LP_DONE && s != LP_FAILED) return; /* not ours to free yet */
  result_free(r->res, 0);
}

static void free_msgs(lp_msg *m) {
  while (m) {
    lp_msg *next = m->next;
    free(m);
    m = next;
  }
}

void lp_req_release(lp_req *r) {
  if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
  if (r->st) {
    free_msgs(r->st->mhead);
    lp_stream_free(&r->st->parser);
    result_free(atomic_load(&r->st->head), 1);
    free(r->st);
  }
  if (r->opts.url != r->url) free(r->opts.url);
  if (r->opts.method != lp_get && r->opts.method != lp_post) free((void *)r->opts.method);
  headers_free(r->opts.headers);
  if (r->opts.user_agent != lp_default_user_agent) free((void *)r->opts.user_agent);
  if (r->opts.x) {
    lp_extra *x = r->opts.x;
    free(x->body);
    free(x->cainfo);
    free(x->username);
    if (x->password) {          /* a secret: leave no copy in freed memory */
      explicit_bzero(x->password, strlen(x->password));
      free(x->password);
    }
    free(x);
  }
  result_free(r->res, 1);
  free(r->msg);
  lp_notify_close(&r->notify);
  pthread_mutex_destroy(&r->mu);
  if (r->scope) lp_scope_release(r->scope);
  free(r);
}

/* wake whoever waits on r; called with r->mu held, after it got ready */
static void notify_locked(lp_req *r) { lp_notify_wake(&r->notify); }

/* r is about to finish by this thread's hand: it leaves its scope first, so
   whoever sees it finished sees it gone from there. With no lock held (the
   scope's lock comes before r->mu) */
static void leave_scope(lp_req *r) {
  if (r->scope && !lp_state_finished(atomic_load(&r->state))) lp_scope_leave(r);
}

/* move r from `from` to `to` if it is still there; 1 on success */
static int transition(lp_req *r, lp_state from, lp_state to) {
  int ok = 0;
  if (lp_state_finished(to)) leave_scope(r);
  pthread_mutex_lock(&r->mu);
  if (atomic_load(&r->state) == from) {
    atomic_store(&r->state, to);
    if (lp_state_finished(to)) notify_locked(r);
    ok = 1;
  }
  pthread_mutex_unlock(&r->mu);
  return ok;
}

/* stream messages queued now (st is set before the request starts) */
static size_t queued_now(const lp_req *r) { return r->st ? atomic_load(&r->st->nqueued) : 0; }

/* something for a reader: the request finished or (stream mode) a message
   is queued; exact with r->mu held, a hint without */
static int ready(lp_req *r) {
  return lp_state_finished(atomic_load(&r->state)) || queued_now(r) > 0;
}

/* interrupt the worker's epoll_wait */
static void wake_worker(lp_engine *e) { efd_signal(e->wfd); }

static lp_state settle_canceled(lp_req *r);

/* queue r for the worker (holding a reference) and wake it if it may sleep;
   once the worker stopped (process exit), r ends as canceled instead */
static void revive(lp_engine *e);

static void enqueue(lp_engine *e, lp_req *r) {
  int wake = 0, stopped;
  if (atomic_load(&e->revive)) revive(e);   /* a forked child's first use */
  pthread_mutex_lock(&e->qmu);
  stopped = e->stop;
  if (!stopped && !r->queued) {
    lp_req_retain(r);
    r->queued = 1;
    r->qnext = NULL;
    if (e->qtail) e->qtail->qnext = r; else { e->qhead = r; wake = 1; }
    e->qtail = r;
  }
  pthread_mutex_unlock(&e->qmu);
  if (stopped) settle_canceled(r);
  if (wake) wake_worker(e);
}

int lp_req_start(lp_engine *e, lp_req *r) {
  r->engine = e;
  if (!transition(r, LP_READY, LP_RUNNING)) return 0;
  enqueue(e, r);
  return 1;
}

/* settle r as canceled for `why` unless it finished; returns the state it
   had. It stays in its scope: the caller sees to that */
static lp_state settle(lp_req *r, lp_kind why, int by_scope) {
  lp_state was;
  pthread_mutex_lock(&r->mu);
  was = atomic_load(&r->state);
  if (!lp_state_finished(was)) {
    r->why = (unsigned char)why;
    r->why_scope = (unsigned char)by_scope;
    atomic_store(&r->state, LP_CANCELED);
    notify_locked(r);
  }
  pthread_mutex_unlock(&r->mu);
  return was;
}

/* settle r as canceled (the engine stops), out of its scope */
static lp_state settle_canceled(lp_req *r) {
  leave_scope(r);
  return settle(r, LP_ECANCELED, 0);
}

/* end r as canceled for `why`; by_scope: its scope ended it */
static int end_request(lp_req *r, lp_kind why, int by_scope) {
  lp_state was = settle(r, why, by_scope);
  if (was == LP_RUNNING) enqueue(r->engine, r); /* the worker tears it down */
  return !lp_state_finished(was);
}

int lp_req_cancel(lp_req *r) {
  leave_scope(r);
  return end_request(r, LP_ECANCELED, 0);
}

int lp_req_end(lp_req *r, lp_kind why) { return end_request(r, why, 1); }

const char *lp_req_why_text(const lp_req *r) {
  return r->why_scope ? lp_scope_why((lp_kind)r->why) : "request canceled";
}

/* ---- waiting ---- */

static int req_ready(const void *r) { return ready((lp_req *)r); }

static lp_waitable waitable(lp_req *r) {
  lp_waitable w;
  w.mu = &r->mu;
  w.n = &r->notify;
  w.ready = req_ready;
  w.obj = r;
  return w;
}

lp_req *lp_wait_any(lp_req *const *reqs, size_t n, double seconds) {
  lp_waitable local[8], *w = local;
  size_t i, got;
  for (i = 0; i < n; i++)      /* fast path: one already ready */
    if (ready(reqs[i])) return reqs[i];
  if (seconds == 0 || n == 0) return NULL;
  if (n > 8 && !(w = malloc(n * sizeof *w))) {
    errno = ENOMEM;
    return NULL;
  }
  for (i = 0; i < n; i++) w[i] = waitable(reqs[i]);
  got = lp_notify_wait(w, n, seconds);
  if (w != local) free(w);
  return got < n ? reqs[got] : NULL;
}

int lp_req_wait(lp_req *r, double seconds) {
  lp_waitable w = waitable(r);
  /* spin (yielding) for a short while first: an answer that comes within
     LP_SPIN_SECONDS then costs no sleep and wake-up of this thread, which is
     most of the cost of a quick request; a held poll pays the spin once */
  if (seconds != 0 && !ready(r)) {
    double spin = seconds > 0 && seconds < LP_SPIN_SECONDS ? seconds : LP_SPIN_SECONDS;
    double end = now_seconds() + spin;
    do {
      sched_yield();
      if (ready(r)) return 1;
    } while (now_seconds() < end);
  }
  return lp_notify_wait(&w, 1, seconds) == 0;
}

int lp_req_fd(lp_req *r) {
  int fd;
  pthread_mutex_lock(&r->mu);
  fd = lp_notify_fd(&r->notify, ready(r));
  pthread_mutex_unlock(&r->mu);
  return fd;
}

lp_msg *lp_req_take(lp_req *r, size_t max) {
  lp_sstate *st = r->st;
  lp_msg *head = NULL, *last = NULL, *m;
  size_t k = 0;
  int resume = 0;
  if (!st) return NULL;
  pthread_mutex_lock(&r->mu);
  for (m = st->mhead; m && k < max; m = m->next) {
    last = m;
    k++;
  }
  if (k > 0) {
    head = st->mhead;
    st->mhead = last->next;
    if (!st->mhead) st->mtail = NULL;
    last->next = NULL;
    atomic_fetch_sub(&st->nqueued, k);
  }
  if (atomic_load(&st->nqueued) == 0 && !lp_state_finished(atomic_load(&r->state)))
    lp_notify_clear(&r->notify);  /* nothing to read now: not readable */
  if (st->paused && atomic_load(&st->nqueued) <= st->max_queued / 2) {
    st->paused = 0;
    resume = 1;
  }
  pthread_mutex_unlock(&r->mu);
  if (resume) enqueue(r->engine, r);  /* the worker resumes the transfer */
  return head;
}

size_t lp_req_queued(lp_req *r) { return queued_now(r); }

const lp_result *lp_req_head(lp_req *r) {
  return r->st ? atomic_load(&r->st->head) : NULL;
}

/* ready, or a stream's headers are in (for lp_req_wait_head) */
static int head_ready(const void *p) {
  lp_req *r = (lp_req *)p;
  return ready(r) || lp_req_head(r) != NULL;
}

int lp_req_wait_head(lp_req *r, double seconds) {
  lp_waitable w = waitable(r);
  w.ready = head_ready;
  return lp_notify_wait(&w, 1, seconds) == 0;
}

/* ---- worker ---- */

static int buf_reserve(lp_buf *b, size_t extra) {
  size_t need = b->len + extra, cap = b->cap ? b->cap : 256;
  char *p;
  if (need <= b->cap) return 1;
  while (cap < need) cap *= 2;
  p = realloc(b->data, cap);
  if (!p) return 0;
  b->data = p;
  b->cap = cap;
  return 1;
}

/* ---- streams (worker side) ---- */

static void complete(lp_engine *e, lp_req *r, CURLcode c);

/* the messages one chunk completed, gathered before they are queued */
typedef struct lp_batch {
  lp_msg *head, *tail;
  size_t n;
} lp_batch;

/* lp_stream's callback: copy the message into one block for the queue */
static int collect(void *ud, const lp_stream_msg *m) {
  lp_batch *b = ud;
  size_t ev = m->event ? m->event_len + 1 : 0, id = m->id ? m->id_len + 1 : 0;
  lp_msg *q = malloc(sizeof *q + m->len + 1 + ev + id);
  char *p;
  if (!q) return 1;             /* the stream fails: LP_STREAM_STOPPED */
  q->next = NULL;
  q->len = m->len;
  q->retry = m->retry;
  memcpy(q->data, m->data, m->len);
  q->data[m->len] = '\0';
  p = q->data + m->len + 1;
  q->event = NULL;
  q->event_len = 0;
  q->id = NULL;
  q->id_len = 0;
  if (m->event) {
    memcpy(p, m->event, m->event_len);
    p[m->event_len] = '\0';
    q->event = p;
    q->event_len = m->event_len;
    p += ev;
  }
  if (m->id) {
    memcpy(p, m->id, m->id_len);
    p[m->id_len] = '\0';
    q->id = p;
    q->id_len = m->id_len;
  }
  if (b->tail) b->tail->next = q; else b->head = q;
  b->tail = q;
  b->n++;
  return 0;
}

/* queue a batch for the reader, waking it if the queue was empty; a batch
   for a request canceled meanwhile is dropped */
static void publish(lp_req *r, lp_batch *b) {
  lp_sstate *st = r->st;
  if (b->n == 0) return;
  atomic_fetch_add(&st->nmsgs, b->n);
  pthread_mutex_lock(&r->mu);
  if (atomic_load(&r->state) == LP_RUNNING) {
    int was_empty = atomic_load(&st->nqueued) == 0;
    if (st->mtail) st->mtail->next = b->head; else st->mhead = b->head;
    st->mtail = b->tail;
    atomic_fetch_add(&st->nqueued, b->n);
    if (was_empty) notify_locked(r);
    b->head = NULL;
  }
  pthread_mutex_unlock(&r->mu);
  free_msgs(b->head);
  b->head = b->tail = NULL;
  b->n = 0;
}

/* the queue of a request nobody reads any more */
static void drop_queue(lp_req *r) {
  lp_msg *m;
  if (!r->st) return;
  pthread_mutex_lock(&r->mu);
  m = r->st->mhead;
  r->st->mhead = r->st->mtail = NULL;
  atomic_store(&r->st->nqueued, 0);
  pthread_mutex_unlock(&r->mu);
  free_msgs(m);
}

/* body bytes of a stream: split them, or pause while the queue is full
   (libcurl keeps the chunk and hands it again once resumed) */
static size_t stream_body(lp_req *r, char *p, size_t len) {
  lp_sstate *st = r->st;
  lp_batch b = { NULL, NULL, 0 };
  lp_stream_rc rc;
  int full;
  pthread_mutex_lock(&r->mu);
  full = atomic_load(&st->nqueued) >= st->max_queued;
  if (full) st->paused = 1;
  pthread_mutex_unlock(&r->mu);
  if (full) {
    atomic_fetch_add(&st->npauses, 1);
    return CURL_WRITEFUNC_PAUSE;
  }
  rc = lp_stream_feed(&st->parser, p, len, collect, &b);
  publish(r, &b);
  if (rc == LP_STREAM_TOO_LARGE) r->res->too_large = 1;
  return rc == LP_STREAM_OK ? len : 0;
}

/* the body of a stream ended well: what the format makes of its last part */
static CURLcode stream_finish(lp_req *r) {
  lp_batch b = { NULL, NULL, 0 };
  lp_stream_rc rc = lp_stream_finish(&r->st->parser, collect, &b);
  publish(r, &b);
  if (rc == LP_STREAM_TOO_LARGE && r->res) r->res->too_large = 1;
  return rc == LP_STREAM_OK ? CURLE_OK : CURLE_WRITE_ERROR;
}

/* whether a stream's transfer is paused until its reader takes messages */
static int stream_paused(lp_req *r) {
  int paused;
  if (!r->st) return 0;
  pthread_mutex_lock(&r->mu);
  paused = r->st->paused;
  pthread_mutex_unlock(&r->mu);
  return paused;
}

/* a reader took messages off a full queue: go on reading */
static void stream_resume(lp_engine *e, lp_req *r) {
  CURLcode c = curl_easy_pause(r->easy, CURLPAUSE_CONT);
  /* the chunk held back is handed over inside this call; a failure there
     (a message too large, no memory) ends the transfer now */
  if (c != CURLE_OK) complete(e, r, c);
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow) {
  lp_req *r = ud;
  (void)ultotal;
  atomic_store_explicit(&r->rx, (long long)dlnow, memory_order_relaxed);
  atomic_store_explicit(&r->rx_total, dltotal > 0 ? (long long)dltotal : -1,
                        memory_order_relaxed);
  atomic_store_explicit(&r->tx, (long long)ulnow, memory_order_relaxed);
  return 0;
}

/* r's result, made at the first response byte; NULL when out of memory */
static lp_result *result(lp_req *r) {
  if (!r->res && (r->res = calloc(1, sizeof *r->res))) r->res->head_at_start = 1;
  return r->res;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  lp_req *r = ud;
  lp_result *res = result(r);
  size_t len = size * n;
  if (!res) return 0;           /* out of memory */
  /* canceled: taken and dropped. The cancel path (drain, drop_canceled)
     ends the transfer at the worker's next turn and makes an HTTP/2 reset
     go out; a write error here would end it first, through complete(),
     and leave libcurl 7.88.1's RST_STREAM unsent in its buffer */
  if (atomic_load_explicit(&r->state, memory_order_relaxed) == LP_CANCELED)
    return len;
  if (r->st && r->st->off == 0) {  /* the first bytes: 2xx? */
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    r->st->off = status >= 200 && status < 300 ? 1 : 2;
  }
  if (r->st && r->st->off == 1) return stream_body(r, p, len);
  if ((curl_off_t)(res->body.len + len) > r->opts.max_body) {
    res->too_large = 1;
    return 0;
  }
  if (!res->body.cap) {         /* size the buffer from Content-Length once */
    curl_off_t cl = -1;
    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (cl > 0 && cl <= r->opts.max_body && !buf_reserve(&res->body, (size_t)cl))
      return 0;
  }
  if (!buf_reserve(&res->body, len)) return 0;
  memcpy(res->body.data + res->body.len, p, len);
  res->body.len += len;
  return len;
}

/* stream mode, at the blank line that ends a header block: when it is a
   2xx answer's (no redirect or 1xx follows), publish a copy of its status
   and headers for lp_req_head and wake the threads that wait for them. Out
   of memory, they come with the end of the stream as before */
static void publish_head(lp_req *r, const lp_result *res) {
  lp_result *h;
  char *url = NULL;
  curl_off_t us = 0;
  long status = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) return;
  h = calloc(1, sizeof *h);
  if (!h || !buf_reserve(&h->head, res->head.len)) {
    free(h);
    return;
  }
  memcpy(h->head.data, res->head.data, res->head.len);
  h->head.len = res->head.len;
  h->status = status;
  h->retry_after = -1;
  curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &h->http_version);
  curl_easy_getinfo(r->easy, CURLINFO_STARTTRANSFER_TIME_T, &us);
  h->elapsed = (double)us / 1e6;
  curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
  if (url && strcmp(url, r->opts.url) != 0) h->effective_url = strdup(url);
  pthread_mutex_lock(&r->mu);
  atomic_store(&r->st->head, h);
  lp_notify_wake_threads(&r->notify);
  pthread_mutex_unlock(&r->mu);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  lp_req *r = ud;
  lp_result *res = result(r);
  size_t len = size * n;
  if (!res) return 0;
  /* a status line begins a new response (after a redirect or a 1xx): only
     the first line of a header block before any body byte can be one */
  if (res->head_at_start && res->body.len == 0 && !(r->st && r->st->off) && len >= 5 &&
      memcmp(p, "HTTP/", 5) == 0)
    res->head.len = 0;
  res->head_at_start = len >= 1 && len <= 2 && (p[0] == '\r' || p[0] == '\n');
  if (res->head.len + len > LP_HEAD_MAX) {
    res->head_too_large = 1;    /* libcurl would say "Failed writing header" */
    return 0;
  }
  if (!buf_reserve(&res->head, len)) return 0;
  memcpy(res->head.data + res->head.len, p, len);
  res->head.len += len;
  if (r->st && res->head_at_start && !atomic_load(&r->st->head)) publish_head(r, res);
  return len;
}

/* ---- libcurl's sockets ----
 *
 * Every socket libcurl uses for a connection is made by on_open_socket and
 * closed by on_close_socket, so the engine knows each one for its whole life:
 * it is close-on-exec from birth, leaves the epoll set before it is closed,
 * and a connection at rest can be checked before it carries a new request.
 */

/* what the engine knows of one of libcurl's sockets, indexed by descriptor */
struct lp_sock {
  unsigned gen;                 /* bumped at each open: tells a stale socketp */
  unsigned char open, watched, h1, family;
  unsigned short lport, rport;  /* lport 0: not read yet */
  unsigned char raddr[16];      /* the peer, as libcurl connected it */
  int next;                     /* chain in e->lhash (lport known) or e->unlearned */
  lp_req *users;                /* attached transfers on it (r->snext), from on_prereq */
};

static lp_sock *sock_get(lp_engine *e, curl_socket_t fd) {
  return fd >= 0 && fd < e->nsocks && e->socks[fd].open ? &e->socks[fd] : NULL;
}

/* the socketp libcurl keeps for a socket in the epoll set: its generation */
static void *sock_token(const lp_sock *k) { return (void *)(uintptr_t)k->gen; }

/* forget a socket: out of its chain (e->lhash or e->unlearned) */
static void sock_forget(lp_engine *e, int fd) {
  lp_sock *k = &e->socks[fd];
  int *p = k->lport ? &e->lhash[k->lport % LP_SOCK_BUCKETS] : &e->unlearned;
  while (*p >= 0 && *p != fd) p = &e->socks[*p].next;
  if (*p == fd) *p = k->next;
  while (k->users) {
    lp_req *r = k->users;
    k->users = r->snext;
    r->sock = -1;
    r->snext = r->sprev = NULL;
  }
  k->open = 0;
}

/* r no longer uses the connection it was on */
static void sock_leave(lp_engine *e, lp_req *r) {
  if (r->sock < 0) return;
  if (r->sprev) r->sprev->snext = r->snext;
  else e->socks[r->sock].users = r->snext;
  if (r->snext) r->snext->sprev = r->sprev;
  r->snext = r->sprev = NULL;
  r->sock = -1;
}

/* r now uses socket k (a connection: several transfers share one over HTTP/2) */
static void sock_join(lp_engine *e, lp_req *r, lp_sock *k) {
  sock_leave(e, r);
  r->sock = (int)(k - e->socks);
  r->sprev = NULL;
  r->snext = k->users;
  if (k->users) k->users->sprev = r;
  k->users = r;
}

/* read the local port of sockets that have none yet (each once in its life:
   a connecting socket has one as soon as connect() was called) */
static void sock_learn(lp_engine *e) {
  int *p = &e->unlearned;
  while (*p >= 0) {
    int fd = *p;
    lp_sock *k = &e->socks[fd];
    struct sockaddr_storage a;
    socklen_t alen = sizeof a;
    unsigned short port = 0;
    if (getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
      sock_forget(e, fd);       /* closed behind our back (see on_open_socket) */
      continue;                 /* *p holds the next one now */
    }
    port = ntohs(a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port
                                         : ((struct sockaddr_in *)&a)->sin_port);
    if (!port) { p = &k->next; continue; }   /* not connecting yet */
    *p = k->next;
    k->lport = port;
    k->next = e->lhash[port % LP_SOCK_BUCKETS];
    e->lhash[port % LP_SOCK_BUCKETS] = fd;
  }
}

/* the socket of the connection local port -> ip:port, or NULL */
static lp_sock *sock_find(lp_engine *e, long lport, long rport, const char *ip) {
  unsigned char addr[16] = { 0 };
  int family, pass;
  if (!ip || lport <= 0 || lport > 65535) return NULL;
  if (inet_pton(AF_INET, ip, addr) == 1) family = AF_INET;
  else if (inet_pton(AF_INET6, ip, addr) == 1) family = AF_INET6;
  else return NULL;
  for (pass = 0; pass < 2; pass++) {
    int fd;
    for (fd = e->lhash[lport % LP_SOCK_BUCKETS]; fd >= 0; fd = e->socks[fd].next) {
      lp_sock *k = &e->socks[fd];
      if (k->lport == lport && k->rport == rport && k->family == family &&
          memcmp(k->raddr, addr, sizeof addr) == 0)
        return k;
    }
    if (pass == 0) sock_learn(e);
  }
  return NULL;
}

/* A server we multiplex to over HTTP/2: libcurl 7.88.1 lets every transfer
   that finds the connections to a server full open a connection of its own
   while the first such new connection is still being set up (it is not a
   candidate for reuse until connected): 200 polls to a server allowing 100
   streams made 101 connections (curl/curl#10456, fixed in 8.0.0). So, past
   the first, a new connection to a server known to multiplex is refused
   while another one to it is being opened (open_ok): the transfer is
   parked and added again once that connection is up or gone, and then
   shares it. */
struct lp_peer {
  lp_peer *next;
  unsigned char family, raddr[16];
  unsigned short rport;
  int h2;                       /* one connection to it carried two transfers */
  lp_req *opener;               /* the transfer opening a connection to it */
};

static lp_peer *peer_find(lp_engine *e, int family, const unsigned char *raddr,
                          unsigned short rport, int make) {
  lp_peer *p;
  for (p = e->peers; p; p = p->next)
    if (p->family == family && p->rport == rport && memcmp(p->raddr, raddr, 16) == 0)
      return p;
  if (!make || !(p = calloc(1, sizeof *p))) return NULL;  /* no memory: no parking */
  p->family = (unsigned char)family;
  p->rport = rport;
  memcpy(p->raddr, raddr, 16);
  p->next = e->peers;
  e->peers = p;
  return p;
}

/* r's connection is up or gone: the transfers parked for it go back */
static void peer_opened(lp_engine *e, lp_req *r) {
  lp_peer *p;
  for (p = e->peers; p; p = p->next)
    if (p->opener == r) {
      p->opener = NULL;
      e->unpark = 1;
    }
}

/* whether r may open a connection to the address (see lp_peer): not while
   another one to a server that multiplexes is being opened */
static int open_ok(lp_engine *e, lp_req *r, int family, const unsigned char *raddr,
                   unsigned short rport) {
  lp_peer *p;
  if (!e->pipewait_broken || !r || !r->pipewait) return 1;
  p = peer_find(e, family, raddr, rport, 0);
  if (!p || !p->h2) return 1;
  if (p->opener && p->opener != r) {
    r->parked = 1;              /* complete() parks it instead of failing it */
    return 0;
  }
  p->opener = r;
  return 1;
}

/* close-on-exec from birth (libcurl 7.88.1 calls plain socket()): a child
   process must not keep a connection open after its request ended (#9.1) */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose,
                                    struct curl_sockaddr *a) {
  lp_req *r = ud;
  lp_engine *e = r->engine;
  lp_sock *k;
  unsigned char raddr[16] = { 0 };
  unsigned short rport = 0;
  int fd;
  (void)purpose;
  if (a->family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->addr;
    rport = ntohs(s6->sin6_port);
    memcpy(raddr, &s6->sin6_addr, 16);
  } else if (a->family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->addr;
    rport = ntohs(s4->sin_port);
    memcpy(raddr, &s4->sin_addr, 4);
  }
  if (!open_ok(e, r, a->family, raddr, rport)) return CURL_SOCKET_BAD;
  fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (fd < 0) return CURL_SOCKET_BAD;  /* libcurl reports it: "connect" */
  if (fd >= e->nsocks) {
    int n = e->nsocks ? e->nsocks : 64;
    lp_sock *p;
    while (n <= fd) n *= 2;
    p = realloc(e->socks, (size_t)n * sizeof *p);
    if (!p) {                   /* untracked it could not be checked: refuse */
      close(fd);
      return CURL_SOCKET_BAD;
    }
    memset(p + e->nsocks, 0, (size_t)(n - e->nsocks) * sizeof *p);
    e->socks = p;
    e->nsocks = n;
  }
  k = &e->socks[fd];
  /* libcurl 7.88.1 closes a socket that never carried a connection (a
     failed or losing connect attempt) with close(), not through
     on_close_socket: its number comes back here still marked open */
  if (k->open) sock_forget(e, fd);
  k->gen = k->gen + 1 ? k->gen + 1 : 1; /* never 0: a token is non-NULL */
  k->open = 1;
  k->watched = k->h1 = 0;
  k->lport = 0;
  k->rport = rport;
  k->family = (unsigned char)a->family;
  memcpy(k->raddr, raddr, sizeof k->raddr);
  k->next = e->unlearned;
  e->unlearned = fd;
  return fd;
}

static void watch_del(lp_engine *e, curl_socket_t fd);

static int on_close_socket(void *ud, curl_socket_t fd) {
  lp_engine *e = ud;
  lp_sock *k = sock_get(e, fd);
  if (k) {
    /* libcurl tells CURL_POLL_REMOVE first, but not when it closes a
       connection outside a transfer: leave the set now (a forked child
       holding the socket would keep it in the set after our close) */
    if (k->watched) watch_del(e, fd);
    sock_forget(e, fd);
  }
  /* close() fails only with EBADF (a bug) or EINTR/EIO, when the
     descriptor is released all the same on Linux: nothing to retry */
  return close(fd);
}

/* 1 when nothing waits on a connection at rest: no byte, no EOF, no error */
static int sock_quiet(curl_socket_t fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Called once a connection is chosen, before the request goes out. libcurl
   7.88.1 reuses an HTTP/1.x connection at rest that has unread bytes on it
   (only EOF makes it drop one; fixed in 8.0.0, curl/curl#10690): a server
   writing a second response on an idle connection would answer the next
   request with it, and every later one with its predecessor's. A reused
   connection that is not quiet is refused here: libcurl closes it (an abort
   is premature for HTTP/1), and complete() sends the request again at once
   on a new connection. Nothing of the request was sent, so nothing is
   repeated; the caller sees its own answer. (CURLINFO_ACTIVESOCKET cannot
   name the socket here in 7.88.1: it knows only finished transfers.) */
static int on_prereq(void *ud, char *peer_ip, char *local_ip, int peer_port,
                     int local_port) {
  lp_req *r = ud;
  lp_sock *k;
  long connects = 0;
  (void)local_ip;
  /* a connection is chosen: from here on a failure's message is made from
     its CURLcode and what libcurl reports of the transfer (fail_message),
     so a held poll keeps no error buffer. libcurl only writes the buffer in
     failf (and empties it when the handle is added): the pointer may change
     at any time */
  if (r->msg && !r->msg[0]) {   /* (one that said something stays) */
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, (char *)NULL);
    free(r->msg);
    r->msg = NULL;
  }
  curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &connects);
  k = sock_find(r->engine, local_port, peer_port, peer_ip);
  if (k) sock_join(r->engine, r, k);
  else sock_leave(r->engine, r);
  peer_opened(r->engine, r);          /* its connection is up */
  if (k && k->users && k->users->snext && r->engine->pipewait_broken) {
    lp_peer *p = peer_find(r->engine, k->family, k->raddr, k->rport, 1);
    if (p) p->h2 = 1;                 /* two transfers at once: multiplexed */
  }
  if (connects != r->connects) {      /* a new connection: nothing to fear */
    r->connects = (int)connects;
    return CURL_PREREQFUNC_OK;
  }
  if (!k || !k->h1 || sock_quiet((curl_socket_t)(k - r->engine->socks)))
    return CURL_PREREQFUNC_OK;
  r->stale_conn = 1;
  return CURL_PREREQFUNC_ABORT;
}

/* after an HTTP/1.x response, remember that its connection speaks it (a
   connection libcurl closed is not found; HTTP/2 ones are never checked:
   frames may arrive on them at any time) */
static void note_h1(lp_engine *e, lp_req *r, long http_version) {
  long lport = 0, rport = 0;
  char *ip = NULL;
  lp_sock *k;
  if (http_version != CURL_HTTP_VERSION_1_0 && http_version != CURL_HTTP_VERSION_1_1)
    return;
  curl_easy_getinfo(r->easy, CURLINFO_LOCAL_PORT, &lport);
  curl_easy_getinfo(r->easy, CURLINFO_PRIMARY_PORT, &rport);
  curl_easy_getinfo(r->easy, CURLINFO_PRIMARY_IP, &ip);
  if ((k = sock_find(e, lport, rport, ip))) k->h1 = 1;
}

/* a fresh easy handle set up for r. Never a reused one: libcurl 7.88.1 keeps
   a pointer to the previous transfer's last header on a handle (freed when
   the next transfer starts; curl_easy_reset does not clear it), so a second
   response whose header block begins with a folded line makes libcurl append
   to freed memory: a double free any server can trigger (curl/curl#11101,
   fixed in 8.1.0 by #11103). Connections, DNS and (through e->share) TLS
   sessions live outside the handle, so a fresh one loses nothing. */
static CURL *make_easy(lp_engine *e, lp_req *r) {
  const lp_opts *o = &r->opts;
  static const lp_extra no_extra;
  const lp_extra *x = o->x ? o->x : &no_extra;
  CURL *h;
  if (!(h = curl_easy_init())) return NULL;
  r->easy = h;
  r->connects = 0;
  if (r->res) {                 /* a second attempt: nothing of the first */
    r->res->head.len = r->res->body.len = 0;
    r->res->head_at_start = 1;
  }
  /* libcurl's words for a failure while connecting (its error buffer),
     until on_prereq; without memory for it, fail_message's */
  if (!r->msg) r->msg = malloc(CURL_ERROR_SIZE);
  if (r->msg) r->msg[0] = '\0';
  curl_easy_setopt(h, CURLOPT_PRIVATE, r);
  if (e->share) curl_easy_setopt(h, CURLOPT_SHARE, e->share);
  curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, r);
  curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
  curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, e);
  curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, on_prereq);
  curl_easy_setopt(h, CURLOPT_PREREQDATA, r);
  if (r->fresh) curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
  curl_easy_setopt(h, CURLOPT_URL, o->url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  if (r->msg) curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->msg);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, (long)o->follow_redirects);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, o->verify ? 1L : 0L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
  if (x->cainfo) curl_easy_setopt(h, CURLOPT_CAINFO, x->cainfo);
  /* the default user agent is in the header list (lp_default_headers), and
     for a proxy's CONNECT in the proxy's; another one is libcurl's option */
  if (o->user_agent == lp_default_user_agent)
    curl_easy_setopt(h, CURLOPT_PROXYHEADER, &lp_default_headers);
  else if (o->user_agent)
    curl_easy_setopt(h, CURLOPT_USERAGENT, o->user_agent);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, o->headers);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, o->timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, o->max_body);
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  if (e->buffer_size > 0) curl_easy_setopt(h, CURLOPT_BUFFERSIZE, e->buffer_size);
  /* a cancel during name resolution must not make the worker join the
     resolver thread (it finishes and frees itself) */
  curl_easy_setopt(h, CURLOPT_QUICK_EXIT, 1L);
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)o->http_version);
  if (x->username) {
    curl_easy_setopt(h, CURLOPT_USERNAME, x->username);
    curl_easy_setopt(h, CURLOPT_PASSWORD, x->password);
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, x->httpauth);
  }
  if (o->fresh_connect) {
    curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
  }
  /* over TLS, wait for ALPN to multiplex on one connection rather than open
     more; not in cleartext: for HTTP/1.1 a held poll would hold back the
     rest, and libcurl 7.88 breaks streams that wait on an h2c connection
     still starting ("Error in the HTTP2 framing layer") */
  r->pipewait = o->http_version != CURL_HTTP_VERSION_1_1 &&
                strncasecmp(o->url, "https:", 6) == 0;
  if (r->pipewait) curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
  if (x->body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, x->body);
    if (strcmp(o->method, "POST") != 0)
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, o->method);
  } else if (strcmp(o->method, "HEAD") == 0) {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (strcmp(o->method, "GET") != 0) {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, o->method);
  }
  /* progress for req:progress(); libcurl calls it only while it works on
     the transfer, so an idle held poll costs nothing */
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, r);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  /* a stream is never kept whole: max_body bounds only an error answer's
     body (on_body), max_message each message */
  if (r->st) curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)0);
  return h;
}

/* detach r's transfer from the multi handle and drop the engine's share */
static void detach(lp_engine *e, lp_req *r) {
  CURL *h = r->easy;
  peer_opened(e, r);            /* whatever it was opening is gone with it */
  /* fails only for a handle not in the multi (a bug) or when called from a
     libcurl callback (never): cleanup removes it then anyway */
  if (h) (void)curl_multi_remove_handle(e->multi, h);
  sock_leave(e, r);
  r->easy = NULL;
  curl_easy_cleanup(h);
  if (r->aprev) r->aprev->anext = r->anext; else e->active = r->anext;
  if (r->anext) r->anext->aprev = r->aprev;
  r->aprev = r->anext = NULL;
  if (atomic_load(&r->state) == LP_CANCELED) { /* nobody reads these now */
    result_free(r->res, 0);
    drop_queue(r);
  }
  lp_req_release(r);
}

/* A canceled transfer leaves so that the server learns it at once. Over
   HTTP/1 libcurl closes the connection (the transfer ends early). Over
   HTTP/2 it queues a RST_STREAM, but libcurl 7.88.1 keeps frames under
   1 KiB in a buffer that only the next send on the connection flushes
   (lib/http2.c: send_callback buffers them; http2_data_done calls
   nghttp2_session_send, not flush_output): the server would hold the stream
   until other traffic came. So when no other transfer uses the connection,
   CURLOPT_FORBID_REUSE makes libcurl close it (the server drops every stream
   on it; libcurl keeps a connection that others still use), and when others
   do, unpausing one of them makes libcurl flush the connection's output
   (curl_easy_pause -> http2_data_pause -> h2_session_send). */
static void drop_canceled(lp_engine *e, lp_req *r) {
  lp_req *other = r->sock >= 0 ? e->socks[r->sock].users : NULL;
  /* not a stream paused for its full queue: unpausing would resume it */
  while (other && (other == r || !other->easy || stream_paused(other)))
    other = other->snext;
  curl_easy_setopt(r->easy, CURLOPT_FORBID_REUSE, 1L);
  detach(e, r);
  if (other) {
    /* fails only for a transfer with no stream yet: the reset then goes out
       with the connection's next frame, as it would without this */
    (void)curl_easy_pause(other->easy, CURLPAUSE_RECV);
    (void)curl_easy_pause(other->easy, CURLPAUSE_CONT);
  }
}

/* r->msg = the formatted text (in its buffer, made if needed); without
   memory, no message (the binding says what the CURLcode says) */
static void set_msg(lp_req *r, const char *fmt, ...) {
  va_list ap;
  if (!r->msg && !(r->msg = malloc(CURL_ERROR_SIZE))) return;
  va_start(ap, fmt);
  vsnprintf(r->msg, CURL_ERROR_SIZE, fmt, ap);
  va_end(ap);
}

static void attach(lp_engine *e, lp_req *r) {
  CURL *h = make_easy(e, r);
  if (h && curl_multi_add_handle(e->multi, h) == CURLM_OK) {
    r->anext = e->active;       /* the queue's reference becomes ours */
    r->aprev = NULL;
    if (e->active) e->active->aprev = r;
    e->active = r;
    return;
  }
  if (h) { r->easy = NULL; curl_easy_cleanup(h); }
  r->kind = LP_ENETWORK;
  set_msg(r, "could not start the transfer");
  transition(r, LP_RUNNING, LP_FAILED);
  lp_req_release(r);
}

static lp_kind kind_of(lp_req *r, CURLcode c) {
  switch (c) {
  case CURLE_OPERATION_TIMEDOUT: return LP_ETIMEOUT;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY: return LP_ERESOLVE;
  case CURLE_COULDNT_CONNECT: return LP_ECONNECT;
  case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED: case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_SHUTDOWN_FAILED: case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR: case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS: case CURLE_SSL_CLIENTCERT:
    return LP_ETLS;
  case CURLE_FILESIZE_EXCEEDED: return LP_ETOOLARGE;
  case CURLE_WRITE_ERROR: return r->res && r->res->too_large ? LP_ETOOLARGE : LP_ENETWORK;
  case CURLE_TOO_MANY_REDIRECTS: return LP_EHTTP;
  case CURLE_UNSUPPORTED_PROTOCOL: /* a redirect to a scheme we refuse */
    return r->res && r->res->status >= 300 && r->res->status < 400 ? LP_EHTTP : LP_ENETWORK;
  default: return LP_ENETWORK;
  }
}

/* r's connection was refused by open_ok: its transfer leaves the multi
   handle (keeping the engine's share) and waits in e->parked */
static void park(lp_engine *e, lp_req *r) {
  (void)curl_multi_remove_handle(e->multi, r->easy); /* as in detach */
  sock_leave(e, r);
  curl_easy_cleanup(r->easy);
  r->easy = NULL;
  if (r->aprev) r->aprev->anext = r->anext; else e->active = r->anext;
  if (r->anext) r->anext->aprev = r->aprev;
  r->aprev = NULL;
  r->anext = e->parked;
  if (e->parked) e->parked->aprev = r;
  e->parked = r;
  r->parked = 2;
}

/* r leaves e->parked: attached again while it runs (its libcurl
   `timeout` counts from now), else the engine's share is dropped */
static void unpark_one(lp_engine *e, lp_req *r) {
  if (r->aprev) r->aprev->anext = r->anext; else e->parked = r->anext;
  if (r->anext) r->anext->aprev = r->aprev;
  r->aprev = r->anext = NULL;
  r->parked = 0;
  if (atomic_load(&r->state) != LP_RUNNING) {
    lp_req_release(r);
    return;
  }
  attach(e, r);                 /* keeps the share, or fails r */
}

/* every parked transfer goes back (a connection they waited for is up or
   gone); outside libcurl's callbacks, where adding a handle is refused */
static void unpark(lp_engine *e) {
  e->unpark = 0;
  while (e->parked) unpark_one(e, e->parked);
}

/* send r again on a new connection after on_prereq refused a stale one
   (at most once: a new connection is never refused); 0 when it could not
   start, r->easy then NULL */
static int resend_fresh(lp_engine *e, lp_req *r) {
  CURL *h = r->easy;
  (void)curl_multi_remove_handle(e->multi, h); /* as in detach */
  sock_leave(e, r);
  curl_easy_cleanup(h);
  r->easy = NULL;
  r->stale_conn = 0;
  r->fresh = 1;
  h = make_easy(e, r);
  if (h && curl_multi_add_handle(e->multi, h) == CURLM_OK) return 1;
  curl_easy_cleanup(h);
  r->easy = NULL;
  set_msg(r, "could not start the transfer again");
  return 0;
}

/* 1 for a JSON media type: application/json or any +json (RFC 6839) */
static int is_json_type(const char *ct) {
  size_t n;
  if (!ct) return 0;
  n = strcspn(ct, ";");
  while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) n--;
  return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
         (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
}

/* the message of a failure that libcurl's error buffer did not catch (it
   is kept only while a transfer connects: on_prereq): the words libcurl
   would use, from the CURLcode and what it reports of the transfer */
static void fail_message(lp_req *r, CURLcode c) {
  curl_off_t got = 0, len = -1, us = 0;
  long port = 0, err = 0;
  char *ip = NULL;
  const char *why;
  curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &err);
  why = err ? strerror((int)err) : curl_easy_strerror(c);
  switch (c) {
  case CURLE_OPERATION_TIMEDOUT:
    curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &us);
    curl_easy_getinfo(r->easy, CURLINFO_SIZE_DOWNLOAD_T, &got);
    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
    if (len >= 0)
      set_msg(r, "Operation timed out after %lld milliseconds with %lld out of %lld "
              "bytes received", (long long)(us / 1000), (long long)got, (long long)len);
    else
      set_msg(r, "Operation timed out after %lld milliseconds with %lld bytes received",
              (long long)(us / 1000), (long long)got);
    break;
  case CURLE_COULDNT_CONNECT:
    curl_easy_getinfo(r->easy, CURLINFO_PRIMARY_IP, &ip);
    curl_easy_getinfo(r->easy, CURLINFO_PRIMARY_PORT, &port);
    set_msg(r, "Failed to connect to %s port %ld: %s", ip && *ip ? ip : "the server",
            port, why);
    break;
  case CURLE_RECV_ERROR: set_msg(r, "Recv failure: %s", why); break;
  case CURLE_SEND_ERROR: set_msg(r, "Send failure: %s", why); break;
  case CURLE_PARTIAL_FILE:
    curl_easy_getinfo(r->easy, CURLINFO_SIZE_DOWNLOAD_T, &got);
    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
    if (len > got)
      set_msg(r, "transfer closed with %lld bytes remaining to read", (long long)(len - got));
    else
      set_msg(r, "transfer closed with outstanding read data remaining");
    break;
  case CURLE_GOT_NOTHING: set_msg(r, "Empty reply from server"); break;
  case CURLE_TOO_MANY_REDIRECTS: set_msg(r, "Maximum (5) redirects followed"); break;
  case CURLE_UNSUPPORTED_PROTOCOL:   /* a redirect elsewhere: say where */
    curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &ip);
    if (ip && strstr(ip, "://") && strncasecmp(ip, "http", 4) != 0)
      set_msg(r, "Protocol \"%.*s\" not supported or disabled in libcurl",
              (int)(strstr(ip, "://") - ip), ip);
    else
      set_msg(r, "%s", curl_easy_strerror(c));
    break;
  default: set_msg(r, "%s", curl_easy_strerror(c)); break;
  }
}

/* a transfer ended: record its result unless a cancel got there first */
static void complete(lp_engine *e, lp_req *r, CURLcode c) {
  struct curl_header *hdr;
  lp_result *res;
  char *url = NULL, *ctype = NULL;
  curl_off_t us = 0;
  long status = 0, version = 0;
  if (c == CURLE_ABORTED_BY_CALLBACK && r->stale_conn &&
      atomic_load(&r->state) == LP_RUNNING && resend_fresh(e, r))
    return;
  if (r->parked == 1 && atomic_load(&r->state) == LP_RUNNING) {
    park(e, r);
    return;
  }
  r->parked = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &version);
  if (r->easy) note_h1(e, r, version);
  if (atomic_load(&r->state) == LP_RUNNING) {
    /* a response began (r->res), or none did: a status line alone is kept too */
    res = status > 0 || r->res ? result(r) : NULL;
    if (c == CURLE_OK && r->st && r->st->off == 1) c = stream_finish(r);
    if (c == CURLE_OK && !res) c = CURLE_OUT_OF_MEMORY;  /* no room for it */
    r->curl_code = c;
    if (res) {
      curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
      curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &us);
      curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &res->retry_after);
      curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ctype);
      /* libcurl gives 0 both for no Retry-After and for "now", and a
         negative delta for a date in the past (also "now") */
      if (!r->easy || curl_easy_header(r->easy, "Retry-After", 0, CURLH_HEADER, -1, &hdr) != CURLHE_OK)
        res->retry_after = -1;
      else if (res->retry_after < 0)
        res->retry_after = 0;
      res->status = status;
      res->http_version = version;
      res->elapsed = (double)us / 1e6;
      /* a copy only when a redirect moved it */
      if (url && strcmp(url, r->opts.url) != 0) res->effective_url = strdup(url);
      res->json_type = (unsigned char)is_json_type(ctype);
    }
    if (c != CURLE_OK) {
      r->kind = kind_of(r, c);
      if (!r->msg || !r->msg[0]) fail_message(r, c);
      if (r->kind == LP_ETOOLARGE)
        set_msg(r, "response body exceeds max_body (%lld bytes)", (long long)r->opts.max_body);
      if (r->kind == LP_ETOOLARGE && r->st && r->st->off == 1)
        set_msg(r, "a stream message exceeds max_message (%zu bytes)", r->st->max_message);
      /* say what the server did rather than libcurl's words for it: our
         cap on the header block, and libcurl 7.88.1's on one header line
         (CURL_MAX_HTTP_HEADER, reported as CURLE_OUT_OF_MEMORY) */
      if (res && res->head_too_large)
        set_msg(r, "response headers exceed %d KiB", LP_HEAD_MAX / 1024);
      else if (c == CURLE_OUT_OF_MEMORY && res && res->body.len == 0 && !(r->st && r->st->off))
        set_msg(r, "a response header line exceeds 100 KiB (or out of memory)");
    } else if ((status >= 200 && status < 300) || status == 304) {
      r->kind = LP_OK;
    } else {
      r->kind = LP_EHTTP;
      set_msg(r, "HTTP status %ld", status);
    }
    transition(r, LP_RUNNING, r->kind == LP_OK ? LP_DONE : LP_FAILED);
  }
  detach(e, r);
}

/* the settings into the multi handle (worker, under qmu). The values were
   checked by the binding; a libcurl that refuses one keeps its previous
   value, which leaves the engine working: nothing to undo */
static void apply_config(lp_engine *e) {
  const lp_config *c = &e->cfg;
  curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, c->max_host_connections);
  curl_multi_setopt(e->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, c->max_connections);
  curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, c->max_idle_connections);
  curl_multi_setopt(e->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, c->max_streams);
  e->buffer_size = c->buffer_size;
}

/* take the queue and act on each request according to its state now */
static int drain(lp_engine *e) {
  lp_req *q, *r;
  int stop;
  pthread_mutex_lock(&e->qmu);
  if (e->fork_hold) {           /* fork_prepare: hold still (no lock, not in
                                   libcurl) until fork() returned */
    e->fork_held = 1;
    pthread_cond_broadcast(&e->parkcv);
    while (e->fork_hold) pthread_cond_wait(&e->parkcv, &e->qmu);
    e->fork_held = 0;
  }
  q = e->qhead;
  e->qhead = e->qtail = NULL;
  stop = e->stop;
  if (e->cfg_dirty) {
    apply_config(e);
    e->cfg_dirty = 0;
  }
  pthread_mutex_unlock(&e->qmu);
  while ((r = q)) {
    lp_state s;
    /* r leaves the queue here, not at the swap: until then a cancel finds it
       queued and only changes its state, which we read under the same lock */
    pthread_mutex_lock(&e->qmu);
    q = r->qnext;
    r->qnext = NULL;
    r->queued = 0;
    s = atomic_load(&r->state);
    pthread_mutex_unlock(&e->qmu);
    if (r->parked == 2 && s != LP_RUNNING) unpark_one(e, r); /* drops it */
    if (!r->easy && !r->parked && s == LP_RUNNING) {
      if (!stop) { attach(e, r); continue; }
      settle_canceled(r);       /* started while the engine stops */
    }
    if (r->easy && s == LP_CANCELED) drop_canceled(e, r);
    else if (r->easy && r->st) stream_resume(e, r); /* queued by lp_req_take */
    lp_req_release(r);          /* the queue's reference */
  }
  return stop;
}

/* add or change a socket in the epoll set; 0 or an errno */
static int watch_set(lp_engine *e, curl_socket_t fd, uint32_t events, int in_set) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(e->ep, in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) == 0)
    return 0;
  /* ENOENT: it left the set behind our back (a socket libcurl made itself,
     closed and made again under the same number); EEXIST: it is there under
     a token of an earlier life. Anything else (ENOMEM, ENOSPC: the
     max_user_watches limit) is the transfer's failure: see fail_unwatched */
  if ((in_set && errno == ENOENT) || (!in_set && errno == EEXIST)) {
    if (epoll_ctl(e->ep, in_set ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) == 0)
      return 0;
  }
  return errno;
}

static void watch_del(lp_engine *e, curl_socket_t fd) {
  lp_sock *k = sock_get(e, fd);
  /* fails (EBADF, ENOENT) only for a socket libcurl made itself (its
     resolver's) and closed before it said CURL_POLL_REMOVE: the kernel
     dropped it from the set with its last descriptor. Ours leave the set in
     on_close_socket, and a CURL_POLL_REMOVE that comes after a socket's
     number was reused carries a stale token and is ignored (on_socket). */
  (void)epoll_ctl(e->ep, EPOLL_CTL_DEL, fd, NULL);
  if (k) k->watched = 0;
}

/* libcurl tells which sockets to watch for what: mirror it in the epoll set.
   Always returns 0: -1 would make libcurl fail every transfer of the multi
   handle; a socket that cannot be watched fails its own transfer instead. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
  lp_engine *e = userp;
  lp_sock *k = sock_get(e, s);
  /* for our sockets the token must be of this life of the descriptor; a
     socket libcurl made itself carries e. So a late CURL_POLL_REMOVE for one
     of ours that on_close_socket already took out of the set (k is NULL
     then, the token a generation) touches nothing: its number may already
     belong to a descriptor another thread just made */
  int in_set = k ? k->watched && socketp == sock_token(k) : socketp == (void *)e;
  uint32_t events;
  int err;
  if (what == CURL_POLL_REMOVE) {
    if (in_set) watch_del(e, s);
    return 0;
  }
  /* a socket libcurl made itself (its resolver's socketpair) is made
     close-on-exec at first sight; F_SETFD cannot fail on it */
  if (!k && !in_set) (void)fcntl(s, F_SETFD, FD_CLOEXEC);
  events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
  err = watch_set(e, s, events, in_set);
  if (err) {
    lp_req *r = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    if (r) {
      r->watch_err = err;
      e->watch_failed = 1;
    }
    return 0;
  }
  if (k) k->watched = 1;
  if (!in_set) /* cannot fail: libcurl made the entry before it called us */
    (void)curl_multi_assign(e->multi, s, k ? sock_token(k) : (void *)e);
  return 0;
}

/* libcurl's one timer: when to call socket_action(CURL_SOCKET_TIMEOUT) */
static int on_timer(CURLM *m, long ms, void *userp) {
  lp_engine *e = userp;
  (void)m;
  e->timer_at = ms < 0 ? -1 : now_seconds() + (double)ms / 1000.0;
  return 0;
}

/* hand every finished transfer its result */
static void reap(lp_engine *e) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(e->multi, &left))) {
    lp_req *r = NULL;
    if (m->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    complete(e, r, m->data.result);
  }
}

/* end the transfers whose socket on_socket could not put in the epoll set:
   they would wait for events that never come */
static void fail_unwatched(lp_engine *e) {
  lp_req *r, *next;
  e->watch_failed = 0;
  for (r = e->active; r; r = next) {
    next = r->anext;
    if (!r->watch_err) continue;
    if (atomic_load(&r->state) == LP_RUNNING) {
      r->kind = LP_ENETWORK;
      set_msg(r, "cannot watch the connection: %s", strerror(r->watch_err));
      transition(r, LP_RUNNING, LP_FAILED);
    }
    detach(e, r);
  }
}

/* hand libcurl the readiness of one socket. It fails with CURLM_BAD_SOCKET
   for an event of a socket it closed while handling an earlier event of the
   same batch (ignored: nothing is left to do for it); with
   CURLM_OUT_OF_MEMORY or CURLM_INTERNAL_ERROR the transfers concerned end
   through curl_multi_info_read (or their deadline): the multi handle stays
   usable, so there is nothing else to do either. */
static void socket_action(lp_engine *e, curl_socket_t fd, int flags) {
  int running;
  (void)curl_multi_socket_action(e->multi, fd, flags, &running);
}

#define LP_EVENTS 64

static void *worker_main(void *arg) {
  lp_engine *e = arg;
  struct epoll_event evs[LP_EVENTS];
  while (!drain(e)) {
    int timeout = -1, n, i;
    double at = e->timer_at, deadline = lp_scope_next_deadline();
    if (deadline >= 0 && (at < 0 || deadline < at)) at = deadline;
    if (at >= 0) {
      double left = at - now_seconds();
      timeout = left <= 0 ? 0 : left > 86400.0 ? 86400000 : (int)(left * 1000.0) + 1;
    }
    n = epoll_wait(e->ep, evs, LP_EVENTS, timeout);
    if (n < 0) {
      /* EINTR: a signal, go round. Nothing else can fail on our own epoll
         descriptor with a valid buffer; never spin on it all the same */
      if (errno != EINTR) {
        struct timespec pause = { 0, 10 * 1000 * 1000 };
        nanosleep(&pause, NULL);
      }
      n = 0;
    }
    for (i = 0; i < n; i++) {
      uint32_t ev = evs[i].events;
      int fd = evs[i].data.fd, flags = 0;
      if (fd == e->wfd) {
        uint64_t v;
        ssize_t k = read(e->wfd, &v, sizeof v);
        (void)k;                /* EAGAIN: already read; the queue is what counts */
        continue;
      }
      if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) flags |= CURL_CSELECT_IN;
      if (ev & EPOLLOUT) flags |= CURL_CSELECT_OUT;
      if (ev & EPOLLERR) flags |= CURL_CSELECT_ERR;
      socket_action(e, fd, flags);
    }
    if (e->timer_at >= 0 && now_seconds() >= e->timer_at) {
      e->timer_at = -1;
      socket_action(e, CURL_SOCKET_TIMEOUT, 0);
    }
    if (deadline >= 0 && now_seconds() >= deadline) lp_scope_expire(now_seconds());
    if (e->watch_failed) fail_unwatched(e);
    reap(e);
    if (e->unpark) unpark(e);
  }
  /* stopping: whatever is still attached or parked ends as canceled */
  while (e->parked) {
    settle_canceled(e->parked);
    unpark_one(e, e->parked);   /* canceled now: drops it */
  }
  while (e->active) {
    lp_req *r = e->active;
    settle_canceled(r);
    detach(e, r);
  }
  drain(e);
  return NULL;
}

static int int_cmp(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* the process's open descriptors, sorted; NULL when /proc cannot be read */
static int *fd_list(size_t *n) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *de;
  int *fds = NULL;
  size_t cap = 0;
  *n = 0;
  if (!d) return NULL;
  while ((de = readdir(d))) {
    int fd;
    if (de->d_name[0] == '.') continue;
    fd = atoi(de->d_name);
    if (fd == dirfd(d)) continue;
    if (*n == cap) {
      int *p = realloc(fds, (cap ? cap * 2 : 64) * sizeof *p);
      if (!p) break;
      fds = p;
      cap = cap ? cap * 2 : 64;
    }
    fds[(*n)++] = fd;
  }
  closedir(d);
  if (fds) qsort(fds, *n, sizeof *fds, int_cmp);
  return fds;
}

/* curl_multi_init, then close-on-exec for the socketpair libcurl 7.88.1
   makes in it for curl_multi_wakeup (Curl_socketpair: no SOCK_CLOEXEC; we
   never use it, but every child process would inherit it, #9.1). libcurl
   says nothing of its descriptors, so they are found as the new ones of
   their kind: an unnamed, non-blocking AF_UNIX stream socket that is not
   close-on-exec; exactly two, or none is touched. */
static CURLM *multi_init_cloexec(int wake[2]) {
  size_t nbefore, nafter, i, found = 0;
  int *before = fd_list(&nbefore), *after, pair[2] = { -1, -1 };
  wake[0] = wake[1] = -1;
  CURLM *m = curl_multi_init();
  if (!m || !before) {
    free(before);
    return m;
  }
  after = fd_list(&nafter);
  for (i = 0; after && i < nafter; i++) {
    int fd = after[i], v = 0;
    socklen_t len = sizeof v;
    struct sockaddr_un a;
    socklen_t alen = sizeof a;
    if (bsearch(&fd, before, nbefore, sizeof fd, int_cmp)) continue;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0 || v != AF_UNIX) continue;
    len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) != 0 || v != SOCK_STREAM) continue;
    if (getsockname(fd, (struct sockaddr *)&a, &alen) != 0 || alen > sizeof(sa_family_t)) continue;
    if (!(fcntl(fd, F_GETFL) & O_NONBLOCK) || (fcntl(fd, F_GETFD) & FD_CLOEXEC)) continue;
    if (found < 2) pair[found] = fd;
    found++;
  }
  if (found == 2) {
    /* F_SETFD cannot fail on an open descriptor */
    (void)fcntl(pair[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(pair[1], F_SETFD, FD_CLOEXEC);
    wake[0] = pair[0];
    wake[1] = pair[1];
  }
  free(before);
  free(after);
  return m;
}

/* stop the worker and wait for it, with g_lock held; whatever is attached
   ends as canceled. Idempotent: the exit handler may have done it. */
static void stop_worker(lp_engine *e) {
  int rc;
  if (e->joined || pthread_equal(pthread_self(), e->thread)) return;
  pthread_mutex_lock(&e->qmu);
  e->stop = 1;
  pthread_mutex_unlock(&e->qmu);
  wake_worker(e);
  rc = pthread_join(e->thread, NULL);
  (void)rc; /* fails only for a thread that is not joinable: ours always is */
  e->joined = 1;
}

/* exit() without lua_close (Lua's plain os.exit(code)) runs OpenSSL's exit
   handler, which frees what a transfer in flight uses while the worker is
   inside libcurl: stop the worker first. Registered right after
   curl_global_init initialised OpenSSL (which registers its handler then),
   so it runs before it (handlers run in reverse order). It is bound to this
   shared object (__dso_handle, which is what atexit does in a shared object,
   but sanitizers intercept atexit and drop the binding): when Lua dlcloses
   the module at lua_close, glibc runs it then (the engine is gone by then,
   so it does nothing) and never calls into unmapped code at exit. */
extern int __cxa_atexit(void (*fn)(void *), void *arg, void *dso);
extern void *__dso_handle;

static void on_process_exit(void *unused) {
  (void)unused;
  pthread_mutex_lock(&g_lock);
  if (g_engine) {
    stop_worker(g_engine);
    g_engine->exited = 1;
  }
  pthread_mutex_unlock(&g_lock);
}

/* ---- fork ----
 *
 * The worker thread does not survive fork(); a host that forks (a pre-fork
 * server) still gets a working engine in the child. fork_prepare parks the
 * worker where it holds no lock and is outside libcurl, and holds g_lock and
 * qmu across fork(), so the child inherits consistent tables. The child
 * (fork_child: one thread) lets go of everything of the parent's without a
 * byte on the wire: the multi handle, its connections and TLS state are
 * abandoned, never cleaned up (that would send TLS close_notify or HTTP/2
 * GOAWAY on sockets the parent still uses); its copies of the connections'
 * descriptors, the epoll set, the eventfd and libcurl's wake-up pair are
 * closed (close() drops the child's reference only: the parent's
 * connections stay up, and the server sees the parent's own closes).
 * Requests in flight fail in the child as network errors (the parent's
 * copy runs on); their eventfds are replaced under the same number, so the
 * child's wake-ups never reach the parent's event loop. The child starts a
 * fresh worker at its first use (revive). Only fork() runs these handlers:
 * posix_spawn (system, popen) execs at once and needs none.
 */

static int engine_open(lp_engine *e);

/* what a forked child keeps of its parents' engine: the libcurl handles,
   never touched again (kept reachable, not leaked) */
struct lp_forsaken {
  CURLM *multi;
  CURLSH *share;
  struct lp_forsaken *next;
};

static void fork_prepare(void) {
  lp_engine *e;
  pthread_mutex_lock(&g_lock);  /* held until fork returned, in both */
  e = g_engine;
  if (!e || e->joined) return;
  pthread_mutex_lock(&e->qmu);  /* likewise */
  e->fork_hold = 1;
  wake_worker(e);
  while (!e->fork_held) pthread_cond_wait(&e->parkcv, &e->qmu);
}

static void fork_parent(void) {
  lp_engine *e = g_engine;
  if (e && !e->joined) {
    e->fork_hold = 0;
    pthread_cond_broadcast(&e->parkcv);
    pthread_mutex_unlock(&e->qmu);
  }
  pthread_mutex_unlock(&g_lock);
}

/* descriptor fd is still the socket k of the parent's: its local port */
static int sock_still(int fd, const lp_sock *k) {
  struct sockaddr_storage a;
  socklen_t alen = sizeof a;
  unsigned short port;
  if (getsockname(fd, (struct sockaddr *)&a, &alen) != 0 || a.ss_family != k->family)
    return 0;
  port = ntohs(a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port
                                       : ((struct sockaddr_in *)&a)->sin_port);
  return port == k->lport;
}

/* a request of the parent's in flight, in the child: it fails here (the
   parent's copy runs on). Any thread that held its lock or waited on it
   was the parent's: neither exists here */
static void orphan(lp_req *r) {
  pthread_mutex_init(&r->mu, NULL);
  r->notify.waiters = NULL;
  if (r->notify.efd >= 0) {     /* the same number, a descriptor of our own */
    int fresh = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fresh >= 0 && dup3(fresh, r->notify.efd, O_CLOEXEC) >= 0) close(fresh);
    else if (fresh >= 0) close(fresh);
  }
  r->easy = NULL;
  r->sock = -1;
  r->snext = r->sprev = r->aprev = r->anext = r->qnext = NULL;
  r->queued = 0;
  r->parked = 0;
  if (atomic_load(&r->state) != LP_RUNNING) return;
  r->kind = LP_ENETWORK;
  set_msg(r, "the process forked while the request was in flight (it goes on in the parent)");
  transition(r, LP_RUNNING, LP_FAILED);
}

/* fork_child's work on the parked engine e */
static void forsake(lp_engine *e) {
  struct lp_forsaken *f = malloc(sizeof *f);
  lp_req *r, *next, *q = e->qhead;
  int fd, i;
  sock_learn(e);
  for (fd = 0; fd < e->nsocks; fd++)
    if (e->socks[fd].open && e->socks[fd].lport && sock_still(fd, &e->socks[fd]))
      close(fd);
  free(e->socks);
  e->socks = NULL;
  e->nsocks = 0;
  e->unlearned = -1;
  for (i = 0; i < LP_SOCK_BUCKETS; i++) e->lhash[i] = -1;
  for (i = 0; i < 2; i++)
    if (e->wake[i] >= 0) close(e->wake[i]);
  close(e->ep);
  close(e->wfd);
  if (f) {                      /* else lost: a child without memory */
    f->multi = e->multi;
    f->share = e->share;
    f->next = e->forsaken;
    e->forsaken = f;
  }
  e->multi = NULL;
  e->share = NULL;
  e->ep = e->wfd = e->wake[0] = e->wake[1] = -1;
  e->watch_failed = 0;
  while (e->peers) {            /* what the parent knew of its servers */
    lp_peer *p = e->peers;
    e->peers = p->next;
    free(p);
  }
  /* the requests in flight: attached, parked for a connection, queued (a
     request can be queued too) */
  for (i = 0; i < 2; i++) {
    for (r = i ? e->parked : e->active; r; r = next) {
      next = r->anext;
      orphan(r);
      lp_req_release(r);
    }
  }
  e->active = e->parked = NULL;
  e->unpark = 0;
  e->qhead = e->qtail = NULL;
  for (r = q; r; r = next) {
    next = r->qnext;
    orphan(r);
    lp_req_release(r);
  }
  e->joined = 1;                /* no worker to stop */
  e->cfg_dirty = 1;             /* the next multi handle gets the limits */
  atomic_store(&e->revive, 1);
}

static void fork_child(void) {
  lp_engine *e = g_engine;
  if (e && !e->joined) {
    forsake(e);
    pthread_cond_init(&e->parkcv, NULL);  /* its waiter was the parent's worker */
    e->fork_hold = e->fork_held = 0;
    pthread_mutex_unlock(&e->qmu);
  }
  pthread_mutex_unlock(&g_lock);
}

/* a forked child's engine gets a worker of its own, with g_lock held; when
   none can be made, requests end as canceled, as after the engine stopped */
static void revive_locked(lp_engine *e) {
  if (!atomic_load(&e->revive)) return;
  atomic_store(&e->revive, 0);
  if (e->exited || !engine_open(e)) {
    pthread_mutex_lock(&e->qmu);
    e->stop = 1;
    pthread_mutex_unlock(&e->qmu);
  }
}

static void revive(lp_engine *e) {
  pthread_mutex_lock(&g_lock);
  revive_locked(e);
  pthread_mutex_unlock(&g_lock);
}

static void curl_init_once(void) {
  g_curl_init = curl_global_init(CURL_GLOBAL_ALL);
  /* fails only without memory: exit() is then as unsafe as before */
  if (g_curl_init == CURLE_OK)
    (void)__cxa_atexit(on_process_exit, NULL, __dso_handle);
  /* fails only without memory: a forked child's engine then hangs, as
     before this existed */
  if (g_curl_init == CURLE_OK)
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* the multi handle, epoll set, eventfd and worker of e, with g_lock held:
   at creation, and in a forked child (revive); 0 when one could not be
   made, with what was made undone */
static int engine_open(lp_engine *e) {
  e->ep = e->wfd = -1;
  e->timer_at = -1;
  if ((e->multi = multi_init_cloexec(e->wake)) &&
      (e->ep = epoll_create1(EPOLL_CLOEXEC)) >= 0 &&
      (e->wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) >= 0) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = e->wfd;
    epoll_ctl(e->ep, EPOLL_CTL_ADD, e->wfd, &ev);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
    /* TLS session resumption across easy handles; without it (no memory)
       each new TLS connection makes a full handshake, nothing worse. Only
       the worker uses it, so it needs no lock callbacks. */
    e->share = curl_share_init();
    if (e->share && curl_share_setopt(e->share, CURLSHOPT_SHARE,
                                      CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
      curl_share_cleanup(e->share);
      e->share = NULL;
    }
    if (pthread_create(&e->thread, NULL, worker_main, e) == 0) {
      e->joined = 0;
      return 1;
    }
  }
  if (e->multi) curl_multi_cleanup(e->multi);
  if (e->share) curl_share_cleanup(e->share);
  if (e->ep >= 0) close(e->ep);
  if (e->wfd >= 0) close(e->wfd);
  e->multi = NULL;
  e->share = NULL;
  e->ep = e->wfd = e->wake[0] = e->wake[1] = -1;
  return 0;
}

lp_engine *lp_engine_acquire(void) {
  lp_engine *e;
  pthread_once(&g_curl_once, curl_init_once);
  if (g_curl_init != CURLE_OK) return NULL;
  pthread_mutex_lock(&g_lock);
  if ((e = g_engine)) {
    e->refs++;
    pthread_mutex_unlock(&g_lock);
    return e;
  }
  e = calloc(1, sizeof *e);
  if (e) {
    int i;
    e->pipewait_broken = curl_version_info(CURLVERSION_NOW)->version_num < 0x080000;
    e->cfg.max_idle_connections = LP_DEFAULT_MAX_IDLE_CONNECTIONS;
    e->cfg.max_streams = LP_DEFAULT_MAX_STREAMS;
    e->cfg_dirty = 1;             /* the worker applies them first thing */
    e->unlearned = -1;
    for (i = 0; i < LP_SOCK_BUCKETS; i++) e->lhash[i] = -1;
    pthread_mutex_init(&e->qmu, NULL);
    pthread_cond_init(&e->parkcv, NULL);
    if (engine_open(e)) {
      e->refs = 1;
      g_engine = e;
      pthread_mutex_unlock(&g_lock);
      return e;
    }
    pthread_cond_destroy(&e->parkcv);
    pthread_mutex_destroy(&e->qmu);
  }
  free(e);
  pthread_mutex_unlock(&g_lock);
  return NULL;
}

void lp_engine_release(lp_engine *e) {
  if (!e) return;
  pthread_mutex_lock(&g_lock);
  /* after the exit handler ran, libcurl and OpenSSL may be torn down: the
     engine stays as it is, reachable from g_engine, until the process ends */
  if (--e->refs > 0 || e->exited) {
    pthread_mutex_unlock(&g_lock);
    return;
  }
  g_engine = NULL;
  stop_worker(e);
  if (e->multi) curl_multi_cleanup(e->multi);
  if (e->share) curl_share_cleanup(e->share);
  free(e->socks);               /* after the multi closed its connections */
  while (e->peers) {
    lp_peer *p = e->peers;
    e->peers = p->next;
    free(p);
  }
  if (e->ep >= 0) close(e->ep);
  if (e->wfd >= 0) close(e->wfd);
  while (e->forsaken) {         /* a forked child's: the parents' handles stay */
    struct lp_forsaken *f = e->forsaken;
    e->forsaken = f->next;
    free(f);
  }
  pthread_cond_destroy(&e->parkcv);
  pthread_mutex_destroy(&e->qmu);
  free(e);
  pthread_mutex_unlock(&g_lock);
}

void lp_engine_deadlines_changed(void) {
  pthread_mutex_lock(&g_lock);
  if (g_engine && atomic_load(&g_engine->revive)) revive_locked(g_engine);
  if (g_engine && g_engine->wfd >= 0) wake_worker(g_engine);
  pthread_mutex_unlock(&g_lock);
}

void lp_engine_configure(lp_engine *e, const lp_config *set, lp_config *now) {
  pthread_mutex_lock(&e->qmu);
  if (set) {
    if (set->max_host_connections >= 0) e->cfg.max_host_connections = set->max_host_connections;
    if (set->max_connections >= 0) e->cfg.max_connections = set->max_connections;
    if (set->max_idle_connections >= 0) e->cfg.max_idle_connections = set->max_idle_connections;
    if (set->max_streams >= 0) e->cfg.max_streams = set->max_streams;
    if (set->buffer_size >= 0) e->cfg.buffer_size = set->buffer_size;
    e->cfg_dirty = 1;
  }
  if (now) *now = e->cfg;
  pthread_mutex_unlock(&e->qmu);
  if (set) wake_worker(e);
}
