#!/usr/bin/env bash
# Packs the source rock of this checkout with `luarocks pack`:
#
#   bash scripts/pack.sh [OUTDIR]      (default: the checkout; prints the .src.rock's path)
#
# The rockspec's source is the checkout itself ("git+file://."); luarocks pack
# clones it from a directory of its own, where "." means nothing, so it is
# given a copy of the rockspec whose URL is this checkout's absolute path. It
# packs what is committed (HEAD), as any clone would. The rock holds the
# rockspec and the sources: `luarocks build longpoll-<v>.src.rock` needs no
# network (spec/rockspec_spec.lua builds one in a fresh tree, offline).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
rockspec=$(ls "$root"/longpoll-*.rockspec)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|url = \"git+file://.\"|url = \"git+file://$root\"|" "$rockspec" > "$work/$(basename "$rockspec")"
grep -q "git+file://$root\"" "$work/$(basename "$rockspec")" ||
  { echo "pack.sh: no 'url = \"git+file://.\"' in $rockspec" >&2; exit 1; }
(cd "$work" && luarocks pack "$(basename "$rockspec")" >&2)
mkdir -p "$out"
rock=$(basename "$rockspec" .rockspec).src.rock
mv "$work/$rock" "$out/$rock"
echo "$out/$rock"
