#!/usr/bin/env bash
# Replays the committed seed corpus of every fuzz target without fuzzing
# (libFuzzer -runs=0: each file is run once). Needs nightly and cargo-fuzz.
# Usage: fuzz/replay.sh [target...]   (default: all targets)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${PYO3_PYTHON:=$(command -v python3)}"
export PYO3_PYTHON
targets=("$@")
if (( ${#targets[@]} == 0 )); then
    targets=(parse_head chunked proxy_header)
fi
for t in "${targets[@]}"; do
    echo "== replaying fuzz/corpus/$t"
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -runs=0
done
