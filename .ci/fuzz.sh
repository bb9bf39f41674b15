#!/usr/bin/env bash
# Runs every fuzz target for a short, fixed budget (FUZZTIME, default 15s).
# The committed corpora under testdata/fuzz run as ordinary tests too.
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${FUZZTIME:-15s}"
grep -rl --include='*_test.go' '^func Fuzz' cmd proxy vault token login internal 2>/dev/null | while read -r f; do
  pkg="./$(dirname "$f")"
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r name; do
    echo "fuzz ${pkg} ${name} (${budget})"
    go test -run='^$' -fuzz="^${name}\$" -fuzztime="${budget}" "${pkg}"
  done
done
