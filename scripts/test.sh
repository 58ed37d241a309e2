#!/usr/bin/env bash
# Sets up and runs every test: the busted specs against the rockspec install,
# then the core specs once more under valgrind memcheck, then under ASan+UBSan
# with the response fuzzer (scripts/asan.sh). Ends with one line
# "N passed, N failed" adding up all runs.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

ulimit -n 65536 2>/dev/null || ulimit -n 16384 2>/dev/null || true
counts=$(mktemp)
export LONGPOLL_COUNTS=$counts
export LONGPOLL_TREE=$PWD/lua_modules
export LONGPOLL_HOST_TEST=$PWD/build/host_test
export LONGPOLL_HOST_TEST_TSAN=$PWD/build-tsan/host_test

echo "== specs (busted, lua5.4)"
busted

echo "== the core specs again under valgrind memcheck"
vg_log=$(mktemp)
valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite --log-file="$vg_log" \
  lua5.4 "$(command -v busted)" --run=memcheck
vg=$?
cat "$vg_log"
vg_failed=0
if [ "$vg" -eq 99 ] || grep -q "ERROR SUMMARY: [1-9]" "$vg_log"; then
  echo "valgrind reported errors or definite leaks"
  vg_failed=1
fi
rm -f "$vg_log"

# ASan+UBSan: the specs and the response fuzzer on a sanitized build of the
# module (scripts/asan.sh appends its counts to $LONGPOLL_COUNTS)
echo "== the specs and the response fuzzer under ASan+UBSan"
bash scripts/asan.sh

awk -v extra="$vg_failed" '{ p += $1; f += $2 } END { printf "%d passed, %d failed\n", p, f + extra; exit (f + extra > 0) }' "$counts"
rc=$?
rm -f "$counts"
exit $rc
