#!/usr/bin/env bash
# bench/stream.sh: stream-mode throughput (issue 10). One local nginx serves a long NDJSON
# body and the same messages as SSE (static files written here into its html/); each reader
# GETs it and reports messages per second, median of BENCH_RUNS runs (each the best of one
# timed read after a warm-up):
#   stream_curl   raw libcurl, splits lines only (no decode, no copy): the floor
#   lp_stream_curl  the same reader with longpoll's splitter (csrc/lp_stream.c), no Lua
#   go_peer       bufio.Scanner + encoding/json (SSE: data lines joined, decoded)
#   longpoll      bench/lua/stream.lua: stream = "ndjson" | "sse", decode "json", every
#                 message taken in Lua (when the module has stream mode)
# Knobs: BENCH_STREAM_N (messages, 500000), BENCH_RUNS (5), BENCH_PORT (18080).
# Results: bench/out/stream_results.txt (RESULT lines), a table on stdout.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STREAM_N=${BENCH_STREAM_N:-500000}
RUNS=${BENCH_RUNS:-5}
BENCH_RESULTS=$BENCH_OUT/stream_results.txt

# stream_files DIR N: DIR/stream.ndjson and DIR/stream.sse, N messages of ~90 bytes each
stream_files() {
    lua5.4 - "$1" "$2" <<'EOF'
local dir, n = arg[1], tonumber(arg[2])
local nd = assert(io.open(dir .. "/stream.ndjson", "wb"))
local sse = assert(io.open(dir .. "/stream.sse", "wb"))
for i = 1, n do
  local m = ('{"id":%d,"user":"user%d","text":"hello from the stream, message %d","ts":%d.%03d}')
    :format(i, i % 1000, i, 1700000000 + i // 1000, i % 1000)
  nd:write(m, "\n")
  sse:write("id: ", i, "\ndata: ", m, "\n\n")
end
nd:close()
sse:close()
EOF
}

main() {
    local rc=0 fmt lua_ok=0
    bench_init
    bench_raise_nofile 4096
    bench_build || return 1
    bench_nginx_start || return 1
    trap bench_nginx_stop EXIT
    bench_log "== writing $STREAM_N messages as NDJSON and SSE into $NGINX_PREFIX/html"
    stream_files "$NGINX_PREFIX/html" "$STREAM_N" || return 1
    chmod a+r "$NGINX_PREFIX/html/"stream.*
    bench_log "   $(du -h "$NGINX_PREFIX/html/stream.ndjson" | cut -f1) NDJSON, $(du -h "$NGINX_PREFIX/html/stream.sse" | cut -f1) SSE"
    if lua5.4 -e 'package.cpath = "'"$BENCH_DIR"'/../build/?.so;" .. package.cpath
                  package.path = "'"$BENCH_DIR"'/../lua/?.lua;" .. package.path
                  local lp = require "longpoll"
                  assert(require("longpoll.core").options.stream)' 2>/dev/null; then
        lua_ok=1
    else
        bench_log "   (longpoll has no stream mode in build/: its rows are skipped)"
    fi
    for fmt in ndjson sse; do
        local url=$BENCH_URL/stream.$fmt
        bench_log "== $fmt: $url"
        bench_median msg_s "$RUNS" bench_client "$BENCH_BUILD/stream_curl" "$fmt" "$url" || rc=1
        bench_median msg_s "$RUNS" bench_client "$BENCH_BUILD/lp_stream_curl" "$fmt" "$url" || rc=1
        bench_median msg_s "$RUNS" bench_client "$BENCH_BUILD/go_peer" stream -n 1 -fmt "$fmt" -url "$url" || rc=1
        if [ $lua_ok = 1 ]; then
            bench_median msg_s "$RUNS" bench_client lua5.4 "$BENCH_DIR/lua/stream.lua" "$fmt" "$url" || rc=1
        fi
    done
    printf '\n| reader | NDJSON msg/s | SSE msg/s |\n|---|---|---|\n'
    printf '| raw libcurl, split lines only | %s | %s |\n' \
        "$(bench_fmt_int "$(bench_get raw_curl_stream_ndjson msg_s)")" \
        "$(bench_fmt_int "$(bench_get raw_curl_stream_sse msg_s)")"
    printf '| longpoll splitter (C) under libcurl, no Lua | %s | %s |\n' \
        "$(bench_fmt_int "$(bench_get lp_stream_curl_ndjson msg_s)")" \
        "$(bench_fmt_int "$(bench_get lp_stream_curl_sse msg_s)")"
    printf '| Go bufio.Scanner + encoding/json | %s | %s |\n' \
        "$(bench_fmt_int "$(bench_get go_stream_ndjson msg_s)")" \
        "$(bench_fmt_int "$(bench_get go_stream_sse msg_s)")"
    printf '| longpoll stream, decode json, Lua 5.4 | %s | %s |\n' \
        "$(bench_fmt_int "$(bench_get longpoll_stream_ndjson msg_s)")" \
        "$(bench_fmt_int "$(bench_get longpoll_stream_sse msg_s)")"
    return $rc
}

main "$@"
