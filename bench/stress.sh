#!/usr/bin/env bash
# bench/stress.sh: the long forms of the hardening proofs (issue 9), the same
# specs CI runs in their bounded forms, sized up:
#   engine   spec/stress_spec.lua: the C engine, BENCH_STRESS="<threads> <requests
#            per thread> <forks>" (default "8 5000 500") under ASan+UBSan and
#            ThreadSanitizer (no forks there)
#   storm    spec/storm_spec.lua: the Lua storm, BENCH_STORM requests (100000) on
#            each Lua of BENCH_LUA ("lua5.4"; e.g. "lua5.1 luajit lua5.3 lua5.4")
#   fuzz     spec/libfuzzer_spec.lua: each libFuzzer target for BENCH_FUZZ_SECONDS (1200)
# Needs the builds of scripts/setup.sh (build/, build-tsan/, lua_modules/). Output:
# the specs' lines, and the figures of each run in bench/out/stress.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p bench/out
out=bench/out/stress.txt
: > "$out"
ulimit -n 65536 2>/dev/null || true
export LONGPOLL_TREE=$PWD/lua_modules LONGPOLL_HOST_TEST=$PWD/build/host_test
export LONGPOLL_HOST_TEST_TSAN=$PWD/build-tsan/host_test
export LONGPOLL_STRESS_LOG=$PWD/$out
for what in ${@:-engine storm}; do
  case $what in
    engine)
      LONGPOLL_STRESS=${BENCH_STRESS:-8 5000 500} busted --lua=lua5.4 -o utfTerminal spec/stress_spec.lua ;;
    storm)
      for lua in ${BENCH_LUA:-lua5.4}; do
        tree=$PWD/lua_modules; [ "$lua" = luajit ] && tree=$PWD/lua_modules/luajit
        LONGPOLL_TREE=$tree LONGPOLL_LUA=$lua LONGPOLL_STORM=${BENCH_STORM:-100000} \
          busted --lua="$lua" -o utfTerminal spec/storm_spec.lua
      done ;;
    fuzz)
      LONGPOLL_FUZZ_SECONDS=${BENCH_FUZZ_SECONDS:-1200} busted --lua=lua5.4 -o utfTerminal spec/libfuzzer_spec.lua ;;
    *) echo "usage: bench/stress.sh [engine] [storm] [fuzz]" >&2; exit 2 ;;
  esac
done
cat "$out"
