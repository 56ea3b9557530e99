#!/bin/bash
# The Python module's tests: pytest files run on every rank of a job under
# `mlxctl launch`, against a daemon of the test's own (harness.sh), one
# function per ctest test:  bash cases.sh NAME
#
# Needs MLXD_BIN, MLXCTL_BIN, PYTHONPATH_MLXD (the build tree's python/
# folder) and PYTHON (default /usr/bin/python3); SUM_BIN for the blog test,
# MLX_CASES_BIN for the same cases in C.

source "$(dirname "${BASH_SOURCE[0]}")/../integration/harness.sh"

P_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
P_ROOT=$(cd "$P_HERE/../.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
export PYTHONPATH="${PYTHONPATH_MLXD:-}:$P_HERE"
export PYTHONDONTWRITEBYTECODE=1 MLXCTL_BIN

# pytest_job N TIMEOUT FILES...: pytest on every rank of a job of N; fails
# the test unless every rank passes.
pytest_job() {
    local n=$1 timeout=$2
    shift 2
    (cd "$P_HERE" && launch "$n" "$timeout" -- "$PYTHON" -m pytest -q -s -p no:cacheprovider "$@") ||
        fail "pytest $* failed with $n ranks"
}

mlx_tests() {
    start_daemon
    pytest_job "$1" 900 test_mlx_distributed.py test_module.py
    daemon_alive
}
python_mlx_tests_one_rank() { mlx_tests 1; }
python_mlx_tests_two_ranks() { mlx_tests 2; }
python_mlx_tests_three_ranks() { mlx_tests 3; }
python_mlx_tests_eight_ranks() { mlx_tests 8; }

# The same cases in C against libmlxd.
mlx_c_cases() {
    start_daemon
    launch "$1" 900 -- "${MLX_CASES_BIN:?}" || fail "mlx_cases failed with $1 ranks"
    daemon_alive
}
c_mlx_cases_one_rank() { mlx_c_cases 1; }
c_mlx_cases_two_ranks() { mlx_c_cases 2; }
c_mlx_cases_three_ranks() { mlx_c_cases 3; }
c_mlx_cases_eight_ranks() { mlx_c_cases 8; }

python_every_exception_class_from_its_failure() {
    T_OP_TIMEOUT=3
    start_daemon --max-shm-bytes 8388608
    pytest_job 2 300 test_errors.py
    daemon_alive
}

python_wait_releases_the_gil_and_calls_are_serialized() {
    start_daemon
    pytest_job 3 300 test_threads.py
}

python_sigint_interrupts_a_waiting_op() {
    start_daemon
    pytest_job 2 300 test_interrupt.py
    daemon_alive
}

python_ten_thousand_ops_do_not_leak() {
    start_daemon
    pytest_job 2 600 test_leak.py
}

python_alloc_survives_its_group_and_goes_with_its_array() {
    start_daemon
    pytest_job 2 300 test_alloc.py
}

# expect_lines WHAT FILE LINE...: FILE holds exactly these lines, in any
# order (the ranks' output interleaves).
expect_lines() {
    local what=$1 file=$2 got want
    shift 2
    got=$(sort "$file")
    want=$(printf '%s\n' "$@" | sort)
    [[ "$got" == "$want" ]] || { diff <(echo "$want") <(echo "$got"); fail "$what: not the blog's lines"; }
    log "$what: the blog's lines"
}

blog_programs_print_the_posts_lines() {
    start_daemon
    local post=("[0] Process 1/2 initialized." "[1] Process 2/2 initialized."
                "[0] Process 0 computed data sum to be 3" "[1] Process 1 computed data sum to be 7"
                "[0] Data sum total = 10" "[1] Data sum total = 10")
    timeout 120 "$MLXCTL_BIN" launch -n 2 --prefix -- "$PYTHON" "$P_ROOT/examples/sum.py" >"$T_DIR/sum.py.out" ||
        fail "examples/sum.py failed"
    expect_lines "examples/sum.py" "$T_DIR/sum.py.out" "${post[@]}"
    timeout 120 "$MLXCTL_BIN" launch -n 2 --prefix -- "${SUM_BIN:?}" >"$T_DIR/sum.c.out" || fail "examples/sum failed"
    expect_lines "examples/sum.c" "$T_DIR/sum.c.out" "${post[@]}"
    timeout 120 "$MLXCTL_BIN" launch -n 2 --prefix -- "$PYTHON" "$P_ROOT/examples/hello.py" >"$T_DIR/hello.out" ||
        fail "examples/hello.py failed"
    expect_lines "examples/hello.py" "$T_DIR/hello.out" \
        "[0] 0 [2. 2. 2. 2. 2. 2. 2. 2. 2. 2.]" "[1] 1 [2. 2. 2. 2. 2. 2. 2. 2. 2. 2.]"
    daemon_alive
}

# ---- dispatch ----

[[ $# -eq 1 ]] || fail "usage: cases.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
