/*
 * stream_test.c - unit test of the stream splitter (csrc/lp_stream.c): each
 * format on inputs that hold the cases the formats define, every input fed
 * whole, cut at every offset, at every pair of offsets, byte by byte and in
 * random pieces; all of them must give the expected messages. Then the
 * max_message bound (a message at it and one byte over), a callback that
 * stops the stream, and the buffers a long stream keeps.
 *
 * usage: stream_test     prints "stream: N cases, M splits ok" and exits 0
 */
#include <stdint.h>

#include "stream_common.h"

static int failures;
static unsigned long long splits;

/* xorshift: the same random cuts on every run */
static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void print_escaped(const char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c >= 0x20 && c < 0x7f && c != '\\') putc(c, stderr);
    else fprintf(stderr, "\\x%02x", c);
  }
}

static const char *format_label[] = { "lines", "ndjson", "json-seq", "sse" };

/* one way of cutting gave something else than expected */
static void mismatch(const char *name, lp_stream_format f, const size_t *cuts,
                     size_t ncuts, const outbuf *got, const char *want, size_t wlen) {
  size_t i;
  failures++;
  if (failures > 10) return;
  fprintf(stderr, "FAIL %s (%s) cut at", name, format_label[f]);
  for (i = 0; i < ncuts; i++) fprintf(stderr, " %zu", cuts[i]);
  fprintf(stderr, "\n  want: ");
  print_escaped(want, wlen);
  fprintf(stderr, "\n  got:  ");
  print_escaped(got->p, got->len);
  fprintf(stderr, "\n");
}

/* feed `in` every way this test knows and compare each result to `want` */
static void check_n(const char *name, lp_stream_format f, size_t max,
                    const char *in, size_t n, const char *want, size_t wlen) {
  outbuf o = { 0 };
  size_t *cuts = malloc((n + 1) * sizeof *cuts);
  size_t i, j, r;
  int before = failures;
#define TRY(k) do { splits++; run_split(f, max, in, n, cuts, (k), &o); \
    if (o.len != wlen || memcmp(o.p, want, wlen) != 0) mismatch(name, f, cuts, (k), &o, want, wlen); \
  } while (0)
  if (!cuts) abort();
  memset(cuts, 0, (n + 1) * sizeof *cuts);
  TRY(0);
  for (i = 0; i <= n && failures == before; i++) {
    cuts[0] = i;
    TRY(1);
  }
  for (i = 1; n <= 300 && i < n && failures == before; i++)
    for (j = i; j < n && failures == before; j++) {
      cuts[0] = i;
      cuts[1] = j;
      TRY(2);
    }
  for (i = 0; i < n; i++) cuts[i] = i;
  if (n > 0) TRY(n - 1);
  for (r = 0; r < 300 && failures == before; r++) {
    size_t k = 0, at = 0;
    while (at < n) {
      at += 1 + next_rand() % (n / 4 + 2);
      if (at < n) cuts[k++] = at;
    }
    TRY(k);
  }
#undef TRY
  free(cuts);
  free(o.p);
}

#define STR(s) s, sizeof(s) - 1
#define CHECK(name, f, max, in, want) check_n(name, f, max, STR(in), STR(want))
#define OK_ "#ok dropped=0 retry=-1 id="

static void test_lines(void) {
  CHECK("lf, crlf, last line without end", LP_STREAM_LINES, 64,
        "a\nb\r\nc", "[a][b][c]" OK_);
  CHECK("empty lines are messages", LP_STREAM_LINES, 64,
        "\n\nx\n\r\n", "[][][x][]" OK_);
  CHECK("a lone CR is content", LP_STREAM_LINES, 64,
        "a\rb\n\r\r\n", "[a\rb][\r]" OK_);
  CHECK("a CR at the end", LP_STREAM_LINES, 64, "x\r", "[x]" OK_);
  CHECK("utf-8 kept whole across cuts", LP_STREAM_LINES, 64,
        "h\xc3\xa9llo \xe2\x82\xac\n\xf0\x9f\x98\x80\n",
        "[h\xc3\xa9llo \xe2\x82\xac][\xf0\x9f\x98\x80]" OK_);
  CHECK("a BOM at the start is skipped", LP_STREAM_LINES, 64,
        "\xEF\xBB\xBF" "a\n\xEF\xBB\xBF" "b\n", "[a][\xEF\xBB\xBF" "b]" OK_);
  CHECK("half a BOM is content", LP_STREAM_LINES, 64,
        "\xEF\xBB" "a\n", "[\xEF\xBB" "a]" OK_);
  CHECK("one BOM only", LP_STREAM_LINES, 64,
        "\xEF\xBB\xBF\xEF\xBB\xBF" "a", "[\xEF\xBB\xBF" "a]" OK_);
  CHECK("only a BOM prefix", LP_STREAM_LINES, 64, "\xEF\xBB", "[\xEF\xBB]" OK_);
  CHECK("nothing", LP_STREAM_LINES, 64, "", OK_);
  CHECK("NUL is content", LP_STREAM_LINES, 64, "a\0b\n", "[a\0b]" OK_);
}

static void test_ndjson(void) {
  CHECK("blank lines skipped, crlf", LP_STREAM_NDJSON, 64,
        "{\"a\":1}\n\n  \n[2]\r\n\t\r\n3", "[{\"a\":1}][[2]][3]" OK_);
  CHECK("utf-8", LP_STREAM_NDJSON, 64,
        "{\"s\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}\n\"\xc3\xa9\"\n",
        "[{\"s\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}][\"\xc3\xa9\"]" OK_);
  CHECK("a blank last line", LP_STREAM_NDJSON, 64, "1\n \r", "[1]" OK_);
  CHECK("BOM", LP_STREAM_NDJSON, 64, "\xEF\xBB\xBF{}\n", "[{}]" OK_);
}

static void test_json_seq(void) {
  CHECK("values, a value over lines", LP_STREAM_JSON_SEQ, 64,
        "\x1e{\"a\":1}\n\x1e[1,\n2]\n\x1e\"x\"\n\x1e" "12\n",
        "[{\"a\":1}][[1,\n2]][\"x\"][12]" OK_);
  CHECK("strings hide brackets and quotes", LP_STREAM_JSON_SEQ, 64,
        "\x1e{\"a\":\"}\\\"\\\\\n{\"}\n\x1e\"]\"\n",
        "[{\"a\":\"}\\\"\\\\\n{\"}][\"]\"]" OK_);
  CHECK("a number cut by RS is dropped", LP_STREAM_JSON_SEQ, 64,
        "\x1e" "12\x1e{}\n", "[{}]#ok dropped=1 retry=-1 id=");
  CHECK("empty elements, crlf, leading space", LP_STREAM_JSON_SEQ, 64,
        "\x1e\x1e  {}\r\n\x1e\r\n\x1e [ ]\n", "[{}][[ ]]" OK_);
  CHECK("a closed value at the end", LP_STREAM_JSON_SEQ, 64, "\x1e{}", "[{}]" OK_);
  CHECK("a number at the end may be cut", LP_STREAM_JSON_SEQ, 64,
        "\x1e{}\n\x1e" "1", "[{}]#ok dropped=1 retry=-1 id=");
  CHECK("whitespace ends a scalar at RS", LP_STREAM_JSON_SEQ, 64,
        "\x1etrue \x1e", "[true ]" OK_);
  CHECK("nested, utf-8", LP_STREAM_JSON_SEQ, 64,
        "\x1e[[],{\"b\":[{}]},\"\xe2\x82\xac\"]\n",
        "[[[],{\"b\":[{}]},\"\xe2\x82\xac\"]]" OK_);
  CHECK("an open value waits for RS", LP_STREAM_JSON_SEQ, 64,
        "\x1e{\"a\":\n1\n}\n", "[{\"a\":\n1\n}]" OK_);
  CHECK("BOM", LP_STREAM_JSON_SEQ, 64, "\xEF\xBB\xBF\x1e{}\n", "[{}]" OK_);
}

#define M_ "message"
static void test_sse(void) {
  CHECK("data lines joined", LP_STREAM_SSE, 64,
        "data: YHOO\ndata: +2\ndata: 10\n\n", "{" M_ "|-|-1|YHOO\n+2\n10}" OK_);
  CHECK("comments, ids, spaces", LP_STREAM_SSE, 64,
        ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
        "data:  third event\n\n",
        "{" M_ "|1|-1|first event}{" M_ "|-|-1|second event}{" M_ "|-|-1| third event}" OK_);
  CHECK("empty data lines", LP_STREAM_SSE, 64,
        "data\n\ndata\ndata\n\ndata:\n", "{" M_ "|-|-1|}{" M_ "|-|-1|\n}" OK_);
  CHECK("event types", LP_STREAM_SSE, 64,
        "event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\n",
        "{add|-|-1|73857293}{remove|-|-1|2153}" OK_);
  CHECK("retry: digits only, before a message", LP_STREAM_SSE, 64,
        "retry: 5000\n\ndata: x\n\nretry: 5x\ndata: y\n\n",
        "{" M_ "|-|5000|x}{" M_ "|-|-1|y}#ok dropped=0 retry=5000 id=");
  CHECK("retry: empty values ignored", LP_STREAM_SSE, 64,
        "retry\nretry: \nretry: 12\n\n", "#ok dropped=0 retry=12 id=");
  CHECK("an id with NUL is ignored", LP_STREAM_SSE, 64,
        "id: 1\n\ndata: a\n\nid: 2\0x\ndata: b\n\n",
        "{" M_ "|1|-1|a}{" M_ "|1|-1|b}#ok dropped=0 retry=-1 id=1");
  CHECK("CR, CRLF and LF line ends", LP_STREAM_SSE, 64,
        "data: a\r\rdata: b\r\n\r\ndata: c\n\r\ndata: d\r\n\n",
        "{" M_ "|-|-1|a}{" M_ "|-|-1|b}{" M_ "|-|-1|c}{" M_ "|-|-1|d}" OK_);
  CHECK("a CRLF is one line end, also when cut between CR and LF", LP_STREAM_SSE, 64,
        "data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
        "{" M_ "|-|-1|a\nb}{" M_ "|-|-1|c}" OK_);
  CHECK("a BOM at the start", LP_STREAM_SSE, 64,
        "\xEF\xBB\xBF" "data: a\n\n", "{" M_ "|-|-1|a}" OK_);
  CHECK("no data, no event; the id counts", LP_STREAM_SSE, 64,
        "event: x\n\nid: 5\n\n", "#ok dropped=0 retry=-1 id=5");
  CHECK("an unfinished event is dropped", LP_STREAM_SSE, 64,
        "data: a\n\ndata: b\n", "{" M_ "|-|-1|a}" OK_);
  CHECK("an id not yet dispatched is not the last id", LP_STREAM_SSE, 64,
        "id: 7\ndata: a\n", OK_);
  CHECK("unknown fields ignored", LP_STREAM_SSE, 64,
        "foo: bar\ndata : x\nDATA: z\ndata: y\n\n", "{" M_ "|-|-1|y}" OK_);
  CHECK("utf-8 split anywhere", LP_STREAM_SSE, 64,
        "data: h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac\xf0\x9f\x98\x80\n\n",
        "{" M_ "|-|-1|h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac\xf0\x9f\x98\x80}" OK_);
  CHECK("an empty event name is the default", LP_STREAM_SSE, 64,
        "data:a\nevent\n\n", "{" M_ "|-|-1|a}" OK_);
  CHECK("blank lines between events", LP_STREAM_SSE, 64,
        "data: x\n\n\n\r\n\rdata: y\n\n", "{" M_ "|-|-1|x}{" M_ "|-|-1|y}" OK_);
  CHECK("id kept across events, reset by an empty id", LP_STREAM_SSE, 64,
        "id: a\ndata: 1\n\ndata: 2\n\nid:\ndata: 3\n\n",
        "{" M_ "|a|-1|1}{" M_ "|a|-1|2}{" M_ "|-|-1|3}" OK_);
  CHECK("data with colons and NUL", LP_STREAM_SSE, 64,
        "data: a: b:c\0d\n\n", "{" M_ "|-|-1|a: b:c\0d}" OK_);
}

/* a string of n copies of c */
static char *fill(char c, size_t n) {
  char *p = malloc(n + 1);
  if (!p) abort();
  memset(p, c, n);
  p[n] = '\0';
  return p;
}

/* build input and expectation from printf formats (%s takes `body`) */
static void check_fmt(const char *name, lp_stream_format f, size_t max,
                      const char *in_fmt, const char *want_fmt, const char *body) {
  char *in, *want;
  int n = asprintf(&in, in_fmt, body, body);
  int w = asprintf(&want, want_fmt, body, body);
  if (n < 0 || w < 0) abort();
  check_n(name, f, max, in, (size_t)n, want, (size_t)w);
  free(in);
  free(want);
}

static void test_max_message(void) {
  enum { M = 24 };
  char *at = fill('x', M), *over = fill('x', M + 1), *part = fill('y', M - 5);
  char *seq_at = fill('1', M - 2), *seq_over = fill('1', M - 1);
  char *big = fill('z', 5 * M), *digits = fill('9', M + 30);
  /* lines and ndjson: the line, its CR of a CRLF not counted */
  check_fmt("lines: at max", LP_STREAM_LINES, M, "%s\r\nb\n", "[%s][b]" OK_, at);
  check_fmt("lines: at max, no line end", LP_STREAM_LINES, M, "a\n%s", "[a][%s]" OK_, at);
  check_fmt("lines: over", LP_STREAM_LINES, M, "a\n%s\r\nb\n", "[a]#too_large dropped=0 retry=-1 id=", over);
  check_fmt("lines: over at the end", LP_STREAM_LINES, M, "a\n%s", "[a]#too_large dropped=0 retry=-1 id=", over);
  check_fmt("lines: over by an inner CR", LP_STREAM_LINES, M, "a\n\r%s\n", "[a]#too_large dropped=0 retry=-1 id=", at);
  check_fmt("ndjson: at max", LP_STREAM_NDJSON, M, "%s\n\n", "[%s]" OK_, at);
  check_fmt("ndjson: over", LP_STREAM_NDJSON, M, "1\n%s\n", "[1]#too_large dropped=0 retry=-1 id=", over);
  /* json-seq: the text from its first byte that is not blank */
  check_fmt("json-seq: at max", LP_STREAM_JSON_SEQ, M, "\x1e  [%s]\r\n\x1e[1]\n",
            "[[%s]][[1]]" OK_, seq_at);
  check_fmt("json-seq: at max by RS", LP_STREAM_JSON_SEQ, M, "\x1e[%s]\x1e[1]\n",
            "[[%s]][[1]]" OK_, seq_at);
  check_fmt("json-seq: over", LP_STREAM_JSON_SEQ, M, "\x1e[1]\n\x1e[%s]\n",
            "[[1]]#too_large dropped=0 retry=-1 id=", seq_over);
  check_fmt("json-seq: over by a space", LP_STREAM_JSON_SEQ, M, "\x1e[%s] \n",
            "#too_large dropped=0 retry=-1 id=", seq_at);
  check_fmt("json-seq: over by a CR before RS", LP_STREAM_JSON_SEQ, M, "\x1e[%s]\r\x1e",
            "#too_large dropped=0 retry=-1 id=", seq_at);
  check_fmt("json-seq: a long cut text is too large, not dropped", LP_STREAM_JSON_SEQ, M,
            "\x1e%s\x1e", "#too_large dropped=0 retry=-1 id=", over);
  /* sse: the data (lines joined), the event type, the id */
  check_fmt("sse: data at max", LP_STREAM_SSE, M, "data: %s\n\n",
            "{" M_ "|-|-1|%s}" OK_, at);
  check_fmt("sse: data at max, no space", LP_STREAM_SSE, M, "data:%s\r\n\r\n",
            "{" M_ "|-|-1|%s}" OK_, at);
  check_fmt("sse: data lines at max", LP_STREAM_SSE, M, "data: %s\ndata: abcd\n\n",
            "{" M_ "|-|-1|%s\nabcd}" OK_, part);
  check_fmt("sse: data over", LP_STREAM_SSE, M, "data: a\n\ndata: %s\n\n",
            "{" M_ "|-|-1|a}#too_large dropped=0 retry=-1 id=", over);
  check_fmt("sse: data lines over", LP_STREAM_SSE, M, "data: %s\ndata: abcde\n\n",
            "#too_large dropped=0 retry=-1 id=", part);
  check_fmt("sse: event at max", LP_STREAM_SSE, M, "event: %s\ndata: 1\n\n",
            "{%s|-|-1|1}" OK_, at);
  check_fmt("sse: event over", LP_STREAM_SSE, M, "event:%s\ndata: 1\n\n",
            "#too_large dropped=0 retry=-1 id=", over);
  check_fmt("sse: id at max", LP_STREAM_SSE, M, "id: %s\ndata: 1\n\n",
            "{" M_ "|%s|-1|1}#ok dropped=0 retry=-1 id=%s", at);
  check_fmt("sse: id over", LP_STREAM_SSE, M, "id: %s\ndata: 1\n\n",
            "#too_large dropped=0 retry=-1 id=", over);
  check_fmt("sse: a long comment is ignored", LP_STREAM_SSE, M, ":%s\ndata: 1\n\n",
            "{" M_ "|-|-1|1}" OK_, big);
  check_fmt("sse: a long unknown field is ignored", LP_STREAM_SSE, M,
            "x: %s\n%s\ndata: 1\n\n", "{" M_ "|-|-1|1}" OK_, big);
  check_fmt("sse: a long retry saturates", LP_STREAM_SSE, M, "retry: %s\n\n",
            "#ok dropped=0 retry=9223372036854775807 id=", digits);
  check_fmt("sse: a long retry with a letter is ignored", LP_STREAM_SSE, M,
            "retry: 7\nretry: %sa\n\n", "#ok dropped=0 retry=7 id=", digits);
  {
    /* an id over max_message with a NUL anywhere is ignored, not too large */
    char in[128];
    size_t n;
    memcpy(in, "id: ", 4);
    memset(in + 4, 'i', 3 * M);
    in[4 + 2 * M] = '\0';
    memcpy(in + 4 + 3 * M, "\ndata: 1\n\n", 10);
    n = 4 + 3 * M + 10;
    check_n("sse: a long id with NUL is ignored", LP_STREAM_SSE, M, in, n,
            STR("{" M_ "|-|-1|1}" OK_));
  }
  free(at); free(over); free(part); free(seq_at); free(seq_over);
  free(big); free(digits);
}

static int stop_after_one(void *ud, const lp_stream_msg *m) {
  int *seen = ud;
  (void)m;
  return ++*seen >= 1;
}

static int count_msg(void *ud, const lp_stream_msg *m) {
  (void)m;
  ++*(unsigned long long *)ud;
  return 0;
}

#define EXPECT(c) do { if (!(c)) { failures++; fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); } } while (0)

static void test_api(void) {
  lp_stream s;
  int seen = 0;
  EXPECT(lp_stream_format_of("sse") == LP_STREAM_SSE);
  EXPECT(lp_stream_format_of("ndjson") == LP_STREAM_NDJSON);
  EXPECT(lp_stream_format_of("json-seq") == LP_STREAM_JSON_SEQ);
  EXPECT(lp_stream_format_of("lines") == LP_STREAM_LINES);
  EXPECT(lp_stream_format_of("SSE") == -1);
  /* a callback that says stop ends the stream, for good */
  lp_stream_init(&s, LP_STREAM_LINES, 10);
  EXPECT(lp_stream_feed(&s, STR("a\nb\n"), stop_after_one, &seen) == LP_STREAM_STOPPED);
  EXPECT(seen == 1);
  EXPECT(lp_stream_feed(&s, STR("c\n"), stop_after_one, &seen) == LP_STREAM_STOPPED);
  EXPECT(lp_stream_finish(&s, stop_after_one, &seen) == LP_STREAM_STOPPED);
  EXPECT(seen == 1);
  lp_stream_free(&s);
}

/* a long stream keeps no more than its unfinished part, and a large message
   leaves no large buffer behind */
static void test_memory(void) {
  static const lp_stream_format fmts[] = {
    LP_STREAM_LINES, LP_STREAM_NDJSON, LP_STREAM_JSON_SEQ, LP_STREAM_SSE
  };
  static const char *const unit[] = {
    "{\"n\":12345,\"text\":\"hello\"}\n", "{\"n\":12345,\"text\":\"hello\"}\n",
    "\x1e{\"n\":12345,\"text\":\"hello\"}\n", "id: 1\ndata: {\"n\":12345}\n\n"
  };
  size_t f;
  for (f = 0; f < 4; f++) {
    lp_stream s;
    unsigned long long got = 0, want = 0;
    size_t ulen = strlen(unit[f]), chunk = 16 * 1024 + 7, big = 1 << 20;
    size_t i, total = 0, maxcap = 0;
    char *buf = malloc(chunk);
    char *huge = malloc(big + 64);
    if (!buf || !huge) abort();
    lp_stream_init(&s, fmts[f], 2 << 20);
    for (i = 0; i < 512; i++) {       /* 8 MiB in chunks cut mid-message */
      size_t off = (i * chunk) % ulen, k;
      for (k = 0; k < chunk; k++) buf[k] = unit[f][(off + k) % ulen];
      EXPECT(lp_stream_feed(&s, buf, chunk, count_msg, &got) == LP_STREAM_OK);
      total += chunk;
      if (s.line.cap > maxcap) maxcap = s.line.cap;
      if (s.data.cap > maxcap) maxcap = s.data.cap;
    }
    want = total / ulen;
    EXPECT(got == want);
    EXPECT(maxcap <= 256);
    /* one message of 1 MiB, then small ones: its buffers are given back */
    {
      size_t n = 0;
      const char *pre = f == 2 ? "\x1e\"" : f == 3 ? "data: " : "\"";
      const char *post = f == 3 ? "\n\n" : "\"\n";
      memcpy(huge, pre, strlen(pre));
      n = strlen(pre);
      memset(huge + n, 'h', big);
      n += big;
      memcpy(huge + n, post, strlen(post));
      n += strlen(post);
      got = 0;
      EXPECT(lp_stream_feed(&s, unit[f] + total % ulen, ulen - total % ulen,
                            count_msg, &got) == LP_STREAM_OK);
      EXPECT(got == 1);
      for (i = 0; i < n; i += 1000)
        EXPECT(lp_stream_feed(&s, huge + i, n - i < 1000 ? n - i : 1000, count_msg, &got) == LP_STREAM_OK);
      EXPECT(lp_stream_feed(&s, unit[f], ulen, count_msg, &got) == LP_STREAM_OK);
      EXPECT(got == 3);
      EXPECT(s.line.cap <= 64 * 1024 && s.data.cap <= 64 * 1024);
    }
    EXPECT(lp_stream_finish(&s, count_msg, &got) == LP_STREAM_OK);
    lp_stream_free(&s);
    free(buf);
    free(huge);
  }
}

int main(void) {
  test_lines();
  test_ndjson();
  test_json_seq();
  test_sse();
  test_max_message();
  test_api();
  test_memory();
  if (failures) {
    fprintf(stderr, "stream: %d failures\n", failures);
    return 1;
  }
  printf("stream: %llu splits ok\n", splits);
  return 0;
}
