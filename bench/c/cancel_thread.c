/* bench/c/cancel_thread.c: cancel latency of the lua-longpoll engine across OS threads.
 *
 *   cancel_thread N URL STATUS_URL [SAMPLES_FILE]
 *
 * Links csrc/lp_engine.c directly (no Lua). N requests to URL (an Nchan /sub/<id> nobody
 * publishes to) are started on the engine; "held" is checked: nginx's nchan_stub_status at
 * STATUS_URL must count N more subscribers, and none may have finished. Then, one at a time:
 * a waiter thread blocks in lp_req_wait(r[i], ...); once it is registered on the request and
 * asleep (its /proc task state is S), the main thread takes t0 and calls lp_req_cancel(r[i]);
 * the waiter takes t1 as soon as lp_req_wait returns. t1 - t0 is the figure comparable to Go's
 * "cancel() on one goroutine, the goroutine blocked in client.Do sees context.Canceled".
 * Also the engine worker's CPU time per cancel (schedstat of the threads other than main and
 * waiter, over the cancel loop plus 50 ms), which shows what the worker does per wake-up.
 * Prints
 *   RESULT longpoll_cancel_thread n= p50_us= p99_us= max_us= min_us= mean_us= held_ms=
 *          worker_us_per_cancel=
 * and writes every latency (µs, one a line) to SAMPLES_FILE.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lp_engine.h"
#include "../peers/common.h"

static lp_req **g_reqs;
static sem_t g_go, g_done;
static atomic_int g_idx = -1;
static atomic_int g_tid;
static double g_t1;
static int g_woke;

static void *waiter_main(void *arg)
{
    (void)arg;
    atomic_store(&g_tid, (int)syscall(SYS_gettid));
    for (;;) {
        sem_wait(&g_go);
        int i = atomic_load(&g_idx);
        if (i < 0)
            return NULL;
        g_woke = lp_req_wait(g_reqs[i], 30.0); /* bounded: a lost wake-up can't hang */
        g_t1 = now_us();
        sem_post(&g_done);
    }
}

/* the scheduler state letter of thread tid ('S': asleep), or '?' */
static char task_state(int tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

/* on-CPU ns of every thread of this process except the two given (/proc/self/task) */
static double others_cpu_ns(int skip1, int skip2)
{
    double total = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    if (!d)
        return -1;
    while ((de = readdir(d))) {
        int tid = atoi(de->d_name);
        char path[64];
        unsigned long long ns = 0;
        if (tid <= 0 || tid == skip1 || tid == skip2)
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", tid);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%llu", &ns) == 1)
                total += (double)ns;
            fclose(f);
        }
    }
    closedir(d);
    return total;
}

static int registered(lp_req *r)
{
    pthread_mutex_lock(&r->mu);
    int yes = r->notify.waiters != NULL;
    pthread_mutex_unlock(&r->mu);
    return yes;
}

/* a record set up the way csrc/longpoll.c's request_new does for a plain GET */
static lp_req *new_get(const char *url)
{
    lp_req *r = lp_req_new(NULL, 0);
    if (!r)
        return NULL;
    r->opts.url = strdup(url);
    r->opts.method = strdup("GET");
    r->opts.user_agent = strdup("lua-longpoll/bench");
    r->opts.connect_timeout_ms = 10000;
    r->opts.timeout_ms = 0;
    r->opts.max_body = 16 * 1024 * 1024;
    r->opts.follow_redirects = 1;
    r->opts.verify = 1;
    if (!r->opts.url || !r->opts.method || !r->opts.user_agent) {
        lp_req_release(r);
        return NULL;
    }
    return r;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s N URL STATUS_URL [SAMPLES_FILE]\n", argv[0]);
        return 2;
    }
    long n = parse_count(argv[1], "N");
    const char *url = argv[2], *status_url = argv[3];
    const char *samples = argc > 4 ? argv[4] : NULL;
    double *lat = calloc((size_t)n, sizeof *lat);
    g_reqs = calloc((size_t)n, sizeof *g_reqs);
    if (!lat || !g_reqs)
        return 1;

    lp_engine *e = lp_engine_acquire(); /* does curl_global_init */
    if (!e) {
        fprintf(stderr, "cancel_thread: engine did not start\n");
        return 1;
    }
    long subs0 = nchan_subscribers(status_url);
    if (subs0 < 0) {
        fprintf(stderr, "cancel_thread: cannot read %s\n", status_url);
        return 1;
    }
    double t_start = now_us();
    for (long i = 0; i < n; i++) {
        if (!(g_reqs[i] = new_get(url)) || !lp_req_start(e, g_reqs[i])) {
            fprintf(stderr, "cancel_thread: could not start request %ld\n", i);
            return 1;
        }
    }
    long subs = -1;
    for (int k = 0; k < 1500; k++) { /* up to 30 s */
        subs = nchan_subscribers(status_url);
        if (subs >= subs0 + n)
            break;
        sleep_ms(20);
    }
    if (subs < subs0 + n) {
        fprintf(stderr, "cancel_thread: nginx holds %ld of %ld\n", subs - subs0, n);
        return 1;
    }
    for (long i = 0; i < n; i++)
        if (lp_state_finished(lp_req_state(g_reqs[i]))) {
            fprintf(stderr, "cancel_thread: request %ld finished before cancel (%s)\n", i,
                    lp_kind_name(g_reqs[i]->kind));
            return 1;
        }
    double held_ms = (now_us() - t_start) / 1e3;

    pthread_t th;
    sem_init(&g_go, 0, 0);
    sem_init(&g_done, 0, 0);
    if (pthread_create(&th, NULL, waiter_main, NULL) != 0)
        return 1;
    while (atomic_load(&g_tid) == 0)
        usleep(100);
    int main_tid = (int)syscall(SYS_gettid);
    double worker0 = others_cpu_ns(main_tid, atomic_load(&g_tid));
    for (long i = 0; i < n; i++) {
        lp_req *r = g_reqs[i];
        atomic_store(&g_idx, (int)i);
        sem_post(&g_go);
        int k, tid;
        for (k = 0; k < 20000 && !registered(r); k++) /* up to ~1 s */
            usleep(50);
        tid = atomic_load(&g_tid);
        for (; k < 40000 && task_state(tid) != 'S'; k++) /* asleep in the futex */
            usleep(50);
        if (!registered(r) || task_state(tid) != 'S') {
            fprintf(stderr, "cancel_thread: the waiter did not block on request %ld\n", i);
            return 1;
        }
        double t0 = now_us();
        int ended = lp_req_cancel(r);
        sem_wait(&g_done);
        lat[i] = g_t1 - t0;
        if (!ended || !g_woke || lp_req_state(r) != LP_CANCELED) {
            fprintf(stderr, "cancel_thread: request %ld: cancel %d, woke %d, state %d\n", i,
                    ended, g_woke, (int)lp_req_state(r));
            return 1;
        }
    }
    sleep_ms(50);               /* the worker tears the last transfers down */
    double worker_ns = others_cpu_ns(main_tid, atomic_load(&g_tid)) - worker0;
    atomic_store(&g_idx, -1);
    sem_post(&g_go);
    pthread_join(th, NULL);

    if (samples) {
        FILE *f = fopen(samples, "w");
        if (!f) {
            perror(samples);
            return 1;
        }
        for (long i = 0; i < n; i++)
            fprintf(f, "%.2f\n", lat[i]);
        fclose(f);
    }
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += lat[i];
    for (long i = 0; i < n; i++)
        lp_req_release(g_reqs[i]);
    lp_engine_release(e); /* joins the worker */
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    printf("RESULT longpoll_cancel_thread n=%ld p50_us=%.1f p99_us=%.1f max_us=%.1f "
           "min_us=%.1f mean_us=%.1f held_ms=%.0f worker_us_per_cancel=%.1f\n",
           n, percentile(lat, (int)n, 50), percentile(lat, (int)n, 99), lat[n - 1], lat[0],
           sum / n, held_ms, worker_ns / 1e3 / n);
    free(lat);
    free(g_reqs);
    return 0;
}
