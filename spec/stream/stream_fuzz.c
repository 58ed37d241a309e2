/*
 * stream_fuzz.c - libFuzzer target for the stream splitter, differential:
 * whatever the bytes, feeding them cut into any pieces must give the same
 * messages, error and SSE state as feeding them whole, and no message may
 * be longer than max_message.
 *
 * The first three bytes choose the format, max_message and the cuts; the
 * rest is the body. Build with clang -fsanitize=fuzzer,address,undefined
 * (CMake: -DLONGPOLL_STREAM_FUZZ=ON with CC=clang), run e.g.
 *   build-fuzz/stream_fuzz -max_total_time=60 spec/stream/corpus
 */
#include <stdint.h>

#include "stream_common.h"

static size_t max_of(unsigned char b) {
  static const size_t big[] = { 0, 1, 2, 7, 64, 4096, (size_t)-1, 100 };
  return b < 0xF8 ? (size_t)b / 4 : big[b - 0xF8];
}

static int bounded(void *ud, const lp_stream_msg *m) {
  size_t max = *(const size_t *)ud;
  int dflt = m->event && m->event_len == 7 && memcmp(m->event, "message", 7) == 0;
  if (m->len > max || (m->event_len > max && !dflt) || m->id_len > max) abort();
  return 0;
}

static void same(const outbuf *a, const outbuf *b) {
  if (a->len != b->len || memcmp(a->p, b->p, a->len) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static outbuf whole, cut;
  size_t *cuts, ncuts = 0, n, i, max;
  const char *in;
  lp_stream_format f;
  uint32_t seed;
  if (size < 3) return 0;
  f = (lp_stream_format)(data[0] & 3);
  max = max_of(data[1]);
  seed = data[2] * 2654435761u + 1;
  in = (const char *)data + 3;
  n = size - 3;
  cuts = malloc((n + 1) * sizeof *cuts);
  if (!cuts) abort();
  run_split(f, max, in, n, NULL, 0, &whole);
  {                             /* every message within the bound */
    lp_stream s;
    lp_stream_init(&s, f, max);
    if (!lp_stream_feed(&s, in, n, bounded, &max)) lp_stream_finish(&s, bounded, &max);
    lp_stream_free(&s);
  }
  for (i = 0; i < n; i++) {     /* random cuts from the seed */
    seed = seed * 1103515245u + 12345u;
    if ((seed >> 16) % 5 == 0) cuts[ncuts++] = i;
  }
  run_split(f, max, in, n, cuts, ncuts, &cut);
  same(&cut, &whole);
  for (i = 0; i < n; i++) cuts[i] = i + 1;      /* byte by byte */
  run_split(f, max, in, n, cuts, n > 0 ? n - 1 : 0, &cut);
  same(&cut, &whole);
  for (i = 0; n <= 64 && i <= n; i++) {         /* each single cut */
    cuts[0] = i;
    run_split(f, max, in, n, cuts, 1, &cut);
    same(&cut, &whole);
  }
  free(cuts);
  return 0;
}
