#!/bin/bash
# Nonblocking ops (DESIGN.md, "Nonblocking operations") with a job's ranks
# on two daemons under mpirun standing in for hosts: one function per
# behaviour, named like the ctest test that runs it:
#   bash nonblocking_multihost.sh NAME
# The harness is multihost.sh's. Clients are nbcheck.

MH_AS_LIBRARY=1 source "$(dirname "${BASH_SOURCE[0]}")/multihost.sh"

: "${NBCHECK_BIN:?}"

daemon_saw_death() { grep -qE "Client pid $2 .*died" "$(daemon_log "$1")"; }

requests_in_flight_match_in_issue_order_on_two_daemons() {
    start_world 2
    local n
    for n in 2 3 4; do
        new_job
        launch_on "$n" 90 "0 1" -- "$NBCHECK_BIN" inorder heap || fail "every op in flight at once, $n ranks over 2 daemons"
    done
    new_job
    launch_on 3 90 "0 1" -- "$NBCHECK_BIN" inorder alloc || fail "every op in flight at once in mlxd_alloc memory, 3 ranks over 2 daemons"
    world_alive
}

polled_request_is_done_once_every_member_issued_it_on_two_daemons() {
    start_world 2
    new_job
    launch_on 2 60 "0 1" -- "$NBCHECK_BIN" poll || fail "polling an all_sum, 2 ranks over 2 daemons"
    world_alive
}

# Rank 1 (on d1) issues an all_sum and a recv, sends to rank 0 (on d0), and
# SIGKILLs itself; ranks 0 (d0) and 2 (d1) go on once d1 noticed the death.
peer_dying_with_requests_in_flight_fails_only_what_cannot_complete_on_two_daemons() {
    start_world 2
    local r pids=() hosts=(0 1 1)
    new_job
    for r in 0 1 2; do
        spawn_rank "$JOB" "$r" 3 "${hosts[r]}" "$NBCHECK_BIN" peer_dies
        pids+=("$SPAWNED")
    done
    expect_exit "rank 1, which kills itself" "${pids[1]}" 30 137
    wait_until 20 daemon_saw_death 1 "${pids[1]}" || fail "d1 did not log the death of rank 1 within 20 s"
    touch "$M_DIR/$JOB.killed"
    expect_exit "rank 0 (d0)" "${pids[0]}" 30 0
    expect_exit "rank 2 (d1)" "${pids[2]}" 30 0
    world_alive
}

[[ $# -eq 1 ]] || fail "usage: nonblocking_multihost.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
