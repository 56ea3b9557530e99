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

# A rank of 8 on two busy cores can fall far behind the others on the large
# arrays: a deadline of minutes, not the harness's 20 s.
mlx_tests() {
    T_OP_TIMEOUT=180
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
    T_OP_TIMEOUT=180
    start_daemon
    launch "$1" 900 -- "${MLX_CASES_BIN:?}" || fail "mlx_cases failed with $1 ranks"
    daemon_alive
}
c_mlx_cases_one_rank() { mlx_c_cases 1; }
c_mlx_cases_two_ranks() { mlx_c_cases 2; }
c_mlx_cases_three_ranks() { mlx_c_cases 3; }
c_mlx_cases_eight_ranks() { mlx_c_cases 8; }

interrupt_check_ends_a_wait_and_leaves_the_group() {
    start_daemon
    launch 2 60 -- "${INTERRUPT_CASE_BIN:?}" || fail "interrupt_case failed"
    daemon_alive
}

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

# wait=False: requests in flight, test(), dropped requests, errors, dtypes.
nonblocking_tests() {
    start_daemon
    pytest_job "$1" 300 test_nonblocking.py
    daemon_alive
}
python_nonblocking_requests_match_in_issue_order_two_ranks() { nonblocking_tests 2; }
python_nonblocking_requests_match_in_issue_order_three_ranks() { nonblocking_tests 3; }

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

# cmake --install to prefixes of each kind: the module lands where
# `pkg-config --variable=pythondir mlxd` says, and /usr/bin/python3 imports
# it from there (PYTHONPATH for a prefix it does not read) and runs a job,
# finding libmlxd through the module's RUNPATH alone.
python_module_installs_where_pkg_config_says() {
    command -v pkg-config >/dev/null || exit 77
    local prefix dir pydir dyn
    start_daemon
    for prefix in "$T_DIR/opt" "$T_DIR/usr"; do
        cmake --install "${BUILD_DIR:?}" --prefix "$prefix" >"$T_DIR/install.log" 2>&1 ||
            { cat "$T_DIR/install.log"; fail "cmake --install --prefix $prefix"; }
        dir=$(ls -d "$prefix"/lib*/pkgconfig "$prefix"/lib/*/pkgconfig 2>/dev/null | head -n 1)
        pydir=$(PKG_CONFIG_PATH=$dir pkg-config --variable=pythondir mlxd) || fail "no mlxd.pc under $prefix"
        [[ $pydir == "$prefix"/lib/python3* && -f $pydir/mlxd/__init__.py ]] ||
            fail "pkg-config names pythondir $pydir, which holds no mlxd"
        dyn=$(readelf -d "$pydir"/mlxd/_core*.so) && grep -q 'RUNPATH.*\$ORIGIN' <<<"$dyn" ||
            fail "the installed module has no \$ORIGIN RUNPATH"
        log "installed to $pydir"
        (cd / && env -u LD_LIBRARY_PATH PYTHONPATH="$pydir" "$MLXCTL_BIN" launch -n 2 --prefix -- "$PYTHON" -c \
            'import mlxd, sys; assert mlxd.__file__.startswith(sys.argv[1]); print(int(mlxd.all_sum(1)))' "$pydir" \
            >"$T_DIR/installed.out") || fail "the installed module did not run a job"
        [[ "$(sort "$T_DIR/installed.out" | xargs)" == "[0] 2 [1] 2" ]] ||
            fail "the installed module's all_sum: $(cat "$T_DIR/installed.out")"
    done
    # The folders each prefix gets (what /usr/bin/python3 reads for /usr and /usr/local).
    local want
    for prefix in /usr /usr/local /opt/x; do
        cmake -S "$P_ROOT" -B "$T_DIR/cfg" -DCMAKE_INSTALL_PREFIX=$prefix -DBUILD_TESTING=OFF >/dev/null ||
            fail "configure for $prefix"
        case $prefix in
            /usr) want=/usr/lib/python3/dist-packages ;;
            /usr/local) want=$("$PYTHON" -c 'import sys; print("/usr/local/lib/python%d.%d/dist-packages" % sys.version_info[:2])') ;;
            *) want=$("$PYTHON" -c 'import sys; print("/opt/x/lib/python%d.%d/site-packages" % sys.version_info[:2])') ;;
        esac
        [[ "$(PKG_CONFIG_PATH=$T_DIR/cfg pkg-config --variable=pythondir mlxd)" == "$want" ]] ||
            fail "prefix $prefix: pythondir is not $want"
        case $prefix in /usr|/usr/local) "$PYTHON" -c 'import sys; sys.exit(sys.argv[1] not in sys.path)' "$want" ||
            fail "$PYTHON does not read $want" ;; esac
        rm -rf "$T_DIR/cfg"
    done
    daemon_alive
}

# ---- dispatch ----

[[ $# -eq 1 ]] || fail "usage: cases.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
