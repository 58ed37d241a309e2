#!/usr/bin/env bash
# bench/nginx.sh start [PORT [H2PORT [TLSPORT]]] | stop [PORT] | status [PORT]
# Runs the benchmark nginx (bench/nginx/nginx.conf) on 127.0.0.1 in /tmp/lp-bench-nginx-PORT.
# Defaults: PORT=$BENCH_PORT or 18080, H2PORT=$BENCH_H2_PORT or 18081, TLSPORT=PORT+2.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case ${1:-} in
start)  bench_raise_nofile 30000
        bench_nginx_start "${2:-$BENCH_PORT}" "${3:-$BENCH_H2_PORT}" "${4:-}" && echo "$NGINX_PID" ;;
stop)   bench_nginx_stop_port "${2:-$BENCH_PORT}" ;;
status) p=/tmp/lp-bench-nginx-${2:-$BENCH_PORT}/nginx.pid
        if [ -s "$p" ] && kill -0 "$(cat "$p")" 2>/dev/null; then echo "running $(cat "$p")"
        else echo stopped; exit 1; fi ;;
*)      echo "usage: $0 start [PORT [H2PORT [TLSPORT]]] | stop [PORT] | status [PORT]" >&2; exit 2 ;;
esac
