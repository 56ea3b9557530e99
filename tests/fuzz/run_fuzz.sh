#!/bin/sh
# run_fuzz.sh FUZZER SEEDS WORKDIR SECONDS
# Fuzzes for SECONDS on a fresh copy of the seed corpus in WORKDIR (the
# committed seeds are never written). A crash fails the test; its input is
# left in WORKDIR/artifacts/ and its path is printed by libFuzzer: minimize
# it (FUZZER -minimize_crash=1 -runs=10000 FILE) and add it to
# tests/fuzz/regressions/<target>/.
set -eu
fuzzer=$1 seeds=$2 work=$3 secs=$4
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
cp "$seeds"/* "$work/corpus/"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
exec "$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus"
