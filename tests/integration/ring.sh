#!/bin/bash
# The request/reply ring (proto/PROTOCOL.md, "The ring"), on one daemon: one
# function per behaviour, named like the ctest test that runs it:
#   bash ring.sh NAME
# Clients are ringcheck (one mode per behaviour) and opcheck; see harness.sh.

source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

: "${RINGCHECK_BIN:?}" "${OPCHECK_BIN:?}"

daemon_saw_death() { grep -qE "Client pid $1 .*died" "$T_LOG"; }

connections_talk_over_a_ring_by_default() {
    start_daemon
    launch 2 60 -- "$RINGCHECK_BIN" on || fail "ops over the ring, 2 ranks"
    launch 3 60 -- "$RINGCHECK_BIN" on || fail "ops over the ring, 3 ranks"
    grep -q "talks over a ring" "$T_LOG" || fail "the daemon never logged a ring"
    daemon_alive
}

mlxd_ring_0_turns_the_ring_off() {
    start_daemon
    MLXD_RING=0 launch 2 60 -- "$RINGCHECK_BIN" off || fail "ops with MLXD_RING=0"
    MLXD_RING=0 launch 2 120 -- "$OPCHECK_BIN" --quick || fail "opcheck with MLXD_RING=0"
    ! grep -q "talks over a ring" "$T_LOG" || fail "the daemon set up a ring with MLXD_RING=0"
    daemon_alive
}

ring_and_zeromq_requests_interleave_on_one_connection() {
    start_daemon
    launch 2 90 -- "$RINGCHECK_BIN" interleave || fail "ring and ZeroMQ requests in flight together, 2 ranks"
    launch 3 90 -- "$RINGCHECK_BIN" interleave || fail "ring and ZeroMQ requests in flight together, 3 ranks"
    daemon_alive
}

more_requests_in_flight_than_the_ring_holds_wait_for_room() {
    start_daemon
    launch 2 90 -- "$RINGCHECK_BIN" full || fail "24 all_sums of 64 KiB in flight, 2 ranks"
    daemon_alive
}

client_that_corrupts_its_ring_is_closed_and_others_go_on() {
    start_daemon
    launch 2 60 -- "$RINGCHECK_BIN" corrupt || fail "a client that corrupts its ring"
    grep -q "broke its request ring" "$T_LOG" || fail "the daemon did not log the broken ring"
    launch 2 60 -- "$RINGCHECK_BIN" on || fail "another job after the corrupted ring"
    daemon_alive
}

client_killed_with_an_op_in_its_ring_leaves_the_daemon_serving() {
    start_daemon
    local r rc pids=()
    new_job
    for r in 0 1; do
        spawn_rank "$JOB" "$r" 2 "$RINGCHECK_BIN" kill
        pids+=("$SPAWNED")
    done
    rc=0
    wait_rank "${pids[1]}" 30 || rc=$?
    expect_status "rank 1, which kills itself" 137 "$rc"
    rc=0
    wait_rank "${pids[0]}" 30 || rc=$?
    expect_status "rank 0, beside the killed rank" 0 "$rc"
    wait_until 20 daemon_saw_death "${pids[1]}" || fail "the daemon did not log the death of rank 1 within 20 s"
    launch 2 60 -- "$RINGCHECK_BIN" on || fail "another job after the killed client"
    daemon_alive
}

[[ $# -eq 1 ]] || fail "usage: ring.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
