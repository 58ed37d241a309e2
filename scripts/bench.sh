#!/usr/bin/env bash
# Sets up lua-longpoll plus the benchmark peers' packages (Go, gnuplot) and
# runs every benchmark of bench/run.sh: one table, each figure beside its peers.
set -euo pipefail
cd "$(dirname "$0")/.."
LONGPOLL_BENCH=1 bash scripts/setup.sh
exec bash bench/run.sh
