#!/bin/bash
# The worker pool's tests, one function per behaviour, named like the ctest
# test that runs it:  bash pool.sh NAME
# Real daemons (harness.sh) and real clients: opcheck (every op, dtype and
# shape, checked element by element) and poolcheck (sends to a receiver
# that already waits).

source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

: "${OPCHECK_BIN:?}" "${POOLCHECK_BIN:?}"

# The daemon's log names the thread count of its bulk ops.
bulk_ops_ran_on() {
    grep -qE "took [0-9]+ us on $1 thread\(s\)" "$T_LOG" || fail "no bulk op in the log ran on $1 thread(s)"
}

# opcheck's results are exact, so the same run with the loop thread alone
# and with four threads (more than this machine's cores: blocks interleave)
# shows splitting changes no bit, inline and in shared memory.
every_op_is_bit_equal_on_one_thread_and_on_four() {
    start_daemon --workers 1
    launch 2 90 -- "$OPCHECK_BIN" || fail "opcheck in a job of 2 on one thread"
    bulk_ops_ran_on 1
    stop_daemon || fail "mlxd --workers 1 did not stop cleanly"
    start_daemon --workers 4
    launch 3 110 -- "$OPCHECK_BIN" || fail "opcheck in a job of 3 on four threads"
    bulk_ops_ran_on 4
    daemon_alive
}

# CPU time (ns, from schedstat) of the daemon's pool threads so far.
pool_cpu_ns() {
    local t sum=0 comm ns
    for t in /proc/"$T_DAEMON_PID"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        [[ "$comm" == mlxd-pool-* ]] || continue
        read -r ns _ <"$t/schedstat" || continue
        sum=$((sum + ns))
    done
    echo "$sum"
}

pool_threads_do_part_of_a_large_all_sum() {
    start_daemon --workers 3
    local n
    n=$(grep -l '^mlxd-pool-' /proc/"$T_DAEMON_PID"/task/*/comm 2>/dev/null | wc -l)
    (( n == 2 )) || fail "--workers 3 started $n pool threads, expected 2"
    local before after
    before=$(pool_cpu_ns)
    launch 2 110 -- "$OPCHECK_BIN" --large 64 || fail "all_sum of 64 MiB float32"
    after=$(pool_cpu_ns)
    log "pool threads ran $(( (after - before) / 1000 )) us during the all_sum"
    # A 64 MiB all_sum of two ranks reads 128 MiB and writes 128 MiB: the
    # pool's share of it is far above 5 ms of CPU on any machine.
    (( after - before >= 5000000 )) || fail "the pool threads ran only $(( after - before )) ns during a 64 MiB all_sum"
    bulk_ops_ran_on 3
    daemon_alive
}

send_to_a_waiting_receiver_goes_straight_to_it() {
    start_daemon
    new_job
    spawn_rank "$JOB" 0 2 "$POOLCHECK_BIN"
    local r0=$SPAWNED
    spawn_rank "$JOB" 1 2 "$POOLCHECK_BIN"
    local r1=$SPAWNED k
    for k in 0 1 2 3 4 5 6 7; do
        wait_until 30 files_exist "$T_DIR/$JOB.recv.$k" || fail "rank 1 never reached receive $k"
        wait_until 30 client_pending "$r1" recv || fail "rank 1 never waited in receive $k"
        : >"$T_DIR/$JOB.posted.$k"
    done
    expect_exit "poolcheck rank 0" "$r0" 60 0
    expect_exit "poolcheck rank 1" "$r1" 60 0
    local n
    n=$(grep -c "send of [0-9]* bytes goes straight to rank 1, which waits" "$T_LOG")
    (( n == 8 )) || fail "$n of 8 sends to a waiting receiver went straight to it"
    daemon_alive
}

workers_option_refuses_bad_counts() {
    local bad rc
    for bad in 257 -1 two ""; do
        rc=0
        "$MLXD_BIN" --socket "$T_SOCK" --workers "$bad" >"$T_DIR/out" 2>&1 || rc=$?
        expect_status "mlxd --workers '$bad'" 2 "$rc"
        grep -q -- "--workers" "$T_DIR/out" || fail "mlxd --workers '$bad' did not say what --workers takes"
    done
}

[[ $# -eq 1 ]] || fail "usage: pool.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
