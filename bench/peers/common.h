/* bench/peers/common.h: tiny helpers shared by the C peer benchmarks. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static inline void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* VmRSS of this process in KiB, from /proc/self/status; -1 if unreadable. */
static inline long rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* nearest-rank percentile of a sorted array, p in (0,100] */
static inline double percentile(const double *sorted, int n, double p)
{
    int k = (int)((p / 100.0) * n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return sorted[k - 1];
}

static inline long parse_count(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0) {
        fprintf(stderr, "bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

/* "subscribers: N" from nchan_stub_status; -1 on failure */
static inline long nchan_subscribers(const char *status_url)
{
    char buf[4096] = "";
    long n = -1;
    FILE *mem = fmemopen(buf, sizeof buf - 1, "w"); /* libcurl's default writer: fwrite */
    CURL *h = curl_easy_init();
    if (!h || !mem) {
        if (mem)
            fclose(mem);
        curl_easy_cleanup(h);
        return -1;
    }
    curl_easy_setopt(h, CURLOPT_URL, status_url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, mem);
    CURLcode rc = curl_easy_perform(h);
    fclose(mem);
    curl_easy_cleanup(h);
    buf[sizeof buf - 1] = '\0';
    if (rc == CURLE_OK) {
        char *s = strstr(buf, "\nsubscribers:");
        if (s)
            n = strtol(s + 13, NULL, 10);
    }
    return n;
}

#endif
