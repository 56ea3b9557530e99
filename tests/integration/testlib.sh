# Helpers every test script shares (sourced by harness.sh and multihost.sh):
# timestamped logging, failing hard or softly (TEST_FAILED records it for the
# exit trap), and waiting for an event with a deadline instead of sleeping.

log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*"; }

fail() {
    log "FAIL: $*" >&2
    TEST_FAILED=1
    exit 1
}

# soft_fail MESSAGE: records a failure and goes on, to report every case.
soft_fail() {
    log "FAIL: $*" >&2
    TEST_FAILED=1
}

now_ms() { date +%s%3N; }

# wait_until TIMEOUT_S CMD...: polls CMD until it succeeds; 1 at the deadline.
wait_until() {
    local deadline=$(( $(now_ms) + ${1} * 1000 ))
    shift
    until "$@"; do
        (( $(now_ms) < deadline )) || return 1
        sleep 0.02
    done
}

# needs TOOL:PACKAGE...: skips the test (status 77) without the tool.
needs() {
    local t
    for t in "$@"; do
        if ! command -v "${t%%:*}" >/dev/null 2>&1; then
            echo "SKIP: ${t%%:*} is not installed (Debian package ${t#*:}; scripts/deps.sh installs it)"
            exit 77
        fi
    done
}

# files_exist FILE...: every one of them exists.
files_exist() {
    local f
    for f in "$@"; do [[ -e "$f" ]] || return 1; done
}

# expect_exit WHAT PID TIMEOUT_S WANT: waits for a client (wait_rank, which
# each harness defines), fails unless it exits with WANT.
expect_exit() {
    local rc=0
    wait_rank "$2" "$3" || rc=$?
    [[ "$rc" == "$4" ]] || fail "$1: exit status $rc, expected $4"
}
