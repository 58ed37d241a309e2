/*
 * lp_stream.h - an incremental splitter of response bodies into messages:
 * Server-Sent Events, NDJSON, JSON text sequences (RFC 7464) and plain lines.
 * It knows neither Lua nor libcurl: bytes go in with any chunking, each
 * complete message comes out through a callback, at once.
 *
 * Memory: a message that lies whole inside one fed chunk is handed to the
 * callback as a pointer into that chunk (no copy); only the unfinished tail
 * of a chunk is kept, so a stream holds a few times max_message at most
 * (SSE: the line being read, the data, the event type and two ids).
 *
 * Formats (line ends: LF, or CRLF; SSE also a lone CR, as WHATWG says):
 *   lines     every line is a message, empty lines too; at the end a last
 *             line without a line end is one too
 *   ndjson    every line that is not blank (spaces, tabs) is a message
 *   json-seq  RS (0x1E) starts a JSON text; it ends at the LF that follows
 *             a complete value (LFs inside an object or array do not end
 *             it), or at the next RS. An element that may be truncated (at
 *             an RS or the end, not closed by }, ] or " or whitespace) is
 *             dropped and counted, as RFC 7464 section 2.3 asks
 *   sse       the WHATWG event-stream rules: `event`, `data` (lines joined
 *             with LF), `id` (ignored when it contains NUL), `retry` (ASCII
 *             digits only), comments and unknown fields ignored, dispatch
 *             on a blank line, no dispatch of an event without data, an
 *             unfinished event at the end discarded. Bytes are passed as
 *             they are (invalid UTF-8 is not replaced).
 * A UTF-8 byte order mark at the very start is skipped in every format.
 *
 * max_message bounds a message's bytes (SSE: its data; its event type and
 * id each on their own); one byte over is LP_STREAM_TOO_LARGE. After any
 * error the stream stays failed and every call returns that error.
 */
#ifndef LP_STREAM_H
#define LP_STREAM_H

#include <stddef.h>

typedef enum lp_stream_format {
  LP_STREAM_LINES, LP_STREAM_NDJSON, LP_STREAM_JSON_SEQ, LP_STREAM_SSE
} lp_stream_format;

typedef enum lp_stream_rc {
  LP_STREAM_OK,
  LP_STREAM_TOO_LARGE,          /* a message over max_message */
  LP_STREAM_NOMEM,              /* an allocation failed */
  LP_STREAM_STOPPED             /* the callback returned non-zero */
} lp_stream_rc;

/* one message; the pointers are valid only during the callback */
typedef struct lp_stream_msg {
  const char *data;             /* the message (SSE: its data) */
  size_t len;
  const char *event;            /* SSE: the event type ("message" unless
                                   set); NULL in the other formats */
  size_t event_len;
  const char *id;               /* SSE: the last event id; NULL when none */
  size_t id_len;
  long long retry;              /* SSE: a retry field (ms) received since
                                   the previous message, or -1 */
} lp_stream_msg;

/* called for each message; a non-zero return stops the stream */
typedef int (*lp_stream_emit)(void *ud, const lp_stream_msg *m);

typedef struct lp_sbuf {
  char *data;
  size_t len, cap;
} lp_sbuf;

typedef struct lp_stream {
  lp_stream_format format;
  size_t max_message;
  lp_stream_rc error;           /* sticky */
  int bom;                      /* BOM bytes matched so far; -1 once past */
  int cr;                       /* lines/ndjson: a CR held back, maybe of a
                                   CRLF; sse: a line ended in CR, so skip an
                                   LF that follows */
  int skip;                     /* sse: what to do with the rest of a line
                                   too long to buffer (0: buffer it) */
  lp_sbuf line;                 /* the unfinished line or JSON text */
  /* json-seq: a small scanner that knows where a value ends */
  int active, in_str, esc;
  long depth;
  unsigned char last;           /* last byte of the text so far */
  /* sse */
  lp_sbuf data, event, id;      /* id: the last event id buffer */
  size_t ndata;                 /* data lines in this event */
  long long pending_retry;      /* -1: none since the last message */
  long long retry_value;        /* a retry value read past the line buffer */
  /* readable between calls */
  lp_sbuf last_id;              /* sse: the last event id as of the last
                                   dispatch (what Last-Event-ID resends) */
  long long retry;              /* sse: the latest retry (ms), or -1 */
  unsigned long long messages;  /* messages emitted */
  unsigned long long dropped;   /* json-seq: possibly truncated texts */
} lp_stream;

/* a stream of `format` in *s (no allocation until bytes arrive) */
void lp_stream_init(lp_stream *s, lp_stream_format format, size_t max_message);
/* the format named `name` ("sse", "ndjson", "json-seq", "lines"); -1 if none */
int lp_stream_format_of(const char *name);
/* split `n` more bytes, emitting every message they complete */
lp_stream_rc lp_stream_feed(lp_stream *s, const char *p, size_t n,
                            lp_stream_emit emit, void *ud);
/* the body ended: emit what the format says a last unfinished part is */
lp_stream_rc lp_stream_finish(lp_stream *s, lp_stream_emit emit, void *ud);
/* free the buffers; *s may be initialized again */
void lp_stream_free(lp_stream *s);

#endif
