#!/usr/bin/env bash
# bench/love.sh: what longpoll costs a LÖVE frame. Runs examples/love in its
# scripted mode under xvfb-run against the spec server while a publisher posts
# MESSAGES messages to its channel, one every INTERVAL_MS; the game prints the
# time spent in longpoll calls per frame (worst, p99, mean) when it quits.
#
#   bash bench/love.sh [runs=3] [messages=200] [interval_ms=50]
#
# Needs love, xvfb and the LuaJIT build in ./lua_modules/luajit (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3} messages=${2:-200} interval=${3:-50}

out=$(mktemp)
lua5.4 spec/support/server.lua --port 0 >"$out" 2>/dev/null &
server=$!
trap 'kill "$server" 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q '^PORT' "$out" && break; sleep 0.05; done
url="http://127.0.0.1:$(awk '/^PORT/ { print $2 }' "$out")"

publish() { # publish <messages> <interval_ms>: from a fresh channel state
  lua5.4 - "$url" "$1" "$2" <<'EOF'
local http, socket = require "socket.http", require "socket"
local url, n, ms = arg[1], tonumber(arg[2]), tonumber(arg[3])
http.request(url .. "/_reset", "{}")
for i = 1, n do
  assert(http.request(url .. "/publish/love", "message " .. i))
  socket.sleep(ms / 1000)
end
EOF
}

# LÖVE's LuaJIT finds the LuaJIT build (the publisher's lua5.4 keeps its own paths)
lpath="$PWD/lua_modules/luajit/share/lua/5.1/?.lua;;" lcpath="$PWD/lua_modules/luajit/lib/lua/5.1/?.so;;"
echo "LÖVE $(love --version 2>/dev/null | head -1); $messages messages, one every $interval ms; $(nproc) CPUs"
for r in $(seq "$runs"); do
  publish "$messages" "$interval" &
  publisher=$!
  LUA_PATH=$lpath LUA_CPATH=$lcpath LONGPOLL_LOVE_SCRIPT=$messages timeout 300 xvfb-run -a love examples/love "$url" 2>/dev/null \
    | grep -E '^(frames|messages)' | sed "s/^/run $r: /"
  wait "$publisher"
done
