/*
 * lp_engine.h - the C core of lua-longpoll: a request record and the worker
 * engine that runs it on a libcurl multi handle. Nothing here knows Lua.
 *
 * Lifetime: a request record is reference counted. Its creator holds one
 * reference; the engine holds one while the request sits in its queue and one
 * while its transfer is attached to the multi handle. Either side may let go
 * first; the last release frees the record.
 *
 * Threads: lp_req_start, lp_req_cancel, lp_req_wait, lp_wait_any and
 * lp_req_fd may be called from any thread. The result fields are written by
 * the worker only while the state is LP_RUNNING, and read by others only after
 * they saw LP_DONE or LP_FAILED (both transitions are made under req->mu).
 */
#ifndef LP_ENGINE_H
#define LP_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <curl/curl.h>

#include "lp_notify.h"
#include "lp_stream.h"

/* The oldest libcurl the module builds and runs with: 7.87.0 for
   CURLOPT_QUICK_EXIT (and before it 7.85.0 for CURLOPT_PROTOCOLS_STR, 7.83.0
   for curl_easy_header, 7.80.0 for CURLOPT_PREREQFUNCTION). Checked here
   against the headers the build found, and at luaopen against the library
   loaded. LP_CURL_VERSION_NUM stands for LIBCURL_VERSION_NUM (a spec sets it
   to see the message). */
#define LP_MIN_CURL_VERSION_NUM 0x075700
#define LP_MIN_CURL_VERSION "7.87.0"
#ifndef LP_CURL_VERSION_NUM
#define LP_CURL_VERSION_NUM LIBCURL_VERSION_NUM
#endif
#if LP_CURL_VERSION_NUM < LP_MIN_CURL_VERSION_NUM
#error "lua-longpoll needs libcurl 7.87.0 or newer (CURLOPT_QUICK_EXIT): install libcurl's development files of 7.87.0 or later, or point LuaRocks at them (CURL_INCDIR=..., CURL_LIBDIR=...)"
#endif

typedef enum lp_state {
  LP_READY, LP_RUNNING, LP_DONE, LP_FAILED, LP_CANCELED
} lp_state;

/* error kinds, each spelled once in lp_kind_name; LP_ECANCELED and
   LP_EDECODE are set by the binding (a cancel, a body that is not JSON),
   LP_ECALLBACK by the Lua layer (a user callback raised) */
typedef enum lp_kind {
  LP_OK, LP_ECANCELED, LP_ETIMEOUT, LP_ERESOLVE, LP_ECONNECT, LP_ETLS,
  LP_ENETWORK, LP_EHTTP, LP_EDECODE, LP_ETOOLARGE, LP_ECALLBACK,
  LP_NKINDS
} lp_kind;

typedef struct lp_buf {
  char *data;
  size_t len, cap;
} lp_buf;

/* what few requests carry: made only when one of these is given
   (lp_opts_extra); strings owned by the record */
typedef struct lp_extra {
  char *body;                   /* NULL: no request body */
  size_t body_len;
  char *cainfo;                 /* NULL: libcurl's default */
  char *username, *password;    /* NULL: no credentials (CURLOPT_USERNAME) */
  long httpauth;                /* CURLAUTH_* with username */
} lp_extra;

/* what the caller asks for; strings are owned by the record */
typedef struct lp_opts {
  char *url;                    /* complete, query already appended; may be
                                   the record's own copy (lp_req_new) */
  const char *method;           /* "GET", "POST", ...: lp_get, lp_post or owned */
  struct curl_slist *headers;   /* may end in lp_default_headers (never freed) */
  long timeout_ms;              /* 0: no deadline */
  long connect_timeout_ms;
  curl_off_t max_body;
  const char *user_agent;       /* lp_default_user_agent or owned */
  lp_extra *x;                  /* NULL: none of those */
  unsigned char http_version;   /* CURL_HTTP_VERSION_* */
  unsigned char follow_redirects, verify;
  unsigned char fresh_connect;  /* a connection of its own, closed after */
} lp_opts;

/* o's extra part, made on first use; NULL when out of memory */
lp_extra *lp_opts_extra(lp_opts *o);

/* strings an lp_opts may point to without owning them (never freed): most
   requests need no copy of their method and user agent */
extern const char lp_get[], lp_post[], lp_default_user_agent[];
/* "User-Agent: lua-longpoll/<version>" as a header list of one: the
   default user agent is sent as this shared header (libcurl then keeps no
   copy of it per transfer, as it does of CURLOPT_USERAGENT). A request's
   own header list ends in it when it has no user agent of its own
   (lp_headers_finish); lp_req_release frees the list up to it */
extern struct curl_slist lp_default_headers;
/* end the header list *l with lp_default_headers (a request that sends the
   default user agent and has headers of its own) */
void lp_headers_finish(struct curl_slist **l);

/* one message of a stream as queued for the caller: one allocation, freed
   with free() by whoever took it */
typedef struct lp_msg {
  struct lp_msg *next;
  size_t len;                   /* of data */
  const char *event;            /* SSE: inside this block; NULL otherwise */
  size_t event_len;
  const char *id;               /* SSE: the last event id, or NULL */
  size_t id_len;
  long long retry;              /* SSE: retry (ms) sent with it, or -1 */
  char data[];                  /* data, NUL, then event, id (NUL-ended) */
} lp_msg;

typedef struct lp_engine lp_engine;
typedef struct lp_scope lp_scope;

/* what arrived of a response: made by the worker at the first header or
   body byte (a held poll has none), read by others only after they saw
   LP_DONE or LP_FAILED */
typedef struct lp_result {
  long status;                  /* 0: no status line arrived */
  long http_version;            /* CURL_HTTP_VERSION_* the response came with */
  lp_buf body;
  lp_buf head;                  /* raw header lines of the last response */
  char *effective_url;          /* NULL: the request's own url */
  double elapsed;               /* seconds */
  curl_off_t retry_after;       /* CURLINFO_RETRY_AFTER: seconds, -1 when the
                                   response has no Retry-After */
  unsigned char json_type;      /* its Content-Type is JSON (application/json
                                   or any +json type) */
  unsigned char too_large;      /* worker only: over max_body / max_message */
  unsigned char head_too_large; /* worker only: over the header cap (LP_HEAD_MAX) */
  unsigned char head_at_start;  /* worker only: the next header line begins a block */
} lp_result;

/* stream mode (lp_req_stream): the worker splits the body with `parser` as
   it arrives and queues the messages under mu; a full queue pauses the
   transfer (on the worker), and taking messages resumes it */
typedef struct lp_sstate {
  lp_stream parser;             /* worker only */
  int format;                   /* lp_stream_format */
  int off;                      /* worker only: 0 before the first body
                                   bytes, 1 split, 2 kept whole (the answer
                                   is not a 2xx: an error body) */
  int paused;                   /* guarded by mu */
  size_t max_message;           /* bound of one message */
  size_t max_queued;            /* the transfer pauses at this many queued */
  lp_msg *mhead, *mtail;        /* guarded by mu */
  /* the answer's status line and headers (status, version, header block,
     URL, time), copied by the worker once all of a 2xx answer's are in:
     read-only from then on, NULL before (stored under mu, read atomically:
     lp_req_head) */
  _Atomic(lp_result *) head;
  _Atomic size_t nqueued;       /* messages queued (changed under mu) */
  _Atomic unsigned long long nmsgs, npauses;
} lp_sstate;

typedef struct lp_req {
  lp_opts opts;
  atomic_int refs;
  _Atomic lp_state state;
  pthread_mutex_t mu;           /* guards state changes, notify, why */
  lp_notify notify;             /* who waits for it to be ready */
  lp_engine *engine;            /* set by lp_req_start */
  /* why a CANCELED request ended: LP_ECANCELED or LP_ETIMEOUT (its scope's
     deadline), and whether its scope ended it (lp_req_why_text); set before
     the state, under mu */
  unsigned char why, why_scope;
  /* the cancel scope it runs under (lp_scope_add, before it starts; the
     record holds a share of it), and its links in the scope's list of
     unfinished requests (guarded by the scope's lock, see lp_scope.c) */
  lp_scope *scope;
  struct lp_req *scope_prev, *scope_next;
  unsigned char in_scope;
  /* engine-private links (worker thread and queue lock) */
  unsigned char queued;         /* guarded by the engine's queue lock */
  struct lp_req *qnext;
  struct lp_req *aprev, *anext; /* attached transfers, worker only */
  CURL *easy;                   /* worker only */
  struct lp_req *snext, *sprev; /* worker only: the other transfers on its socket */
  int sock;                     /* worker only: its connection's socket, or -1 */
  int connects;                 /* worker only: connections made, at the last pre-request check */
  int watch_err;                /* worker only: errno when its socket could not be watched */
  unsigned char stale_conn;     /* worker only: the pre-request check refused the connection */
  unsigned char fresh;          /* worker only: resent on a new connection */
  unsigned char pipewait;       /* worker only: it waits to multiplex (h2 over TLS) */
  unsigned char parked;         /* worker only: 1 its connection was refused
                                   (see open_ok), 2 it waits in e->parked */
  /* the outcome: written by the worker while running */
  lp_kind kind;
  CURLcode curl_code;
  /* libcurl's error buffer (CURLOPT_ERRORBUFFER) while the transfer
     connects, dropped once a connection is chosen (a held poll keeps none);
     then the message of a failure: NULL when there is none */
  char *msg;
  lp_result *res;               /* NULL until a response began */
  lp_sstate *st;                /* stream mode, else NULL */
  /* progress, written by the worker, read by anyone */
  _Atomic long long rx, rx_total, tx; /* bytes; rx_total -1 when unknown */
  char url[];                   /* opts.url when lp_req_new copied it */
} lp_req;

/* process-wide engine, reference counted; the first acquire starts the worker */
lp_engine *lp_engine_acquire(void);
void lp_engine_release(lp_engine *e);
/* a scope's deadline came before the others (lp_scope.c): the worker, if it
   runs, looks at them again (lp_scope_next_deadline) */
void lp_engine_deadlines_changed(void);
/* settings of the process-wide engine (longpoll.configure) */
typedef struct lp_config {
  long max_host_connections;    /* CURLMOPT_MAX_HOST_CONNECTIONS; 0: no limit */
  long max_connections;         /* CURLMOPT_MAX_TOTAL_CONNECTIONS; 0: no limit */
  long max_idle_connections;    /* CURLMOPT_MAXCONNECTS: idle connections kept
                                   for reuse, the oldest closed past it */
  long max_streams;             /* CURLMOPT_MAX_CONCURRENT_STREAMS: HTTP/2
                                   streams per connection (the server's
                                   SETTINGS bound it too) */
  long buffer_size;             /* CURLOPT_BUFFERSIZE of transfers started
                                   from now on; 0: libcurl's (16 KiB) */
} lp_config;
#define LP_DEFAULT_MAX_IDLE_CONNECTIONS 64
#define LP_DEFAULT_MAX_STREAMS 1000
#define LP_MIN_BUFFER_SIZE 1024            /* libcurl's bounds of CURLOPT_BUFFERSIZE */
#define LP_MAX_BUFFER_SIZE (10 * 1024 * 1024)
/* change the fields of `set` that are >= 0 (the worker applies them), and
   copy the settings now in force to *now when it is not NULL */
void lp_engine_configure(lp_engine *e, const lp_config *set, lp_config *now);

/* a fresh record in state LP_READY with one reference, with its own copy
   of `url` (len bytes) as opts.url (url NULL: none, the caller sets
   opts.url to a string of malloc's); NULL when out of memory */
lp_req *lp_req_new(const char *url, size_t len);
/* make r a stream request (before it starts): its body is split in
   messages of `format` (an lp_stream_format); 0 when out of memory */
int lp_req_stream(lp_req *r, int format, size_t max_message, size_t max_queued);
void lp_req_retain(lp_req *r);
void lp_req_release(lp_req *r);

/* READY -> RUNNING and hand to the engine; 1 when this call started it */
int lp_req_start(lp_engine *e, lp_req *r);
/* end an unfinished request; 1 when this call ended it. Never blocks. */
int lp_req_cancel(lp_req *r);
/* end an unfinished request as canceled for `why` (LP_ECANCELED or
   LP_ETIMEOUT) by its scope, and leave it in the scope's list: what a scope
   does to its requests, holding its own lock */
int lp_req_end(lp_req *r, lp_kind why);
/* what ended a CANCELED request, in words ("request canceled", or its
   scope's: lp_scope_why) */
const char *lp_req_why_text(const lp_req *r);
lp_state lp_req_state(const lp_req *r);
/* free the body and header buffers of a DONE or FAILED request once the
   caller has copied them; a no-op in any other state (after a cancel they
   are the worker's, which frees them when it lets the transfer go) */
void lp_req_drop_response(lp_req *r);
/* block until finished or `seconds` passed (< 0, NaN or >= 1e9: forever);
   1 when finished. Any number of threads may wait on one request. */
int lp_req_wait(lp_req *r, double seconds);
/* the first finished request of `reqs`, waiting up to `seconds` (as for
   lp_req_wait); NULL on timeout, or with errno ENOMEM when n > 8 and the
   waiter entries could not be allocated */
lp_req *lp_wait_any(lp_req *const *reqs, size_t n, double seconds);
/* an eventfd that is readable while the request is ready (finished; in
   stream mode also while messages are queued); -1 on error */
int lp_req_fd(lp_req *r);
/* stream mode: take up to `max` queued messages, oldest first, as a list
   (NULL when none); resumes a transfer paused on a full queue once it is
   half drained. Waits (lp_req_wait, lp_wait_any) end when a message is
   queued, as when the request finishes */
lp_msg *lp_req_take(lp_req *r, size_t max);
/* stream mode: messages queued now */
size_t lp_req_queued(lp_req *r);
/* stream mode: the answer's headers once they are all in (a 2xx answer),
   else NULL; kept until the record is freed */
const lp_result *lp_req_head(lp_req *r);
/* block until the request is ready or (stream mode) its headers are in, or
   `seconds` passed (as for lp_req_wait); 1 when either */
int lp_req_wait_head(lp_req *r, double seconds);

const char *lp_kind_name(lp_kind k);
int lp_state_finished(lp_state s);

#endif
