#!/usr/bin/env bash
# bench/soak.sh: the soak's long form (issue 9): BENCH_SOAK seconds (3600) of
# subscriptions against a server that restarts every 20-120 s and drops,
# resets, stalls and delays polls (bench/lua/soak_run.lua), under the Lua of
# BENCH_LUA (lua5.4), through spec/soak_spec.lua. Needs ./lua_modules
# (scripts/setup.sh). The figures go to bench/out/soak.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p bench/out
out=bench/out/soak.txt
: > "$out"
lua=${BENCH_LUA:-lua5.4}
tree=$PWD/lua_modules; [ "$lua" = luajit ] && tree=$PWD/lua_modules/luajit
tree=${BENCH_TREE:-$tree}   # e.g. a copy, so that rebuilding meanwhile cannot touch the run
LONGPOLL_TREE=$tree LONGPOLL_LUA=$lua LONGPOLL_SOAK=${BENCH_SOAK:-3600} LONGPOLL_STRESS_LOG=$PWD/$out \
  busted --lua="$lua" -o utfTerminal spec/soak_spec.lua
cat "$out"
