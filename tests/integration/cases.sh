#!/bin/bash
# The integration tests, one function per behaviour, named like the ctest
# test that runs it:  bash cases.sh NAME
# Each runs against its own real mlxd (see harness.sh) with real client
# processes: opcheck (every op, dtype and shape), errcase (one mode per error
# behaviour) and rawproto (malformed requests on the wire).

source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

: "${OPCHECK_BIN:?}" "${ERRCASE_BIN:?}" "${RAWPROTO_BIN:?}"

# A fresh job of two that must work: the daemon still serves.
next_job_works() {
    launch 2 30 -- "$ERRCASE_BIN" smoke || fail "a new job after $1 did not work"
}

# ---- every op, dtype and shape ----

all_ops_one_rank() {
    start_daemon
    launch 1 50 -- "$OPCHECK_BIN" || fail "opcheck in a job of 1"
    daemon_alive
}

all_ops_two_ranks() {
    start_daemon
    launch 2 80 -- "$OPCHECK_BIN" || fail "opcheck in a job of 2"
    daemon_alive
}

all_ops_three_ranks() {
    start_daemon
    launch 3 110 -- "$OPCHECK_BIN" || fail "opcheck in a job of 3"
    daemon_alive
}

all_ops_four_ranks() {
    start_daemon
    launch 4 110 -- "$OPCHECK_BIN" || fail "opcheck in a job of 4"
    daemon_alive
}

# Two jobs run on one daemon at the same time, each checking its own results.
two_jobs_at_once_do_not_mix() {
    start_daemon
    launch 2 80 -- "$OPCHECK_BIN" --quick --no-split &
    local a=$!
    launch 2 80 -- "$OPCHECK_BIN" --quick --no-split &
    local b=$!
    local ra=0 rb=0
    wait $a || ra=$?
    wait $b || rb=$?
    (( ra == 0 )) || fail "the first of two concurrent jobs failed ($ra)"
    (( rb == 0 )) || fail "the second of two concurrent jobs failed ($rb)"
    daemon_alive
}

large_all_sum_300mib() {
    start_daemon
    launch 2 110 -- "$OPCHECK_BIN" --large 300 || fail "all_sum of 300 MiB float32"
    daemon_alive
}

large_all_sum_300mib_in_shared_memory() {
    start_daemon
    launch 2 110 -- "$OPCHECK_BIN" --large 300 --shm || fail "all_sum of 300 MiB float32 in mlxd_alloc memory"
    daemon_alive
}

# ---- members that disagree, are missing, die or leave ----

mismatched_ops_give_emismatch() {
    start_daemon
    launch 3 40 -- "$ERRCASE_BIN" mismatch || fail "mismatched ops"
    daemon_alive
    next_job_works "mismatched ops"
}

missing_member_times_out_naming_rank() {
    start_daemon
    launch 2 40 -- "$ERRCASE_BIN" timeout || fail "a member that never calls the op"
    daemon_alive
    grep -qE 'rank[^0-9]*1([^0-9]|$)' <<<"$(grep -i 'timed out' "$T_LOG")" ||
        fail "the daemon log has no timeout line naming the missing rank 1"
    next_job_works "a timeout"
}

daemon_op_timeout_applies_by_default() {
    T_OP_TIMEOUT=1 start_daemon
    launch 2 40 -- "$ERRCASE_BIN" timeout --daemon-deadline || fail "the daemon's --op-timeout 1"
    daemon_alive
    next_job_works "a timeout"
}

incomplete_job_init_times_out_naming_rank() {
    start_daemon
    new_job
    spawn_rank "$JOB" 0 2 "$ERRCASE_BIN" init_alone
    local rc=0
    wait_rank "$SPAWNED" 20 || rc=$?
    expect_status "rank 0 of a job whose rank 1 never comes" 0 "$rc"
    daemon_alive
    next_job_works "a job that never formed"
}

killed_member_gives_epeer_quickly() {
    start_daemon
    local job rc0=0 rc1=0 p0 p1
    new_job
    job=$JOB
    spawn_rank "$job" 0 2 "$ERRCASE_BIN" killed
    p0=$SPAWNED
    spawn_rank "$job" 1 2 "$ERRCASE_BIN" killed
    p1=$SPAWNED
    wait_rank "$p1" 30 || rc1=$?
    expect_status "rank 1, which kills itself" 137 "$rc1"
    wait_rank "$p0" 30 || rc0=$?
    expect_status "rank 0, whose peer was killed" 0 "$rc0"
    daemon_alive
    grep -qiE 'died|exited|killed|disconnect' <<<"$(grep -E "pid $p1\b" "$T_LOG")" ||
        fail "the daemon log does not say that pid $p1 (rank 1) died"
    next_job_works "a killed member"
}

member_that_leaves_gives_epeer() {
    start_daemon
    launch 2 40 -- "$ERRCASE_BIN" leave || fail "a member that leaves"
    daemon_alive
    next_job_works "a member that left"
}

# SIGTERM while a member waits in an op: the daemon drains, the member gets
# MLXD_EUNAVAILABLE, the daemon exits 0, and later ops fail fast.
sigterm_fails_waiting_ops_with_eunavailable() {
    start_daemon
    local p0 p1 rc0=0 rc1=0
    start_waiting_job
    p0=$R0 p1=$R1
    stop_daemon || fail "mlxd did not exit 0 after SIGTERM with an op in flight"
    wait_rank "$p0" 10 || rc0=$?
    expect_status "rank 0, waiting in all_sum when the daemon stopped" 0 "$rc0"
    wait_rank "$p1" 15 || rc1=$?
    expect_status "rank 1, calling barrier after the daemon stopped" 0 "$rc1"
}

# ---- joining a job wrongly ----

# init_bad_case ENV_RANK ENV_SIZE OPT_RANK OPT_SIZE WORD: mlxd_init must
# give MLXD_EINVAL with a message that mentions WORD (opts -1: from the
# environment, as mlxd.h says).
init_bad_case() {
    local rc=0
    new_job
    spawn_rank "$JOB" "$1" "$2" "$ERRCASE_BIN" init_bad "$3" "$4" "$5"
    wait_rank "$SPAWNED" 20 || rc=$?
    (( rc == 0 )) || soft_fail "mlxd_init with MLXD_RANK=$1 MLXD_SIZE=$2 opts.rank=$3 opts.size=$4 was not refused as it should be"
    daemon_alive
}

rank_outside_size_refused() {
    start_daemon
    init_bad_case 2 2 -1 -1 rank     # MLXD_RANK=2 of MLXD_SIZE=2
    init_bad_case 5 2 -1 -1 rank
    init_bad_case -1 2 -1 -1 rank    # MLXD_RANK=-1
    init_bad_case 0 2 -2 2 rank      # opts.rank = -2
    init_bad_case 0 2 3 2 rank       # opts.rank = 3 of 2
    init_bad_case 0 0 -1 -1 size     # MLXD_SIZE=0
    init_bad_case 0 2 0 -4 size      # opts.size = -4
    next_job_works "refused ranks"
}

# Two processes claim rank 0: the later one is refused, the other forms the
# job with rank 1 and it works.
duplicate_rank_refused() {
    start_daemon
    local job a b first other rc=0
    new_job
    job=$JOB
    spawn_rank "$job" 0 2 "$ERRCASE_BIN" dup
    a=$SPAWNED
    spawn_rank "$job" 0 2 "$ERRCASE_BIN" dup
    b=$SPAWNED
    wait_until 20 eval "! kill -0 $a 2>/dev/null || ! kill -0 $b 2>/dev/null" ||
        fail "neither claimant of rank 0 was refused within 20 s"
    if kill -0 "$a" 2>/dev/null; then first=$b other=$a; else first=$a other=$b; fi
    wait_rank "$first" 5 || rc=$?
    expect_status "the refused claimant of rank 0" 10 "$rc"
    daemon_alive
    spawn_rank "$job" 1 2 "$ERRCASE_BIN" dup
    local p1=$SPAWNED
    rc=0
    wait_rank "$other" 30 || rc=$?
    expect_status "the accepted rank 0" 0 "$rc"
    rc=0
    wait_rank "$p1" 30 || rc=$?
    expect_status "rank 1 of the job with the accepted rank 0" 0 "$rc"
    daemon_alive
}

# Two processes of one job claim sizes 2 and 3: the later one is refused
# (exit 10), the other times out waiting for its job (exit 11).
size_disagreement_refused() {
    start_daemon
    local job a b ra=0 rb=0
    new_job
    job=$JOB
    spawn_rank "$job" 0 2 "$ERRCASE_BIN" size
    a=$SPAWNED
    spawn_rank "$job" 1 3 "$ERRCASE_BIN" size
    b=$SPAWNED
    wait_rank "$a" 20 || ra=$?
    wait_rank "$b" 20 || rb=$?
    [[ "$ra $rb" == "10 11" || "$ra $rb" == "11 10" ]] ||
        fail "sizes 2 and 3 in one job: exit statuses $ra and $rb, expected 10 (refused) and 11 (timed out)"
    daemon_alive
    next_job_works "a size disagreement"
}

# ---- bad arguments, malformed requests, a second daemon ----

bad_arguments_give_einval() {
    start_daemon
    launch 2 40 -- "$ERRCASE_BIN" badargs || fail "bad arguments"
    daemon_alive
    next_job_works "bad arguments"
}

malformed_frames_get_errors() {
    start_daemon
    timeout --kill-after=5 45 "$RAWPROTO_BIN" "$T_SOCK" || fail "malformed requests"
    daemon_alive
    next_job_works "malformed requests"
}

second_daemon_on_same_socket_refused() {
    start_daemon
    local rc=0 second="$T_DIR/second.log"
    timeout --kill-after=5 20 "$MLXD_BIN" --socket "$T_SOCK" --log-level debug >"$second" 2>&1 || rc=$?
    sed 's/^/  [second mlxd] /' "$second"
    (( rc != 124 && rc != 137 )) || fail "a second mlxd on $T_SOCK kept running"
    (( rc != 0 )) || fail "a second mlxd on $T_SOCK exited 0"
    grep -qiE "${T_SOCK#ipc://}|already|in use" "$second" ||
        fail "the second mlxd's message names neither the socket nor that it is in use"
    [[ -S "${T_SOCK#ipc://}" ]] || fail "the socket file is gone after the second mlxd"
    daemon_alive
    next_job_works "a second daemon was refused"
}

# ---- without a daemon, or without a job ----

singleton_fallback_without_daemon() {
    export MLXD_SOCKET="ipc://$T_DIR/nobody.sock"
    local rc=0
    new_job
    spawn_rank "$JOB" 0 2 "$ERRCASE_BIN" singleton
    wait_rank "$SPAWNED" 20 || rc=$?
    expect_status "non-strict mlxd_init as rank 0 of 2 without a daemon" 0 "$rc"
    new_job
    spawn_rank "$JOB" 1 2 "$ERRCASE_BIN" singleton
    wait_rank "$SPAWNED" 20 || rc=$?
    expect_status "non-strict mlxd_init as rank 1 of 2 without a daemon" 0 "$rc"
    new_job
    spawn_rank "$JOB" 0 2 env OPCHECK_EXPECT_SINGLETON=1 "$OPCHECK_BIN" --quick
    wait_rank "$SPAWNED" 40 || rc=$?
    expect_status "opcheck on the local singleton group" 0 "$rc"
}

strict_init_without_daemon_is_unavailable() {
    export MLXD_SOCKET="ipc://$T_DIR/nobody.sock"
    local rc=0
    new_job
    spawn_rank "$JOB" 0 2 "$ERRCASE_BIN" strict_nodaemon
    wait_rank "$SPAWNED" 20 || rc=$?
    expect_status "strict mlxd_init without a daemon" 0 "$rc"
    export MLXD_SOCKET="ipc://$T_DIR/no/such/dir/d.sock"
    new_job
    spawn_rank "$JOB" 0 2 "$ERRCASE_BIN" strict_nodaemon
    wait_rank "$SPAWNED" 20 || rc=$?
    expect_status "strict mlxd_init with a socket in a missing directory" 0 "$rc"
}

# A daemon killed with SIGKILL leaves its socket file behind: strict init
# must still say MLXD_EUNAVAILABLE promptly, non-strict init fall back.
stale_socket_counts_as_no_daemon() {
    start_daemon
    kill -KILL "$T_DAEMON_PID"
    wait "$T_DAEMON_PID" 2>/dev/null
    T_DAEMON_PID=""
    [[ -S "${T_SOCK#ipc://}" ]] || fail "mlxd killed with SIGKILL left no socket file; this test needs one"
    local rc=0
    new_job
    spawn_rank "$JOB" 0 2 "$ERRCASE_BIN" strict_nodaemon
    wait_rank "$SPAWNED" 20 || rc=$?
    expect_status "strict mlxd_init on a stale socket" 0 "$rc"
    new_job
    spawn_rank "$JOB" 0 2 "$ERRCASE_BIN" singleton
    wait_rank "$SPAWNED" 20 || rc=$?
    expect_status "non-strict mlxd_init on a stale socket" 0 "$rc"
}

no_job_gives_singleton_group() {
    start_daemon
    local rc=0
    "$ERRCASE_BIN" singleton --daemon || rc=$?
    expect_status "mlxd_init without MLXD_JOB" 0 "$rc"
    OPCHECK_EXPECT_SINGLETON=1 timeout --kill-after=5 40 "$OPCHECK_BIN" --quick || rc=$?
    expect_status "opcheck without MLXD_JOB" 0 "$rc"
    daemon_alive
}

# ---- dispatch ----

[[ $# -eq 1 ]] || fail "usage: cases.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
