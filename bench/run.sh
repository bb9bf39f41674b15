#!/usr/bin/env bash
# Builds and runs the benchmark harness from the module root. Every flag is
# passed on (see `bench/run.sh -h`). Presets:
#   bench/run.sh smoke   ~2 minutes: 2 s cells, 1 repeat, 512 MiB streams, 3 expiries
#   bench/run.sh full    ~15 minutes: 10 s cells, 3 repeats, 2 GiB streams, 5 expiries
set -euo pipefail
cd "$(dirname "$0")/.."
preset=()
case "${1:-}" in
  smoke) shift; preset=(-d 2s -warmup 1s -repeats 1 -stream-bytes 536870912 -stream-repeats 1 -storm-expiries 3) ;;
  full)  shift; preset=(-d 10s -warmup 3s -repeats 3 -stream-bytes 2147483648 -stream-repeats 3 -storm-expiries 5) ;;
esac
out="$(mktemp -d "${TMPDIR:-/tmp}/panopto-sidecar-bench-bin.XXXXXX")"
trap 'rm -rf "$out"' EXIT
go build -o "$out/bench" ./bench
exec_status=0
"$out/bench" "${preset[@]}" "$@" || exec_status=$?
exit "$exec_status"
