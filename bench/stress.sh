#!/usr/bin/env bash
# bench/stress.sh: the long forms of the hardening proofs (issue 9), the same
# specs CI runs in their bounded forms, sized up:
#   engine   spec/stress_spec.lua: the C engine, BENCH_STRESS="<threads> <requests
#            per thread>" (default "8 5000") under ASan+UBSan and ThreadSanitizer
# Needs the builds of scripts/setup.sh (build/, build-tsan/). Output: the specs'
# lines and the stress figures (stderr of stress_test) in bench/out/stress.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p bench/out
out=bench/out/stress.txt
: > "$out"
ulimit -n 65536 2>/dev/null || true
export LONGPOLL_TREE=$PWD/lua_modules LONGPOLL_HOST_TEST=$PWD/build/host_test
export LONGPOLL_HOST_TEST_TSAN=$PWD/build-tsan/host_test
what=${1:-engine}
case $what in
  engine)
    LONGPOLL_STRESS=${BENCH_STRESS:-8 5000} LONGPOLL_STRESS_LOG=$PWD/$out \
      busted --lua=lua5.4 -o utfTerminal spec/stress_spec.lua ;;
  *) echo "usage: bench/stress.sh [engine]" >&2; exit 2 ;;
esac
cat "$out"
