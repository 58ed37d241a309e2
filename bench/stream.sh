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
# Then, with the module:
#   latency       bench/lua/stream_latency.lua: a publish (POST to Nchan) to the message
#                 taken by req:next() from an EventSource stream, p50/p99 of 1000
#   memory        bench/lua/stream_rss.lua: the spec server sends BENCH_RSS_MIB (1024) MiB as
#                 64 KiB lines as fast as it can; a reader sleeping 1 ms after each message,
#                 max_queued = 64; VmRSS every 64 MiB -> out/stream_rss.txt (MiB, KiB),
#                 plotted to out/stream_rss.png and docs/stream_rss.png
# The module is built from this tree (cmake build/) and copied to .build/mod-stream/ first.
# Knobs: BENCH_STREAM_N (messages, 500000), BENCH_RUNS (5), BENCH_PORT (18080),
# BENCH_RSS_MIB (1024), BENCH_LATENCY_N (1000).
# Results: bench/out/stream_results.txt (RESULT lines), a table on stdout.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STREAM_N=${BENCH_STREAM_N:-500000}
RUNS=${BENCH_RUNS:-5}
RSS_MIB=${BENCH_RSS_MIB:-1024}
LATENCY_N=${BENCH_LATENCY_N:-1000}
BENCH_RESULTS=$BENCH_OUT/stream_results.txt
ROOT=$(cd "$BENCH_DIR/.." && pwd)
MOD=$BENCH_BUILD/mod-stream

# the module as this tree builds it, copied so a rebuild mid-run changes nothing measured
stream_module() {
    (cd "$ROOT" && cmake -S . -B build >/dev/null && cmake --build build --target core) >&2 ||
        return 1
    rm -rf "$MOD" && mkdir -p "$MOD/longpoll" &&
        cp "$ROOT/build/longpoll/core.so" "$MOD/longpoll/core.so" &&
        cp -r "$ROOT/lua/." "$MOD/" || return 1
    export LUA_PATH="$MOD/?.lua;;" LUA_CPATH="$MOD/?.so;;"
}

# stream_rss: the spec server on a free port (stopped by PID), then stream_rss.lua
stream_rss() {
    local port pid n=$((RSS_MIB * 16)) rc
    port=$(lua5.4 -e 'local s = require("socket").bind("127.0.0.1", 0); local _, p = s:getsockname(); print(p); s:close()')
    lua5.4 "$ROOT/spec/support/server.lua" --port "$port" --parent $$ > "$BENCH_OUT/stream_server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do grep -q "^PORT" "$BENCH_OUT/stream_server.log" && break; sleep 0.05; done
    bench_run bench_client lua5.4 "$BENCH_DIR/lua/stream_rss.lua" \
        "http://127.0.0.1:$port/stream/lines?n=$n&size=65535" "$((n * 65536))" "$BENCH_OUT/stream_rss.txt"
    rc=$?
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    return $rc
}

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

# plot_rss: out/stream_rss.png (copied to docs/stream_rss.png): RSS against bytes read
plot_rss() {
    command -v gnuplot >/dev/null || { bench_log "gnuplot not installed: no plot"; return 0; }
    [ -s "$BENCH_OUT/stream_rss.txt" ] || return 1
    gnuplot <<EOF || return 1
set terminal pngcairo size 900,420 font "DejaVu Sans,11" noenhanced
set output "$BENCH_OUT/stream_rss.png"
set title "A fast server streams $RSS_MIB MiB to a slow reader (stream = \"lines\", max_queued = 64)"
set xlabel "MiB read by Lua"
set ylabel "process RSS (MiB)"
set yrange [0:*]
set xrange [0:$RSS_MIB]
set grid
set key top left
plot "$BENCH_OUT/stream_rss.txt" using 1:(\$2/1024.0) with linespoints lw 2 title "lua-longpoll, RSS after each 64 MiB", \
     x title "a body kept whole would need this much" dashtype 2 lc rgb "#888888"
EOF
    cp "$BENCH_OUT/stream_rss.png" "$ROOT/docs/stream_rss.png"
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
    stream_module || return 1
    lua_ok=1
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
    bench_log "== latency: publish -> message in Lua over Nchan EventSource, $LATENCY_N samples"
    bench_run bench_client lua5.4 "$BENCH_DIR/lua/stream_latency.lua" "$BENCH_URL" \
        "$(bench_channel lat)" "$LATENCY_N" "$BENCH_OUT/stream_latency.txt" || rc=1
    bench_log "== memory: $RSS_MIB MiB from a fast server to a slow reader"
    stream_rss && plot_rss || rc=1
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
    printf '\npublish -> message in Lua (SSE, Nchan): p50 %s, p99 %s\n' \
        "$(bench_fmt_us "$(bench_get longpoll_stream_latency p50_us)")" \
        "$(bench_fmt_us "$(bench_get longpoll_stream_latency p99_us)")"
    printf '%s MiB to a slow reader: RSS %s KiB at the start, %s KiB at most (+%s KiB), %s pauses\n' \
        "$RSS_MIB" "$(bench_get longpoll_stream_rss rss_start_kib)" \
        "$(bench_get longpoll_stream_rss rss_max_kib)" "$(bench_get longpoll_stream_rss growth_kib)" \
        "$(bench_get longpoll_stream_rss pauses)"
    return $rc
}

main "$@"
