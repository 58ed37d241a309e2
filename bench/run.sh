#!/usr/bin/env bash
# bench/run.sh: every benchmark of issue 3 in one command: lua-longpoll beside its peers.
#
#   bench/run.sh            (from anywhere; about 3-4 minutes on 2 cores)
#
# Builds the module (cmake into build/, then a snapshot of core.so and lua/ into
# bench/.build/mod/, so a rebuild by someone else mid-run cannot change what is measured),
# the C peers and bench/c/cancel_thread (make), the Go peer; starts nginx + Nchan
# (bench/nginx.sh's config; stopped on exit); runs the peers (bench/peers.sh's functions) and
# ours; prints one table, each figure beside its peers and its target, "met" or "MISSED";
# writes bench/out/cancel_latency.png (CDF of cancel latency: longpoll same thread, longpoll
# across threads, Go) and copies it to docs/cancel_latency.png; bench/out/summary.md holds
# the table and the machine in Markdown for the README.
#
# Knobs (env), besides peers.sh's (BENCH_RUNS=5, BENCH_SEQ_N=5000, BENCH_CANCEL_N=1000,
# BENCH_PENDING_N=10000, BENCH_PROGRESS_N=20, BENCH_PIN, BENCH_PORT):
#   BENCH_PENDING_RUNS (3: pending runs per program, median by cancel_all_ms)
#   BENCH_FRAMES_S (5), BENCH_FRAMES_POLLS (100), BENCH_PUB_MS (5: a publish every 5 ms)
#   CG_N1/CG_N2 (200/1200: callgrind request counts), BENCH_NO_PROGRESS=1 skips the ~25 s
#   libcurl progress-flag peer
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/peers.sh"        # lib.sh + peers_* functions (main() runs only when executed)

PENDING_RUNS=${BENCH_PENDING_RUNS:-3}
FRAMES_S=${BENCH_FRAMES_S:-5}
FRAMES_POLLS=${BENCH_FRAMES_POLLS:-100}
PUB_MS=${BENCH_PUB_MS:-5}
MOD=$BENCH_BUILD/mod

# build -----------------------------------------------------------------------------------
build_module() {
    (cd "$ROOT" && cmake -S . -B build >/dev/null && cmake --build build --target core) >&2 ||
        return 1
    if nm -D "$ROOT/build/longpoll/core.so" | grep -q __asan; then
        bench_log "build/ is configured with LONGPOLL_SANITIZE=ON; benchmarks need a plain build"
        return 1
    fi
    rm -rf "$MOD" && mkdir -p "$MOD/longpoll" &&
        cp "$ROOT/build/longpoll/core.so" "$MOD/longpoll/core.so" &&
        cp -r "$ROOT/lua/." "$MOD/" || return 1
    export LUA_PATH="$MOD/?.lua;;" LUA_CPATH="$MOD/?.so;;"
    MOD_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
    git -C "$ROOT" diff --quiet HEAD -- csrc lua CMakeLists.txt 2>/dev/null || MOD_REV="$MOD_REV+uncommitted"
}

# ours ------------------------------------------------------------------------------------
SMALL=
lp_seq()       { bench_client lua5.4 "$HERE/lua/seq.lua" "$SEQ_N" "$SMALL"; }
raw_seq()      { bench_client "$BENCH_BUILD/raw_curl" seq "$SEQ_N" "$SMALL"; }
go_seq()       { bench_client "$BENCH_BUILD/go_peer" seq -n "$SEQ_N" -url "$SMALL"; }
luasocket_seq(){ bench_client lua5.4 "$HERE/peers/luasocket.lua" "$SEQ_N" "$SMALL"; }

unpinned() { "$@" | sed 's/^RESULT \([a-z_]*\)/RESULT \1_unpinned/'; }
lp_seq_u()  { unpinned lua5.4 "$HERE/lua/seq.lua" "$SEQ_N" "$SMALL"; }
raw_seq_u() { unpinned "$BENCH_BUILD/raw_curl" seq "$SEQ_N" "$SMALL"; }
go_seq_u()  { unpinned "$BENCH_BUILD/go_peer" seq -n "$SEQ_N" -url "$SMALL"; }

ours_seq_with_peers() {
    SMALL=$BENCH_URL/small.json
    bench_log "== sequential decoded GETs of /small.json: $RUNS rounds of $SEQ_N requests," \
        "programs alternating; median per program"
    bench_median_alt req_s "$RUNS" raw_seq go_seq lp_seq luasocket_seq || return 1
    if [ "$BENCH_PIN" = 1 ]; then
        bench_log "== the same, clients not pinned (they may share nginx's CPU): 3 rounds"
        bench_median_alt req_s 3 raw_seq_u go_seq_u lp_seq_u
    fi
}

# cancel latency: Go, ours on the Lua thread, ours across threads, alternating, CANCEL_RUNS
# rounds; per program the run with the median p99 is kept and its samples go to
# bench/out/<name>.txt (the plot's data). A run's p99 moves with where the scheduler puts the
# threads (all three share the client CPU), hence several rounds.
CANCEL_RUNS=${BENCH_CANCEL_RUNS:-3}
with_samples() {   # CMD... (writing samples to the caller's $f): its output, RESULT + samples=$f
    local out rc
    out=$("$@"); rc=$?
    printf '%s\n' "$out" | sed "/^RESULT/ s|\$| samples=$f|"
    return $rc
}
go_cancel_run() {
    local f=$BENCH_OUT/samples/go_cancel.$(date +%s%N).txt
    bench_nginx_wait_idle 10 >&2
    with_samples bench_client "$BENCH_BUILD/go_peer" cancel -n "$CANCEL_N" \
        -url "$BENCH_URL/sub/$(bench_channel gc)" -status "$BENCH_URL/nchan_status" -samples "$f"
}
lp_cancel_run() {
    local f=$BENCH_OUT/samples/longpoll_cancel.$(date +%s%N).txt
    bench_nginx_wait_idle 10 >&2
    with_samples bench_client lua5.4 "$HERE/lua/cancel.lua" "$CANCEL_N" "$BENCH_URL" \
        "$(bench_channel lc)" "$f"
}
lp_cancel_thread_run() {
    local f=$BENCH_OUT/samples/longpoll_cancel_thread.$(date +%s%N).txt
    bench_nginx_wait_idle 10 >&2
    with_samples bench_client "$BENCH_BUILD/cancel_thread" "$CANCEL_N" \
        "$BENCH_URL/sub/$(bench_channel lt)" "$BENCH_URL/nchan_status" "$f"
}
cancel_all_three() {
    local name
    rm -rf "$BENCH_OUT/samples" && mkdir -p "$BENCH_OUT/samples"
    bench_log "== cancel latency, $CANCEL_N held each: Go context, longpoll on the Lua thread," \
        "longpoll engine across threads; $CANCEL_RUNS rounds alternating, median p99 kept"
    bench_median_alt p99_us "$CANCEL_RUNS" go_cancel_run lp_cancel_run lp_cancel_thread_run || return 1
    for name in go_cancel longpoll_cancel longpoll_cancel_thread; do
        cp "$(bench_get "$name" samples)" "$BENCH_OUT/$name.txt" || return 1
    done
}

lp_pending_one() {
    bench_nginx_wait_idle 10 >&2 || return 1
    bench_client lua5.4 "$HERE/lua/pending.lua" "$PENDING_N" "$BENCH_URL" "$(bench_channel lp)"
}

ours_pending() {
    bench_log "== longpoll: $PENDING_N pending from one Lua state (median of $PENDING_RUNS on cancel_all_ms; ~14 s each)"
    bench_median cancel_all_ms "$PENDING_RUNS" lp_pending_one
}

# the same held polls with libcurl's receive buffer at 1 KiB, and over HTTP/2 (TLS, ALPN),
# with either buffer: memory and connections only (no timer window), one run each
lp_pending_variant() {   # LABEL CONFIGURE SUB_BASE
    bench_nginx_wait_idle 10 >&2 || return 1
    PENDING_LABEL=$1 PENDING_CONFIGURE=$2 PENDING_SUB_BASE=$3 PENDING_CAFILE=$BENCH_CAFILE \
        TIMER_WINDOW=0 bench_client lua5.4 "$HERE/lua/pending.lua" "$PENDING_N" "$BENCH_URL" \
        "$(bench_channel lv)"
}
ours_pending_variants() {
    bench_log "== longpoll: $PENDING_N pending with buffer_size = 1024, over HTTP/2, both (~6 s each)"
    bench_run lp_pending_variant b1k buffer_size=1024 "" || return 1
    bench_run lp_pending_variant h2 "" "$BENCH_TLS_URL" || return 1
    bench_run lp_pending_variant h2_b1k buffer_size=1024 "$BENCH_TLS_URL"
}

ours_alloc() {
    bench_log "== Lua heap bytes per completed request (collector stopped)"
    bench_run bench_client lua5.4 "$HERE/lua/alloc.lua" "$BENCH_URL/small.json"
}

ours_frames() {
    local pub=""
    [ "$BENCH_PIN" = 1 ] && pub="taskset -c $((BENCH_NCPU - 1))"   # beside nginx, not us
    bench_log "== 60 fps loop, $FRAMES_POLLS polls in flight, ${FRAMES_S} s, a publish every $PUB_MS ms"
    bench_nginx_wait_idle 10
    export BENCH_PUB_PREFIX_CMD=$pub
    bench_run bench_client lua5.4 "$HERE/lua/frames.lua" "$BENCH_URL" \
        "$(bench_channel fr)" "$FRAMES_POLLS" "$FRAMES_S" "$PUB_MS" "$BENCH_OUT/longpoll_frames.txt"
    bench_log "== the same, the game stepping the Lua GC at the end of each frame"
    bench_nginx_wait_idle 10
    BENCH_FRAMES_GC=step bench_run bench_client lua5.4 "$HERE/lua/frames.lua" "$BENCH_URL" \
        "$(bench_channel fg)" "$FRAMES_POLLS" "$FRAMES_S" "$PUB_MS"
}

ours_callgrind() {
    bench_log "== callgrind: main-thread instructions per completed request"
    bench_run bench_client bash "$HERE/callgrind.sh" "$BENCH_URL"
}

# plot ------------------------------------------------------------------------------------
plot_cancel() {
    local png=$BENCH_OUT/cancel_latency.png f name
    command -v gnuplot >/dev/null || { bench_log "gnuplot not installed: no plot"; return 1; }
    for f in longpoll_cancel longpoll_cancel_thread go_cancel; do
        [ -s "$BENCH_OUT/$f.txt" ] || { bench_log "no samples in $BENCH_OUT/$f.txt"; return 1; }
        sort -g "$BENCH_OUT/$f.txt" | awk '{ v[NR] = $1 } END { for (i = 1; i <= NR; i++)
            print (v[i] > 0.1 ? v[i] : 0.1), i / NR }' > "$BENCH_OUT/$f.cdf"
    done
    gnuplot <<EOF || return 1
set terminal pngcairo size 1200,560 font "DejaVu Sans,11"
set output "$png"
set multiplot layout 1,2 title "Cancel latency, $CANCEL_N held requests each (nginx + Nchan on loopback; clients on one CPU)"
set logscale x
set xrange [0.1:*]
set grid xtics mxtics ytics
set xlabel "latency (µs, log scale)"
set key below left Left reverse
set arrow 1 from 100, graph 0 to 100, graph 1 nohead dashtype 2 lc rgb "#888888"
set label 1 "p99 target:\n100 µs" at 115, graph 0.1 left tc rgb "#666666"
set title "CDF"
set ylabel "fraction of cancels ≤ x"
set yrange [0:1.02]
plot "$BENCH_OUT/longpoll_cancel.cdf" using 1:2 with steps lw 2 title "lua-longpoll: cancel() → run() returns, same Lua thread", \
     "$BENCH_OUT/longpoll_cancel_thread.cdf" using 1:2 with steps lw 2 title "lua-longpoll engine: cancel → waiter thread wakes (C host)", \
     "$BENCH_OUT/go_cancel.cdf" using 1:2 with steps lw 2 title "Go net/http: cancel() → goroutine sees context.Canceled"
set title "tail: fraction of cancels slower than x"
set ylabel "fraction > x (log scale)"
set logscale y
set yrange [0.0008:1.2]
set arrow 2 from graph 0, first 0.01 to graph 1, first 0.01 nohead dashtype 3 lc rgb "#888888"
set label 2 "p99" at graph 0.01, first 0.013 tc rgb "#666666"
set label 1 "100 µs" at 115, graph 0.95 left
set key off
plot "$BENCH_OUT/longpoll_cancel.cdf" using 1:(1.0 - \$2 + 1e-9) with steps lw 2, \
     "$BENCH_OUT/longpoll_cancel_thread.cdf" using 1:(1.0 - \$2 + 1e-9) with steps lw 2, \
     "$BENCH_OUT/go_cancel.cdf" using 1:(1.0 - \$2 + 1e-9) with steps lw 2
unset multiplot
EOF
    mkdir -p "$ROOT/docs" && cp "$png" "$ROOT/docs/cancel_latency.png"
    bench_log "plot: $png (copied to docs/cancel_latency.png)"
}

# table -----------------------------------------------------------------------------------
g() { bench_get "$1" "$2"; }
# verdict VALUE OP LIMIT -> met / MISSED (or "-" when a value is missing)
verdict() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "-" || l == "-" || v == "" || l == "") { print "-"; exit }
        ok = (op == "<") ? (v + 0 < l + 0) : (op == "<=") ? (v + 0 <= l + 0) : (v + 0 >= l + 0)
        print ok ? "met" : "MISSED" }'
}
calc() { awk "BEGIN { $1 }" 2>/dev/null || echo -; }
us() { bench_fmt_us "$1" | sed 's/ us$/ µs/'; }
num_or_dash() { case $1 in -|'') echo - ;; *) printf '%s' "$1" ;; esac; }

# rows: figure | lua-longpoll | peers, same run | target | verdict
ROWS=()
row() { ROWS+=("$1|$2|$3|$4|$5"); }

make_table() {
    local go99 go50 lc99 lc50 lcmax lt99 lt50 ltmax lim
    go50=$(g go_cancel p50_us); go99=$(g go_cancel p99_us)
    lc50=$(g longpoll_cancel p50_us); lc99=$(g longpoll_cancel p99_us); lcmax=$(g longpoll_cancel max_us)
    lt50=$(g longpoll_cancel_thread p50_us); lt99=$(g longpoll_cancel_thread p99_us); ltmax=$(g longpoll_cancel_thread max_us)
    lim=$(calc "if (\"$go99\" == \"-\") print \"-\"; else printf \"%.1f\", 0.25 * $go99")
    local peers_cancel="Go context: p50 $(us "$go50"), p99 $(us "$go99"); libcurl progress flag (random phase): p99 $(us "$(g curl_progress_cancel_random p99_us)")"
    local v1 v2
    v1=$(verdict "$lc99" "<" 100); v2=$(verdict "$lc99" "<=" "$lim")
    row "cancel → run() returns \"canceled\", same Lua thread, $CANCEL_N held" \
        "p50 ${lc50} µs, p99 **${lc99} µs**, max ${lcmax} µs" "$peers_cancel" \
        "p99 < 100 µs; ≤ 0.25 × Go p99 = ${lim} µs" "$v1; $v2"
    v1=$(verdict "$lt99" "<" 100); v2=$(verdict "$lt99" "<=" "$lim")
    row "cancel from another OS thread → waiter wakes (C host, engine)" \
        "p50 ${lt50} µs, p99 **${lt99} µs**, max ${ltmax} µs; worker CPU $(g longpoll_cancel_thread worker_us_per_cancel) µs per cancel" \
        "Go, as above (its cancel also wakes another goroutine)" \
        "p99 < 100 µs; ≤ 0.25 × Go p99 = ${lim} µs" "$v1; $v2"

    local lp raw go ls r_raw r_go
    lp=$(g longpoll_seq req_s); raw=$(g raw_curl_seq req_s); go=$(g go_seq req_s); ls=$(g luasocket_seq req_s)
    r_raw=$(calc "printf \"%.2f\", $lp / $raw"); r_go=$(calc "printf \"%.2f\", $lp / $go")
    row "sequential decoded GETs of /small.json, keep-alive (req/s, median of $RUNS, alternating)" \
        "**$(bench_fmt_int "$lp")** ($(g longpoll_seq min_req_s)–$(g longpoll_seq max_req_s))" \
        "raw libcurl, one easy handle, no decode: $(bench_fmt_int "$raw"); Go net/http + encoding/json: $(bench_fmt_int "$go"); LuaSocket + cjson (no keep-alive): $(bench_fmt_int "$ls")" \
        "≥ 0.9 × raw libcurl; ≥ 1.2 × Go" \
        "$r_raw × raw: $(verdict "$r_raw" ">=" 0.9); $r_go × Go: $(verdict "$r_go" ">=" 1.2)"

    if [ "$BENCH_PIN" = 1 ]; then
        lp=$(g longpoll_seq_unpinned req_s); raw=$(g raw_curl_seq_unpinned req_s); go=$(g go_seq_unpinned req_s)
        r_raw=$(calc "printf \"%.2f\", $lp / $raw"); r_go=$(calc "printf \"%.2f\", $lp / $go")
        row "… the same with the clients not pinned (our two threads may use both CPUs, beside nginx; median of 3)" \
            "**$(bench_fmt_int "$lp")**" \
            "raw libcurl: $(bench_fmt_int "$raw"); Go: $(bench_fmt_int "$go")" \
            "(information)" "$r_raw × raw; $r_go × Go"
    fi

    local P=longpoll_pending
    row "$PENDING_N long-polls pending from one Lua state: RSS each over the process before them" \
        "**$(g $P rss_kib_each) KiB**" \
        "raw libcurl multi: $(g raw_curl_pending rss_kib_each) KiB; Go: $(g go_pending rss_kib_each) KiB" \
        "≤ 8 KiB" "$(verdict "$(g $P rss_kib_each)" "<=" 8)"
    row "… threads in the process" "**$(g $P threads)** (main + worker)" "-" "≤ 3" \
        "$(verdict "$(g $P threads)" "<=" 3)"
    row "… idle CPU, 3 s from 1 s after all are held" "**$(g $P idle_cpu_pct) %** of a core ($(g $P idle_cpu_pct_ns) % by schedstat)" \
        "-" "< 1 %" "$(verdict "$(g $P idle_cpu_pct)" "<" 1)"
    local tp; tp=$(g $P timer_cpu_pct); case $tp in -1*) tp=- ;; esac
    row "… idle CPU, 3 s from 9.8 s after the first start (default connect_timeout = 10 s comes due)" \
        "**$tp %** of a core ($(g $P timer_cpu_ms) ms of CPU)" "-" "< 1 %" "$(verdict "$tp" "<" 1)"
    row "… cancel-all: cancel() each until every done() is true" \
        "**$(g $P cancel_all_ms) ms**; the worker closed the last connection after $(g $P closed_ms) ms; nginx counted 0 subscribers after $(g $P gone_ms) ms" \
        "raw libcurl remove+cleanup: $(g raw_curl_pending cancel_all_ms) ms; Go cancel + goroutines return: $(g go_pending cancel_all_ms) ms" \
        "< 100 ms" "$(verdict "$(g $P cancel_all_ms)" "<" 100) (connections closed: $(verdict "$(g $P closed_ms)" "<" 100))"

    local share
    share=$(calc "d = $(g $P heap_bytes_each) - $(g raw_curl_pending heap_bytes_each); printf \"%.0f\", d")
    row "… the module's own share: C heap in use per poll (glibc mallinfo2, after a full Lua GC) over raw libcurl's" \
        "**$share bytes** ($(g $P heap_bytes_each) against $(g raw_curl_pending heap_bytes_each))" \
        "raw libcurl multi, as above" "≤ 512 bytes" "$(verdict "$share" "<=" 512)"
    local V=longpoll_pending_b1k H=longpoll_pending_h2 HB=longpoll_pending_h2_b1k
    row "… the same polls with longpoll.configure{buffer_size = 1024} (libcurl's receive buffer)" \
        "**$(g $V rss_kib_each) KiB** RSS each (heap $(g $V heap_bytes_each) bytes)" \
        "-" "(information)" "-"
    row "… over HTTP/2 (TLS to the same nginx, ALPN), default settings" \
        "**$(g $H connections) connections**; $(g $H rss_kib_each) KiB RSS each (heap $(g $H heap_bytes_each) bytes); with buffer_size = 1024: $(g $HB rss_kib_each) KiB" \
        "HTTP/1.1 above: $(g $P connections) connections" "one connection per max_streams (1000) polls" \
        "$(verdict "$(g $H connections)" "<=" "$(calc "printf \"%d\", ($PENDING_N + 999) / 1000")")"

    local A=longpoll_alloc
    row "Lua heap bytes per completed request (collector stopped; /small.json decoded)" \
        "**$(g $A bytes_per_request) bytes**; $(g $A bytes_per_request_headers) when response.headers is read" \
        "-" "reported" "-"

    local F=longpoll_frames hist
    hist="<25: $(g $F h0), 25–50: $(g $F h25), 50–100: $(g $F h50), 100–200: $(g $F h100), 200–500: $(g $F h200), 500–1000: $(g $F h500), ≥1000: $(g $F h1000)"
    row "$FRAMES_POLLS polls in flight, 60 fps for ${FRAMES_S} s: module time per frame (done() sweep + run() + request() + start())" \
        "max **$(g $F max_us) µs**, p99 $(g $F p99_us) µs, p50 $(g $F p50_us) µs; $(g $F over_500us) of $(g $F frames) frames > 0.5 ms, $(g $F over_500us_with_gc) of them with a Lua GC cycle freeing inside a module call; histogram (frames per µs bucket) $hist; $(g $F completions) completions. By this thread's CPU clock (preemption left out): max $(g $F cpu_max_us) µs, p99 $(g $F cpu_p99_us) µs, $(g $F cpu_over_500us) frames > 0.5 ms" \
        "-" "no frame > 0.5 ms" "wall: $(verdict "$(g $F max_us)" "<=" 500); CPU: $(verdict "$(g $F cpu_max_us)" "<=" 500)"
    F=longpoll_frames_gcstep
    row "… the same, the game stepping the Lua GC itself at the end of each frame (collectgarbage \"stop\", then \"step\")" \
        "max **$(g $F max_us) µs**, p99 $(g $F p99_us) µs, p50 $(g $F p50_us) µs; $(g $F over_500us) of $(g $F frames) frames > 0.5 ms; $(g $F completions) completions" \
        "-" "no frame > 0.5 ms" "$(verdict "$(g $F max_us)" "<=" 500)"

    local C=longpoll_callgrind
    row "main-thread instructions per completed request (callgrind)" \
        "**$(bench_fmt_int "$(g $C main_ir)")**: binding $(bench_fmt_int "$(g $C binding_ir)") ($(g $C binding_pct) %), decode $(bench_fmt_int "$(g $C decode_ir)") ($(g $C decode_pct) %), Lua $(bench_fmt_int "$(g $C lua_ir)") ($(g $C lua_pct) %)" \
        "worker thread: $(bench_fmt_int "$(g $C worker_ir)") per request" "reported" "-"
}

print_table() {
    local r
    printf '\n%s\n' "lua-longpoll $MOD_REV, $(date -u +%Y-%m-%dT%H:%MZ)"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r f v p t ok <<<"$r"
        printf '\n%s\n  lua-longpoll: %s\n  peers:        %s\n  target:       %s  =>  %s\n' \
            "$f" "${v//\*\*/}" "$p" "$t" "$ok"
    done
    printf '\n'
}

machine_md() {
    local cpu kernel curlv pin
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    kernel=$(uname -r)
    curlv=$(curl-config --version 2>/dev/null || echo "libcurl ?")
    local cl="0-$((BENCH_NCPU - 2))"; [ "$BENCH_NCPU" = 2 ] && cl=0
    if [ "$BENCH_PIN" = 1 ]; then pin="nginx's one worker pinned to CPU $((BENCH_NCPU - 1)), every client (and our worker thread) to CPU $cl"
    else pin="not pinned"; fi
    printf -- '- %s CPUs (`nproc`), %s; Linux %s; %s; %s; Go %s; nginx %s + Nchan\n' \
        "$BENCH_NCPU" "$cpu" "$kernel" "$curlv" "$(lua5.4 -v 2>&1 | awk '{print $1, $2}')" \
        "$(go version 2>/dev/null | awk '{print $3}' | sed 's/^go//')" \
        "$(nginx -v 2>&1 | sed 's|.*/||')"
    printf -- '- %s; loopback only; ulimit -n %s\n' "$pin" "$(ulimit -n)"
    printf -- '- lua-longpoll %s, %s\n' "$MOD_REV" "$(date -u +%Y-%m-%d)"
}

summary_md() {
    local r f v p t ok
    {
        printf '| figure | lua-longpoll | peers (same run) | target | verdict |\n|---|---|---|---|---|\n'
        for r in "${ROWS[@]}"; do
            IFS='|' read -r f v p t ok <<<"$r"
            printf '| %s | %s | %s | %s | %s |\n' "$f" "$v" "$p" "$t" "$ok"
        done
        printf '\n'
        machine_md
    } > "$BENCH_OUT/summary.md"
}

run_main() {
    local t0=$SECONDS rc=0
    bench_init
    bench_raise_nofile 30000
    bench_log "ulimit -n $(ulimit -n), $BENCH_NCPU CPUs, BENCH_PIN=$BENCH_PIN"
    build_module || exit 1
    bench_build || exit 1
    trap 'bench_nginx_stop' EXIT
    trap 'exit 130' INT TERM
    bench_nginx_start "$BENCH_PORT" "$BENCH_H2_PORT" || exit 1
    ours_alloc || rc=1

    ours_seq_with_peers || rc=1
    cancel_all_three || rc=1
    if [ "${BENCH_NO_PROGRESS:-0}" != 1 ]; then
        bench_nginx_wait_idle 10
        bench_log "== libcurl progress-flag cancel at a random phase ($((PROGRESS_N / 2)) samples, ~10 s)"
        bench_run bench_client "$BENCH_BUILD/progress_cancel" "$((PROGRESS_N / 2))" \
            "$BENCH_URL/sub/$(bench_channel pr)" 50 1000 >/dev/null || rc=1
    fi
    peers_pending || rc=1
    ours_pending || rc=1
    ours_pending_variants || rc=1
    ours_frames || rc=1
    ours_callgrind || rc=1
    bench_nginx_stop

    plot_cancel || rc=1
    make_table
    print_table
    summary_md
    bench_log "run.sh: $((SECONDS - t0)) s; RESULT lines in $BENCH_RESULTS, Markdown in $BENCH_OUT/summary.md"
    return $rc
}

run_main "$@"
