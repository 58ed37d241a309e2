/* bench/peers/stream_curl.c: the raw libcurl stream reader, the floor for stream mode.
 *
 *   stream_curl ndjson|sse URL [RUNS]
 *       GETs URL (a long NDJSON or SSE body) with one reused easy handle, RUNS times
 *       (default 1) after one warm-up, and only splits lines: the write callback finds
 *       each LF with memchr, carrying a partial line over to the next call. No JSON
 *       decode, no message copy. For ndjson every line is a message; for sse every
 *       blank line ends one. Prints the best run:
 *       RESULT raw_curl_stream_<fmt> msgs= msg_s= mib_s= ms=
 *
 * Built a second time with -DWITH_LP_STREAM (bench/Makefile: lp_stream_curl), the write
 * callback hands the bytes to longpoll's splitter (csrc/lp_stream.c) instead, which
 * emits each message (SSE: with its event and id) without Lua or a queue:
 *       RESULT lp_stream_curl_<fmt> msgs= msg_s= mib_s= ms=
 */
#include <curl/curl.h>

#include "common.h"
#ifdef WITH_LP_STREAM
#include "lp_stream.h"
#define NAME "lp_stream_curl"
#else
#define NAME "raw_curl_stream"
#endif

typedef struct counter {
    int sse;
    int mid_line;               /* the last call ended inside a line */
    size_t bytes, lines, msgs;
#ifdef WITH_LP_STREAM
    lp_stream s;
#endif
} counter;

#ifdef WITH_LP_STREAM
static int count_msg(void *ud, const lp_stream_msg *m)
{
    counter *c = ud;
    c->msgs += m->len > 0;
    return 0;
}

static size_t split_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    counter *c = ud;
    size_t n = size * nmemb;
    c->bytes += n;
    return lp_stream_feed(&c->s, p, n, count_msg, c) == LP_STREAM_OK ? n : 0;
}
#else
static size_t split_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    counter *c = ud;
    size_t n = size * nmemb;
    const char *end = p + n, *q = p;
    c->bytes += n;
    while (q < end) {
        const char *lf = memchr(q, '\n', (size_t)(end - q));
        if (!lf) {
            c->mid_line = 1;
            break;
        }
        if (!c->sse || (lf == q && !c->mid_line))
            c->msgs++;          /* sse: an empty line ends a message */
        c->lines++;
        c->mid_line = 0;
        q = lf + 1;
    }
    return n;
}
#endif

static int one_run(CURL *h, counter *c, double *ms)
{
    int sse = c->sse;
    long status = 0;
    double t0 = now_us();
    CURLcode rc;
    memset(c, 0, sizeof *c);
    c->sse = sse;
#ifdef WITH_LP_STREAM
    lp_stream_init(&c->s, sse ? LP_STREAM_SSE : LP_STREAM_NDJSON, 1 << 20);
#endif
    rc = curl_easy_perform(h);
#ifdef WITH_LP_STREAM
    if (rc == CURLE_OK && lp_stream_finish(&c->s, count_msg, c) != LP_STREAM_OK)
        rc = CURLE_WRITE_ERROR;
    lp_stream_free(&c->s);
#endif
    *ms = (now_us() - t0) / 1e3;
    if (rc != CURLE_OK) {
        fprintf(stderr, "stream_curl: %s\n", curl_easy_strerror(rc));
        return 1;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        fprintf(stderr, "stream_curl: HTTP %ld\n", status);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    counter c;
    double ms, best = -1;
    size_t msgs = 0, bytes = 0;
    int runs, i;
    CURL *h;
    if (argc < 3 || (strcmp(argv[1], "ndjson") != 0 && strcmp(argv[1], "sse") != 0)) {
        fprintf(stderr, "usage: stream_curl ndjson|sse URL [RUNS]\n");
        return 2;
    }
    runs = argc > 3 ? atoi(argv[3]) : 1;
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK || !(h = curl_easy_init()))
        return 1;
    memset(&c, 0, sizeof c);
    c.sse = strcmp(argv[1], "sse") == 0;
    curl_easy_setopt(h, CURLOPT_URL, argv[2]);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, split_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (one_run(h, &c, &ms))    /* warm-up: connect, page cache, allocations */
        return 1;
    for (i = 0; i < runs; i++) {
        if (one_run(h, &c, &ms))
            return 1;
        if (best < 0 || ms < best) {
            best = ms;
            msgs = c.msgs;
            bytes = c.bytes;
        }
    }
    printf("RESULT " NAME "_%s msgs=%zu msg_s=%.0f mib_s=%.1f ms=%.1f\n", argv[1], msgs,
           (double)msgs / (best / 1e3), (double)bytes / (1 << 20) / (best / 1e3), best);
    curl_easy_cleanup(h);
    curl_global_cleanup();
    return 0;
}
