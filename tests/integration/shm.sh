#!/bin/bash
# The shared-memory tests, one function per behaviour, named like the ctest
# test that runs it:  bash shm.sh NAME
# Each runs against its own real mlxd (see harness.sh) with real client
# processes: opcheck (every op, dtype and shape, in shared memory and not),
# shmcheck (libmlxd's segments, staging, cap and fallback) and shmraw (the side
# channel and the wire spoken directly).

source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

: "${OPCHECK_BIN:?}" "${SHMCHECK_BIN:?}" "${SHMRAW_BIN:?}"

# The daemon's mappings of client memfds (libmlxd names them "mlxd").
daemon_memfd_maps() {
    grep -c 'memfd:mlxd' "/proc/$T_DAEMON_PID/maps" || true
}

# status_field EXPR: evaluates a Python expression over the daemon's first
# status entry `d` (from mlxctl status --json) and prints it.
status_field() {
    "$MLXCTL_BIN" status --json --socket "$T_SOCK" |
        python3 -c "import json, sys; d = json.load(sys.stdin)['daemons'][0]; print($1)"
}

no_clients() { [[ "$(status_field 'len(d["clients"])')" == 0 ]]; }
pending_of() { status_field "next((c['pending'] for c in d['clients'] if c['pid'] == $1), '')"; }
waits_in_all_sum() { [[ "$(pending_of "$1")" == all_sum ]]; }
no_daemon_memfds() { [[ "$(daemon_memfd_maps)" == 0 ]]; }

# A job of two that uses shared memory must work: the daemon still serves.
next_shm_job_works() {
    # barrier last: a member that leaves right after its last recv would
    # abort the group under a peer still receiving.
    launch 2 60 -- "$OPCHECK_BIN" --quick --no-split --only all_sum --only sendrecv --only barrier ||
        fail "a job with shared memory after $1 did not work"
}

# ---- results ----

shm_results_equal_inline_for_every_op_and_dtype_two_ranks() {
    start_daemon
    # opcheck checks every op, dtype and shape in ordinary memory (inline, and
    # staged for its 2 MiB case) and in mlxd_alloc memory, against values it
    # computes itself, so all of them agree.
    launch 2 110 -- "$OPCHECK_BIN" || fail "opcheck in a job of 2"
    daemon_alive
}

shm_results_equal_inline_for_every_op_and_dtype_three_ranks() {
    start_daemon
    launch 3 140 -- "$OPCHECK_BIN" || fail "opcheck in a job of 3"
    daemon_alive
}

shm_inputs_and_outputs_mix_with_inline() {
    start_daemon
    # Above 8192 bytes, ordinary memory is staged: every mix of inline,
    # staged and shared memory, members choosing differently.
    MLXD_SHM_THRESHOLD=8192 launch 2 50 -- "$SHMCHECK_BIN" mix || fail "mixed memory in a job of 2"
    MLXD_SHM_THRESHOLD=8192 launch 3 60 -- "$SHMCHECK_BIN" mix || fail "mixed memory in a job of 3"
    daemon_alive
    wait_until 10 no_daemon_memfds || fail "the daemon still maps $(daemon_memfd_maps) client memfds"
}

staged_large_heap_tensor_matches_inline() {
    start_daemon
    mkdir -p "$T_DIR/inline" "$T_DIR/staged" "$T_DIR/staged3"
    MLXD_SHM_THRESHOLD=0 launch 2 40 -- "$SHMCHECK_BIN" staged "$T_DIR/inline" no ||
        fail "ops on 3 MiB heap tensors with staging off"
    launch 2 40 -- "$SHMCHECK_BIN" staged "$T_DIR/staged" yes ||
        fail "ops on 3 MiB heap tensors, staged by default"
    local r
    for r in 0 1; do
        cmp "$T_DIR/inline/$r.out" "$T_DIR/staged/$r.out" ||
            fail "rank $r: staged results differ from inline ones"
    done
    # A threshold just below the tensors' size stages them too.
    MLXD_SHM_THRESHOLD=3145727 launch 2 40 -- "$SHMCHECK_BIN" staged "$T_DIR/staged3" yes ||
        fail "ops on 3 MiB heap tensors with MLXD_SHM_THRESHOLD=3145727"
    daemon_alive
}

# ---- what a client may not name ----

shm_bad_registrations_refused() {
    start_daemon
    timeout --kill-after=5 45 "$SHMRAW_BIN" "$T_SOCK" register || fail "bad registrations"
    daemon_alive
    next_shm_job_works "bad registrations"
}

shm_out_of_bounds_reference_refused() {
    start_daemon
    timeout --kill-after=5 45 "$SHMRAW_BIN" "$T_SOCK" bounds || fail "references past a segment's end"
    daemon_alive
    next_shm_job_works "references past a segment's end"
}

shm_foreign_segment_refused() {
    start_daemon
    timeout --kill-after=5 45 "$SHMRAW_BIN" "$T_SOCK" foreign || fail "references to segments not the client's"
    daemon_alive
    next_shm_job_works "references to segments not the client's"
}

# ---- lifetimes and limits ----

shm_client_killed_mid_op_leaves_no_segment() {
    start_daemon
    local p0 p1 rc=0
    new_job
    spawn_rank "$JOB" 0 2 "$SHMCHECK_BIN" hold
    p0=$SPAWNED
    spawn_rank "$JOB" 1 2 "$SHMCHECK_BIN" hold
    p1=$SPAWNED
    # Rank 0 waits in its all_sum on shared memory (rank 1 holds back).
    wait_until 20 waits_in_all_sum "$p0" || fail "rank 0 (pid $p0) is not seen waiting in all_sum"
    (( $(daemon_memfd_maps) >= 2 )) || fail "the daemon maps $(daemon_memfd_maps) client memfds, expected rank 0's two at least"
    kill -KILL "$p0"
    wait_rank "$p0" 10 || rc=$?
    expect_status "rank 0, killed in its op" 137 "$rc"
    touch "$T_DIR/hold.go"
    rc=0
    wait_rank "$p1" 30 || rc=$?
    expect_status "rank 1, whose peer was killed in an op" 0 "$rc"
    wait_until 10 no_clients || fail "mlxctl status still lists clients: $(status_field 'd["clients"]')"
    wait_until 10 no_daemon_memfds || fail "the daemon still maps $(daemon_memfd_maps) client memfds"
    daemon_alive
    next_shm_job_works "a client killed mid-op"
    wait_until 10 no_daemon_memfds || fail "the daemon still maps $(daemon_memfd_maps) client memfds"
}

shm_alloc_free_cycles_return_memory() {
    start_daemon
    local p rc=0 maps segs
    new_job
    spawn_rank "$JOB" 0 1 "$SHMCHECK_BIN" cycles 10000
    p=$SPAWNED
    wait_until 90 test -f "$T_DIR/cycles.ready" || fail "the 10000 cycles did not finish within 90 s"
    # The client holds one segment of 1 MiB: the daemon has exactly that.
    maps=$(daemon_memfd_maps)
    (( maps == 1 )) || fail "after 10000 cycles the daemon maps $maps client memfds, expected the 1 still held"
    segs=$(status_field "[(c.get('shm_segments'), c.get('shm_bytes')) for c in d['clients'] if c['pid'] == $p]")
    if [[ "$segs" != "[(None, None)]" ]]; then
        [[ "$segs" == "[(1, 1048576)]" ]] || fail "mlxctl status shows (segments, bytes) $segs for pid $p, expected [(1, 1048576)]"
    fi
    touch "$T_DIR/cycles.go"
    wait_rank "$p" 20 || rc=$?
    expect_status "the client of 10000 cycles" 0 "$rc"
    wait_until 10 no_daemon_memfds || fail "the daemon still maps $(daemon_memfd_maps) client memfds after the client left"
    daemon_alive
}

shm_over_cap_alloc_fails_and_staging_falls_back() {
    start_daemon --max-shm-bytes 1048576
    MLXD_SHM_THRESHOLD=65536 launch 1 30 -- "$SHMCHECK_BIN" cap 1048576 || fail "the daemon's cap"
    daemon_alive
}

shm_without_side_channel_falls_back_to_ordinary_memory() {
    start_daemon
    # As with a daemon that has no shared memory: nothing listens there.
    rm -f "${T_SOCK#ipc://}.shm"
    launch 1 30 -- "$SHMCHECK_BIN" nochannel || fail "mlxd_alloc and ops without a side channel, job of 1"
    launch 2 30 -- "$SHMCHECK_BIN" nochannel || fail "mlxd_alloc and ops without a side channel, job of 2"
    launch 2 60 -- "$OPCHECK_BIN" --quick || fail "opcheck without a side channel"
    daemon_alive
}

shm_memory_outlives_a_daemon_restart() {
    start_daemon
    local p rc=0
    new_job
    MLXD_SHM_THRESHOLD=0 spawn_rank "$JOB" 0 1 "$SHMCHECK_BIN" restart
    p=$SPAWNED
    wait_until 20 test -f "$T_DIR/restart.ready" || fail "the client did not get ready within 20 s"
    stop_daemon || fail "the first daemon did not stop cleanly"
    start_daemon
    touch "$T_DIR/restart.go"
    wait_rank "$p" 30 || rc=$?
    expect_status "the client across a daemon restart" 0 "$rc"
    daemon_alive
}

shm_groups_in_threads_share_segments_safely() {
    start_daemon
    MLXD_SHM_THRESHOLD=8192 launch 2 80 -- "$SHMCHECK_BIN" threads || fail "four threads with groups of their own"
    daemon_alive
    wait_until 10 no_daemon_memfds || fail "the daemon still maps $(daemon_memfd_maps) client memfds"
}

# ---- dispatch ----

[[ $# -eq 1 ]] || fail "usage: shm.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
