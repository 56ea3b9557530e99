#!/bin/bash
# The lifetime MLX programs rely on (DESIGN.md, "What MLX programs rely on"),
# on one daemon: one function per behaviour, named like the ctest test that
# runs it:  bash lifetime.sh NAME
# Clients are lifecheck (one mode per behaviour); see harness.sh.

source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

: "${LIFECHECK_BIN:?}"

# The daemon's log says that client PID died.
daemon_saw_death() { grep -qE "Client pid $1 .*died" "$T_LOG"; }

# spawn_job N MODE: the N ranks of a new job, pids in PIDS.
spawn_job() {
    local n=$1 r
    new_job
    PIDS=()
    for ((r = 0; r < n; r++)); do
        spawn_rank "$JOB" "$r" "$n" "$LIFECHECK_BIN" "$2"
        PIDS+=("$SPAWNED")
    done
}

# expect_ranks TIMEOUT_S [SKIP]: every rank in PIDS but SKIP exits 0.
expect_ranks() {
    local r rc
    for r in "${!PIDS[@]}"; do
        [[ "$r" == "${2:--}" ]] && continue
        rc=0
        wait_rank "${PIDS[r]}" "$1" || rc=$?
        expect_status "rank $r" 0 "$rc"
    done
}

init_twice_gives_one_member_on_one_daemon() {
    start_daemon
    spawn_job 8 init_twice
    wait_until 60 test -e "$T_DIR/$JOB.formed" || fail "the job of 8 did not form within 60 s"
    local rc=0
    spawn_rank "$JOB" 3 8 "$LIFECHECK_BIN" intruder
    wait_rank "$SPAWNED" 30 || rc=$?
    expect_status "another process with the formed job's id" 0 "$rc"
    expect_ranks 60
    daemon_alive
}

split_freed_at_once_completes_for_every_member_on_one_daemon() {
    start_daemon
    launch 8 170 -- "$LIFECHECK_BIN" split_race || fail "splits freed at once, 8 ranks"
    daemon_alive
}

ring_that_frees_and_exits_delivers_every_message_on_one_daemon() {
    start_daemon
    local i
    for i in 1 2 3 4 5 6; do
        launch 4 30 -- "$LIFECHECK_BIN" ring || fail "ring of 4 that frees and exits, run $i"
    done
    launch 8 60 -- "$LIFECHECK_BIN" ring || fail "ring of 8 that frees and exits"
    daemon_alive
}

# Rank 1 SIGKILLs itself right after its send returned; rank 0 receives
# only once the daemon noticed the death.
send_then_sigkill_is_delivered_on_one_daemon() {
    start_daemon
    spawn_job 3 send_kill
    local rc=0
    wait_rank "${PIDS[1]}" 30 || rc=$?
    expect_status "rank 1, which kills itself after its send" 137 "$rc"
    wait_until 20 daemon_saw_death "${PIDS[1]}" || fail "the daemon did not log the death of rank 1 within 20 s"
    touch "$T_DIR/$JOB.killed"
    expect_ranks 30 1
    daemon_alive
}

# Rank 1 is SIGKILLed while it waits in all_sum; the others call all_sum
# only once the daemon noticed the death, and get rank 1's part too.
collective_contributed_then_killed_completes_on_one_daemon() {
    start_daemon
    spawn_job 3 contrib_kill
    wait_until 30 client_pending "${PIDS[1]}" all_sum || fail "rank 1 was not waiting in all_sum within 30 s"
    kill -KILL "${PIDS[1]}"
    local rc=0
    wait_rank "${PIDS[1]}" 10 || rc=$?
    expect_status "rank 1, killed in all_sum" 137 "$rc"
    wait_until 20 daemon_saw_death "${PIDS[1]}" || fail "the daemon did not log the death of rank 1 within 20 s"
    touch "$T_DIR/$JOB.killed"
    expect_ranks 30 1
    daemon_alive
}

[[ $# -eq 1 ]] || fail "usage: lifetime.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
