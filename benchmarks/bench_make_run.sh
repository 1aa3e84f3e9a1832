#!/usr/bin/env bash
# Times README command 1 on a fresh clone: first with no environment (it is created),
# then again with the environment in place. Usage: bash benchmarks/bench_make_run.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone --quiet "$repo" "$work/synth_assets"
cd "$work/synth_assets"
start=$(date +%s%N)
make run > cold.log 2>&1
cold=$(( ($(date +%s%N) - start) / 1000000 ))
start=$(date +%s%N)
make run > warm.log 2>&1
warm=$(( ($(date +%s%N) - start) / 1000000 ))
tail -n 9 warm.log
echo "make run, fresh clone, environment created: $((cold / 1000)).$(( (cold % 1000) / 100 )) s"
echo "make run, environment present (second run):  $((warm / 1000)).$(( (warm % 1000) / 100 )) s"
