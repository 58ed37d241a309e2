#!/usr/bin/env bash
# bench/context.sh: the cost of ctx:cancel() on BENCH_CONTEXT_N (10,000) requests held by
# nginx + Nchan under one longpoll.context (bench/lua/context.lua): the one call as Lua
# sees it, until the worker closed the last connection, until nginx counts them gone; and
# beside it the same requests ended by a Lua loop of req:cancel(). Median of BENCH_RUNS
# (3) runs by cancel_ms. Uses the module in build/ (cmake), nginx on BENCH_PORT (18080).
# Results: bench/out/context_results.txt (RESULT lines).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${BENCH_CONTEXT_N:-10000}
RUNS=${BENCH_RUNS:-3}
BENCH_RESULTS=$BENCH_OUT/context_results.txt
ROOT=$(cd "$BENCH_DIR/.." && pwd)

one_run() {
    bench_nginx_wait_idle 10 >&2 || return 1
    bench_client lua5.4 "$BENCH_DIR/lua/context.lua" "$N" "$BENCH_URL" "$(bench_channel ctx)"
}

main() {
    bench_init
    bench_raise_nofile 30000
    (cd "$ROOT" && cmake -S . -B build >/dev/null && cmake --build build --target core) >&2 || return 1
    export LUA_PATH="$ROOT/lua/?.lua;;" LUA_CPATH="$ROOT/build/?.so;;"
    bench_nginx_start || return 1
    trap bench_nginx_stop EXIT
    bench_log "== ctx:cancel() on $N held requests, $RUNS runs, median by cancel_ms (~10 s each)"
    bench_median cancel_ms "$RUNS" one_run
}

main "$@"
