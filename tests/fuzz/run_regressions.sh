#!/bin/sh
# run_regressions.sh SRCDIR TARGET=FUZZER...
# Runs every file of SRCDIR/regressions/TARGET/ (inputs that once crashed)
# and SRCDIR/corpus/TARGET/ (the seeds) through its fuzzer once, without
# fuzzing. Fails on the first input that crashes or breaks an invariant.
set -eu
src=$1
shift
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
for arg in "$@"; do
    target=${arg%%=*} fuzzer=${arg#*=}
    set --
    for f in "$src/regressions/$target"/* "$src/corpus/$target"/*; do
        case $f in
            */README* | *'/*') ;;       # notes, and a directory with no files
            *) set -- "$@" "$f" ;;
        esac
    done
    echo "$target: $# inputs"
    [ $# -gt 0 ] && "$fuzzer" -timeout=10 -rss_limit_mb=2048 "$@"
done
echo "all inputs pass"
