# harness.sh: sourced by the integration tests. Gives each test its own
# temporary directory and mlxd daemon, waits for events with deadlines (never
# sleeps to let things settle), and on exit stops the daemon, checks that it
# exited 0, prints its log when anything failed, and removes the directory.
#
# Needs MLXD_BIN and MLXCTL_BIN (ctest sets them); the client programs come
# in OPCHECK_BIN, ERRCASE_BIN, RAWPROTO_BIN.
#
#   start_daemon [ARGS...]   start mlxd on $T_SOCK, wait until it answers
#   daemon_alive             the daemon still runs and answers
#   stop_daemon              SIGTERM, wait with a deadline, require exit 0
#   launch N TIMEOUT -- CMD  mlxctl launch -n N, with a deadline
#   new_job                  set JOB to a fresh job id
#   spawn_rank JOB R N CMD   start one client process of a job by hand
#   wait_rank PID TIMEOUT    its exit status (kills it at the deadline)
#   wait_until TIMEOUT CMD   poll CMD until it succeeds, with a deadline
#   client_pending PID OP    the daemon shows client PID waiting in OP
#   start_waiting_job        a job of 2 whose rank 0 ($R0) waits in all_sum for rank 1 ($R1)
#   fail MESSAGE             fail the test now
#   soft_fail MESSAGE        fail the test at its end

set -u -o pipefail

: "${MLXD_BIN:?MLXD_BIN must name the mlxd binary}"
: "${MLXCTL_BIN:?MLXCTL_BIN must name the mlxctl binary}"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# Sanitizer builds: Open MPI's own leaks are not mlxd's (see lsan.supp).
T_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$T_HERE/lsan.supp}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-fast_unwind_on_malloc=0}"

# A short directory: mlxd's ipc paths are limited to 103 bytes.
T_DIR=$(mktemp -d /tmp/mxt.XXXXXX) || exit 1
T_SOCK="ipc://$T_DIR/d.sock"
T_LOG="$T_DIR/mlxd.log"
T_OP_TIMEOUT=${T_OP_TIMEOUT:-20}
T_DAEMON_PID=""
TEST_FAILED=0
T_PIDS=()
declare -A T_OUT=()
T_JOBS=0
export MLXD_SOCKET="$T_SOCK" MLXT_DIR="$T_DIR"
# Open MPI's session directories of the test's daemons in a directory of the
# test (open to the other user some tests run a daemon as): singletons started
# at once by tests running in parallel otherwise race to create the same
# /tmp/ompi.HOST.UID/jf.0 ("File exists", MPI_Init fails).
mkdir -m 1777 "$T_DIR/ompi" && export OMPI_MCA_orte_tmpdir_base="$T_DIR/ompi"
unset MLXD_JOB MLXD_RANK MLXD_SIZE

source "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"

# new_job: sets JOB to a job id not used before in this test.
new_job() {
    T_JOBS=$((T_JOBS + 1))
    JOB="it-$$-$T_JOBS"
}

start_daemon() {
    [[ -z "$T_DAEMON_PID" ]] || fail "start_daemon: a daemon already runs"
    log "starting $MLXD_BIN --socket $T_SOCK --op-timeout $T_OP_TIMEOUT --log-level debug $*"
    "$MLXD_BIN" --socket "$T_SOCK" --op-timeout "$T_OP_TIMEOUT" --log-level debug "$@" >>"$T_LOG" 2>&1 &
    T_DAEMON_PID=$!
    if ! "$MLXCTL_BIN" wait --socket "$T_SOCK" --timeout 10; then
        kill -0 "$T_DAEMON_PID" 2>/dev/null || fail "mlxd exited during startup"
        fail "mlxd did not answer on $T_SOCK within 10 s"
    fi
    log "mlxd (pid $T_DAEMON_PID) answers on $T_SOCK"
}

# The daemon is still running and still answers; fails the test if not.
daemon_alive() {
    [[ -n "$T_DAEMON_PID" ]] || fail "daemon_alive: no daemon was started"
    kill -0 "$T_DAEMON_PID" 2>/dev/null || fail "mlxd (pid $T_DAEMON_PID) is no longer running"
    if ! "$MLXCTL_BIN" wait --socket "$T_SOCK" --timeout 5 >/dev/null; then
        kill -0 "$T_DAEMON_PID" 2>/dev/null || fail "mlxd (pid $T_DAEMON_PID) is no longer running"
        fail "mlxd (pid $T_DAEMON_PID) runs but does not answer on $T_SOCK"
    fi
}

# SIGTERM, then wait up to 15 s for exit status 0.
stop_daemon() {
    [[ -n "$T_DAEMON_PID" ]] || return 0
    local pid=$T_DAEMON_PID rc
    T_DAEMON_PID=""
    kill -TERM "$pid" 2>/dev/null || { wait "$pid"; rc=$?; log "mlxd had already exited with $rc"; return 1; }
    if ! wait_until 15 eval "! kill -0 $pid 2>/dev/null"; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        log "mlxd did not exit within 15 s of SIGTERM"
        return 1
    fi
    wait "$pid"
    rc=$?
    if (( rc != 0 )); then
        log "mlxd exited with status $rc after SIGTERM"
        return 1
    fi
    log "mlxd exited 0 after SIGTERM"
}

# launch N TIMEOUT_S -- CMD...: one job through mlxctl launch; its status.
launch() {
    local n=$1 timeout=$2
    shift 3
    log "mlxctl launch -n $n -- $*"
    timeout --kill-after=5 "$timeout" "$MLXCTL_BIN" launch -n "$n" -- "$@"
    local rc=$?
    (( rc == 124 || rc == 137 )) && log "mlxctl launch did not finish within $timeout s"
    return $rc
}

# spawn_rank JOB RANK SIZE CMD...: starts one client with the environment
# mlxctl launch would give it, output to a file of its own. Sets SPAWNED.
spawn_rank() {
    local job=$1 rank=$2 size=$3 out="$T_DIR/client.${#T_PIDS[@]}.out"
    shift 3
    MLXD_JOB=$job MLXD_RANK=$rank MLXD_SIZE=$size "$@" >"$out" 2>&1 &
    SPAWNED=$!
    T_PIDS+=("$SPAWNED")
    T_OUT[$SPAWNED]=$out
}

# wait_rank PID TIMEOUT_S: the client's exit status, its output shown;
# kills it and returns 124 at the deadline.
wait_rank() {
    local pid=$1 rc out=${T_OUT[$1]:-}
    if ! wait_until "$2" eval "! kill -0 $pid 2>/dev/null"; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        [[ -n "$out" ]] && sed "s/^/  [pid $pid] /" "$out"
        log "client $pid did not exit within $2 s"
        return 124
    fi
    wait "$pid"
    rc=$?
    [[ -n "$out" ]] && sed "s/^/  [pid $pid] /" "$out"
    return $rc
}

# A job of two ranks of errcase drain: rank 0 waits in all_sum for rank 1,
# which holds back until the test touches "$T_DIR/$JOB.drained" (or is
# killed). Sets R0 and R1.
start_waiting_job() {
    new_job
    spawn_rank "$JOB" 0 2 "$ERRCASE_BIN" drain
    R0=$SPAWNED
    spawn_rank "$JOB" 1 2 "$ERRCASE_BIN" drain
    R1=$SPAWNED
    wait_until 20 client_pending "$R0" all_sum || fail "rank 0 of $JOB never waited in all_sum"
}

# client_pending PID OP: the daemon shows client PID waiting in OP.
client_pending() {
    # Read whole before matching: under pipefail, grep -q leaving early would
    # fail the pipeline whenever tr was still writing.
    local out
    out=$("$MLXCTL_BIN" status --json 2>/dev/null | tr -d ' \n') &&
        grep -qE "\"pid\":$1,[^}]*\"pending\":\"$2" <<<"$out"
}

# expect_status WHAT WANT GOT
expect_status() {
    [[ "$3" == "$2" ]] || fail "$1: exit status $3, expected $2"
}

# Fails the test if the daemon log shows a sanitizer report or a crash.
check_log() {
    [[ -f "$T_LOG" ]] || return 0
    if grep -qE 'AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:|LeakSanitizer|Segmentation fault' "$T_LOG"; then
        log "the daemon log shows a sanitizer report or a crash"
        return 1
    fi
}

harness_exit() {
    local rc=$? pid
    trap - EXIT
    for pid in "${T_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null && log "killed leftover client $pid"
    done
    stop_daemon || rc=1
    check_log || rc=1
    (( TEST_FAILED )) && rc=1
    if (( rc != 0 )); then
        log "---- mlxd log ($T_LOG) ----"
        [[ -f "$T_LOG" ]] && tail -n 300 "$T_LOG"
        log "---- end of mlxd log ----"
        log "TEST FAILED"
    else
        log "TEST PASSED"
    fi
    rm -rf "$T_DIR"
    exit $rc
}
trap harness_exit EXIT
trap 'fail "interrupted"' INT TERM
