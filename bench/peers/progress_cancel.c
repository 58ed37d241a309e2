/* bench/peers/progress_cancel.c: how Lua bindings usually cancel a libcurl request.
 *
 *   progress_cancel N URL [WAIT_MS [JITTER_MS]]
 *
 * Per sample: a new easy handle runs curl_easy_perform on its own thread, with
 * CURLOPT_XFERINFOFUNCTION returning nonzero once an atomic flag is set. The main thread
 * lets the request get held by the server (URL: an Nchan /sub/<id> nobody publishes to)
 * for WAIT_MS (default 50) plus a random 0..JITTER_MS (default 0), sets the flag at t0;
 * the worker notes t1 when curl_easy_perform returns (CURLE_ABORTED_BY_CALLBACK).
 * Prints the latencies t1 - t0 (name curl_progress_cancel_random when JITTER_MS > 0):
 *   RESULT curl_progress_cancel n= wait_ms= jitter_ms= p50_us= p99_us= max_us= min_us=
 *
 * libcurl calls the progress callback only when it wakes up: on socket activity, on one of
 * its timers, and at the latest once a second while idle (curl_easy_perform polls with a
 * 1000 ms cap). So the latency is "time to the next wake-up": hundreds of ms. Keep N small
 * (a sample takes WAIT_MS + up to 1 s); with N = 20, p99 is the maximum.
 * Beware the phase: libcurl 7.88 leaves its happy-eyeballs timer (200 ms after the connect
 * started, CURLOPT_HAPPY_EYEBALLS_TIMEOUT_MS) armed, and it wakes the transfer once. A flag
 * set at 50 ms is therefore seen at ~200 ms (latency ~150 ms, the same every time); one set
 * after 200 ms waits for the next 1 s idle tick. JITTER_MS 1000 samples the phase at random.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

struct sample {
    const char *url;
    atomic_int cancel;
    double t_end;
    CURLcode rc;
    long progress_calls;
};

static size_t drop_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

static int xferinfo_cb(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct sample *s = p;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    s->progress_calls++;
    return atomic_load(&s->cancel) ? 1 : 0;
}

static void *worker(void *p)
{
    struct sample *s = p;
    CURL *h = curl_easy_init();
    if (!h) {
        s->rc = CURLE_OUT_OF_MEMORY;
        s->t_end = now_us();
        return NULL;
    }
    curl_easy_setopt(h, CURLOPT_URL, s->url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, drop_cb);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L); /* bound: a lost flag can't hang the run */
    s->rc = curl_easy_perform(h);
    s->t_end = now_us();
    curl_easy_cleanup(h);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s N URL [WAIT_MS [JITTER_MS]]\n", argv[0]);
        return 2;
    }
    long n = parse_count(argv[1], "N");
    const char *url = argv[2];
    long wait_ms = argc > 3 ? strtol(argv[3], NULL, 10) : 50;
    long jitter_ms = argc > 4 ? strtol(argv[4], NULL, 10) : 0;
    double *lat = calloc((size_t)n, sizeof *lat);
    long calls = 0;
    if (!lat)
        return 1;
    srand((unsigned)now_us());
    curl_global_init(CURL_GLOBAL_DEFAULT);

    for (long i = 0; i < n; i++) {
        struct sample s = { .url = url, .rc = CURLE_OK };
        pthread_t th;
        atomic_init(&s.cancel, 0);
        if (pthread_create(&th, NULL, worker, &s) != 0)
            return 1;
        sleep_ms(wait_ms + (jitter_ms > 0 ? rand() % (jitter_ms + 1) : 0));
        double t0 = now_us();
        atomic_store(&s.cancel, 1);
        pthread_join(th, NULL);
        if (s.rc != CURLE_ABORTED_BY_CALLBACK) {
            fprintf(stderr, "progress_cancel: sample %ld ended with %s, not an abort "
                    "(is the URL a hold?)\n", i, curl_easy_strerror(s.rc));
            return 1;
        }
        lat[i] = s.t_end - t0;
        calls += s.progress_calls;
    }
    curl_global_cleanup();
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    printf("RESULT %s n=%ld wait_ms=%ld jitter_ms=%ld p50_us=%.0f "
           "p99_us=%.0f max_us=%.0f min_us=%.0f progress_calls_each=%.1f\n",
           jitter_ms > 0 ? "curl_progress_cancel_random" : "curl_progress_cancel", n, wait_ms,
           jitter_ms, percentile(lat, (int)n, 50), percentile(lat, (int)n, 99),
           lat[n - 1], lat[0], (double)calls / n);
    return 0;
}
