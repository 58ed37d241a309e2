#!/usr/bin/env bash
# bench/callgrind.sh: main-thread instructions per completed request (valgrind callgrind).
#
#   bench/callgrind.sh [BASE_URL]      (default $BENCH_URL or http://127.0.0.1:18080; nginx up)
#
# Runs bench/lua/seq.lua (sequential longpoll.request{url=.../small.json}:run(), decode
# "auto": a 90-byte JSON array decoded by lua-cjson) under
#   valgrind --tool=callgrind --separate-threads=yes
# twice, with N1 and N2 requests (CG_N1=200, CG_N2=1200), and reads the main thread's file
# (…-01) with callgrind_annotate --inclusive=yes. Per request = (cost at N2 - cost at N1) /
# (N2 - N1), so start-up (loading Lua, libcurl, the module) and the 20 warm-up requests
# cancel out. Groups, on the main thread:
#   decode   inclusive cost of lua-cjson's decode entry (the cjson function with the largest
#            inclusive cost; Debian's cjson.so has no symbols for its static functions)
#   binding  inclusive cost of the module's Lua-callable C functions (request_new,
#            request_run, request_start, request_done, request_gc, ... in csrc/longpoll.c,
#            with what they call: lp_engine.c, libcurl's URL parser, Lua API calls, GC steps
#            their allocations trigger) minus decode (called from request_run)
#   lua      the rest of the main thread: the interpreter running seq.lua, GC steps outside
#            the binding, the libc it calls
# Also the worker thread's instructions per request (…-02: libcurl, the engine).
# Prints  RESULT longpoll_callgrind main_ir= binding_ir= decode_ir= lua_ir= worker_ir= ...
# and keeps the callgrind files and annotations in bench/out/callgrind/.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BASE=${1:-${BENCH_URL:-http://127.0.0.1:18080}}
N1=${CG_N1:-200}
N2=${CG_N2:-1200}
OUT=${BENCH_OUT:-$HERE/out}/callgrind
mkdir -p "$OUT"
rm -f "$OUT"/cg.*
export LUA_PATH=${LUA_PATH:-"$ROOT/lua/?.lua;;"}
export LUA_CPATH=${LUA_CPATH:-"$ROOT/build/?.so;;"}

# entry points of csrc/longpoll.c that Lua calls (luaopen/ctx_gc/lp_codec: once per state)
ENTRY='request_new request_run request_start request_done request_wait request_cancel
request_status request_fd request_gc request_close request_tostring lp_wait_any_l lp_configure
error_tostring error_concat'

# groups of one annotated main-thread file: "total binding_incl decode new run url"
groups() {
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null | awk -v entry="$ENTRY" '
        BEGIN { n = split(entry, e, /[ \n]+/); for (i = 1; i <= n; i++) if (e[i] != "") want[e[i]] = 1 }
        /PROGRAM TOTALS/ { gsub(/,/, "", $1); total = $1 + 0; next }
        /^ *[0-9,]+ +\([ 0-9.]+%\) +/ {
            ir = $1; gsub(/,/, "", ir); ir += 0
            line = $0; sub(/^ *[0-9,]+ +\([ 0-9.]+%\) +/, "", line)
            obj = line; sub(/^.*\[/, "", obj); sub(/\].*$/, "", obj)
            fn = line; sub(/ \[.*$/, "", fn); sub(/^.*:/, "", fn)
            if (fn ~ /\x27/) next                      # recursion copies (name'\''2)
            # a function can be listed twice (file:fn and ???:fn, part of it without line
            # info); the larger inclusive cost contains the other: keep the maximum
            if ((fn in want) && ir > b[fn]) b[fn] = ir   # [obj] is not always printed
            if (obj ~ /cjson/ && fn !~ /luaopen/ && ir > decode) decode = ir
            if (obj ~ /libcurl/ && (fn == "curl_url_get" || fn == "curl_url_set") && ir > u[fn]) u[fn] = ir
        }
        END {
            for (f in b) binding += b[f]
            for (f in u) url += u[f]
            printf "%d %d %d %d %d %d\n", total, binding, decode, b["request_new"], b["request_run"], url
        }'
}

totals() { callgrind_annotate --threshold=100 "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(/,/, "", $1); print $1 + 0 }'; }

run_one() {   # N -> "main_groups worker_total"
    local n=$1 log
    log=$(valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$OUT/cg.$n.%p" \
        lua5.4 "$HERE/lua/seq.lua" "$n" "$BASE/small.json" 2>&1) || {
        printf '%s\n' "$log" | tail -n 20 >&2; return 1; }
    printf '%s\n' "$log" | grep '^RESULT' | sed "s/^/  (under callgrind) /" >&2
    local main worker
    main=$(ls "$OUT"/cg."$n".*-01 | head -n 1)
    worker=$(ls "$OUT"/cg."$n".*-02 2>/dev/null | head -n 1)
    callgrind_annotate --inclusive=yes --threshold=99 "$main" > "$OUT/main.$n.txt" 2>/dev/null
    echo "$(groups "$main") $( [ -n "$worker" ] && totals "$worker" || echo 0)"
}

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not installed" >&2; exit 1; }
a=$(run_one "$N1") || exit 1
b=$(run_one "$N2") || exit 1
read -r t1 bi1 d1 n1 r1 u1 w1 <<<"$a"
read -r t2 bi2 d2 n2 r2 u2 w2 <<<"$b"
awk -v n="$((N2 - N1))" -v t="$((t2 - t1))" -v bi="$((bi2 - bi1))" -v d="$((d2 - d1))" \
    -v rn="$((n2 - n1))" -v rr="$((r2 - r1))" -v u="$((u2 - u1))" -v w="$((w2 - w1))" \
    -v n1="$N1" -v n2="$N2" 'BEGIN {
    main = t / n; dec = d / n; bind = (bi - d) / n; lua = main - bind - dec
    printf "RESULT longpoll_callgrind main_ir=%.0f binding_ir=%.0f decode_ir=%.0f lua_ir=%.0f worker_ir=%.0f " \
           "binding_pct=%.1f decode_pct=%.1f lua_pct=%.1f request_new_ir=%.0f request_run_ir=%.0f url_ir=%.0f n1=%d n2=%d\n",
        main, bind, dec, lua, w / n, 100 * bind / main, 100 * dec / main, 100 * lua / main,
        rn / n, (rr - d) / n, u / n, n1, n2 }'
