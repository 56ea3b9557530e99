#!/bin/bash
# The lifetime MLX programs rely on (DESIGN.md, "What MLX programs rely on"),
# with a job's ranks on two daemons under mpirun standing in for hosts: one
# function per behaviour, named like the ctest test that runs it:
#   bash lifetime_multihost.sh NAME
# The harness (start_world, spawn_rank JOB RANK SIZE HOST CMD, launch_on, …)
# is multihost.sh's. Clients are lifecheck (one mode per behaviour).

MH_AS_LIBRARY=1 source "$(dirname "${BASH_SOURCE[0]}")/multihost.sh"

: "${LIFECHECK_BIN:?}"

# The log of the daemon of world rank HOST says that client PID died.
daemon_saw_death() { grep -qE "Client pid $2 .*died" "$(daemon_log "$1")"; }

# spawn_job N MODE: the N ranks of a new job, the first half on d0 and the
# rest on d1, pids in PIDS.
spawn_job() {
    local n=$1 r
    new_job
    PIDS=()
    for ((r = 0; r < n; r++)); do
        spawn_rank "$JOB" "$r" "$n" $((r < n / 2 ? 0 : 1)) "$LIFECHECK_BIN" "$2"
        PIDS+=("$SPAWNED")
    done
}

# spawn_on MODE HOSTS...: a new job with rank r on daemon HOSTS[r].
spawn_on() {
    local mode=$1 r
    shift
    local hosts=("$@")
    new_job
    PIDS=()
    for r in "${!hosts[@]}"; do
        spawn_rank "$JOB" "$r" "${#hosts[@]}" "${hosts[r]}" "$LIFECHECK_BIN" "$mode"
        PIDS+=("$SPAWNED")
    done
}

# expect_ranks TIMEOUT_S [SKIP]: every rank in PIDS but SKIP exits 0.
expect_ranks() {
    local r
    for r in "${!PIDS[@]}"; do
        [[ "$r" == "${2:--}" ]] && continue
        expect_exit "rank $r" "${PIDS[r]}" "$1" 0
    done
}

init_twice_gives_one_member_on_two_daemons() {
    start_world 2
    spawn_job 8 init_twice
    wait_until 60 test -e "$M_DIR/$JOB.formed" || fail "the job of 8 did not form within 60 s"
    spawn_rank "$JOB" 5 8 1 "$LIFECHECK_BIN" intruder
    expect_exit "another process with the formed job's id" "$SPAWNED" 30 0
    expect_ranks 60
    world_alive
}

split_freed_at_once_completes_for_every_member_on_two_daemons() {
    start_world 2
    new_job
    launch_on 8 200 "0 1" -- "$LIFECHECK_BIN" split_race || fail "splits freed at once, 8 ranks over 2 daemons"
    new_job
    launch_on 5 200 "0 1" -- "$LIFECHECK_BIN" split_race || fail "splits freed at once, 5 ranks over 2 daemons"
    world_alive
}

ring_that_frees_and_exits_delivers_every_message_on_two_daemons() {
    start_world 2
    local i
    for i in 1 2 3 4 5 6; do
        new_job
        launch_on 4 40 "0 1" -- "$LIFECHECK_BIN" ring || fail "ring of 4 over 2 daemons that frees and exits, run $i"
    done
    new_job
    launch_on 8 60 "0 1" -- "$LIFECHECK_BIN" ring || fail "ring of 8 over 2 daemons that frees and exits"
    world_alive
}

# Rank 1 (on d1) SIGKILLs itself right after its send to rank 0 (on d0)
# returned; rank 0 receives only once d1 noticed the death.
send_then_sigkill_is_delivered_on_two_daemons() {
    start_world 2
    spawn_on send_kill 0 1 0 1
    expect_exit "rank 1, which kills itself after its send" "${PIDS[1]}" 30 137
    wait_until 20 daemon_saw_death 1 "${PIDS[1]}" || fail "d1 did not log the death of rank 1 within 20 s"
    touch "$M_DIR/$JOB.killed"
    expect_ranks 30 1
    world_alive
}

# Rank 1 (on d1) is SIGKILLed while it waits in all_sum; the others (two on
# d0, one on d1) call all_sum only once d1 noticed the death, and get rank
# 1's part too.
collective_contributed_then_killed_completes_on_two_daemons() {
    start_world 2
    spawn_on contrib_kill 0 1 0 1
    wait_until 30 clients_pending 1 "$JOB" all_sum 1 || fail "rank 1 was not waiting in all_sum on d1 within 30 s"
    kill -KILL "${PIDS[1]}"
    expect_exit "rank 1, killed in all_sum" "${PIDS[1]}" 10 137
    wait_until 20 daemon_saw_death 1 "${PIDS[1]}" || fail "d1 did not log the death of rank 1 within 20 s"
    touch "$M_DIR/$JOB.killed"
    expect_ranks 30 1
    world_alive
}

[[ $# -eq 1 ]] || fail "usage: lifetime_multihost.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
