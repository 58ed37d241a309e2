/* bench/peers/raw_curl.c: the raw libcurl peer, the floor a libcurl-based module can reach.
 *
 *   raw_curl seq N URL
 *       One reused easy handle (keep-alive), N sequential GETs, body counted and dropped
 *       (no JSON decode). Prints  RESULT raw_curl_seq n= req_s= us_each= bytes=
 *
 *   raw_curl pending N URL [STATUS_URL]
 *       A multi handle with N concurrent GETs of a holding URL (an Nchan /sub/<id> that
 *       nobody publishes to). Waits (bounded) until every request is sent and, when
 *       STATUS_URL (nginx nchan_stub_status) is given, until the server counts N more
 *       subscribers. Then RSS delta per request (VmRSS, includes the easy handles, their
 *       buffers and sockets) and the time to cancel all: curl_multi_remove_handle +
 *       curl_easy_cleanup of every handle. Prints
 *       RESULT raw_curl_pending n= rss_kib_each= cancel_all_ms= held_ms= multi_cleanup_ms=
 *
 * Needs ulimit -n > N + a few.
 */
#include <curl/curl.h>
#include <malloc.h>

#include "common.h"

static size_t count_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    *(size_t *)userdata += size * nmemb;
    return size * nmemb;
}

static int run_seq(long n, const char *url)
{
    size_t bytes = 0;
    long status = 0;
    CURL *h = curl_easy_init();
    if (!h)
        return 1;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, count_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &bytes);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);

    for (int i = 0; i < 20; i++) { /* warm-up: connect, first allocations */
        CURLcode rc = curl_easy_perform(h);
        if (rc != CURLE_OK) {
            fprintf(stderr, "raw_curl: %s: %s\n", url, curl_easy_strerror(rc));
            return 1;
        }
    }
    bytes = 0;
    double t0 = now_us();
    for (long i = 0; i < n; i++) {
        CURLcode rc = curl_easy_perform(h);
        if (rc != CURLE_OK) {
            fprintf(stderr, "raw_curl: request %ld: %s\n", i, curl_easy_strerror(rc));
            return 1;
        }
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200) {
            fprintf(stderr, "raw_curl: request %ld: HTTP %ld\n", i, status);
            return 1;
        }
    }
    double secs = (now_us() - t0) / 1e6;
    long conns = 0;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns); /* of the last transfer: 0 = reused */
    curl_easy_cleanup(h);
    printf("RESULT raw_curl_seq n=%ld req_s=%.0f us_each=%.1f bytes=%zu secs=%.3f "
           "last_new_conns=%ld\n",
           n, n / secs, secs * 1e6 / n, bytes / (size_t)n, secs, conns);
    return 0;
}

static int run_pending(long n, const char *url, const char *status_url)
{
    long base_subs = status_url ? nchan_subscribers(status_url) : -1;
    if (status_url && base_subs < 0) {
        fprintf(stderr, "raw_curl: cannot read %s\n", status_url);
        return 1;
    }
    CURLM *m = curl_multi_init();
    CURL **hs = calloc((size_t)n, sizeof *hs);
    size_t sink = 0;
    if (!m || !hs)
        return 1;

    long rss0 = rss_kib();
    struct mallinfo2 mi0 = mallinfo2();
    double t_start = now_us();
    for (long i = 0; i < n; i++) {
        hs[i] = curl_easy_init();
        if (!hs[i])
            return 1;
        curl_easy_setopt(hs[i], CURLOPT_URL, url);
        curl_easy_setopt(hs[i], CURLOPT_WRITEFUNCTION, count_cb);
        curl_easy_setopt(hs[i], CURLOPT_WRITEDATA, &sink);
        curl_easy_setopt(hs[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(hs[i], CURLOPT_PRIVATE, (char *)hs[i]);
        curl_multi_add_handle(m, hs[i]);
    }

    /* drive the transfers until every request has been sent (bounded: 30 s) */
    int running = 0, all_sent = 0, finished = 0;
    double deadline = now_us() + 30e6;
    while (now_us() < deadline) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)))
            if (msg->msg == CURLMSG_DONE) {
                if (finished++ < 5)
                    fprintf(stderr, "raw_curl: a held request ended early: %s\n",
                            curl_easy_strerror(msg->data.result));
            }
        if (finished)
            break;
        long sent = 0;
        for (long i = 0; i < n; i++) {
            curl_off_t reqsize = 0;
            curl_easy_getinfo(hs[i], CURLINFO_REQUEST_SIZE, &reqsize);
            sent += reqsize > 0;
        }
        if (sent == n) {
            all_sent = 1;
            break;
        }
        curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    if (!all_sent || finished) {
        fprintf(stderr, "raw_curl: only some of %ld requests were sent (finished early: %d)\n",
                n, finished);
        return 1;
    }
    /* then until nginx holds them all (keep servicing the sockets meanwhile) */
    if (status_url) {
        long subs = -1;
        while (now_us() < deadline) {
            subs = nchan_subscribers(status_url);
            if (subs >= base_subs + n)
                break;
            curl_multi_perform(m, &running);
            curl_multi_poll(m, NULL, 0, 20, NULL);
        }
        if (subs < base_subs + n) {
            fprintf(stderr, "raw_curl: server holds %ld of %ld\n", subs - base_subs, n);
            return 1;
        }
    }
    curl_multi_perform(m, &running);
    double held_ms = (now_us() - t_start) / 1e3;
    long rss1 = rss_kib();
    struct mallinfo2 mi1 = mallinfo2();
    if (running != n) {
        fprintf(stderr, "raw_curl: %d of %ld still running\n", running, n);
        return 1;
    }

    double t0 = now_us();
    for (long i = 0; i < n; i++) {
        curl_multi_remove_handle(m, hs[i]);
        curl_easy_cleanup(hs[i]);
    }
    double t1 = now_us();
    curl_multi_cleanup(m);
    double t2 = now_us();
    free(hs);

    printf("RESULT raw_curl_pending n=%ld rss_kib_each=%.1f cancel_all_ms=%.1f held_ms=%.0f "
           "multi_cleanup_ms=%.2f rss_delta_kib=%ld heap_bytes_each=%.0f\n",
           n, (double)(rss1 - rss0) / n, (t1 - t0) / 1e3, held_ms, (t2 - t1) / 1e3,
           rss1 - rss0, ((double)(mi1.uordblks + mi1.hblkhd) -
                         (double)(mi0.uordblks + mi0.hblkhd)) / n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "seq") && strcmp(argv[1], "pending"))) {
        fprintf(stderr, "usage: %s seq N URL | pending N URL [STATUS_URL]\n", argv[0]);
        return 2;
    }
    long n = parse_count(argv[2], "N");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = strcmp(argv[1], "seq") == 0 ? run_seq(n, argv[3])
                                         : run_pending(n, argv[3], argc > 4 ? argv[4] : NULL);
    curl_global_cleanup();
    return rc;
}
