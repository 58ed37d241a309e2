#!/usr/bin/env bash
# Installs what lua-longpoll needs on Debian 12 (as root, or with sudo) and
# builds it the way users install it: through the rockspec into ./lua_modules.
# Also builds the C host test (build/host_test). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  gcc make cmake pkg-config
  lua5.4 liblua5.4-dev libcurl4-openssl-dev lua-cjson luarocks
  lua-busted lua-socket lua-luv valgrind nginx libnginx-mod-nchan openssl iproute2
)
[ "${LONGPOLL_BENCH:-}" = 1 ] && packages+=(golang-go gnuplot-nox)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "== installing: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
  # the nginx package starts a system nginx on port 80; the specs run their own
  $sudo systemctl stop nginx 2>/dev/null || $sudo service nginx stop 2>/dev/null || true
fi

echo "== building through the rockspec into ./lua_modules"
luarocks --lua-version=5.4 --tree ./lua_modules make --deps-mode=none longpoll-*.rockspec >/dev/null
echo "== building the C host test, and a ThreadSanitizer build of it and the module"
cmake -S . -B build -DLONGPOLL_HOST_TEST=ON >/dev/null
cmake --build build -j2 >/dev/null
cmake -S . -B build-tsan -DLONGPOLL_HOST_TEST=ON -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS="-fsanitize=thread" -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=thread" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build build-tsan -j2 >/dev/null
