#!/bin/bash
# Nonblocking ops (DESIGN.md, "Nonblocking operations"), on one daemon: one
# function per behaviour, named like the ctest test that runs it:
#   bash nonblocking.sh NAME
# Clients are nbcheck (one mode per behaviour); see harness.sh.

source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

: "${NBCHECK_BIN:?}"

daemon_saw_death() { grep -qE "Client pid $1 .*died" "$T_LOG"; }

requests_in_flight_match_in_issue_order_on_one_daemon() {
    start_daemon
    local n
    for n in 2 3 4; do
        launch "$n" 60 -- "$NBCHECK_BIN" inorder heap || fail "every op in flight at once, $n ranks"
    done
    launch 3 60 -- "$NBCHECK_BIN" inorder alloc || fail "every op in flight at once in mlxd_alloc memory, 3 ranks"
    launch 2 90 -- "$NBCHECK_BIN" inorder staged || fail "every op in flight at once, staged, 2 ranks"
    daemon_alive
}

polled_request_is_done_once_every_member_issued_it_on_one_daemon() {
    start_daemon
    launch 2 60 -- "$NBCHECK_BIN" poll || fail "polling an all_sum, 2 ranks"
    launch 3 60 -- "$NBCHECK_BIN" poll || fail "polling an all_sum, 3 ranks"
    daemon_alive
}

requests_over_max_inflight_per_client_get_enomem() {
    start_daemon --max-inflight-per-client 4
    launch 2 60 -- "$NBCHECK_BIN" overcap 4 || fail "5 receives in flight with a cap of 4"
    daemon_alive
}

group_free_waits_for_requests_in_flight() {
    start_daemon
    launch 2 60 -- "$NBCHECK_BIN" free || fail "mlxd_group_free with an all_sum in flight, 2 ranks"
    launch 3 60 -- "$NBCHECK_BIN" free || fail "mlxd_group_free with an all_sum in flight, 3 ranks"
    daemon_alive
}

# Rank 1 issues an all_sum and a recv, sends, and SIGKILLs itself; the
# others go on once the daemon noticed the death.
peer_dying_with_requests_in_flight_fails_only_what_cannot_complete_on_one_daemon() {
    start_daemon
    local r rc pids=()
    new_job
    for r in 0 1 2; do
        spawn_rank "$JOB" "$r" 3 "$NBCHECK_BIN" peer_dies
        pids+=("$SPAWNED")
    done
    rc=0
    wait_rank "${pids[1]}" 30 || rc=$?
    expect_status "rank 1, which kills itself" 137 "$rc"
    wait_until 20 daemon_saw_death "${pids[1]}" || fail "the daemon did not log the death of rank 1 within 20 s"
    touch "$T_DIR/$JOB.killed"
    for r in 0 2; do
        rc=0
        wait_rank "${pids[r]}" 30 || rc=$?
        expect_status "rank $r" 0 "$rc"
    done
    daemon_alive
}

[[ $# -eq 1 ]] || fail "usage: nonblocking.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
