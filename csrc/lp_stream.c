/*
 * lp_stream.c - the message splitter of lp_stream.h.
 *
 * Every format keeps the same promise: the messages (and the error, if any)
 * depend only on the bytes, never on how they were chunked. A part of a line
 * or text that a chunk leaves unfinished is copied into s->line; everything
 * else is read in place. Limits are checked on the unfinished part as it
 * grows, in the same terms as on a finished one, so a split never turns a
 * message that fits into too_large or the reverse.
 */
#include "lp_stream.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RS 0x1e
/* buffers grown past this are freed once their message is out */
#define LP_SBUF_KEEP (64 * 1024)
/* SSE: room for the field name, colon and space in front of a value
   ("event: ", "retry: "), so a buffered line may hold max_message + this */
#define SSE_NAME_ROOM 7

/* what sse does with the rest of a line it stopped buffering */
enum { SKIP_NONE, SKIP_IGNORE, SKIP_ID, SKIP_ID_NUL, SKIP_RETRY };

static const unsigned char bom_bytes[3] = { 0xEF, 0xBB, 0xBF };
static const char *const format_names[] = { "lines", "ndjson", "json-seq", "sse", NULL };

int lp_stream_format_of(const char *name) {
  int i;
  for (i = 0; format_names[i]; i++)
    if (strcmp(name, format_names[i]) == 0) return i;
  return -1;
}

void lp_stream_init(lp_stream *s, lp_stream_format format, size_t max_message) {
  memset(s, 0, sizeof *s);
  s->format = format;
  s->max_message = max_message;
  s->pending_retry = -1;
  s->retry = -1;
}

static void sbuf_free(lp_sbuf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* empty b, giving back memory a large message left behind */
static void sbuf_clear(lp_sbuf *b) {
  if (b->cap > LP_SBUF_KEEP) sbuf_free(b);
  b->len = 0;
}

static int sbuf_add(lp_sbuf *b, const char *p, size_t n) {
  if (n == 0) return 1;
  if (n > SIZE_MAX / 4 - b->len) return 0;
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap : 256;
    char *q;
    while (cap - b->len < n) cap *= 2;
    q = realloc(b->data, cap);
    if (!q) return 0;
    b->data = q;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 1;
}

static int sbuf_set(lp_sbuf *b, const char *p, size_t n) {
  b->len = 0;
  return sbuf_add(b, p, n);
}

void lp_stream_free(lp_stream *s) {
  sbuf_free(&s->line);
  sbuf_free(&s->data);
  sbuf_free(&s->event);
  sbuf_free(&s->id);
  sbuf_free(&s->last_id);
}

static lp_stream_rc fail(lp_stream *s, lp_stream_rc rc) {
  s->error = rc;
  return rc;
}

static lp_stream_rc put(lp_stream *s, const lp_stream_msg *m,
                        lp_stream_emit emit, void *ud) {
  s->messages++;
  return emit(ud, m) != 0 ? fail(s, LP_STREAM_STOPPED) : LP_STREAM_OK;
}

static lp_stream_rc put_plain(lp_stream *s, const char *p, size_t n,
                              lp_stream_emit emit, void *ud) {
  lp_stream_msg m;
  memset(&m, 0, sizeof m);
  m.data = p;
  m.len = n;
  m.retry = -1;
  return put(s, &m, emit, ud);
}

/* add to the unfinished line or text, keeping it within `limit` */
static lp_stream_rc line_add(lp_stream *s, const char *p, size_t n, size_t limit) {
  if (n > limit || s->line.len > limit - n) return fail(s, LP_STREAM_TOO_LARGE);
  return sbuf_add(&s->line, p, n) ? LP_STREAM_OK : fail(s, LP_STREAM_NOMEM);
}

/* ---- lines and ndjson ---- */

static int blank(const char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return 0;
  return 1;
}

/* a finished line, its CRLF's CR already gone */
static lp_stream_rc line_done(lp_stream *s, const char *p, size_t n,
                              lp_stream_emit emit, void *ud) {
  if (n > s->max_message) return fail(s, LP_STREAM_TOO_LARGE);
  if (s->format == LP_STREAM_NDJSON && blank(p, n)) return LP_STREAM_OK;
  return put_plain(s, p, n, emit, ud);
}

static lp_stream_rc feed_lines(lp_stream *s, const char *p, size_t n,
                               lp_stream_emit emit, void *ud) {
  const char *end = p + n;
  lp_stream_rc rc;
  if (n > 0 && s->cr) {         /* the last chunk ended in CR: not a CRLF? */
    s->cr = 0;
    if (*p != '\n' && (rc = line_add(s, "\r", 1, s->max_message))) return rc;
  }
  while (p < end) {
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    size_t k;
    if (!lf) break;
    k = (size_t)(lf - p);
    if (k > 0 && p[k - 1] == '\r') k--;
    if (s->line.len == 0) {
      rc = line_done(s, p, k, emit, ud);
    } else {
      if ((rc = line_add(s, p, k, s->max_message))) return rc;
      rc = line_done(s, s->line.data, s->line.len, emit, ud);
      sbuf_clear(&s->line);
    }
    if (rc) return rc;
    p = lf + 1;
  }
  if (p < end) {
    size_t k = (size_t)(end - p);
    if (p[k - 1] == '\r') {     /* hold it back: an LF may follow */
      s->cr = 1;
      k--;
    }
    return line_add(s, p, k, s->max_message);
  }
  return LP_STREAM_OK;
}

static lp_stream_rc finish_lines(lp_stream *s, lp_stream_emit emit, void *ud) {
  lp_stream_rc rc = LP_STREAM_OK;
  if (s->line.len > 0 || s->cr) rc = line_done(s, s->line.data ? s->line.data : "",
                                               s->line.len, emit, ud);
  s->cr = 0;
  sbuf_clear(&s->line);
  return rc;
}

/* ---- json-seq ---- */

static int json_ws(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void seq_reset(lp_stream *s) {
  s->active = s->in_str = s->esc = 0;
  s->depth = 0;
  s->last = 0;
  sbuf_clear(&s->line);
}

/* the text that is buffered plus [p, p+n) ended: at an LF that follows a
   complete value (at_lf), or at an RS or the end of the body */
static lp_stream_rc seq_end(lp_stream *s, const char *p, size_t n, int at_lf,
                            lp_stream_emit emit, void *ud) {
  size_t len = s->line.len + n;
  int whole;
  lp_stream_rc rc;
  if (!s->active) return LP_STREAM_OK;
  if (at_lf && len > 0 && (n > 0 ? p[n - 1] : s->line.data[s->line.len - 1]) == '\r') {
    len--;                      /* CRLF ends it: the CR is not the text's */
    if (n > 0) n--; else s->line.len--;
  }
  if (len > s->max_message) return fail(s, LP_STREAM_TOO_LARGE);
  whole = at_lf || (!s->in_str && s->depth <= 0 &&
                    (s->last == '}' || s->last == ']' || s->last == '"' ||
                     json_ws(s->last)));
  if (!whole) {                 /* RFC 7464 2.3: maybe truncated, skip it */
    s->dropped++;
    rc = LP_STREAM_OK;
  } else if (s->line.len == 0) {
    rc = put_plain(s, p, n, emit, ud);
  } else if (!sbuf_add(&s->line, p, n)) {
    rc = fail(s, LP_STREAM_NOMEM);
  } else {
    rc = put_plain(s, s->line.data, s->line.len, emit, ud);
  }
  seq_reset(s);
  return rc;
}

/* the buffered text may hold one byte more than max_message while it ends
   in a CR that a following LF would take away */
static lp_stream_rc seq_keep(lp_stream *s, const char *p, size_t n) {
  size_t limit = s->max_message;
  char last = n > 0 ? p[n - 1] : s->line.len > 0 ? s->line.data[s->line.len - 1] : 0;
  if (last == '\r' && limit < SIZE_MAX) limit++;
  return line_add(s, p, n, limit);
}

static lp_stream_rc feed_seq(lp_stream *s, const char *p, size_t n,
                             lp_stream_emit emit, void *ud) {
  size_t i, start = 0;
  lp_stream_rc rc;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == RS) {
      if ((rc = seq_end(s, p + start, i - start, 0, emit, ud))) return rc;
      continue;
    }
    if (!s->active) {
      if (json_ws(c)) continue;
      s->active = 1;
      start = i;
    }
    if (s->in_str) {
      if (s->esc) s->esc = 0;
      else if (c == '\\') s->esc = 1;
      else if (c == '"') s->in_str = 0;
    } else if (c == '"') {
      s->in_str = 1;
    } else if (c == '{' || c == '[') {
      s->depth++;
    } else if (c == '}' || c == ']') {
      s->depth--;
    } else if (c == '\n' && s->depth <= 0) {
      if ((rc = seq_end(s, p + start, i - start, 1, emit, ud))) return rc;
      continue;
    }
    s->last = c;
  }
  return s->active ? seq_keep(s, p + start, n - start) : LP_STREAM_OK;
}

/* ---- sse ---- */

static int name_is(const char *p, size_t n, const char *name) {
  return strlen(name) == n && memcmp(p, name, n) == 0;
}

/* retry's value: ASCII digits only; saturates rather than overflows */
static int retry_scan(long long *v, const char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned d = (unsigned char)p[i] - '0';
    if (d > 9) return 0;
    *v = *v > (LLONG_MAX - 9) / 10 ? LLONG_MAX : *v * 10 + (long long)d;
  }
  return 1;
}

static void set_retry(lp_stream *s, long long v) {
  s->retry = v;
  s->pending_retry = v;
}

/* a blank line: commit the last event id, then dispatch if there is data */
static lp_stream_rc sse_dispatch(lp_stream *s, lp_stream_emit emit, void *ud) {
  lp_stream_msg m;
  lp_stream_rc rc;
  if ((s->last_id.len != s->id.len ||
       (s->id.len > 0 && memcmp(s->last_id.data, s->id.data, s->id.len) != 0)) &&
      !sbuf_set(&s->last_id, s->id.data, s->id.len))
    return fail(s, LP_STREAM_NOMEM);
  if (s->ndata == 0) {
    s->event.len = 0;
    return LP_STREAM_OK;
  }
  m.data = s->data.data ? s->data.data : "";
  m.len = s->data.len;
  m.event = s->event.len ? s->event.data : "message";
  m.event_len = s->event.len ? s->event.len : 7;
  m.id = s->id.len ? s->id.data : NULL;
  m.id_len = s->id.len;
  m.retry = s->pending_retry;
  rc = put(s, &m, emit, ud);
  sbuf_clear(&s->data);
  s->event.len = 0;
  s->ndata = 0;
  s->pending_retry = -1;
  return rc;
}

/* one whole line, without its line end */
static lp_stream_rc sse_line(lp_stream *s, const char *p, size_t n,
                             lp_stream_emit emit, void *ud) {
  const char *colon, *v;
  size_t name_len, vlen;
  if (n == 0) return sse_dispatch(s, emit, ud);
  if (p[0] == ':') return LP_STREAM_OK;       /* a comment */
  colon = memchr(p, ':', n);
  name_len = colon ? (size_t)(colon - p) : n;
  v = colon ? colon + 1 : p + n;
  vlen = (size_t)(p + n - v);
  if (vlen > 0 && *v == ' ') {
    v++;
    vlen--;
  }
  if (name_is(p, name_len, "data")) {
    size_t sep = s->ndata > 0;
    if (vlen > s->max_message || s->data.len + sep > s->max_message - vlen)
      return fail(s, LP_STREAM_TOO_LARGE);
    if ((sep && !sbuf_add(&s->data, "\n", 1)) || !sbuf_add(&s->data, v, vlen))
      return fail(s, LP_STREAM_NOMEM);
    s->ndata++;
  } else if (name_is(p, name_len, "event")) {
    if (vlen > s->max_message) return fail(s, LP_STREAM_TOO_LARGE);
    if (!sbuf_set(&s->event, v, vlen)) return fail(s, LP_STREAM_NOMEM);
  } else if (name_is(p, name_len, "id")) {
    if (memchr(v, '\0', vlen)) return LP_STREAM_OK;
    if (vlen > s->max_message) return fail(s, LP_STREAM_TOO_LARGE);
    if (!sbuf_set(&s->id, v, vlen)) return fail(s, LP_STREAM_NOMEM);
  } else if (name_is(p, name_len, "retry")) {
    long long r = 0;
    if (vlen > 0 && retry_scan(&r, v, vlen)) set_retry(s, r);
  }
  return LP_STREAM_OK;
}

/* the unfinished line grew past what any field that counts can hold: decide
   from its name what the rest of it means, and stop buffering it */
static lp_stream_rc sse_overflow(lp_stream *s) {
  const char *p = s->line.data, *colon;
  size_t n = s->line.len, name_len;
  colon = memchr(p, ':', n < SSE_NAME_ROOM ? n : SSE_NAME_ROOM);
  name_len = colon ? (size_t)(colon - p) : n;
  s->skip = SKIP_IGNORE;
  if (colon && (name_is(p, name_len, "data") || name_is(p, name_len, "event")))
    return fail(s, LP_STREAM_TOO_LARGE);
  if (colon && name_is(p, name_len, "id")) {
    s->skip = memchr(colon, '\0', (size_t)(p + n - colon)) ? SKIP_ID_NUL : SKIP_ID;
  } else if (colon && name_is(p, name_len, "retry")) {
    const char *v = colon + 1;
    if (v < p + n && *v == ' ') v++;
    s->retry_value = 0;
    s->skip = retry_scan(&s->retry_value, v, (size_t)(p + n - v)) ? SKIP_RETRY : SKIP_IGNORE;
  }
  sbuf_clear(&s->line);
  return LP_STREAM_OK;
}

/* more of a line whose end is not in this chunk (or is, at the end of p) */
static lp_stream_rc sse_more(lp_stream *s, const char *p, size_t n) {
  size_t limit = s->max_message > SIZE_MAX - SSE_NAME_ROOM
               ? SIZE_MAX : s->max_message + SSE_NAME_ROOM;
  lp_stream_rc rc;
  if (n == 0) return LP_STREAM_OK;
  if (s->skip == SKIP_NONE && s->line.len == 0 && p[0] == ':')
    s->skip = SKIP_IGNORE;      /* a comment: nothing of it is kept */
  if (s->skip == SKIP_NONE) {
    size_t room = limit - s->line.len;
    if (n <= room) return line_add(s, p, n, limit);
    if ((rc = line_add(s, p, room, limit)) || (rc = sse_overflow(s))) return rc;
    p += room;
    n -= room;
  }
  if (s->skip == SKIP_ID && memchr(p, '\0', n)) s->skip = SKIP_ID_NUL;
  if (s->skip == SKIP_RETRY && !retry_scan(&s->retry_value, p, n)) s->skip = SKIP_IGNORE;
  return LP_STREAM_OK;
}

/* the end of a line that was buffered or skipped */
static lp_stream_rc sse_line_end(lp_stream *s, lp_stream_emit emit, void *ud) {
  lp_stream_rc rc = LP_STREAM_OK;
  int skip = s->skip;
  s->skip = SKIP_NONE;
  if (skip == SKIP_NONE) {
    rc = sse_line(s, s->line.data, s->line.len, emit, ud);
    sbuf_clear(&s->line);
  } else if (skip == SKIP_ID) {
    rc = fail(s, LP_STREAM_TOO_LARGE);
  } else if (skip == SKIP_RETRY) {
    set_retry(s, s->retry_value);
  }
  return rc;
}

static lp_stream_rc feed_sse(lp_stream *s, const char *p, size_t n,
                             lp_stream_emit emit, void *ud) {
  const char *end = p + n;
  lp_stream_rc rc;
  if (n > 0 && s->cr) {         /* the last chunk ended in CR: CRLF? */
    s->cr = 0;
    if (*p == '\n') p++;
  }
  while (p < end) {
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    const char *eol = memchr(p, '\r', (size_t)((lf ? lf : end) - p));
    if (!eol) eol = lf;
    if (!eol) return sse_more(s, p, (size_t)(end - p));
    if (s->skip == SKIP_NONE && s->line.len == 0) {
      rc = sse_line(s, p, (size_t)(eol - p), emit, ud);
    } else {
      rc = sse_more(s, p, (size_t)(eol - p));
      if (!rc) rc = sse_line_end(s, emit, ud);
    }
    if (rc) return rc;
    if (*eol == '\n') {
      p = eol + 1;
    } else if (eol + 1 < end) {
      p = eol + 1 + (eol[1] == '\n');
    } else {
      s->cr = 1;
      p = end;
    }
  }
  return LP_STREAM_OK;
}

/* ---- all formats ---- */

static lp_stream_rc feed_body(lp_stream *s, const char *p, size_t n,
                              lp_stream_emit emit, void *ud) {
  switch (s->format) {
  case LP_STREAM_SSE: return feed_sse(s, p, n, emit, ud);
  case LP_STREAM_JSON_SEQ: return feed_seq(s, p, n, emit, ud);
  default: return feed_lines(s, p, n, emit, ud);
  }
}

/* the bytes of a BOM matched so far turned out not to be one: feed them */
static lp_stream_rc bom_replay(lp_stream *s, lp_stream_emit emit, void *ud) {
  int k = s->bom;
  s->bom = -1;
  return k > 0 ? feed_body(s, (const char *)bom_bytes, (size_t)k, emit, ud)
               : LP_STREAM_OK;
}

lp_stream_rc lp_stream_feed(lp_stream *s, const char *p, size_t n,
                            lp_stream_emit emit, void *ud) {
  lp_stream_rc rc;
  if (s->error) return s->error;
  if (s->bom >= 0) {
    while (n > 0 && s->bom < 3 && (unsigned char)*p == bom_bytes[s->bom]) {
      s->bom++;
      p++;
      n--;
    }
    if (s->bom == 3) s->bom = -1;
    else if (n == 0) return LP_STREAM_OK;       /* still maybe a BOM */
    else if ((rc = bom_replay(s, emit, ud))) return rc;
  }
  return feed_body(s, p, n, emit, ud);
}

lp_stream_rc lp_stream_finish(lp_stream *s, lp_stream_emit emit, void *ud) {
  lp_stream_rc rc;
  if (s->error) return s->error;
  if (s->bom > 0 && (rc = bom_replay(s, emit, ud))) return rc;
  s->bom = -1;
  switch (s->format) {
  case LP_STREAM_SSE:           /* an unfinished event is discarded */
    s->skip = SKIP_NONE;
    s->cr = 0;
    s->ndata = 0;
    s->event.len = 0;
    sbuf_clear(&s->line);
    sbuf_clear(&s->data);
    return LP_STREAM_OK;
  case LP_STREAM_JSON_SEQ:
    return seq_end(s, NULL, 0, 0, emit, ud);
  default:
    return finish_lines(s, emit, ud);
  }
}
