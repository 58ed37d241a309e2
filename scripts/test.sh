#!/usr/bin/env bash
# Sets up and runs every test, for each Lua version: the busted specs against
# the rockspec install (with the C hosts built for that version), then every
# spec that loads the module again under valgrind memcheck; then, with Lua
# 5.4, the specs and the response fuzzer under ASan+UBSan (scripts/asan.sh).
# Each run adds a line "passed failed label" to the counts file; the summary
# names each run and every failed test with its version, and the last line is
# "N passed, N failed" adding up all runs.
#
#   bash scripts/test.sh                       # everything (CI)
#   LONGPOLL_VERSIONS="5.4 luajit" bash scripts/test.sh   # some versions (5.1 luajit 5.3 5.4)
#   LONGPOLL_MEMCHECK=0 bash scripts/test.sh   # no valgrind runs
#   LONGPOLL_ASAN=0 bash scripts/test.sh       # no ASan+UBSan stage
#   bash scripts/test.sh spec/cancel_spec.lua  # only these spec files (busted and
#                                              # memcheck; no ASan stage)
#
# A new stage is a block at the end that runs its checks and calls
# `record <passed> <failed> <label>` (or lets busted's summary handler append
# to $LONGPOLL_COUNTS, with LONGPOLL_LABEL set).
set -uo pipefail
cd "$(dirname "$0")/.."
export LONGPOLL_VERSIONS=${LONGPOLL_VERSIONS:-5.1 luajit 5.3 5.4}
memcheck=${LONGPOLL_MEMCHECK:-1}
specs=("$@")
t_all=$SECONDS
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

ulimit -n 65536 2>/dev/null || ulimit -n 16384 2>/dev/null || true
counts=$(mktemp)
failures=$(mktemp)
times=$(mktemp)
export LONGPOLL_COUNTS=$counts LONGPOLL_FAILURES=$failures
# the module built with Lua 5.1's headers, checked in LuaJIT too (compat_spec)
case " $LONGPOLL_VERSIONS " in *" 5.1 "*) export LONGPOLL_TREE_51=$PWD/lua_modules ;; esac

# record <passed> <failed> <label>: one stage's counts
record() { echo "$1 $2 $3" >> "$counts"; }
# counted <label> <command...>: runs a busted command labelled <label>, notes
# how long it took; a run that wrote no counts (busted itself failed) fails
counted() {
  local label=$1 t0=$SECONDS before rc; shift
  before=$(wc -l < "$counts")
  LONGPOLL_LABEL=$label "$@"
  rc=$?
  echo "$label $((SECONDS - t0))" >> "$times"
  if [ "$(wc -l < "$counts")" -eq "$before" ]; then
    record 0 1 "$label:no-summary"
    echo "$label wrote no summary: busted did not finish (output above)" >> "$failures"
  fi
  return $rc
}

# per-version settings: interpreter, tree, C host test; only 5.4 has the TSan build
use_version() {
  case $1 in
    5.1|5.3) lua=lua$1; tree=$PWD/lua_modules; build=$PWD/build-$1 ;;
    5.4) lua=lua5.4; tree=$PWD/lua_modules; build=$PWD/build ;;
    luajit) lua=luajit; tree=$PWD/lua_modules/luajit; build=$PWD/build-luajit ;;
  esac
  export LONGPOLL_LUA=$lua LONGPOLL_TREE=$tree LONGPOLL_HOST_TEST=$build/host_test
  if [ "$1" = 5.4 ]; then export LONGPOLL_HOST_TEST_TSAN=$PWD/build-tsan/host_test
  else unset LONGPOLL_HOST_TEST_TSAN; fi
}

# valgrind memcheck over the memcheck task of .busted, in process; errors or
# definite leaks fail the run. LuaJIT: see the README, "Lua versions".
memcheck_run() {
  local label="memcheck-$lua" vg_log vg
  vg_log=$(mktemp)
  counted "$label" valgrind --quiet --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --log-file="$vg_log" "$lua" "$(command -v busted)" --run=memcheck "${specs[@]}"
  vg=$?
  cat "$vg_log"
  if [ "$vg" -eq 99 ] || grep -q "ERROR SUMMARY: [1-9]" "$vg_log"; then
    echo "valgrind reported errors or definite leaks under $lua"
    record 0 1 "$label:valgrind"
    echo "$label valgrind reported errors or definite leaks (log above)" >> "$failures"
  fi
  rm -f "$vg_log"
}

for v in $LONGPOLL_VERSIONS; do
  use_version "$v"
  echo "== specs (busted, $lua)"
  counted "$lua" busted --lua="$lua" "${specs[@]}"
  if [ "$memcheck" != 0 ]; then
    echo "== the specs that load the module again under valgrind memcheck ($lua)"
    memcheck_run
  fi
done

# ---- further stages go here (each records its counts) ----

# ASan+UBSan: the specs (Lua 5.4) and the response fuzzer on a sanitized build
# of the module; scripts/asan.sh appends its counts ("passed failed" lines)
if [ "${LONGPOLL_ASAN:-1}" != 0 ] && [ ${#specs[@]} -eq 0 ]; then
  case " $LONGPOLL_VERSIONS " in
    *" 5.4 "*)
      use_version 5.4
      echo "== the specs and the response fuzzer under ASan+UBSan (lua5.4)"
      asan_counts=$(mktemp)
      t0=$SECONDS
      LONGPOLL_COUNTS=$asan_counts LONGPOLL_LABEL=asan-lua5.4 bash scripts/asan.sh
      asan_rc=$?
      echo "asan-lua5.4 $((SECONDS - t0))" >> "$times"
      if [ ! -s "$asan_counts" ]; then
        echo "0 1" >> "$asan_counts"
      fi
      awk 'NF == 2 { $3 = "asan-lua5.4" } { print }' "$asan_counts" >> "$counts"
      [ "$asan_rc" -eq 0 ] || echo "asan-lua5.4 scripts/asan.sh failed (its report above)" >> "$failures"
      rm -f "$asan_counts" ;;
    *) echo "== ASan+UBSan stage skipped: it runs with Lua 5.4, not in LONGPOLL_VERSIONS" ;;
  esac
fi

echo "== summary"
awk '{ label = $3; for (i = 4; i <= NF; i++) label = label " " $i
       printf "%-28s %d passed, %d failed\n", label, $1, $2 }' "$counts"
awk '{ printf "%-28s %d s\n", $1, $2 }' "$times"
echo "total $((SECONDS - t_all)) s"
if [ -s "$failures" ]; then
  echo "== failed"
  cat "$failures"
fi
awk '{ p += $1; f += $2 } END { printf "%d passed, %d failed\n", p, f; exit (f > 0) }' "$counts"
rc=$?
rm -f "$counts" "$failures" "$times"
exit $rc
