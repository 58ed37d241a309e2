#!/usr/bin/env bash
# bench/peers.sh: the peer benchmarks our module is compared against (see bench/README.md).
# Builds them, starts nginx (stopped again on exit), runs each peer, prints a table and the
# RESULT lines (also kept in bench/out/results.txt). Takes about a minute.
#
# Knobs (env): BENCH_PORT/BENCH_H2_PORT (18080/18081), BENCH_RUNS (5: runs per sequential
# figure, the median is kept), BENCH_SEQ_N (5000), BENCH_CANCEL_N (1000),
# BENCH_PENDING_N (10000), BENCH_PROGRESS_N (20), BENCH_PIN (1: nginx on the last CPU,
# clients on the others; 0: let the scheduler place them), BENCH_ONLY (space-separated subset of:
# seq cancel pending).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${BENCH_RUNS:-5}
SEQ_N=${BENCH_SEQ_N:-5000}
CANCEL_N=${BENCH_CANCEL_N:-1000}
PENDING_N=${BENCH_PENDING_N:-10000}
PROGRESS_N=${BENCH_PROGRESS_N:-20}
ONLY=${BENCH_ONLY:-seq cancel pending}

want() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

peers_seq() {
    local small=$BENCH_URL/small.json
    bench_log "== sequential GETs of /small.json: median of $RUNS runs of $SEQ_N requests"
    bench_median req_s "$RUNS" bench_client "$BENCH_BUILD/raw_curl" seq "$SEQ_N" "$small" || return 1
    bench_median req_s "$RUNS" bench_client "$BENCH_BUILD/go_peer" seq -n "$SEQ_N" -url "$small" || return 1
    bench_median req_s "$RUNS" bench_client lua5.4 "$BENCH_DIR/peers/luasocket.lua" "$SEQ_N" "$small" || return 1
}

peers_cancel() {
    local st=$BENCH_URL/nchan_status
    bench_log "== cancel latency of one held request"
    bench_run bench_client "$BENCH_BUILD/go_peer" cancel -n "$CANCEL_N" -url "$BENCH_URL/sub/$(bench_channel gc)" \
        -status "$st" -samples "$BENCH_OUT/go_cancel.txt" || return 1
    bench_nginx_wait_idle 10
    bench_log "   (libcurl progress flag: $PROGRESS_N samples at 50 ms, then $((PROGRESS_N / 2)) at a random phase; ~25 s)"
    bench_run bench_client "$BENCH_BUILD/progress_cancel" "$PROGRESS_N" "$BENCH_URL/sub/$(bench_channel pc)" 50 || return 1
    bench_run bench_client "$BENCH_BUILD/progress_cancel" "$((PROGRESS_N / 2))" "$BENCH_URL/sub/$(bench_channel pr)" 50 1000 || return 1
}

peers_pending() {
    local st=$BENCH_URL/nchan_status
    bench_log "== $PENDING_N held requests: RSS each, cancel-all (median of 3 on cancel_all_ms)"
    bench_nginx_wait_idle 10
    bench_median cancel_all_ms 3 bench_pending_one raw_curl || return 1
    bench_median cancel_all_ms 3 bench_pending_one go || return 1
}

bench_pending_one() {
    bench_nginx_wait_idle 10 >&2 || return 1
    case $1 in
    raw_curl) bench_client "$BENCH_BUILD/raw_curl" pending "$PENDING_N" "$BENCH_URL/sub/$(bench_channel rp)" \
                  "$BENCH_URL/nchan_status" ;;
    go)       bench_client "$BENCH_BUILD/go_peer" pending -n "$PENDING_N" -url "$BENCH_URL/sub/$(bench_channel gp)" \
                  -status "$BENCH_URL/nchan_status" ;;
    esac
}

peers_table() {
    local g=go_cancel p=curl_progress_cancel pr=curl_progress_cancel_random
    printf '\n%-44s %-22s %-13s %s\n' "peer" "cancel p50 / p99" "seq req/s" "${PENDING_N} pending: RSS each, cancel-all"
    printf '%-44s %-22s %-13s %s\n' "Go net/http + context.WithCancel" \
        "$(bench_fmt_us "$(bench_get $g p50_us)") / $(bench_fmt_us "$(bench_get $g p99_us)")" \
        "$(bench_fmt_int "$(bench_get go_seq req_s)")" \
        "$(bench_get go_pending rss_kib_each) KiB, $(bench_get go_pending cancel_all_ms) ms"
    printf '%-44s %-22s %-13s %s\n' "libcurl easy + progress flag (set at 50 ms)" \
        "$(bench_fmt_us "$(bench_get $p p50_us)") / $(bench_fmt_us "$(bench_get $p p99_us)")" "-" "-"
    printf '%-44s %-22s %-13s %s\n' "  same, flag set at a random phase" \
        "$(bench_fmt_us "$(bench_get $pr p50_us)") / $(bench_fmt_us "$(bench_get $pr p99_us)")" "-" "-"
    printf '%-44s %-22s %-13s %s\n' "raw libcurl, reused easy handle, no decode" "-" \
        "$(bench_fmt_int "$(bench_get raw_curl_seq req_s)")" \
        "$(bench_get raw_curl_pending rss_kib_each) KiB, $(bench_get raw_curl_pending cancel_all_ms) ms (multi)"
    printf '%-44s %-22s %-13s %s\n' "LuaSocket socket.http + lua-cjson" "no cancel" \
        "$(bench_fmt_int "$(bench_get luasocket_seq req_s)")" "-"
    if [ "$BENCH_PIN" = 1 ]; then
        printf '(nginx worker pinned to CPU %d, clients to CPUs 0-%d; BENCH_PIN=0 unpins)\n\n' \
            $((BENCH_NCPU - 1)) $((BENCH_NCPU - 2))
    else
        printf '(not pinned: client and nginx share %d CPUs as the scheduler places them)\n\n' "$BENCH_NCPU"
    fi
}

main() {
    local t0=$SECONDS rc=0
    bench_init
    bench_raise_nofile 30000
    bench_log "ulimit -n $(ulimit -n), $BENCH_NCPU CPUs, BENCH_PIN=$BENCH_PIN"
    bench_build || exit 1
    trap 'bench_nginx_stop' EXIT
    trap 'exit 130' INT TERM
    bench_nginx_start "$BENCH_PORT" "$BENCH_H2_PORT" || exit 1
    if want seq; then peers_seq || rc=1; fi
    if want cancel; then peers_cancel || rc=1; fi
    if want pending; then peers_pending || rc=1; fi
    peers_table
    bench_results
    bench_log "peers.sh: $((SECONDS - t0)) s, results in $BENCH_RESULTS"
    return $rc
}

# run only when executed, so run.sh can source this file and reuse peers_* functions
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
