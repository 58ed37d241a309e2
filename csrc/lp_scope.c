/*
 * lp_scope.c - cancel scopes: a tree of scopes over request records.
 *
 * Ending a scope (cancel, or its deadline) happens under its lock, in this
 * order: each unfinished request is ended with the scope's reason
 * (lp_req_end: state, waiters, then the worker tears the transfer down),
 * each child scope likewise, then the scope's own state is set and its
 * waiters woken. So whoever sees a scope ended sees everything under it
 * ended; a request added or a child made meanwhile waits for the lock and
 * then finds the scope ended. The lock is held for CPU work only (about a
 * microsecond per request), never across the network or the worker.
 *
 * A request leaves its scope's list as it finishes (lp_scope_leave, from the
 * engine, before its state changes: whoever sees it finished sees it gone),
 * so a long-lived scope holds only what still runs. Children
 * are not held by their parent: one that nobody holds any more unlinks
 * itself when freed, as does one that ended.
 *
 * Deadlines: a scope whose own deadline comes before its parent's sits in a
 * process-wide min-heap; the worker waits on the earliest deadline together
 * with libcurl's timer and ends the scopes that are due (lp_scope_expire).
 * A child whose deadline is its parent's needs no entry: the parent ends it.
 * Whoever asks a scope (err, fd, wait, add) after its deadline ends it at
 * once, without waiting for the worker.
 *
 * Lock order: parent->mu -> child->mu -> req->mu -> (waiter->mu; the
 * engine's queue lock, taken last); any scope's mu -> g_mu, which is taken
 * last. A request leaves its scope and a scope leaves its parent with no
 * other lock held.
 */
#define _GNU_SOURCE
#include "lp_scope.h"

#include <stdlib.h>

#define NOSLOT ((size_t)-1)

struct lp_scope {
  atomic_int refs;
  _Atomic lp_kind state;        /* LP_OK while active, else why it ended */
  pthread_mutex_t mu;           /* guards notify, the lists, nreqs */
  lp_notify notify;
  lp_scope *parent;             /* held; immutable */
  double deadline;              /* lp_clock() clock, 0: none; immutable */
  lp_req *reqs, *last;          /* unfinished requests, held, oldest first */
  size_t nreqs;
  lp_scope *kids;               /* children, not held */
  lp_scope *kprev, *knext;      /* guarded by parent->mu */
  int linked;                   /* in the parent's kids; parent->mu */
  /* process-wide tables, guarded by g_mu */
  size_t slot;                  /* index in the deadline heap, or NOSLOT */
  unsigned long long id;        /* lp_scope_share's id, 0: not shared */
  lp_scope *gprev, *gnext;      /* the shared scopes */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static lp_scope **g_heap;       /* min-heap on deadline */
static size_t g_cap;
static atomic_size_t g_n;       /* written under g_mu; read without it */
static lp_scope *g_shared;
static unsigned long long g_next_id;

const char *lp_scope_why(lp_kind why) {
  return why == LP_ETIMEOUT ? "context deadline exceeded" : "context canceled";
}

/* ---- the deadline heap (g_mu held) ---- */

static void heap_put(size_t i, lp_scope *s) {
  g_heap[i] = s;
  s->slot = i;
}

static void sift_up(size_t i) {
  lp_scope *s = g_heap[i];
  while (i > 0 && g_heap[(i - 1) / 2]->deadline > s->deadline) {
    heap_put(i, g_heap[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
  heap_put(i, s);
}

static void sift_down(size_t i) {
  size_t n = atomic_load(&g_n);
  lp_scope *s = g_heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && g_heap[c + 1]->deadline < g_heap[c]->deadline) c++;
    if (g_heap[c]->deadline >= s->deadline) break;
    heap_put(i, g_heap[c]);
    i = c;
  }
  heap_put(i, s);
}

/* 0 when out of memory: the deadline then fires only when asked (err, wait) */
static int heap_push(lp_scope *s) {
  size_t n = atomic_load(&g_n);
  if (n == g_cap) {
    size_t cap = g_cap ? 2 * g_cap : 64;
    lp_scope **h = realloc(g_heap, cap * sizeof *h);
    if (!h) return 0;
    g_heap = h;
    g_cap = cap;
  }
  atomic_store(&g_n, n + 1);
  heap_put(n, s);
  sift_up(n);
  return 1;
}

static void heap_remove(lp_scope *s) {
  size_t i = s->slot, last = atomic_load(&g_n) - 1;
  s->slot = NOSLOT;
  atomic_store(&g_n, last);
  if (i != last) {             /* the last one fills the hole */
    lp_scope *m = g_heap[last];
    heap_put(i, m);
    sift_up(i);
    sift_down(m->slot);
  }
  if (last == 0) {              /* none left: give the memory back */
    free(g_heap);
    g_heap = NULL;
    g_cap = 0;
  }
}

static void unarm(lp_scope *s) {
  pthread_mutex_lock(&g_mu);
  if (s->slot != NOSLOT) heap_remove(s);
  pthread_mutex_unlock(&g_mu);
}

/* ---- references ---- */

void lp_scope_retain(lp_scope *s) { atomic_fetch_add(&s->refs, 1); }

/* a reference to s unless it is being freed (from a table that does not
   hold it); with g_mu held, which its freeing takes */
static int try_retain(lp_scope *s) {
  int n = atomic_load(&s->refs);
  while (n > 0)
    if (atomic_compare_exchange_weak(&s->refs, &n, n + 1)) return 1;
  return 0;
}

static void unlink_kid(lp_scope *p, lp_scope *s) {
  if (s->kprev) s->kprev->knext = s->knext; else p->kids = s->knext;
  if (s->knext) s->knext->kprev = s->kprev;
  s->kprev = s->knext = NULL;
  s->linked = 0;
}

/* s ended or is freed: it leaves its parent's list (no lock held) */
static void leave_parent(lp_scope *s) {
  lp_scope *p = s->parent;
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  if (s->linked) unlink_kid(p, s);
  pthread_mutex_unlock(&p->mu);
}

void lp_scope_release(lp_scope *s) {
  lp_scope *parent;
  if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
  /* nobody holds it: so it has no requests and no children (they would) */
  leave_parent(s);
  pthread_mutex_lock(&g_mu);
  if (s->slot != NOSLOT) heap_remove(s);
  if (s->id) {
    if (s->gprev) s->gprev->gnext = s->gnext; else g_shared = s->gnext;
    if (s->gnext) s->gnext->gprev = s->gprev;
  }
  pthread_mutex_unlock(&g_mu);
  lp_notify_close(&s->notify);
  pthread_mutex_destroy(&s->mu);
  parent = s->parent;
  free(s);
  lp_scope_release(parent);
}

/* ---- ending ---- */

/* end s for `why`, with s->mu held: its requests, its children, then
   itself. The children are left unlinked; s itself stays in its parent.
   The ended requests go on *ended (linked by scope_next, which nobody else
   reads once in_scope is 0), still held: the caller releases them with no
   lock held, as a request may hold the last share of a child, whose
   freeing takes its parent's lock */
static void end_locked(lp_scope *s, lp_kind why, lp_req **ended) {
  lp_req *r;
  lp_scope *c;
  while ((r = s->reqs)) {     /* in the order they joined, as a loop would */
    s->reqs = r->scope_next;
    if (r->scope_next) r->scope_next->scope_prev = NULL; else s->last = NULL;
    r->scope_prev = NULL;
    r->in_scope = 0;
    s->nreqs--;
    lp_req_end(r, why);
    r->scope_next = *ended;
    *ended = r;
  }
  for (c = s->kids; c; c = c->knext) {
    pthread_mutex_lock(&c->mu);
    if (atomic_load(&c->state) == LP_OK) end_locked(c, why, ended);
    pthread_mutex_unlock(&c->mu);
    c->linked = 0;              /* c may be waiting on s->mu to free itself */
  }
  s->kids = NULL;
  atomic_store(&s->state, why);
  unarm(s);
  lp_notify_wake(&s->notify);
}

/* end s for `why` unless it ended; 1 when this call ended it */
static int end_scope(lp_scope *s, lp_kind why) {
  lp_req *reqs = NULL;
  int ended;
  pthread_mutex_lock(&s->mu);
  ended = atomic_load(&s->state) == LP_OK;
  if (ended) end_locked(s, why, &reqs);
  pthread_mutex_unlock(&s->mu);
  if (ended) leave_parent(s);
  while (reqs) {                /* the shares the lists held, no lock held */
    lp_req *r = reqs;
    reqs = r->scope_next;
    r->scope_next = NULL;
    lp_req_release(r);
  }
  return ended;
}

int lp_scope_cancel(lp_scope *s) { return end_scope(s, LP_ECANCELED); }

lp_kind lp_scope_err(lp_scope *s) {
  lp_kind k = atomic_load(&s->state);
  if (k == LP_OK && s->deadline > 0 && lp_clock() >= s->deadline) {
    end_scope(s, LP_ETIMEOUT);
    k = atomic_load(&s->state);
  }
  return k;
}

/* ---- creation ---- */

lp_scope *lp_scope_new(lp_scope *parent, double timeout) {
  lp_scope *s = calloc(1, sizeof *s);
  int arm = 0, top = 0;
  if (!s) return NULL;
  atomic_init(&s->refs, 1);
  atomic_init(&s->state, LP_OK);
  pthread_mutex_init(&s->mu, NULL);
  s->notify.efd = -1;
  s->slot = NOSLOT;
  if (timeout > 0) {            /* NaN is not */
    s->deadline = lp_clock() + timeout;
    arm = 1;
  }
  if (parent) {
    lp_kind pk;
    lp_scope_err(parent);       /* a parent past its deadline ends now */
    lp_scope_retain(parent);
    s->parent = parent;
    if (parent->deadline > 0 && (!arm || parent->deadline <= s->deadline)) {
      s->deadline = parent->deadline;   /* the parent ends it in time */
      arm = 0;
    }
    pthread_mutex_lock(&parent->mu);
    pk = atomic_load(&parent->state);
    if (pk == LP_OK) {
      s->knext = parent->kids;
      if (parent->kids) parent->kids->kprev = s;
      parent->kids = s;
      s->linked = 1;
    } else {
      atomic_store(&s->state, pk);      /* born ended, for the parent's reason */
      arm = 0;
    }
    pthread_mutex_unlock(&parent->mu);
  }
  if (arm) {
    /* only if it did not end meanwhile: ending unarms after setting state */
    pthread_mutex_lock(&g_mu);
    if (atomic_load(&s->state) == LP_OK && heap_push(s)) top = g_heap[0] == s;
    pthread_mutex_unlock(&g_mu);
    if (top) lp_engine_deadlines_changed();     /* the worker's next wake-up */
  }
  return s;
}

/* ---- requests ---- */

int lp_scope_add(lp_scope *s, lp_req *r) {
  lp_kind why = lp_scope_err(s);
  lp_scope_retain(s);
  r->scope = s;
  if (why == LP_OK) {
    pthread_mutex_lock(&s->mu);
    why = atomic_load(&s->state);
    if (why == LP_OK) {
      lp_req_retain(r);
      r->scope_next = NULL;
      r->scope_prev = s->last;
      if (s->last) s->last->scope_next = r; else s->reqs = r;
      s->last = r;
      r->in_scope = 1;
      s->nreqs++;
    }
    pthread_mutex_unlock(&s->mu);
  }
  if (why != LP_OK) lp_req_end(r, why);
  return why == LP_OK;
}

void lp_scope_leave(lp_req *r) {
  lp_scope *s = r->scope;
  int held;
  pthread_mutex_lock(&s->mu);
  held = r->in_scope;
  if (held) {
    if (r->scope_prev) r->scope_prev->scope_next = r->scope_next; else s->reqs = r->scope_next;
    if (r->scope_next) r->scope_next->scope_prev = r->scope_prev; else s->last = r->scope_prev;
    r->scope_prev = r->scope_next = NULL;
    r->in_scope = 0;
    s->nreqs--;
  }
  pthread_mutex_unlock(&s->mu);
  if (held) lp_req_release(r);  /* the caller holds r: never the last */
}

size_t lp_scope_count(lp_scope *s) {
  size_t n;
  pthread_mutex_lock(&s->mu);
  n = s->nreqs;
  pthread_mutex_unlock(&s->mu);
  return n;
}

double lp_scope_deadline(const lp_scope *s) { return s->deadline; }

/* ---- waiting ---- */

static int scope_ended(const void *s) {
  return atomic_load(&((const lp_scope *)s)->state) != LP_OK;
}

int lp_scope_wait(lp_scope *s, double seconds) {
  lp_waitable w;
  int forever = seconds < 0 || !(seconds < 1e9);
  double until = forever ? 0 : lp_clock() + seconds;
  w.mu = &s->mu;
  w.n = &s->notify;
  w.ready = scope_ended;
  w.obj = s;
  if (s->deadline > 0 && (forever || s->deadline < until)) {
    /* the deadline comes first: wait for it, and end the scope here if the
       worker did not yet */
    while (lp_scope_err(s) == LP_OK) {
      double left = s->deadline - lp_clock();
      if (left > 0) lp_notify_wait(&w, 1, left);
    }
    return 1;
  }
  return lp_notify_wait(&w, 1, seconds) == 0;
}

int lp_scope_fd(lp_scope *s) {
  int fd;
  lp_kind k = lp_scope_err(s);
  pthread_mutex_lock(&s->mu);
  fd = lp_notify_fd(&s->notify, k != LP_OK || scope_ended(s));
  pthread_mutex_unlock(&s->mu);
  return fd;
}

/* ---- deadlines, for the worker ---- */

double lp_scope_next_deadline(void) {
  double at = -1;
  if (atomic_load(&g_n) == 0) return -1;    /* no lock in the usual case */
  pthread_mutex_lock(&g_mu);
  if (atomic_load(&g_n) > 0) at = g_heap[0]->deadline;
  pthread_mutex_unlock(&g_mu);
  return at;
}

void lp_scope_expire(double now) {
  int more = 1;
  while (more) {
    lp_scope *due[32];
    size_t k = 0, i;
    pthread_mutex_lock(&g_mu);
    while (k < 32 && atomic_load(&g_n) > 0 && g_heap[0]->deadline <= now) {
      lp_scope *s = g_heap[0];
      heap_remove(s);
      if (try_retain(s)) due[k++] = s;
    }
    more = atomic_load(&g_n) > 0 && g_heap[0]->deadline <= now;
    pthread_mutex_unlock(&g_mu);
    for (i = 0; i < k; i++) {
      end_scope(due[i], LP_ETIMEOUT);
      lp_scope_release(due[i]);
    }
  }
}

/* ---- sharing across threads and Lua states ---- */

unsigned long long lp_scope_share(lp_scope *s) {
  unsigned long long id;
  pthread_mutex_lock(&g_mu);
  if (!s->id) {
    s->id = ++g_next_id;
    s->gprev = NULL;
    s->gnext = g_shared;
    if (g_shared) g_shared->gprev = s;
    g_shared = s;
  }
  id = s->id;
  pthread_mutex_unlock(&g_mu);
  return id;
}

lp_scope *lp_scope_find(unsigned long long id) {
  lp_scope *s;
  pthread_mutex_lock(&g_mu);
  for (s = g_shared; s && s->id != id; s = s->gnext) {}
  if (s && !try_retain(s)) s = NULL;
  pthread_mutex_unlock(&g_mu);
  return s;
}
