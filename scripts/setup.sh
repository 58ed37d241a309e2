#!/usr/bin/env bash
# Installs what lua-longpoll needs on Debian 12 (as root, or with sudo) and
# builds it the way users install it, for each Lua version under test:
#   LONGPOLL_VERSIONS="5.1 luajit 5.3 5.4" (the default: all four)
# - through the rockspec into ./lua_modules (`luarocks --lua-version=5.x`;
#   5.1 with Lua 5.1's headers, the build LuaRocks users of 5.1 get) and, for
#   LuaJIT, into ./lua_modules/luajit with LuaJIT's own headers (the build
#   LuaRocks set up for LuaJIT, e.g. OpenResty's, gives);
# - with CMake, the C host test per version (build/ for 5.4, build-5.1,
#   build-5.3, build-luajit) and a ThreadSanitizer build of the 5.4 one.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
versions=${LONGPOLL_VERSIONS:-5.1 luajit 5.3 5.4}

packages=(
  gcc make cmake pkg-config libcurl4-openssl-dev luarocks
  lua5.1 liblua5.1-0-dev luajit libluajit-5.1-dev lua5.3 liblua5.3-dev lua5.4 liblua5.4-dev
  lua-cjson lua-busted lua-socket lua-luv lua-cqueues lua-copas
  love xvfb xauth neovim  # hosts examples/ runs in (LÖVE under Xvfb)
  valgrind nginx libnginx-mod-nchan openssl iproute2
  clang libclang-rt-14-dev
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

# rockspec install: luarocks builds in build.luarocks/, one version at a time
rock() {  # rock <lua-version> <tree> [VAR=VALUE...]
  local v=$1 tree=$2; shift 2
  rm -rf build.luarocks
  luarocks --lua-version="$v" --tree "$tree" make --deps-mode=none longpoll-*.rockspec "$@" \
    >build.luarocks.log 2>&1 || { cat build.luarocks.log; return 1; }
  rm -f build.luarocks.log
}
# CMake build of the module and the C host test for one version
host() {  # host <lua-version> <dir> [cmake args...]
  local v=$1 dir=$2; shift 2
  cmake -S . -B "$dir" -DLUA_VERSION="$v" -DLONGPOLL_HOST_TEST=ON "$@" >/dev/null
  cmake --build "$dir" -j2 >/dev/null
}

for v in $versions; do
  case $v in
    5.1|5.3|5.4)
      echo "== Lua $v: through the rockspec into ./lua_modules, and the C host test"
      rock "$v" ./lua_modules
      if [ "$v" = 5.4 ]; then host 5.4 build; else host "$v" "build-$v"; fi ;;
    luajit)
      echo "== LuaJIT: through the rockspec (LuaJIT's headers) into ./lua_modules/luajit, and the C host test"
      rock 5.1 ./lua_modules/luajit LUA_INCDIR="$(pkg-config --variable=includedir luajit 2>/dev/null || echo /usr/include/luajit-2.1)"
      host luajit build-luajit ;;
    *) echo "setup.sh: unknown Lua version '$v' (5.1, luajit, 5.3, 5.4)" >&2; exit 2 ;;
  esac
done
case " $versions " in
  *" 5.4 "*)
    echo "== a ThreadSanitizer build of the module and the C host test (Lua 5.4)"
    host 5.4 build-tsan -DCMAKE_BUILD_TYPE=Debug \
      -DCMAKE_C_FLAGS="-fsanitize=thread" -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=thread" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" ;;
esac
echo "== the libFuzzer targets, with clang (build-fuzz/: stream, options, headers, cursor)"
CC=clang cmake -S . -B build-fuzz -DLONGPOLL_STREAM_FUZZ=ON -DLONGPOLL_FUZZ=ON >/dev/null
cmake --build build-fuzz -j2 --target stream_fuzz options_fuzz headers_fuzz cursor_fuzz >/dev/null
