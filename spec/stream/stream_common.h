/*
 * stream_common.h - what the stream parser's unit test and fuzzer share:
 * run lp_stream over an input cut into given chunks and write what came out
 * (the messages, the error, the SSE state) as one comparable string.
 */
#ifndef STREAM_COMMON_H
#define STREAM_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lp_stream.h"

typedef struct outbuf {
  char *p;
  size_t len, cap;
} outbuf;

static void out_add(outbuf *o, const char *p, size_t n) {
  if (o->len + n + 1 > o->cap) {
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + n + 1) cap *= 2;
    o->p = realloc(o->p, cap);
    if (!o->p) abort();
    o->cap = cap;
  }
  memcpy(o->p + o->len, p, n);
  o->len += n;
  o->p[o->len] = '\0';
}

static void out_str(outbuf *o, const char *s) { out_add(o, s, strlen(s)); }

/* one message: [data] for lines/ndjson/json-seq, {event|id|retry|data} for
   sse, id "-" when there is none */
static int out_emit(void *ud, const lp_stream_msg *m) {
  outbuf *o = ud;
  char num[32];
  if (!m->data) abort();
  if (m->event) {
    out_str(o, "{");
    out_add(o, m->event, m->event_len);
    out_str(o, "|");
    if (m->id) out_add(o, m->id, m->id_len); else out_str(o, "-");
    snprintf(num, sizeof num, "|%lld|", m->retry);
    out_str(o, num);
    out_add(o, m->data, m->len);
    out_str(o, "}");
  } else {
    if (m->id || m->retry != -1) abort();
    out_str(o, "[");
    out_add(o, m->data, m->len);
    out_str(o, "]");
  }
  return 0;
}

static const char *const rc_names[] = { "ok", "too_large", "nomem", "stopped" };

/* feed `in` cut at the `ncuts` increasing offsets `cuts`, then finish;
   the result (messages, then "#" rc, dropped, last id, retry) into *o */
static void run_split(lp_stream_format f, size_t max, const char *in, size_t n,
                      const size_t *cuts, size_t ncuts, outbuf *o) {
  lp_stream s;
  lp_stream_rc rc = LP_STREAM_OK;
  size_t i, at = 0;
  char tail[96];
  o->len = 0;
  out_str(o, "");
  lp_stream_init(&s, f, max);
  for (i = 0; i <= ncuts && !rc; i++) {
    size_t to = i < ncuts ? cuts[i] : n;
    rc = lp_stream_feed(&s, in + at, to - at, out_emit, o);
    at = to;
  }
  if (!rc) rc = lp_stream_finish(&s, out_emit, o);
  snprintf(tail, sizeof tail, "#%s dropped=%llu retry=%lld id=", rc_names[rc],
           s.dropped, s.retry);
  out_str(o, tail);
  out_add(o, s.last_id.data ? s.last_id.data : "", s.last_id.len);
  lp_stream_free(&s);
}

#endif
