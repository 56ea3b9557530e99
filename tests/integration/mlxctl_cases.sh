#!/bin/bash
# shellcheck disable=SC2016  # the ranks expand their own variables
# The mlxctl tests, one function per behaviour:  bash mlxctl_cases.sh NAME
# (proposed for tests/integration/; uses harness.sh like cases.sh does).

source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

# Output of one command, for checks.
T_OUTF="$T_DIR/out"
T_ERRF="$T_DIR/err"

# ---- launch ----

launch_gives_each_rank_its_environment() {
    start_daemon
    "$MLXCTL_BIN" launch -n 3 --job envjob -- sh -c 'echo "$MLXD_RANK/$MLXD_SIZE $MLXD_JOB $MLXD_SOCKET $MLXD_ATTEMPT"' \
        >"$T_OUTF" || fail "launch of 3 plain ranks failed"
    [[ "$(sort "$T_OUTF")" == "0/3 envjob $T_SOCK 0
1/3 envjob $T_SOCK 0
2/3 envjob $T_SOCK 0" ]] || fail "wrong environment: $(cat "$T_OUTF")"
    # Without --job, every launch gets a job id of its own.
    local a b
    a=$("$MLXCTL_BIN" launch -n 1 -- sh -c 'echo $MLXD_JOB')
    b=$("$MLXCTL_BIN" launch -n 1 -- sh -c 'echo $MLXD_JOB')
    [[ -n "$a" && "$a" != "$b" ]] || fail "job ids not unique: '$a' '$b'"
    [[ "$a" =~ ^[A-Za-z0-9._:@+-]{1,128}$ ]] || fail "job id '$a' is not valid"
}

launch_spreads_ranks_over_daemons_in_blocks() {
    "$MLXCTL_BIN" launch -n 5 --allow-singleton --daemons tcp://h:1,tcp://h:2,tcp://h:3 -- sh -c 'echo "$MLXD_RANK $MLXD_SOCKET"' \
        >"$T_OUTF" || fail "launch with --daemons failed"
    [[ "$(sort "$T_OUTF")" == "0 tcp://h:1
1 tcp://h:1
2 tcp://h:2
3 tcp://h:2
4 tcp://h:3" ]] || fail "wrong blocks: $(cat "$T_OUTF")"
}

launch_failing_rank_stops_the_others_and_sets_status() {
    local rc=0 t0
    t0=$(now_ms)
    "$MLXCTL_BIN" launch --allow-singleton -n 3 -- sh -c '[ $MLXD_RANK = 1 ] && exit 3; exec sleep 60' 2>"$T_ERRF" || rc=$?
    expect_status "launch with a failing rank" 3 "$rc"
    grep -qx 'mlxctl: rank 1 exited with code 3' "$T_ERRF" || fail "no failure message: $(cat "$T_ERRF")"
    (( $(now_ms) - t0 < 10000 )) || fail "the other ranks were not stopped"
}

launch_rank_killed_by_signal_gives_128_plus_signal() {
    local rc=0
    "$MLXCTL_BIN" launch --allow-singleton -n 2 -- sh -c '[ $MLXD_RANK = 0 ] && kill -KILL $$; exec sleep 60' 2>"$T_ERRF" || rc=$?
    expect_status "launch with a rank killed by SIGKILL" 137 "$rc"
    grep -qx 'mlxctl: rank 0 killed by signal SIGKILL' "$T_ERRF" || fail "no signal message: $(cat "$T_ERRF")"
}

launch_rank_ignoring_sigterm_gets_sigkill() {
    local rc=0
    "$MLXCTL_BIN" launch --allow-singleton -n 2 -- sh -c 'trap "" TERM; [ $MLXD_RANK = 0 ] && exit 5; sleep 60' 2>/dev/null || rc=$?
    expect_status "launch with a rank that ignores SIGTERM" 5 "$rc"
}

launch_prefix_tags_every_line_and_flushes_partial_lines() {
    "$MLXCTL_BIN" launch --allow-singleton -n 2 --prefix -- sh -c 'echo out$MLXD_RANK; echo err$MLXD_RANK >&2; printf tail$MLXD_RANK' \
        >"$T_OUTF" 2>"$T_ERRF" || fail "launch --prefix failed"
    [[ "$(sort "$T_OUTF")" == "[0] out0
[0] tail0
[1] out1
[1] tail1" ]] || fail "wrong stdout: $(cat "$T_OUTF")"
    [[ "$(sort "$T_ERRF")" == "[0] err0
[1] err1" ]] || fail "wrong stderr: $(cat "$T_ERRF")"
}

launch_timeout_stops_the_job() {
    local rc=0
    "$MLXCTL_BIN" launch --allow-singleton -n 2 --timeout 0.5 -- sleep 60 2>"$T_ERRF" || rc=$?
    expect_status "launch --timeout" 1 "$rc"
    grep -q 'did not finish within 0.5 s' "$T_ERRF" || fail "no timeout message: $(cat "$T_ERRF")"
}

launch_of_missing_command_exits_127() {
    local rc=0
    "$MLXCTL_BIN" launch --allow-singleton -n 2 -- /nonexistent/cmd 2>"$T_ERRF" || rc=$?
    expect_status "launch of a missing command" 127 "$rc"
    grep -q "cannot run '/nonexistent/cmd'" "$T_ERRF" || fail "no message: $(cat "$T_ERRF")"
}

launch_forwards_sigterm_to_ranks() {
    "$MLXCTL_BIN" launch --allow-singleton -n 2 -- sh -c 'echo $$ > "$MLXT_DIR/rank$MLXD_RANK.pid"; exec sleep 60' \
        2>"$T_ERRF" &
    local pid=$! rc=0
    wait_until 10 test -s "$T_DIR/rank1.pid" -a -s "$T_DIR/rank0.pid" || fail "ranks did not start"
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    expect_status "launch after SIGTERM" 143 "$rc"
    grep -qx 'mlxctl: interrupted: stopped 2 ranks' "$T_ERRF" || fail "not reported as an interrupt: $(cat "$T_ERRF")"
    ! kill -0 "$(cat "$T_DIR/rank0.pid")" 2>/dev/null || fail "rank 0 outlived mlxctl"
    ! kill -0 "$(cat "$T_DIR/rank1.pid")" 2>/dev/null || fail "rank 1 outlived mlxctl"
}

launch_runs_a_real_job() {
    start_daemon
    launch 2 30 -- "$OPCHECK_BIN" --quick --no-split || fail "a real job through mlxctl launch"
}

# ---- status and wait ----

status_without_daemon_fails_at_once_with_advice() {
    local rc=0 t0
    t0=$(now_ms)
    "$MLXCTL_BIN" status --socket "$T_SOCK" 2>"$T_ERRF" || rc=$?
    expect_status "status without a daemon" 1 "$rc"
    (( $(now_ms) - t0 < 2000 )) || fail "status without a daemon took the whole timeout"
    grep -q "no mlxd answers at $T_SOCK: start it with" "$T_ERRF" || fail "no advice: $(cat "$T_ERRF")"
}

wait_without_daemon_times_out() {
    local rc=0
    "$MLXCTL_BIN" wait --timeout 0.5 2>"$T_ERRF" || rc=$?
    expect_status "wait without a daemon" 1 "$rc"
    grep -q "no mlxd answers at $T_SOCK" "$T_ERRF" || fail "no message: $(cat "$T_ERRF")"
}

status_shows_a_forming_job_with_missing_ranks() {
    start_daemon
    spawn_rank stalled-job 0 3 "$ERRCASE_BIN" smoke
    local client=$SPAWNED
    # Missing ranks show once the job has waited for them a second.
    wait_until 10 eval '"$MLXCTL_BIN" status --json >"$T_OUTF" && grep -q stalled-job "$T_OUTF" && grep -q "\"stalled_op\": \"hello\"" "$T_OUTF"' \
        || fail "the job never showed as stalled in mlxctl status"
    /usr/bin/python3 - "$T_OUTF" <<'PY' || fail "wrong status JSON: $(cat "$T_OUTF")"
import json, sys
d = json.load(open(sys.argv[1]))["daemons"][0]
job = [j for j in d["jobs"] if j["id"] == "stalled-job"][0]
assert job["size"] == 3 and job["missing_ranks"] == [1, 2], job
assert any(c["job"] == "stalled-job" and c["rank"] == 0 for c in d["clients"]), d["clients"]
PY
    "$MLXCTL_BIN" status >"$T_OUTF" || fail "mlxctl status failed"
    grep -qE '^  stalled-job +3 +1 +forming' "$T_OUTF" || fail "no job row: $(cat "$T_OUTF")"
    kill -KILL "$client"
}

# ---- the command line ----

usage_errors_exit_2() {
    local args rc
    for args in "" "bogus" "launch" "launch -n 0 true" "launch -n 2" "status --timeout x" "status --bogus" \
                "launch -n 2 --job bad/id true" "launch -n 2 --daemons a,,b true" "help nope" \
                "launch -n 2 --socket ipc:///tmp/x.sock --daemons ipc:///tmp/y.sock true" \
                "launch --hosts a, true" "launch --hosts a --hostfile /dev/null true" "launch -n 3 --hosts a:2 true" \
                "launch --hosts a:0 true" "launch --hosts -a true" "launch --hostfile /nonexistent true" \
                "launch -n 2 --repeat-hosts 2 true" "launch -n 2 --rsh ssh true" "launch -n 2 --env 1X=y true" \
                "launch -n 2 --env MLXD_RANK=1 true" "launch -n 2 --max-restarts x true"; do
        rc=0
        # shellcheck disable=SC2086
        "$MLXCTL_BIN" $args >/dev/null 2>"$T_ERRF" || rc=$?
        expect_status "mlxctl $args" 2 "$rc"
        grep -q '^Usage: mlxctl' "$T_ERRF" || fail "mlxctl $args: no usage line"
    done
    # Each output read whole before matching (see service.sh's needs_libsystemd).
    local out
    out=$("$MLXCTL_BIN" --version) && grep -q '^mlxctl ' <<<"$out" || fail "--version"
    out=$("$MLXCTL_BIN" help launch) && grep -q '^Usage: mlxctl launch' <<<"$out" || fail "help launch"
    out=$("$MLXCTL_BIN" status --help) && grep -q '^Usage: mlxctl status' <<<"$out" || fail "status --help"
}

"$1"
