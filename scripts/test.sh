#!/usr/bin/env bash
# Installs what is missing, builds mlxd in build/ with warnings as errors and
# runs the whole test suite with ctest, then builds it again in build-asan/
# with AddressSanitizer and UndefinedBehaviorSanitizer (leak checking on) and
# runs the suite once more, then runs the fuzzers for a bounded time. The
# exit status is the first failure's.
#
#   scripts/test.sh               both passes
#   scripts/test.sh --no-sanitize no sanitizer pass (or MLXD_TEST_SANITIZE=0)
#   scripts/test.sh --no-fuzz     no fuzzing pass (or MLXD_TEST_FUZZ=0); it runs each
#                                 libFuzzer target for MLXD_FUZZ_SECONDS (30)
#   scripts/test.sh -- ARGS...    extra ctest arguments, e.g. -- -R launch
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sanitize=${MLXD_TEST_SANITIZE:-1}
fuzz=${MLXD_TEST_FUZZ:-1}
ctest_args=()

while (($# > 0)); do
    case $1 in
        --sanitize) sanitize=1 ;;
        --no-sanitize) sanitize=0 ;;
        --no-fuzz) fuzz=0 ;;
        --) shift; ctest_args+=("$@"); break ;;
        -h|--help)
            sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
            exit 0 ;;
        *)
            echo "test.sh: unknown argument '$1'; see scripts/test.sh --help" >&2
            exit 2 ;;
    esac
    shift
done

"$root/scripts/deps.sh"

# Open MPI refuses to run as root unless told that this is intended (CI and
# fresh containers run as root).
if ((EUID == 0)); then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

jobs=$(nproc 2>/dev/null || echo 2)

# Configures and builds one tree, then runs ctest in it; returns ctest's
# status. Every test has its own TIMEOUT; --timeout is the safety net for
# one that has none.
# (set -e does not apply inside a function called from `||`, hence the
# explicit checks.)
run_pass() {
    local dir=$1
    shift
    echo "== test.sh: building $dir"
    local rc=0
    cmake -S "$root" -B "$root/$dir" -DMLXD_WERROR=ON "$@" || rc=$?
    if ((rc == 0)); then
        cmake --build "$root/$dir" --parallel "$jobs" ${build_targets:+--target $build_targets} || rc=$?
    fi
    if ((rc != 0)); then
        echo "test.sh: building $dir failed (status $rc); the tests did not run" >&2
        return "$rc"
    fi
    echo "== test.sh: testing $dir"
    (cd "$root/$dir" && ctest --output-on-failure --timeout 600 --parallel "$jobs" "${ctest_args[@]}")
}

rc=0
run_pass build || rc=$?

if [[ $sanitize == 1 ]]; then
    # Sanitizer reports end the process at the first error, with a trace.
    # Leak checking stays on for the daemon and the library. Open MPI keeps
    # memory until exit in its plugins: they stay loaded (so their stacks
    # have names) and are suppressed by name; full unwinding on malloc lets
    # the stacks reach libmpi.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_stack_use_after_return=1:fast_unwind_on_malloc=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/integration/lsan.supp}
    export OMPI_MCA_mca_base_component_disable_dlclose=1
    asan_rc=0
    run_pass build-asan -DMLXD_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo || asan_rc=$?
    if ((rc == 0)); then
        rc=$asan_rc
    fi
fi

# The fuzzers (clang, libFuzzer): each target for a bounded time from its
# committed seed corpus, then every regression input once.
if [[ $fuzz == 1 ]]; then
    fuzz_rc=0
    export MLXD_FUZZ_SECONDS=${MLXD_FUZZ_SECONDS:-30}
    ctest_args+=(-L fuzz)
    build_targets="fuzz_request fuzz_control fuzz_control_struct fuzz_ring" run_pass build-fuzz -DCMAKE_C_COMPILER=clang -DMLXD_FUZZ=ON -DMLXD_FUZZ_SECONDS="$MLXD_FUZZ_SECONDS" \
        || fuzz_rc=$?
    if ((rc == 0)); then
        rc=$fuzz_rc
    fi
fi

exit "$rc"
