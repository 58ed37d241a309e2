#!/usr/bin/env bash
# Sets up lua-longpoll and runs the demo: long-polls a local server, receives
# messages, then cancels a poll the server holds open (examples/cancel.lua).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
eval "$(luarocks --lua-version=5.4 --tree ./lua_modules path)"
out=$(mktemp)
lua5.4 spec/support/server.lua --port 0 >"$out" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q '^PORT' "$out" && break; sleep 0.05; done
url="http://127.0.0.1:$(awk '/^PORT/ { print $2 }' "$out")"
echo "== examples/cancel.lua against the spec server at $url"
lua5.4 examples/cancel.lua "$url"
