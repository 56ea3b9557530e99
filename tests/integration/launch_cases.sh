#!/bin/bash
# shellcheck disable=SC2016  # the ranks expand their own variables
# The tests of mlxctl launch's daemon check, --socket, interrupts, restarts
# and remote ranks, one function per behaviour:  bash launch_cases.sh NAME
#
# Remote ranks go through fake-rsh (beside this script), an rsh agent that
# runs the command line here, as ssh would run it on the host: from /, with
# a clean environment and, as MLXD_SOCKET, the endpoint of the daemon that
# stands in for that host (start_host). Processes a test leaves are found by
# a marker: the path "$T_DIR/up" in the ranks' command lines.

source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

: "${ERRCASE_BIN:?}"

T_OUTF="$T_DIR/out"
T_ERRF="$T_DIR/err"
RSH="$T_HERE/fake-rsh"
export FAKE_RSH_HOSTS="" FAKE_RSH_LOG="$T_DIR/rsh.log"
declare -A H_PID=()

# A rank that says it is up (the file $T_DIR/up.RANK) and sleeps; $T_DIR/up
# in its command line is the marker that finds it.
SLEEPER=(/usr/bin/python3 -c 'import os, sys, time
open(sys.argv[1] + "." + os.environ["MLXD_RANK"], "w").close()
time.sleep(600)' "$T_DIR/up")

# start_host NAME [--no-daemon]: a host for fake-rsh, with its own daemon on
# ipc://$T_DIR/h-NAME.sock (or only the endpoint, where nothing answers).
start_host() {
    local name=$1 ep="ipc://$T_DIR/h-$1.sock"
    FAKE_RSH_HOSTS+=" $name=$ep"
    [[ ${2:-} == --no-daemon ]] && return 0
    mkdir -p "$T_DIR/ompi-$name"
    OMPI_MCA_orte_tmpdir_base="$T_DIR/ompi-$name" \
        "$MLXD_BIN" --socket "$ep" --op-timeout "$T_OP_TIMEOUT" --log-level debug >>"$T_DIR/h-$name.log" 2>&1 &
    H_PID[$name]=$!
    "$MLXCTL_BIN" wait --socket "$ep" --timeout 10 >/dev/null || fail "the daemon of host $name did not answer"
}

# The hosts' daemons get SIGTERM and must exit 0, as the harness's does.
stop_hosts() {
    local name pid rc=0
    for name in "${!H_PID[@]}"; do
        pid=${H_PID[$name]}
        kill -TERM "$pid" 2>/dev/null
        if ! wait_until 15 eval "! kill -0 $pid 2>/dev/null"; then
            kill -KILL "$pid" 2>/dev/null
            log "the daemon of host $name did not exit within 15 s of SIGTERM"
            rc=1
        fi
        wait "$pid" || { log "the daemon of host $name exited with $?"; rc=1; }
        grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_DIR/h-$name.log" &&
            { log "the daemon of host $name reported:"; cat "$T_DIR/h-$name.log"; rc=1; }
    done
    H_PID=()
    return $rc
}

launch_exit() {
    local rc=$?
    stop_hosts || rc=1
    (exit $rc)
    harness_exit
}
trap launch_exit EXIT

# ranks_up N: the files of SLEEPER ranks 0..N-1 exist.
ranks_up() {
    local i
    for ((i = 0; i < $1; i++)); do [[ -e "$T_DIR/up.$i" ]] || return 1; done
}

# launch_bg ARGS...: mlxctl launch ARGS in the background, stderr to
# $T_ERRF; sets LPID.
launch_bg() {
    log "mlxctl launch $* &"
    "$MLXCTL_BIN" launch "$@" 2>"$T_ERRF" &
    LPID=$!
}

# wait_launch TIMEOUT_S: the background launch's exit status (124 and a
# SIGKILL at the deadline).
wait_launch() {
    local rc=0
    if ! wait_until "$1" eval "! kill -0 $LPID 2>/dev/null"; then
        kill -KILL "$LPID" 2>/dev/null
        wait "$LPID" 2>/dev/null
        return 124
    fi
    wait "$LPID" || rc=$?
    return $rc
}

# nothing_left: no process with the marker, whether rank, remote side or agent.
nothing_left() {
    local left
    wait_until 5 eval '[[ -z "$(pgrep -f -- "$T_DIR/up")" ]]' && return 0
    left=$(pgrep -af -- "$T_DIR/up")
    kill -KILL $(pgrep -f -- "$T_DIR/up") 2>/dev/null
    fail "processes of the job are left: $left"
}

# ---- the daemon check ----

launch_without_daemon_refuses_with_the_start_hint() {
    local rc=0
    "$MLXCTL_BIN" launch -n 2 -- sh -c 'touch "$MLXT_DIR/ran.$MLXD_RANK"' 2>"$T_ERRF" || rc=$?
    cat "$T_ERRF"
    expect_status "launch without a daemon" 1 "$rc"
    grep -qF "mlxctl: no mlxd answers at $T_SOCK: start it with \`mlxd\` or \`systemctl" "$T_ERRF" ||
        fail "no start hint"
    grep -q -- "--allow-singleton" "$T_ERRF" || fail "no word of --allow-singleton"
    [[ ! -e "$T_DIR/ran.0" && ! -e "$T_DIR/ran.1" ]] || fail "a rank ran although launch refused"
}

launch_with_daemons_refuses_when_one_does_not_answer() {
    start_daemon
    local rc=0 missing="ipc://$T_DIR/none.sock"
    "$MLXCTL_BIN" launch -n 2 --daemons "$T_SOCK,$missing" -- sh -c 'touch "$MLXT_DIR/ran.$MLXD_RANK"' \
        2>"$T_ERRF" || rc=$?
    cat "$T_ERRF"
    expect_status "launch with one of two daemons missing" 1 "$rc"
    grep -qF "no mlxd answers at $missing: start it with \`mlxd --socket $missing\`" "$T_ERRF" ||
        fail "the missing daemon is not named with its start hint"
    ! grep -qF "answers at $T_SOCK" "$T_ERRF" || fail "the daemon that answers is reported missing"
    [[ ! -e "$T_DIR/ran.0" ]] || fail "a rank ran although launch refused"
    "$MLXCTL_BIN" launch -n 2 --daemons "$T_SOCK,$T_SOCK" -- "$ERRCASE_BIN" smoke ||
        fail "launch with both daemons answering"
}

launch_allow_singleton_runs_ranks_as_groups_of_one() {
    local rc=0
    "$MLXCTL_BIN" launch -n 2 --allow-singleton -- "$ERRCASE_BIN" singleton 2>"$T_ERRF" || rc=$?
    cat "$T_ERRF"
    expect_status "launch --allow-singleton without a daemon" 0 "$rc"
}

# ---- --socket ----

launch_socket_names_the_daemon_of_every_rank() {
    start_daemon
    MLXD_SOCKET="ipc://$T_DIR/elsewhere.sock" "$MLXCTL_BIN" launch -n 2 --socket "$T_SOCK" -- \
        sh -c 'echo "$MLXD_RANK $MLXD_SOCKET"' >"$T_OUTF" || fail "launch --socket"
    [[ "$(sort "$T_OUTF")" == "0 $T_SOCK
1 $T_SOCK" ]] || fail "wrong endpoints: $(cat "$T_OUTF")"
    MLXD_SOCKET="ipc://$T_DIR/elsewhere.sock" "$MLXCTL_BIN" launch -n 2 --socket "$T_SOCK" -- \
        "$ERRCASE_BIN" smoke || fail "a real job through launch --socket"
    # On hosts, --socket replaces each host's default endpoint.
    start_host a --no-daemon
    start_host b --no-daemon
    "$MLXCTL_BIN" launch --hosts a,b --rsh "$RSH" --socket "$T_SOCK" -- sh -c 'echo "$MLXD_RANK $MLXD_SOCKET"' \
        >"$T_OUTF" || fail "launch --hosts --socket"
    [[ "$(sort "$T_OUTF")" == "0 $T_SOCK
1 $T_SOCK" ]] || fail "wrong endpoints on the hosts: $(cat "$T_OUTF")"
    local rc=0
    "$MLXCTL_BIN" launch -n 1 --socket "ipc://$T_DIR/none.sock" -- true 2>"$T_ERRF" || rc=$?
    expect_status "launch --socket to no daemon" 1 "$rc"
    grep -qF "start it with \`mlxd --socket ipc://$T_DIR/none.sock\`" "$T_ERRF" || fail "no hint: $(cat "$T_ERRF")"
}

# ---- interrupts ----

# ctrl_c_stops N LAUNCH_ARGS...: N SLEEPER ranks under mlxctl launch
# --max-restarts 2 LAUNCH_ARGS, then SIGINT to mlxctl: exit 130, the
# interrupt reported as such (no rank blamed, no restart), nothing left.
ctrl_c_stops() {
    local n=$1 t0 rc=0
    shift
    launch_bg --max-restarts 2 "$@" -- "${SLEEPER[@]}"
    wait_until 20 ranks_up "$n" || fail "the ranks did not start"
    t0=$(now_ms)
    kill -INT "$LPID"
    wait_launch 30 || rc=$?
    cat "$T_ERRF"
    expect_status "launch $* after SIGINT" 130 "$rc"
    grep -qx "mlxctl: interrupted: stopped $n ranks" "$T_ERRF" || fail "no 'interrupted: stopped $n ranks'"
    ! grep -q 'rank [0-9]* .*\(exited\|killed\)' "$T_ERRF" || fail "a rank is blamed for the interrupt"
    ! grep -q 'restarting' "$T_ERRF" || fail "an interrupted job was restarted"
    (( $(now_ms) - t0 < 15000 )) || fail "stopping the ranks took more than 15 s"
    nothing_left
}

launch_ctrl_c_is_an_interrupt_not_a_rank_failure() {
    start_daemon
    ctrl_c_stops 2 -n 2
    daemon_alive
}

# ---- restarts ----

launch_max_restarts_runs_a_new_job_after_a_failure() {
    start_daemon
    local rc=0
    # Rank 1 fails on attempt 0 only, once rank 0 has said what it saw;
    # rank 0 waits in the job for it until stopped. Attempt 1 is a real job
    # of both.
    "$MLXCTL_BIN" launch -n 2 --max-restarts 2 -- sh -c '
        echo "$MLXD_ATTEMPT $MLXD_JOB" >>"$MLXT_DIR/attempts.$MLXD_RANK"
        if [ "$MLXD_ATTEMPT" = 0 ] && [ "$MLXD_RANK" = 1 ]; then
            until [ -s "$MLXT_DIR/attempts.0" ]; do sleep 0.02; done
            exit 5
        fi
        exec "$0" smoke' "$ERRCASE_BIN" 2>"$T_ERRF" || rc=$?
    cat "$T_ERRF"
    expect_status "launch --max-restarts 2 with a failure on attempt 0" 0 "$rc"
    [[ "$(cat "$T_ERRF")" == 'mlxctl: rank 1 exited with code 5; restarting (attempt 2 of 3)' ]] ||
        fail "the restart is not logged as one line with its cause"
    local a0 a1
    a0=$(cat "$T_DIR/attempts.0")
    a1=$(cat "$T_DIR/attempts.1")
    log "rank 0 saw: ${a0//$'\n'/, }; rank 1 saw: ${a1//$'\n'/, }"
    [[ "$a0" == "$a1" ]] || fail "the ranks saw different attempts or jobs"
    [[ "$(cut -d' ' -f1 <<<"$a0" | tr '\n' ' ')" == "0 1 " ]] || fail "MLXD_ATTEMPT was not 0, then 1"
    [[ "$(cut -d' ' -f2 <<<"$a0" | sort -u | wc -l)" == 2 ]] || fail "the two attempts had the same job id"
    daemon_alive
}

launch_max_restarts_gives_up_with_the_last_failure() {
    local rc=0
    "$MLXCTL_BIN" launch -n 2 --allow-singleton --max-restarts 1 -- \
        sh -c '[ "$MLXD_RANK" = 0 ] && exit $((10 + MLXD_ATTEMPT)); exec sleep 60' 2>"$T_ERRF" || rc=$?
    cat "$T_ERRF"
    expect_status "launch whose every attempt fails" 11 "$rc"
    [[ "$(cat "$T_ERRF")" == "mlxctl: rank 0 exited with code 10; restarting (attempt 2 of 2)
mlxctl: rank 0 exited with code 11" ]] || fail "wrong messages"
}

# ---- remote ranks ----

launch_hosts_places_ranks_in_blocks_of_slots() {
    start_host a
    start_host b
    start_host c
    local job
    "$MLXCTL_BIN" launch --hosts a:2,b,c:2 --rsh "$RSH" -- sh -c 'echo "$MLXD_RANK/$MLXD_SIZE $MLXD_SOCKET $MLXD_ATTEMPT $MLXD_JOB"' \
        >"$T_OUTF" || fail "launch --hosts a:2,b,c:2"
    cat "$T_OUTF"
    job=$(head -n1 "$T_OUTF" | cut -d' ' -f4)
    [[ "$(sort "$T_OUTF")" == "0/5 ipc://$T_DIR/h-a.sock 0 $job
1/5 ipc://$T_DIR/h-a.sock 0 $job
2/5 ipc://$T_DIR/h-b.sock 0 $job
3/5 ipc://$T_DIR/h-c.sock 0 $job
4/5 ipc://$T_DIR/h-c.sock 0 $job" ]] || fail "wrong placement or environment"
    [[ "$(sort "$FAKE_RSH_LOG" | tr '\n' ' ')" == "a a b c c " ]] || fail "the agent was not run once per rank"
    # -n below the slots fills the first blocks; above them is a usage error.
    "$MLXCTL_BIN" launch -n 3 --hosts a:2,b,c:2 --rsh "$RSH" -- sh -c 'echo "$MLXD_RANK $MLXD_SOCKET"' \
        >"$T_OUTF" || fail "launch -n 3 --hosts a:2,b,c:2"
    [[ "$(sort "$T_OUTF")" == "0 ipc://$T_DIR/h-a.sock
1 ipc://$T_DIR/h-a.sock
2 ipc://$T_DIR/h-b.sock" ]] || fail "wrong placement of 3 ranks: $(cat "$T_OUTF")"
    local rc=0
    "$MLXCTL_BIN" launch -n 6 --hosts a:2,b,c:2 --rsh "$RSH" -- true 2>"$T_ERRF" || rc=$?
    expect_status "launch -n 6 on 5 slots" 2 "$rc"
    grep -q "more ranks than the hosts' 5 slots" "$T_ERRF" || fail "no reason: $(cat "$T_ERRF")"
}

launch_hostfile_and_repeat_hosts_place_ranks() {
    start_host a
    start_host b
    start_host c
    printf '# the hosts\na slots=2   # two ranks\n\nb\n  # c slots=4\n' >"$T_DIR/hosts"
    "$MLXCTL_BIN" launch --hostfile "$T_DIR/hosts" --rsh "$RSH" --prefix -- sh -c 'echo "$MLXD_SIZE $MLXD_SOCKET"' \
        >"$T_OUTF" || fail "launch --hostfile"
    [[ "$(sort "$T_OUTF")" == "[0] 3 ipc://$T_DIR/h-a.sock
[1] 3 ipc://$T_DIR/h-a.sock
[2] 3 ipc://$T_DIR/h-b.sock" ]] || fail "wrong placement from the hostfile: $(cat "$T_OUTF")"
    # --repeat-hosts K: K ranks per host, whatever the slots; -n the total.
    "$MLXCTL_BIN" launch -n 5 --repeat-hosts 2 --hosts a:3,b,c --rsh "$RSH" -- sh -c 'echo "$MLXD_RANK $MLXD_SOCKET"' \
        >"$T_OUTF" || fail "launch --repeat-hosts 2"
    [[ "$(sort "$T_OUTF")" == "0 ipc://$T_DIR/h-a.sock
1 ipc://$T_DIR/h-a.sock
2 ipc://$T_DIR/h-b.sock
3 ipc://$T_DIR/h-b.sock
4 ipc://$T_DIR/h-c.sock" ]] || fail "wrong placement with --repeat-hosts: $(cat "$T_OUTF")"
    local rc=0
    printf 'a slots=2\nb cpus=4\n' >"$T_DIR/bad"
    "$MLXCTL_BIN" launch --hostfile "$T_DIR/bad" --rsh "$RSH" -- true 2>"$T_ERRF" || rc=$?
    expect_status "launch with a bad hostfile" 2 "$rc"
    grep -qF "$T_DIR/bad:2: 'cpus=4' is not understood" "$T_ERRF" || fail "no file and line: $(cat "$T_ERRF")"
}

launch_hosts_env_and_cwd_reach_every_rank() {
    start_host a
    start_host b
    mkdir -p "$T_DIR/work" "$T_DIR/here"
    "$MLXCTL_BIN" launch --hosts a,b --rsh "$RSH" --env 'A=x y' --env "B=it's \$HOME" --env C= --cwd "$T_DIR/work" -- \
        sh -c 'echo "$MLXD_RANK|$A|$B|$C|$(pwd)"' >"$T_OUTF" || fail "launch --env --cwd"
    [[ "$(sort "$T_OUTF")" == "0|x y|it's \$HOME||$T_DIR/work
1|x y|it's \$HOME||$T_DIR/work" ]] || fail "wrong environment or directory: $(cat "$T_OUTF")"
    # Without --cwd, the launcher's directory (where the host has it).
    (cd "$T_DIR/here" && "$MLXCTL_BIN" launch --hosts a --rsh "$RSH" -- pwd) >"$T_OUTF" || fail "launch from $T_DIR/here"
    [[ "$(cat "$T_OUTF")" == "$T_DIR/here" ]] || fail "the rank did not run in the launcher's directory: $(cat "$T_OUTF")"
    # The same options for ranks here.
    start_daemon
    "$MLXCTL_BIN" launch -n 2 --env 'A=x y' --cwd "$T_DIR/work" -- sh -c 'echo "$MLXD_RANK|$A|$(pwd)"' >"$T_OUTF" ||
        fail "launch --env --cwd here"
    [[ "$(sort "$T_OUTF")" == "0|x y|$T_DIR/work
1|x y|$T_DIR/work" ]] || fail "wrong environment or directory here: $(cat "$T_OUTF")"
    local rc=0
    "$MLXCTL_BIN" launch --hosts a --rsh "$RSH" --cwd "$T_DIR/none" -- true 2>"$T_ERRF" || rc=$?
    expect_status "launch --cwd to a missing directory" 1 "$rc"
    grep -q "rank 0 on a exited with code 1" "$T_ERRF" || fail "no failure of the rank: $(cat "$T_ERRF")"
}

launch_hosts_runs_a_real_job() {
    start_daemon
    # Two "hosts" whose default endpoint is this one daemon: the job forms
    # from two remote sides.
    FAKE_RSH_HOSTS="a=$T_SOCK b=$T_SOCK"
    "$MLXCTL_BIN" launch --hosts a,b --rsh "$RSH" --env "MLXT_DIR=$T_DIR" --prefix -- "$ERRCASE_BIN" smoke ||
        fail "a real job of two remote ranks"
    daemon_alive
}

launch_hosts_rank_without_its_daemon_fails_naming_the_host() {
    start_host a
    start_host c --no-daemon
    local rc=0
    "$MLXCTL_BIN" launch --hosts a,c --rsh "$RSH" -- "${SLEEPER[@]}" 2>"$T_ERRF" || rc=$?
    cat "$T_ERRF"
    expect_status "launch with no daemon on host c" 1 "$rc"
    grep -qF "mlxctl: on c: no mlxd answers at ipc://$T_DIR/h-c.sock: start it with" "$T_ERRF" ||
        fail "the missing daemon of host c is not named"
    grep -qx 'mlxctl: rank 1 on c exited with code 1' "$T_ERRF" || fail "rank 1 on c is not named"
    [[ ! -e "$T_DIR/up.1" ]] || fail "the rank ran on c without a daemon"
    nothing_left
    "$MLXCTL_BIN" launch --hosts a,c --rsh "$RSH" --allow-singleton -- true || fail "--allow-singleton on hosts"
}

launch_hosts_failing_rank_stops_ranks_on_every_host() {
    start_host a
    start_host b
    local rc=0 t0
    # Rank 2 (on b) fails once the others are up; rank 1 ignores SIGTERM.
    t0=$(now_ms)
    "$MLXCTL_BIN" launch --hosts a,b:2 --rsh "$RSH" -- /usr/bin/python3 -c 'import os, signal, sys, time
rank = os.environ["MLXD_RANK"]
if rank == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if rank == "2":
    while not all(os.path.exists(sys.argv[1] + "." + r) for r in "01"):
        time.sleep(0.02)
    sys.exit(3)
open(sys.argv[1] + "." + rank, "w").close()
time.sleep(600)' "$T_DIR/up" 2>"$T_ERRF" || rc=$?
    cat "$T_ERRF"
    expect_status "launch with a failing remote rank" 3 "$rc"
    grep -qx 'mlxctl: rank 2 on b exited with code 3' "$T_ERRF" || fail "no failure message"
    [[ "$(grep -c 'exited\|killed' "$T_ERRF")" == 1 ]] || fail "the ranks that were stopped are reported too"
    (( $(now_ms) - t0 < 20000 )) || fail "stopping the other ranks took more than 20 s"
    nothing_left
}

launch_hosts_ctrl_c_stops_ranks_on_every_host() {
    start_host a
    start_host b
    ctrl_c_stops 4 --hosts a:2,b:2 --rsh "$RSH"
}

"$1"
