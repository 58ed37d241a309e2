#!/usr/bin/env bash
# The specs, then the response fuzzer, on the module built with AddressSanitizer
# and UBSan (build-asan/, -DLONGPOLL_SANITIZE=address,undefined), loaded into the
# stock lua5.4 with libasan preloaded. Run by scripts/test.sh; alone:
#
#   bash scripts/asan.sh       (LONGPOLL_FUZZ_CASES=3000, LONGPOLL_FUZZ_SEED=random)
#
# Any finding ends the process that made it (halt_on_error; the module is built
# with -fno-sanitize-recover) and fails the run, with its report printed. Leaks:
# only the spec process checks them (processes it starts do not: interpreters,
# nginx and the fixtures exit without freeing, see spec/support/sanitize_helper.lua),
# and a leak report counts only when a stack passes through the module (not
# when libcurl allocated it while handling socket events: see module_leaks);
# what the interpreter or busted keep at exit is not the module's (their number
# is printed). Not run here: server_spec (tests the Lua test server, as in the
# valgrind run), stream_parser_spec (a libFuzzer binary with clang's own ASan
# runtime) and the RSS-based "memory stays flat" check (ASan's allocator).
# Appends "passed failed" lines to $LONGPOLL_COUNTS, as busted does.
set -uo pipefail
cd "$(dirname "$0")/.."
counts=${LONGPOLL_COUNTS:-/dev/null}
start=$SECONDS
fail() { echo "asan: $*"; echo "0 1" >>"$counts"; }

if ! { cmake -S . -B build-asan -DLUA_VERSION=5.4 -DLONGPOLL_SANITIZE=address,undefined \
         -DCMAKE_BUILD_TYPE=Debug >/dev/null && cmake --build build-asan --target core -j2 >/dev/null; }; then
  fail "the sanitized build failed"
  exit 1
fi
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
libasan=$(gcc -print-file-name=libasan.so)
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:exitcode=86:log_path=$logs/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
rc=0

echo "== specs (busted, lua5.4, ASan+UBSan)"
spec_counts=$logs/counts
env -u LONGPOLL_TREE -u LONGPOLL_HOST_TEST_TSAN LONGPOLL_COUNTS="$spec_counts" \
  LONGPOLL_BUILD="$PWD/build-asan" LONGPOLL_LUA=lua5.4 LD_PRELOAD="$libasan" \
  busted --helper=spec/support/sanitize_helper.lua --exclude-pattern=server_spec \
    --exclude-pattern=stream_parser_spec --filter-out="memory%sstays%sflat"
if [ -s "$spec_counts" ]; then cat "$spec_counts" >>"$counts"; else fail "busted ended without its summary (crashed?)"; rc=1; fi
echo "asan: specs took $((SECONDS - start)) s"

fuzz_start=$SECONDS
seed=${LONGPOLL_FUZZ_SEED:-$(( $(date +%s) % 1000000 ))}
echo "== the response fuzzer (${LONGPOLL_FUZZ_CASES:-3000} cases, seed $seed, ASan+UBSan)"
if LD_PRELOAD="$libasan" LUA_CPATH="$PWD/build-asan/?.so;;" lua5.4 spec/fuzz/run.lua \
     --seed "$seed" --cases "${LONGPOLL_FUZZ_CASES:-3000}" --progress "$logs/fuzz.progress"; then
  echo "1 0" >>"$counts"
else
  fail "the response fuzzer failed; it was at: $(cat "$logs/fuzz.progress" 2>/dev/null)"
  rc=1
fi
echo "asan: the fuzzer took $((SECONDS - fuzz_start)) s"

# what the sanitizers wrote: every memory or UB error fails; a leak only when
# its report passes through the module
# Leak blocks (one "Direct/Indirect leak of" paragraph each) that count: those
# whose stack passes through the module, except memory libcurl itself allocated
# while handling socket events (its first frame is libcurl's, and the module
# frame is socket_action): that is libcurl's to free, never the module's; a
# leaked handle shows as its own block from make_easy or the engine's start.
# libcurl 7.88.1 leaks such a block about once per 100,000 hostile responses
# in its chunked decoder (32 to 76 bytes, seen in the long response-fuzz run);
# it is printed, not failed.
module_leaks() {  # prints the blocks of file $1 that count
  awk 'function flush() { if (blk != "" && mod && !curl_own) printf "%s", blk; blk = ""; mod = 0; curl_own = 0; n = 0 }
       /^(Direct|Indirect) leak of/ { flush(); blk = $0 "\n"; inblk = 1; next }
       /^SUMMARY|^$/ { if (inblk) { flush(); inblk = 0 } next }
       inblk { blk = blk $0 "\n"; n++
               if (n == 2 && /libcurl\.so/) curl_own = 1
               if (/core\.so|lp_engine\.c|lp_stream\.c|longpoll\.c/) { mod = 1; if (!/socket_action|worker_main/) curl_own = 0 } }
       END { flush() }' "$1"
}
ignored=0
for f in "$logs"/asan.* "$logs"/ubsan.*; do
  [ -e "$f" ] || continue
  if grep -q "LeakSanitizer" "$f" && ! grep -q "ERROR: AddressSanitizer\|runtime error" "$f"; then
    blocks=$(module_leaks "$f")
    if [ -n "$blocks" ]; then
      printf '%s\n' "$blocks"; fail "a leak through the module ($(basename "$f"))"; rc=1
    else
      if grep -q "socket_action" "$f"; then echo "asan: libcurl's own leak while handling events:"; grep -A3 "leak of" "$f"; fi
      ignored=$((ignored + 1))
    fi
  else
    cat "$f"; fail "a sanitizer report ($(basename "$f"))"; rc=1
  fi
done
echo "asan: $ignored leak report(s) not the module's ignored; $((SECONDS - start)) s in all"
exit $rc
