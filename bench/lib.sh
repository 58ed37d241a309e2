# bench/lib.sh: shared helpers for the benchmark runners (peers.sh, run.sh).
# Source it from bash:   . "$(dirname "$0")/lib.sh"
#
#   bench_raise_nofile [want]        ulimit -n to want (default 30000) or the hard limit
#   bench_build                      make peers (C) + go build, into bench/.build/
#   bench_nginx_start [port [h2]]    nginx on 127.0.0.1 in a temp prefix; sets NGINX_PID,
#                                    BENCH_URL (http://127.0.0.1:port), BENCH_H2_URL
#   bench_nginx_stop                 stops the nginx started above, by its PID
#   bench_nginx_stop_port [port]     stops the nginx of that port (pid file in its prefix)
#   bench_nginx_wait_idle [secs]     waits until nginx holds no Nchan subscriber
#   bench_channel [prefix]           a fresh Nchan channel id (holds need unpublished ones)
#   bench_nginx_subscribers          current Nchan subscriber count (nchan_stub_status)
#   bench_client CMD...              runs CMD on the client CPUs (all but nginx's when pinned)
#   bench_run NAME CMD...            runs CMD once, echoes its output, keeps its RESULT lines
#   bench_median KEY RUNS CMD...     runs CMD RUNS times; prints the RESULT line of the run
#                                    with the median KEY, plus runs=, min_KEY=, max_KEY=
#   bench_get NAME KEY               a value from the kept RESULT lines ("-" if none)
#   bench_results                    all kept RESULT lines
#
# Every RESULT line has the form "RESULT <name> <key>=<value> ...". Kept lines go to
# $BENCH_RESULTS (a file, default bench/out/results.txt, truncated by bench_init).

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
BENCH_BUILD=${BENCH_BUILD:-$BENCH_DIR/.build}
BENCH_OUT=${BENCH_OUT:-$BENCH_DIR/out}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH_OUT/results.txt}
BENCH_PORT=${BENCH_PORT:-18080}
BENCH_H2_PORT=${BENCH_H2_PORT:-18081}
NCHAN_MODULE=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
NGINX_BIN=${NGINX_BIN:-nginx}
BENCH_NCPU=$(nproc 2>/dev/null || echo 1)
# BENCH_PIN=1 (default with 2+ CPUs): nginx's worker on the last CPU, clients (bench_client)
# on the others. Unpinned, the scheduler sometimes puts client and worker on one CPU, which
# doubles raw libcurl's req/s for that run (~32k vs ~15k here): the figures go bimodal.
if [ -z "${BENCH_PIN:-}" ]; then
    if [ "$BENCH_NCPU" -ge 2 ]; then BENCH_PIN=1; else BENCH_PIN=0; fi
fi

bench_log() { printf '%s\n' "$*" >&2; }

bench_init() {
    mkdir -p "$BENCH_OUT" "$BENCH_BUILD"
    : > "$BENCH_RESULTS"
}

# ulimit -n: 10k held requests need 10k descriptors in the client and in nginx.
bench_raise_nofile() {
    local want=${1:-30000} hard
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
        ulimit -Hn "$want" 2>/dev/null || true
        hard=$(ulimit -Hn)
    fi
    if [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ]; then
        ulimit -n "$want"
    else
        ulimit -n "$hard"
        bench_log "note: ulimit -n is $hard (hard limit; raising it needs CAP_SYS_RESOURCE), wanted $want"
    fi
}

bench_build() {
    make -s -C "$BENCH_DIR" BUILD="$BENCH_BUILD" >&2 || return 1
    mkdir -p "$BENCH_DIR/.gocache"
    (cd "$BENCH_DIR/peers/go" &&
        GOCACHE="$BENCH_DIR/.gocache/build" GOPATH="$BENCH_DIR/.gocache/gopath" \
        GOPROXY=off GOFLAGS='' GO111MODULE=on \
        go build -trimpath -o "$BENCH_BUILD/go_peer" .) >&2 || return 1   # std lib only
}

# nginx ---------------------------------------------------------------------------------
NGINX_PID=
NGINX_PREFIX=           # prefix dir of the nginx started by this shell

bench_nginx_start() {
    local port=${1:-$BENCH_PORT} h2port=${2:-$BENCH_H2_PORT} tlsport=${3:-${BENCH_TLS_PORT:-$((${1:-$BENCH_PORT} + 2))}}
    local nofile prefix i
    nofile=$(ulimit -n)
    [ "$nofile" = unlimited ] && nofile=65536
    [ "$nofile" -gt 65536 ] && nofile=65536
    prefix=${NGINX_PREFIX_DIR:-/tmp/lp-bench-nginx-$port}
    if [ -s "$prefix/nginx.pid" ] && kill -0 "$(cat "$prefix/nginx.pid")" 2>/dev/null; then
        bench_log "nginx already running on port $port (pid $(cat "$prefix/nginx.pid")); stop it first"
        return 1
    fi
    rm -rf "$prefix"
    mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/tmp" "$prefix/html"
    cp "$BENCH_DIR/nginx/html/"* "$prefix/html/"
    local affinity="# worker not pinned (BENCH_PIN=0)"
    if [ "$BENCH_PIN" = 1 ]; then   # mask: rightmost digit is CPU 0
        affinity="worker_cpu_affinity 1$(printf '%*s' $((BENCH_NCPU - 1)) '' | tr ' ' 0);"
    fi
    # the HTTPS listener's certificate (self-signed, for 127.0.0.1); clients trust cert.pem
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 -keyout "$prefix/conf/key.pem" \
        -out "$prefix/conf/cert.pem" >/dev/null 2>&1 || { bench_log "openssl req failed"; return 1; }
    sed -e "s|@PORT@|$port|g" -e "s|@H2PORT@|$h2port|g" -e "s|@TLSPORT@|$tlsport|g" \
        -e "s|@NOFILE@|$nofile|g" \
        -e "s|@NCHAN_MODULE@|$NCHAN_MODULE|g" -e "s|@CPU_AFFINITY@|$affinity|g" \
        "$BENCH_DIR/nginx/nginx.conf" > "$prefix/conf/nginx.conf"
    chmod -R a+rX "$prefix"     # workers run as "nobody" when the master is root
    "$NGINX_BIN" -p "$prefix" -c conf/nginx.conf -e logs/error.log || {
        bench_log "nginx failed to start; $prefix/logs/error.log:"; tail -n 20 "$prefix/logs/error.log" >&2
        return 1; }
    for i in $(seq 1 100); do                     # up to 5 s for the pid file and the port
        if [ -s "$prefix/nginx.pid" ] &&
           curl -fsS -o /dev/null "http://127.0.0.1:$port/small.json" 2>/dev/null; then
            NGINX_PID=$(cat "$prefix/nginx.pid")
            # shellcheck disable=SC2034  # read by runners
            NGINX_PREFIX=$prefix
            BENCH_URL=http://127.0.0.1:$port
            BENCH_H2_URL=http://127.0.0.1:$h2port
            BENCH_TLS_URL=https://127.0.0.1:$tlsport
            BENCH_CAFILE=$prefix/conf/cert.pem
            export BENCH_URL BENCH_H2_URL BENCH_TLS_URL BENCH_CAFILE
            bench_log "nginx pid $NGINX_PID on $BENCH_URL (h2c $BENCH_H2_URL, https $BENCH_TLS_URL), prefix $prefix"
            return 0
        fi
        sleep 0.05
    done
    bench_log "nginx did not come up on port $port"; tail -n 20 "$prefix/logs/error.log" >&2
    [ -s "$prefix/nginx.pid" ] && kill "$(cat "$prefix/nginx.pid")" 2>/dev/null
    return 1
}

# bench_nginx_stop: stops the nginx that bench_nginx_start of this shell started (by its
# PID); a no-op when there is none, so an EXIT trap never stops someone else's nginx.
bench_nginx_stop() {
    [ -n "$NGINX_PID" ] || return 0
    bench_stop_pid "$NGINX_PID"
    NGINX_PID=
}

# bench_nginx_stop_port PORT: stops the nginx whose pid file is in the prefix for PORT
# (for "nginx.sh stop" from another shell).
bench_nginx_stop_port() {
    local pidfile=${NGINX_PREFIX_DIR:-/tmp/lp-bench-nginx-${1:-$BENCH_PORT}}/nginx.pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        bench_stop_pid "$(cat "$pidfile")"
    else
        bench_log "no nginx running for port ${1:-$BENCH_PORT}"
    fi
}

# graceful QUIT (held long-polls get closed), then TERM, then KILL; bounded, ~6 s at most
bench_stop_pid() {
    local pid=$1 i
    kill -QUIT "$pid" 2>/dev/null
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null && bench_log "nginx $pid killed"
    return 0
}

bench_nginx_subscribers() {
    curl -fsS "${BENCH_URL:-http://127.0.0.1:$BENCH_PORT}/nchan_status" |
        awk '/^subscribers:/ {print $2}'
}

# bench_client CMD...: CMD on the CPUs nginx's worker does not use (when BENCH_PIN=1).
# Note: Go then sees one CPU on a 2-CPU machine (GOMAXPROCS=1).
bench_client() {
    if [ "$BENCH_PIN" = 1 ]; then
        taskset -c "0-$((BENCH_NCPU - 2))" "$@"
    else
        "$@"
    fi
}

# results -------------------------------------------------------------------------------
bench_run() {
    local out rc
    out=$("$@"); rc=$?
    printf '%s\n' "$out"
    printf '%s\n' "$out" | grep '^RESULT ' >> "$BENCH_RESULTS"
    [ $rc -eq 0 ] || bench_log "FAILED ($rc): $*"
    return $rc
}

bench_median() {
    local key=$1 runs=$2 i out line lines=()
    shift 2
    for i in $(seq 1 "$runs"); do
        out=$("$@") || { bench_log "FAILED: $*"; printf '%s\n' "$out" >&2; return 1; }
        line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
        [ -n "$line" ] || { bench_log "no RESULT line from: $*"; return 1; }
        lines+=("$line")
        bench_log "  run $i/$runs: $line"
    done
    line=$(printf '%s\n' "${lines[@]}" | awk -v key="$key" '
        { for (f = 3; f <= NF; f++) { split($f, kv, "="); if (kv[1] == key) v[NR] = kv[2] + 0 }
          l[NR] = $0 }
        END {
          n = NR; for (i = 1; i <= n; i++) idx[i] = i
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
            if (v[idx[j]] < v[idx[i]]) { t = idx[i]; idx[i] = idx[j]; idx[j] = t }
          m = idx[int((n + 1) / 2)]
          printf "%s runs=%d min_%s=%s max_%s=%s\n", l[m], n, key, v[idx[1]], key, v[idx[n]]
        }')
    printf '%s\n' "$line"
    printf '%s\n' "$line" >> "$BENCH_RESULTS"
}

bench_get() {
    awk -v name="$1" -v key="$2" '
        $1 == "RESULT" && $2 == name {
          for (f = 3; f <= NF; f++) { split($f, kv, "="); if (kv[1] == key) v = kv[2] } }
        END { print (v == "" ? "-" : v) }' "$BENCH_RESULTS"
}

bench_results() { cat "$BENCH_RESULTS"; }

# bench_nginx_wait_idle [secs]: wait (bounded, default 10 s) until nginx holds no Nchan
# subscriber, so that one pending benchmark's closes don't overlap the next one.
bench_nginx_wait_idle() {
    local i n limit=$(( ${1:-10} * 20 ))
    for i in $(seq 1 "$limit"); do
        n=$(bench_nginx_subscribers)
        [ "$n" = 0 ] && return 0
        sleep 0.05
    done
    bench_log "nginx still holds $n subscribers"
    return 1
}

# a fresh Nchan channel id per call: a channel that got a message answers new subscribers
# at once, so holds must use channels nobody published to.
BENCH_CHANNEL_SEQ=0
bench_channel() {
    BENCH_CHANNEL_SEQ=$((BENCH_CHANNEL_SEQ + 1))
    # (nanoseconds: runners call this in subshells, where the counter does not advance)
    printf '%s_%s_%s_%s\n' "${1:-c}" "$$" "$(date +%s%N)" "$BENCH_CHANNEL_SEQ"
}

# bench_fmt_int 12345.6 -> 12,346
bench_fmt_int() {
    case $1 in -|'') printf -- '-' ; return ;; esac
    printf '%.0f' "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/; ta'
}

# bench_fmt_us 152340 -> "152 ms", 15 -> "15 us"
bench_fmt_us() {
    case $1 in -|'') printf -- '-' ; return ;; esac
    awk -v u="$1" 'BEGIN { if (u >= 10000) printf "%.0f ms", u / 1000;
                           else if (u >= 1000) printf "%.1f ms", u / 1000;
                           else printf "%.0f us", u }'
}

# bench_median_alt KEY RUNS FN...: RUNS rounds; each round calls every FN once, in turn (so
# the programs being compared alternate and share the machine's state, round by round);
# each FN prints one RESULT line. Then, per RESULT name, the line of the run with the
# median KEY, plus runs=, min_KEY=, max_KEY= (as bench_median), kept in $BENCH_RESULTS.
bench_median_alt() {
    local key=$1 runs=$2 i fn out line all=()
    shift 2
    for i in $(seq 1 "$runs"); do
        for fn in "$@"; do
            out=$("$fn") || { bench_log "FAILED: $fn"; printf '%s\n' "$out" >&2; return 1; }
            line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
            [ -n "$line" ] || { bench_log "no RESULT line from: $fn"; return 1; }
            all+=("$line")
            bench_log "  round $i/$runs: $line"
        done
    done
    printf '%s\n' "${all[@]}" | awk -v key="$key" '
        { name = $2; k = ++cnt[name]; l[name, k] = $0
          for (f = 3; f <= NF; f++) { split($f, kv, "="); if (kv[1] == key) v[name, k] = kv[2] + 0 }
          if (!(name in seen)) { seen[name] = 1; order[++nn] = name } }
        END {
          for (q = 1; q <= nn; q++) {
            name = order[q]; n = cnt[name]
            for (i = 1; i <= n; i++) idx[i] = i
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
              if (v[name, idx[j]] < v[name, idx[i]]) { t = idx[i]; idx[i] = idx[j]; idx[j] = t }
            m = idx[int((n + 1) / 2)]
            printf "%s runs=%d min_%s=%s max_%s=%s\n", l[name, m], n, key, v[name, idx[1]], key, v[name, idx[n]]
          }
        }' | tee -a "$BENCH_RESULTS"
}
