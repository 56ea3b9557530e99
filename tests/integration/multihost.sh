#!/bin/bash
# The multi-host integration tests, one function per behaviour, named like the
# ctest test that runs it:  bash multihost.sh NAME [--test-hosts]
#
# Each test starts its own world: H mlxd daemons under one mpirun on this
# machine, standing in for H hosts, each on its own socket d-R.sock (R: the
# daemon's world rank) in the test's directory, talking through shared
# memory. With --test-hosts the world runs on H test hosts instead
# (tests/hosts/hosts.sh: a network namespace, host name and /run/mlxd each),
# one daemon per host on the default endpoint, talking TCP only; each host's
# clients and mlxctl run on that host. Clients are real processes:
# opcheck (every op, dtype and shape), errcase (error behaviour) and mhclient
# (the behaviours of jobs spread over daemons), placed on daemons by
# mlxctl launch --daemons (contiguous blocks) or one by one.
#
# The small harness below waits for events with deadlines (never sleeps to
# let things settle), stops the world at the end (SIGTERM to every daemon,
# then mpirun must exit 0 and nothing of the world may be left running), and
# prints every daemon's log when anything failed.
#
# M_MPIRUN_ARGS adds mpirun options on test hosts (e.g. "--mca
# orte_enable_recovery 1", to see what Open MPI does with a lost host).
#
# Needs MLXD_BIN, MLXCTL_BIN, OPCHECK_BIN, ERRCASE_BIN and MHCLIENT_BIN;
# MPIRUN (default: mpirun) is Open MPI's, and python3 reads mlxctl's JSON.

set -u -o pipefail

: "${MLXD_BIN:?MLXD_BIN must name the mlxd binary}"
: "${MLXCTL_BIN:?MLXCTL_BIN must name the mlxctl binary}"
: "${OPCHECK_BIN:?}" "${ERRCASE_BIN:?}" "${MHCLIENT_BIN:?}"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# ---- harness ----

M_ON_HOSTS=0
[[ "${2:-}" == "--test-hosts" ]] && M_ON_HOSTS=1

# A short directory: ZeroMQ ipc paths are limited to 107 bytes.
M_DIR=$(mktemp -d /tmp/mh.XXXXXX) || exit 1
M_OP_TIMEOUT=${M_OP_TIMEOUT:-20}
M_MPIRUN_PID=""
M_WORLD_MAY_END=0  # a test that breaks the world: mpirun may have ended it
M_HOSTS=0
TEST_FAILED=0
M_PIDS=()
M_JOBS=0
EP=()      # EP[r]: the endpoint of the daemon of world rank r
DPID=()    # DPID[r]: its pid
declare -A M_OUT=()
# The clients' files (opcheck's barrier files, errcase's and mhclient's
# rendezvous files) go to the test's directory.
export MLXT_DIR="$M_DIR" MH_DIR="$M_DIR"
unset MLXD_JOB MLXD_RANK MLXD_SIZE MLXD_SOCKET

source "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../hosts/hosts.sh"

# on_host R CMD...: CMD on the host of world rank R (here, on one machine).
on_host() {
    local r=$1
    shift
    if (( M_ON_HOSTS )); then
        hosts_exec "$r" "$@"
    else
        "$@"
    fi
}

# mctl R ARGS...: mlxctl ARGS on the daemon of world rank R.
mctl() {
    local r=$1
    shift
    on_host "$r" "$MLXCTL_BIN" "$@" --socket "${EP[r]}"
}

# The host name of world rank R, as its daemon sees it.
host_name() {
    if (( M_ON_HOSTS )); then echo "${HOSTS[$1]}"; else hostname; fi
}

alive() { kill -0 "$1" 2>/dev/null; }
gone() { ! kill -0 "$1" 2>/dev/null; }

# jget EXPR [ARGS...]: the value of the Python expression EXPR over the JSON
# document on stdin (d), with the ARGS as the list a.
jget() {
    python3 -c 'import json, sys; d = json.load(sys.stdin); a = sys.argv[2:]; print(eval(sys.argv[1]))' "$@"
}

# new_job: sets JOB to a job id not used before in this test.
new_job() {
    M_JOBS=$((M_JOBS + 1))
    JOB="mh-$$-$M_JOBS"
}

# The log (stderr) of the daemon of world rank R, as mpirun --output-filename
# keeps it.
daemon_log() {
    local f
    for f in "$M_DIR"/out/*/rank."$1"/stderr; do
        [[ -f "$f" ]] && { echo "$f"; return 0; }
    done
    echo "$M_DIR/out/none"
}

# start_world H [MLXD ARGS...]: H daemons under mpirun; waits until every one
# answers, and sets EP and DPID. On test hosts (M_RATE, if set, caps their
# links), each daemon must be in its own host's network namespace and
# mpirun must have been told to use TCP only.
start_world() {
    local h=$1 r pid rank
    shift
    [[ -z "$M_MPIRUN_PID" ]] || fail "start_world: a world already runs"
    M_HOSTS=$h
    if (( M_ON_HOSTS )); then
        hosts_setup "$h" "${M_RATE:-}" || fail "cannot make $h test hosts"
        log "starting a world of $h on test hosts: mpirun $(hosts_mpi_options) -n $h $MLXD_BIN --op-timeout $M_OP_TIMEOUT --log-level debug $*"
        hosts_mpirun_cmd
        # shellcheck disable=SC2086
        "${HOSTS_MPIRUN[@]}" ${M_MPIRUN_ARGS:-} --output-filename "$M_DIR/out" \
            "$MLXD_BIN" --op-timeout "$M_OP_TIMEOUT" --log-level debug "$@" >"$M_DIR/mpirun.log" 2>&1 &
    else
        log "starting a world of $h: ${MPIRUN:-mpirun} -n $h $MLXD_BIN --socket ipc://$M_DIR/d-%r.sock --op-timeout $M_OP_TIMEOUT --log-level debug $*"
        "${MPIRUN:-mpirun}" --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader \
            --output-filename "$M_DIR/out" -n "$h" \
            "$MLXD_BIN" --socket "ipc://$M_DIR/d-%r.sock" --op-timeout "$M_OP_TIMEOUT" --log-level debug "$@" \
            >"$M_DIR/mpirun.log" 2>&1 &
    fi
    M_MPIRUN_PID=$!
    for ((r = 0; r < h; r++)); do
        if (( M_ON_HOSTS )); then
            EP[r]="ipc:///run/mlxd/mlxd.sock"
        else
            EP[r]="ipc://$M_DIR/d-$r.sock"
        fi
        if ! mctl "$r" wait --timeout 30 >/dev/null; then
            alive "$M_MPIRUN_PID" || fail "mpirun exited while the world started"
            fail "the daemon of world rank $r did not answer on ${EP[r]} within 30 s"
        fi
        read -r pid rank < <(mctl "$r" status --json | jget '"%d %d" % (d["daemons"][0]["pid"], d["daemons"][0]["world"]["rank"])') ||
            fail "mlxctl status --json on ${EP[r]} failed"
        if (( M_ON_HOSTS )); then
            [[ "$rank" == "$r" ]] || fail "the daemon on ${HOSTS[r]} (pid $pid) is world rank $rank, expected $r"
            [[ "$(ip netns identify "$pid")" == "${HOSTS[r]}" ]] ||
                fail "the daemon of world rank $r (pid $pid) is not in the network namespace of ${HOSTS[r]}"
        else
            [[ "$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$M_MPIRUN_PID" ]] ||
                fail "the daemon on ${EP[r]} (pid $pid) is not a child of our mpirun ($M_MPIRUN_PID)"
        fi
        DPID[r]=$pid
    done
    log "world of $h answers: daemon pids ${DPID[*]}, mpirun $M_MPIRUN_PID"
}

# world_alive: mpirun and every daemon still run and answer; fails if not.
world_alive() {
    local r
    alive "$M_MPIRUN_PID" || fail "mpirun (pid $M_MPIRUN_PID) is no longer running"
    for ((r = 0; r < M_HOSTS; r++)); do
        alive "${DPID[r]}" || fail "the daemon of world rank $r (pid ${DPID[r]}) is no longer running"
        mctl "$r" wait --timeout 5 >/dev/null ||
            fail "the daemon of world rank $r (pid ${DPID[r]}) runs but does not answer on ${EP[r]}"
    done
}

# Processes of this test's world still running: anything whose command line
# names the test's directory (the daemons do), and the daemons by pid. A
# zombie has exited (whoever inherited it reaps it): it does not count.
world_leftovers() {
    local r pid
    { pgrep -f -- "$M_DIR"; for ((r = 0; r < M_HOSTS; r++)); do echo "${DPID[r]:-}"; done
      if (( M_ON_HOSTS )); then for ((r = 0; r < M_HOSTS; r++)); do hosts_pids "$r"; done; fi; } | sort -u |
        while read -r pid; do
            [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" =~ ^[^Z] ]] && echo "$pid"
        done
}

# kill_mpirun PID: SIGTERM to mpirun, SIGKILL when it ignores that for 10 s.
kill_mpirun() {
    kill -TERM "$1" 2>/dev/null
    wait_until 10 gone "$1" || { log "mpirun ignored SIGTERM for 10 s; SIGKILL"; kill -KILL "$1"; }
}

# stop_world: SIGTERM to every daemon (mpirun's children), as a host's
# service manager would stop mlxd; mpirun must then exit 0 within 15 s, each
# daemon must have logged that it stopped, and nothing may be left. On a
# timeout: SIGTERM to mpirun, then SIGKILL to whatever is left. SIGTERM to
# mpirun is not the first step because Open MPI 4.1 then kills the daemons
# with SIGKILL a second later, before they can finish MPI_Finalize, so a
# daemon that does not stop cleanly would go unnoticed.
stop_world() {
    [[ -n "$M_MPIRUN_PID" ]] || return 0
    local mp=$M_MPIRUN_PID rc=0 r st left=()
    M_MPIRUN_PID=""
    if (( M_WORLD_MAY_END )); then
        # A broken world: mpirun may end it (with any status) while we stop
        # it; nothing of it may be left.
        for ((r = 0; r < M_HOSTS; r++)); do
            [[ -n "${DPID[r]:-}" ]] && kill -TERM "${DPID[r]}" 2>/dev/null
        done
        wait_until 20 gone "$mp" || { log "mpirun did not exit within 20 s; SIGTERM to it"; kill_mpirun "$mp"; rc=1; }
        wait "$mp"
        log "the broken world ended: mpirun exited with status $?"
        world_left_nothing || rc=1
        return $rc
    fi
    for ((r = 0; r < M_HOSTS; r++)); do
        [[ -n "${DPID[r]:-}" ]] || { log "the daemon of world rank $r never answered"; rc=1; continue; }
        kill -TERM "${DPID[r]}" 2>/dev/null || { log "the daemon of world rank $r had already exited"; rc=1; }
    done
    if ! wait_until 15 gone "$mp"; then
        log "mpirun did not exit within 15 s of SIGTERM to the daemons; SIGTERM to mpirun"
        for ((r = 0; r < M_HOSTS; r++)); do
            [[ -n "${DPID[r]:-}" && "$(ps -o stat= -p "${DPID[r]}" 2>/dev/null)" =~ ^[^Z] ]] &&
                log "the daemon of world rank $r (pid ${DPID[r]}) still runs; its threads wait in:" \
                    "$(for t in /proc/"${DPID[r]}"/task/*; do printf '%s ' "$(cat "$t/wchan" 2>/dev/null)"; done)"
        done
        rc=1
        kill_mpirun "$mp"
    fi
    wait "$mp"
    st=$?
    if (( st != 0 )); then
        log "mpirun exited with status $st"
        rc=1
    fi
    for ((r = 0; r < M_HOSTS; r++)); do
        [[ -n "${DPID[r]:-}" ]] && ! grep -q 'notice: Stopped' "$(daemon_log $r)" &&
            { log "the daemon of world rank $r (pid ${DPID[r]}) did not log that it stopped"; rc=1; }
    done
    world_left_nothing || rc=1
    (( rc == 0 )) && log "world stopped: mpirun exited 0, every daemon stopped, nothing left"
    return $rc
}

# Fails (and kills them) when processes of the world are left.
world_left_nothing() {
    local left=()
    mapfile -t left < <(world_leftovers)
    if (( ${#left[@]} )); then
        log "processes of the world left after mpirun exited:"
        ps -o pid,ppid,stat,args -p "$(IFS=,; echo "${left[*]}")"
        kill -KILL "${left[@]}" 2>/dev/null
        return 1
    fi
}

# Fails when a daemon's log or mpirun's output shows a crash or a sanitizer.
# (A test that breaks the world kills a host: mpirun then says so.)
check_logs() {
    local mp="$M_DIR/mpirun.log"
    (( M_WORLD_MAY_END )) && mp=/dev/null
    if grep -lE 'AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:|LeakSanitizer|Segmentation fault|signal [0-9]+ \(|exited on signal|MPI_ABORT' \
        "$mp" "$M_DIR"/out/*/rank.*/stderr 2>/dev/null; then
        log "a daemon log shows a crash, an abort or a sanitizer report"
        return 1
    fi
}

print_logs() {
    local r f
    for ((r = 0; r < M_HOSTS; r++)); do
        f=$(daemon_log $r)
        log "---- mlxd of world rank $r (pid ${DPID[r]:-?}, ${EP[r]:-?}): $f ----"
        [[ -f "$f" ]] && tail -n 400 "$f"
    done
    log "---- mpirun's own output ----"
    grep -v ' mlxd\[[0-9]*\] ' "$M_DIR/mpirun.log" 2>/dev/null
    log "---- end of logs ----"
}

# spawn_rank JOB RANK SIZE HOST CMD...: one client of a job on the daemon of
# world rank HOST, with the environment mlxctl launch would give it, its
# output to a file. Sets SPAWNED. On test hosts, it runs on that host and
# finds its daemon on the default endpoint; MH_HOST tells mhclient which
# host it is on.
spawn_rank() {
    local job=$1 rank=$2 size=$3 host=$4 out="$M_DIR/client.${#M_PIDS[@]}.out"
    shift 4
    if (( M_ON_HOSTS )); then
        # The agent itself, not hosts_exec: $! is then the client's pid (each
        # step execs the next), not a subshell's.
        "$HOSTS_AGENT" --argv "${HOSTS[host]}" env MLXD_JOB="$job" MLXD_RANK="$rank" MLXD_SIZE="$size" MH_HOST="$host" \
            "$@" >"$out" 2>&1 &
    else
        MLXD_JOB=$job MLXD_RANK=$rank MLXD_SIZE=$size MLXD_SOCKET=${EP[host]} "$@" >"$out" 2>&1 &
    fi
    SPAWNED=$!
    M_PIDS+=("$SPAWNED")
    M_OUT[$SPAWNED]=$out
}

# wait_rank PID TIMEOUT_S: the client's exit status, its output shown;
# kills it and returns 124 at the deadline.
wait_rank() {
    local pid=$1 rc out=${M_OUT[$1]:-}
    if ! wait_until "$2" gone "$pid"; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        [[ -n "$out" ]] && sed "s/^/  [pid $pid] /" "$out"
        log "client $pid did not exit within $2 s"
        return 124
    fi
    wait "$pid"
    rc=$?
    [[ -n "$out" ]] && sed "s/^/  [pid $pid] /" "$out"
    return $rc
}

# launch_on N TIMEOUT_S HOSTS -- CMD...: one job of N ranks through mlxctl
# launch, spread over the daemons of the world ranks in HOSTS ("0 1 2") in
# blocks, with the id $JOB; its exit status. On test hosts: launch_on_hosts.
launch_on() {
    local n=$1 timeout=$2 hosts=$3 h eps=""
    shift 4
    if (( M_ON_HOSTS )); then
        launch_on_hosts "$n" "$timeout" "$hosts" "$@"
        return
    fi
    for h in $hosts; do eps+="${eps:+,}${EP[h]}"; done
    log "mlxctl launch -n $n --job $JOB --daemons $eps -- $*"
    timeout --kill-after=5 "$timeout" "$MLXCTL_BIN" launch -n "$n" --job "$JOB" --prefix --daemons "$eps" -- "$@"
    local rc=$?
    (( rc == 124 || rc == 137 )) && log "mlxctl launch did not finish within $timeout s"
    return $rc
}

# launch_on_hosts N TIMEOUT_S HOSTS CMD...: launch_on's job on test hosts,
# with mlxctl launch's blocks (the first n % d one rank larger), each rank
# started on its host; the first failure's exit status, the others killed.
launch_on_hosts() {
    local n=$1 timeout=$2 hs=($3) r d k q big rc=0 st pids=() deadline
    shift 3
    d=${#hs[@]}
    q=$((n / d))
    big=$((n % d * (q + 1)))
    log "job $JOB: $n ranks of $* over test hosts ${hs[*]}"
    for ((r = 0; r < n; r++)); do
        if (( r < big )); then k=$((r / (q + 1))); else k=$((n % d + (r - big) / q)); fi
        spawn_rank "$JOB" "$r" "$n" "${hs[k]}" "$@"
        pids+=("$SPAWNED")
    done
    # TCP between namespaces on a loaded machine is slower than shared
    # memory: three times the one-machine deadline.
    deadline=$(( $(now_ms) + timeout * 3000 ))
    for ((r = 0; r < n; r++)); do
        st=0
        wait_rank "${pids[r]}" $(( (deadline - $(now_ms)) / 1000 + 1 )) || st=$?
        if (( st != 0 && rc == 0 )); then
            rc=$st
            log "rank $r exited with code $st"
            kill -KILL "${pids[@]}" 2>/dev/null
        fi
    done
    return $rc
}

# expect_hellos JOB HOST RANKS...: the daemon of world rank HOST saw exactly
# these ranks of JOB say hello (its debug log says so).
expect_hellos() {
    local job=$1 host=$2 got want
    shift 2
    got=$(grep -oE "Job $job: rank [0-9]+ said hello" "$(daemon_log "$host")" | awk '{print $4}' | sort -n | xargs)
    want=$(printf '%s\n' "$@" | sort -n | xargs)
    [[ "$got" == "$want" ]] || fail "job $job: the daemon of world rank $host saw ranks [$got] say hello, expected [$want]"
    log "job $job: daemon $host holds ranks [$got]"
}

# A fresh job of two ranks on two different daemons that must work.
next_job_works() {
    new_job
    launch_on 2 30 "0 $((M_HOSTS - 1))" -- "$ERRCASE_BIN" smoke || fail "a new job after $1 did not work"
}

harness_exit() {
    local rc=$? pid
    trap - EXIT
    for pid in "${M_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null && log "killed leftover client $pid"
    done
    stop_world || rc=1
    check_logs || rc=1
    (( TEST_FAILED )) && rc=1
    (( rc != 0 )) && print_logs
    hosts_teardown
    if (( rc != 0 )); then
        log "TEST FAILED"
    else
        log "TEST PASSED"
    fi
    rm -rf "$M_DIR"
    exit $rc
}
trap harness_exit EXIT
trap 'fail "interrupted"' INT TERM

# ---- every op, dtype and shape, with ranks on several daemons ----

two_daemons_all_ops_even() {
    start_world 2
    new_job
    launch_on 4 150 "0 1" -- "$OPCHECK_BIN" || fail "opcheck in a job of 4 over 2 daemons (2+2)"
    expect_hellos "$JOB" 0 0 1
    expect_hellos "$JOB" 1 2 3
    world_alive
}

# 1 rank on d0, 4 on d1, none on d2: the job spans some of the world's
# daemons, unevenly. opcheck --quick: the full run is two_daemons_all_ops_even's
# and three_daemons_five_ranks_blocks'.
three_daemons_all_ops_uneven() {
    start_world 3
    new_job
    local r pids=()
    spawn_rank "$JOB" 0 5 0 "$OPCHECK_BIN" --quick
    pids+=("$SPAWNED")
    for r in 1 2 3 4; do
        spawn_rank "$JOB" "$r" 5 1 "$OPCHECK_BIN" --quick
        pids+=("$SPAWNED")
    done
    for r in 0 1 2 3 4; do
        expect_exit "opcheck --quick rank $r of 5 (1 on d0, 4 on d1)" "${pids[r]}" 100 0
    done
    expect_hellos "$JOB" 0 0
    expect_hellos "$JOB" 1 1 2 3 4
    expect_hellos "$JOB" 2
    world_alive
}

# The issue's "done when": mlxctl launch -n 5 over 3 daemons.
three_daemons_five_ranks_blocks() {
    start_world 3
    new_job
    launch_on 5 150 "0 1 2" -- "$OPCHECK_BIN" || fail "opcheck in a job of 5 over 3 daemons"
    expect_hellos "$JOB" 0 0 1
    expect_hellos "$JOB" 1 2 3
    expect_hellos "$JOB" 2 4
    world_alive
}

# The test hosts share this machine's cores but look free to Open MPI, so
# their daemons must be told to yield in blocking calls (hosts_mpi_options):
# spinning, three daemons on two cores made groups over three hosts several
# times slower than groups over two, and three_daemons_five_ranks_blocks'
# world all_sum after opcheck's parity split timed out. Every daemon of a
# world on test hosts has the setting in its environment.
daemons_on_test_hosts_yield_when_idle() {
    (( M_ON_HOSTS )) || fail "this test is for test hosts (--test-hosts)"
    start_world 3
    local r env
    for r in 0 1 2; do
        # Read whole before matching: under pipefail, grep -q leaving early
        # would fail the pipeline whenever tr was still writing.
        env=$(tr '\0' '\n' <"/proc/${DPID[r]}/environ") || fail "cannot read the environment of pid ${DPID[r]}"
        grep -qx 'OMPI_MCA_mpi_yield_when_idle=1' <<<"$env" ||
            fail "the daemon of world rank $r (pid ${DPID[r]}) was not told mpi_yield_when_idle=1"
    done
    world_alive
}

# Subgroups that stay on one daemon and subgroups that span daemons, side by
# side: mhclient splits by host, by parity and nested, on 2+2 ranks; then
# opcheck with ranks 0,2 on d0 and 1,3 on d1, where its parity splits stay
# on one daemon and its all-ties split spans both.
split_spans_and_stays() {
    start_world 2
    new_job
    launch_on 4 60 "0 1" -- "$MHCLIENT_BIN" split || fail "mhclient split on 2+2 ranks"
    new_job
    local r pids=()
    for r in 0 1 2 3; do
        spawn_rank "$JOB" "$r" 4 $((r % 2)) "$OPCHECK_BIN" --quick
        pids+=("$SPAWNED")
    done
    for r in 0 1 2 3; do
        expect_exit "opcheck --quick rank $r of 4 (even ranks on d0, odd on d1)" "${pids[r]}" 100 0
    done
    world_alive
}

# 5 ranks over 3 daemons (2+2+1): splits, each freed and followed at once
# by the next, 20 times; ranks of one split stay on one host and span hosts.
split_after_freed_split_works_on_every_host() {
    start_world 3
    new_job
    launch_on 5 120 "0 1 2" -- "$MHCLIENT_BIN" resplit 20 || fail "mhclient resplit 20 on 2+2+1 ranks"
    world_alive
}

# The lifetime tests' split race (lifecheck split_race: splits freed at
# once, 20 times), with 5 ranks over 3 daemons (2+2+1). Needs LIFECHECK_BIN.
split_freed_at_once_completes_on_three_daemons() {
    : "${LIFECHECK_BIN:?LIFECHECK_BIN must name the lifecheck binary}"
    start_world 3
    new_job
    launch_on 5 200 "0 1 2" -- "$LIFECHECK_BIN" split_race || fail "splits freed at once, 5 ranks over 3 daemons"
    world_alive
}

large_all_sum_across_hosts() {
    start_world 2
    new_job
    launch_on 2 150 "0 1" -- "$OPCHECK_BIN" --large 256 || fail "all_sum of 256 MiB float32 over 2 daemons"
    expect_hellos "$JOB" 0 0
    expect_hellos "$JOB" 1 1
    world_alive
}

# rss_anon_kib PID: the process's anonymous resident memory, KiB.
rss_anon_kib() {
    local status
    status=$(<"/proc/$1/status") || return 1
    awk '/^RssAnon:/ {print $2}' <<<"$status"
}

# sample_rss_anon PID FILE: writes the highest RssAnon of PID seen (KiB) to
# FILE, sampling every 10 ms until killed or PID ends.
sample_rss_anon() {
    local v max=0
    while v=$(rss_anon_kib "$1") && [[ -n "$v" ]]; do
        (( v > max )) && { max=$v; echo "$max" >"$2"; }
        sleep 0.01
    done
}

# A 256 MiB all_sum of uint8 in shared memory, 2 ranks on each of 2 daemons
# (the engine reduces the local pair block by block beside MPI's transfer of
# the block before), checked exactly: the sums overflow and must wrap (Open
# MPI's own AVX sum saturates). Each daemon's RssAnon stays within 32 MiB of
# what it was before: the engine runs on the members' memory, with no buffer
# of the tensor's size. Then int32 and int64 inline (frames, not shared
# memory), one rank and two ranks per daemon.
large_integer_all_sum_wraps_exactly_across_hosts() {
    # Ranks fill and check 256 MiB each (slow under ASan): they reach the
    # all_sum far apart.
    M_OP_TIMEOUT=240
    start_world 2
    local r idle=() samplers=() peak
    next_job_works "the start"
    for r in 0 1; do
        idle[r]=$(rss_anon_kib "${DPID[r]}") || fail "cannot read the RssAnon of the daemon of world rank $r"
        sample_rss_anon "${DPID[r]}" "$M_DIR/peak.$r" &
        samplers+=($!)
    done
    new_job
    launch_on 4 300 "0 1" -- "$OPCHECK_BIN" --large 256 --shm --int 1 ||
        fail "all_sum of 256 MiB of uint8 in shared memory, 2 ranks on each of 2 daemons"
    kill "${samplers[@]}" 2>/dev/null
    wait "${samplers[@]}" 2>/dev/null
    for r in 0 1; do
        peak=$(<"$M_DIR/peak.$r") || fail "no RssAnon sample of the daemon of world rank $r"
        log "daemon $r: RssAnon ${idle[r]} KiB before, at most $peak KiB during the 256 MiB all_sum"
        # Under ASan the shadow of the shared memory the daemon touches (an
        # eighth of it) is anonymous memory: the bound says nothing there.
        [[ ${MLXD_SANITIZED:-0} == 1 ]] || (( peak - idle[r] <= 32 * 1024 )) ||
            fail "the daemon of world rank $r grew by $(( (peak - idle[r]) / 1024 )) MiB of RssAnon (at most 32 MiB)"
    done
    new_job
    launch_on 2 120 "0 1" -- "$OPCHECK_BIN" --large 64 --int 4 || fail "all_sum of 64 MiB of int32 inline, 1 rank per daemon"
    new_job
    launch_on 4 120 "0 1" -- "$OPCHECK_BIN" --large 64 --int 8 || fail "all_sum of 64 MiB of int64 inline, 2 ranks per daemon"
    world_alive
}

# A rank SIGKILLed while the engines run a pipelined 256 MiB all_sum of
# shared memory (2 ranks per daemon, every one in the op): the segments it
# shared stay mapped until the op ends, the others get the sum or
# MLXD_EPEER, never a hang, and both daemons serve the next job.
client_killed_mid_pipelined_op_leaves_the_daemon_serving() {
    M_OP_TIMEOUT=240
    start_world 2
    new_job
    local r pids=() hosts=(0 0 1 1) out
    for r in 0 1 2 3; do
        spawn_rank "$JOB" "$r" 4 "${hosts[r]}" "$OPCHECK_BIN" --large 256 --shm --int 4
        pids+=("$SPAWNED")
    done
    wait_until 120 clients_pending 0 "$JOB" all_sum 2 || fail "ranks 0 and 1 were not in all_sum on d0 within 120 s"
    wait_until 120 clients_pending 1 "$JOB" all_sum 2 || fail "ranks 2 and 3 were not in all_sum on d1 within 120 s"
    kill -KILL "${pids[0]}"
    log "killed rank 0 (pid ${pids[0]}, on d0) in the all_sum"
    expect_exit "rank 0, killed" "${pids[0]}" 10 137
    for r in 1 2 3; do
        wait_rank "${pids[r]}" 120
        (( $? != 124 )) || fail "rank $r did not end within 120 s of the kill"
        out=$(<"${M_OUT[${pids[r]}]}")
        grep -qE 'exact|MLXD_EPEER' <<<"$out" || fail "rank $r got neither the sum nor MLXD_EPEER"
    done
    world_alive
    new_job
    launch_on 4 200 "0 1" -- "$OPCHECK_BIN" --large 64 --shm --int 4 || fail "a pipelined all_sum in a new job after the kill"
    world_alive
}

# ---- jobs that cross each other ----

# Job A has rank 0 on d0 and rank 1 on d1, job B the other way round. Before
# each all_sum, A's member reaches d0 first and B's member d1 first (the
# follower waits for the leader's file): a host that ran collectives in the
# order its members arrive would block on A on d0 and on B on d1.
two_jobs_opposite_order_do_not_deadlock() {
    start_world 2
    local iters=300 kib=256 ja jb a0 a1 b0 b1 t0
    new_job; ja=$JOB
    new_job; jb=$JOB
    t0=$(now_ms)
    spawn_rank "$ja" 0 2 0 "$MHCLIENT_BIN" opposite $iters $kib lead A0
    a0=$SPAWNED
    spawn_rank "$jb" 1 2 0 "$MHCLIENT_BIN" opposite $iters $kib follow A0
    b1=$SPAWNED
    spawn_rank "$jb" 0 2 1 "$MHCLIENT_BIN" opposite $iters $kib lead B0
    b0=$SPAWNED
    spawn_rank "$ja" 1 2 1 "$MHCLIENT_BIN" opposite $iters $kib follow B0
    a1=$SPAWNED
    expect_exit "job A rank 0 (d0, first there)" "$a0" 100 0
    expect_exit "job A rank 1 (d1, second there)" "$a1" 20 0
    expect_exit "job B rank 0 (d1, first there)" "$b0" 20 0
    expect_exit "job B rank 1 (d0, second there)" "$b1" 20 0
    log "two jobs of $iters all_sums of $kib KiB in opposite orders finished in $(( $(now_ms) - t0 )) ms"
    world_alive
}

# ---- members that disagree, die or are missing ----

# mhclient mismatch on 2+2 ranks (host against host, and the last rank
# against the rest with its neighbour on d1 agreeing with d0), then errcase
# mismatch on 2+1 ranks (the last rank, alone on d1, disagrees: only the
# daemons together can see it).
mismatch_across_hosts_gives_emismatch_everywhere() {
    start_world 2
    new_job
    launch_on 4 60 "0 1" -- "$MHCLIENT_BIN" mismatch || fail "mhclient mismatch on 2+2 ranks"
    new_job
    launch_on 3 60 "0 1" -- "$ERRCASE_BIN" mismatch || fail "errcase mismatch on 2+1 ranks"
    world_alive
    next_job_works "mismatches"
}

# clients_pending HOST JOB OP N: N clients of JOB on the daemon of world
# rank HOST wait in OP.
clients_pending() {
    local n
    n=$(mctl "$1" status --json 2>/dev/null |
        jget 'sum(c["job"] == a[0] and c["pending"] == a[1] for c in d["daemons"][0]["clients"])' "$2" "$3") ||
        return 1
    [[ "$n" == "$4" ]]
}

# Rank 1 (on d1) is SIGKILLed while ranks 0 and 2 (on d0) and 3 (on d1)
# wait in all_sum: each gets MLXD_EPEER within a second of the kill. Then a
# new job runs every op on the same world.
killed_rank_on_one_daemon_gives_epeer_on_others() {
    start_world 2
    new_job
    local victim r at dt pids=() hosts=(0 1 0 1)
    for r in 0 1 2 3; do
        if (( r == 1 )); then
            spawn_rank "$JOB" 1 4 1 "$MHCLIENT_BIN" victim
            victim=$SPAWNED
        else
            spawn_rank "$JOB" "$r" 4 "${hosts[r]}" "$MHCLIENT_BIN" waiter
        fi
        pids+=("$SPAWNED")
    done
    wait_until 20 clients_pending 0 "$JOB" all_sum 2 || fail "ranks 0 and 2 were not waiting in all_sum on d0 within 20 s"
    wait_until 20 clients_pending 1 "$JOB" all_sum 1 || fail "rank 3 was not waiting in all_sum on d1 within 20 s"
    local t_kill
    t_kill=$(now_ms)
    kill -KILL "$victim"
    log "killed rank 1 (pid $victim, on d1) at $t_kill"
    expect_exit "rank 1, killed" "$victim" 10 137
    for r in 0 2 3; do
        expect_exit "rank $r (d${hosts[r]}), waiting in all_sum" "${pids[r]}" 20 0
        at=$(grep -oE 'epeer_at_ms=[0-9]+' "${M_OUT[${pids[r]}]}" | cut -d= -f2)
        [[ -n "$at" ]] || fail "rank $r did not say when it got MLXD_EPEER"
        dt=$((at - t_kill))
        log "rank $r (d${hosts[r]}) got MLXD_EPEER $dt ms after the kill"
        (( dt < 1000 )) || soft_fail "rank $r (d${hosts[r]}) got MLXD_EPEER $dt ms after the kill, expected under 1000 ms"
    done
    grep -qiE 'died|exited|killed' <<<"$(grep -E "pid $victim\b" "$(daemon_log 1)")" ||
        fail "the log of d1 does not say that pid $victim (rank 1) died"
    world_alive
    new_job
    launch_on 3 100 "0 1" -- "$OPCHECK_BIN" --quick || fail "opcheck --quick in a new job after a killed rank"
}

# Rank 3 (on d1) never calls all_sum; ranks 0, 1 (d0) and 2 (d1) get
# MLXD_ETIMEDOUT after their 2 s deadline, naming rank 3 only. The same with
# rank 0 (on d0, the coordinator's host) missing.
missing_rank_across_hosts_times_out_naming_it() {
    start_world 2
    local missing r pids hosts=(0 0 1 1) f found
    for missing in 3 0; do
        new_job
        pids=()
        for r in 0 1 2 3; do
            spawn_rank "$JOB" "$r" 4 "${hosts[r]}" "$MHCLIENT_BIN" timeout "$missing" 2000
            pids+=("$SPAWNED")
        done
        for r in 0 1 2 3; do
            expect_exit "rank $r (d${hosts[r]}) of a job whose rank $missing never calls all_sum" "${pids[r]}" 20 0
        done
        found=0
        for r in 0 1; do
            f=$(daemon_log $r)
            grep -qE "rank\(s\) $missing([^0-9]|$)" <<<"$(grep -F "$JOB" "$f" | grep -i 'timed out')" && found=1
        done
        (( found )) || fail "no daemon log has a timeout line of job $JOB naming rank $missing"
        rm -f "$M_DIR"/tdone.*
    done
    world_alive
    next_job_works "timeouts"
}

# ---- hosts lost or cut off (test hosts only) ----

# error_after PID T0_MS WHAT LIMIT_MS: the client PID said when it got its
# error (error_at_ms=); fails softly unless that was within LIMIT_MS of T0_MS.
error_after() {
    local at dt
    at=$(grep -oE 'error_at_ms=[0-9]+' "${M_OUT[$1]}" | cut -d= -f2)
    [[ -n "$at" ]] || { soft_fail "$3 did not say when it got its error"; return; }
    dt=$((at - $2))
    log "$3 had its error $dt ms after the break"
    (( dt <= $4 )) || soft_fail "$3 had its error $dt ms after the break, expected within $4 ms"
}

# A job of 3, one rank per host; every process on host 1 is killed (its
# daemon, orted, the rank) while ranks 0 and 2 wait in all_sum: each gets an
# error naming host 1 within 1 s. Then, as far as Open MPI lets the world
# live on, a job on hosts 0 and 2 runs.
lost_host_gives_every_surviving_rank_an_error_naming_it() {
    (( M_ON_HOSTS )) || fail "runs on test hosts only"
    M_WORLD_MAY_END=1
    start_world 3
    new_job
    local r pids=() t_kill
    for r in 0 1 2; do
        if (( r == 1 )); then
            spawn_rank "$JOB" 1 3 1 "$MHCLIENT_BIN" doomed never "${HOSTS[0]}"
        else
            spawn_rank "$JOB" "$r" 3 "$r" "$MHCLIENT_BIN" doomed - "${HOSTS[1]}"
        fi
        pids+=("$SPAWNED")
    done
    wait_until 30 files_exist "$M_DIR"/ready.{0,1,2} || fail "the job of 3 on 3 hosts did not form within 30 s"
    wait_until 30 clients_pending 0 "$JOB" all_sum 1 || fail "rank 0 was not waiting in all_sum on host 0 within 30 s"
    wait_until 30 clients_pending 2 "$JOB" all_sum 1 || fail "rank 2 was not waiting in all_sum on host 2 within 30 s"
    t_kill=$(now_ms)
    hosts_kill 1
    for r in 0 2; do
        expect_exit "rank $r (host $r), waiting in all_sum when host 1 was lost" "${pids[r]}" 20 0
        error_after "${pids[r]}" "$t_kill" "rank $r (host $r)" 1000
    done
    if wait_until 5 gone "$M_MPIRUN_PID"; then
        log "mpirun ended the world within $(( $(now_ms) - t_kill )) ms of the loss"
    else
        new_job
        launch_on 2 30 "0 2" -- "$ERRCASE_BIN" smoke && log "a job on hosts 0 and 2 ran after host 1 was lost" ||
            log "a job on hosts 0 and 2 did not run after host 1 was lost (mpirun still runs: $(alive "$M_MPIRUN_PID" && echo yes || echo no))"
    fi
}

# A job of 3, one rank per host, still forming: ranks 0 and 2 said hello and
# wait for rank 1, which never starts; every process on host 1 is killed.
# Both fail at once with MLXD_EPEER naming host 1, not at their deadline
# (60 s): the job may need that host.
lost_host_fails_a_forming_job_at_once_naming_it() {
    (( M_ON_HOSTS )) || fail "runs on test hosts only"
    M_WORLD_MAY_END=1
    M_OP_TIMEOUT=60
    start_world 3
    new_job
    local r pids=() t_kill at
    for r in 0 2; do
        spawn_rank "$JOB" "$r" 3 "$r" "$MHCLIENT_BIN" forming "${HOSTS[1]}"
        pids+=("$SPAWNED")
        wait_until 30 clients_pending "$r" "$JOB" hello 1 || fail "rank $r was not waiting for job $JOB to form on host $r within 30 s"
    done
    t_kill=$(now_ms)
    hosts_kill 1
    for r in 0 1; do
        expect_exit "rank $((2 * r)) of a forming job when host 1 was lost" "${pids[r]}" 30 0
        at=$(grep -oE 'error_at_ms=[0-9]+' "${M_OUT[${pids[r]}]}" | cut -d= -f2)
        [[ -n "$at" ]] || fail "rank $((2 * r)) did not say when it got its error"
        log "rank $((2 * r)) had its error $((at - t_kill)) ms after the loss"
        (( at - t_kill < 20000 )) || fail "rank $((2 * r)) had its error $((at - t_kill)) ms after the loss: its deadline, not the loss"
    done
}

# With a 5 s op deadline, host 1's link goes down for 10 s while rank 0
# (host 0) and rank 1 (host 1) call all_sum: both have an error naming the
# other host by 7 s; within 60 s of the link coming back, the world serves a
# new job or mpirun has exited non-zero. Never a hang.
link_cut_gives_both_sides_an_error_and_the_world_recovers() {
    (( M_ON_HOSTS )) || fail "runs on test hosts only"
    M_WORLD_MAY_END=1
    M_OP_TIMEOUT=5
    start_world 2
    new_job
    local r pids=() t_cut t_up deadline st
    spawn_rank "$JOB" 0 2 0 "$MHCLIENT_BIN" doomed cut "${HOSTS[1]}"
    pids+=("$SPAWNED")
    spawn_rank "$JOB" 1 2 1 "$MHCLIENT_BIN" doomed cut "${HOSTS[0]}"
    pids+=("$SPAWNED")
    wait_until 30 files_exist "$M_DIR"/ready.{0,1} || fail "the job of 2 on 2 hosts did not form within 30 s"
    hosts_link 1 down || fail "cannot take the link of host 1 down"
    t_cut=$(now_ms)
    log "took the link of ${HOSTS[1]} down"
    touch "$M_DIR/cut"
    for r in 0 1; do
        expect_exit "rank $r (host $r), in all_sum with host 1 cut off" "${pids[r]}" 30 0
        error_after "${pids[r]}" "$t_cut" "rank $r (host $r)" 7000
    done
    # The cut lasts 10 s: a length of time the test sets, not a wait for an event.
    local left=$((t_cut + 10000 - $(now_ms)))
    (( left > 0 )) && sleep "$(awk -v m="$left" 'BEGIN { printf "%.3f", m / 1000 }')"
    hosts_link 1 up || fail "cannot bring the link of host 1 back"
    t_up=$(now_ms)
    log "brought the link of ${HOSTS[1]} back after $((t_up - t_cut)) ms"
    deadline=$((t_up + 60000))
    while (( $(now_ms) < deadline )); do
        if gone "$M_MPIRUN_PID"; then
            wait "$M_MPIRUN_PID"
            st=$?
            M_MPIRUN_PID=""
            log "mpirun exited with status $st $(( $(now_ms) - t_up )) ms after the link came back"
            (( st != 0 )) || fail "mpirun exited 0 after the partition: nobody would start the world again"
            return
        fi
        new_job
        if launch_on 2 20 "0 1" -- "$ERRCASE_BIN" smoke; then
            log "the world served a new job $(( $(now_ms) - t_up )) ms after the link came back"
            world_alive
            return
        fi
    done
    fail "within 60 s of the link coming back, the world neither served a new job nor exited"
}

# With --heartbeat-timeout 0.5, a host whose link goes down is lost after
# half a second of silence, not the default 2 s: both ranks of a job across
# the cut have an error naming the other host within 1.5 s.
heartbeat_timeout_sets_how_soon_a_silent_host_is_lost() {
    (( M_ON_HOSTS )) || fail "runs on test hosts only"
    M_WORLD_MAY_END=1
    M_OP_TIMEOUT=30
    start_world 2 --heartbeat-timeout 0.5
    new_job
    local r pids=() t_cut
    spawn_rank "$JOB" 0 2 0 "$MHCLIENT_BIN" doomed cut "${HOSTS[1]}"
    pids+=("$SPAWNED")
    spawn_rank "$JOB" 1 2 1 "$MHCLIENT_BIN" doomed cut "${HOSTS[0]}"
    pids+=("$SPAWNED")
    wait_until 30 files_exist "$M_DIR"/ready.{0,1} || fail "the job of 2 on 2 hosts did not form within 30 s"
    hosts_link 1 down || fail "cannot take the link of host 1 down"
    t_cut=$(now_ms)
    touch "$M_DIR/cut"
    for r in 0 1; do
        expect_exit "rank $r (host $r), in all_sum with host 1 cut off" "${pids[r]}" 30 0
        error_after "${pids[r]}" "$t_cut" "rank $r (host $r)" 1500
    done
    hosts_link 1 up || fail "cannot bring the link of host 1 back"
}

# Links capped at 20 Mbit/s: job A (host 0, host 1) runs an all_sum of
# 32 MiB, which keeps the engines of hosts 0 (the coordinator's) and 1 in
# one MPI call for over 10 s. Meanwhile job B (host 1, host 2) calls all_sum
# with a 2 s deadline: the coordinator cannot answer, so each daemon of B
# fails its own member itself, 1 s after the deadline, naming host 0. The
# network is fine (no host is lost). Then A completes and a new job runs.
busy_coordinator_host_leaves_deadlines_to_each_daemon() {
    (( M_ON_HOSTS )) || fail "runs on test hosts only"
    M_RATE=20mbit
    M_OP_TIMEOUT=120
    start_world 3
    local jb r a=() b=() t0
    new_job
    jb=$JOB
    MH_TIMEOUT_MS=2000 spawn_rank "$jb" 0 2 1 "$MHCLIENT_BIN" doomed go "${HOSTS[0]}"
    b+=("$SPAWNED")
    MH_TIMEOUT_MS=2000 spawn_rank "$jb" 1 2 2 "$MHCLIENT_BIN" doomed go "${HOSTS[0]}"
    b+=("$SPAWNED")
    wait_until 30 files_exist "$M_DIR"/ready.{0,1} || fail "job B (hosts 1 and 2) did not form within 30 s"
    new_job
    for r in 0 1; do
        spawn_rank "$JOB" "$r" 2 "$r" "$OPCHECK_BIN" --large 32
        a+=("$SPAWNED")
    done
    wait_until 60 clients_pending 0 "$JOB" all_sum 1 || fail "job A's rank 0 was not in its all_sum within 60 s"
    wait_until 60 clients_pending 1 "$JOB" all_sum 1 || fail "job A's rank 1 was not in its all_sum within 60 s"
    t0=$(now_ms)
    touch "$M_DIR/go"
    for r in 0 1; do
        expect_exit "job B's rank $r (host $((r + 1))), its coordinator busy" "${b[r]}" 30 0
        error_after "${b[r]}" "$t0" "job B's rank $r (host $((r + 1)))" 6000
        grep -q 'did not answer' "${M_OUT[${b[r]}]}" || soft_fail "job B's rank $r: its error does not say the coordinator did not answer"
    done
    for r in 0 1; do
        expect_exit "job A's rank $r, a 32 MiB all_sum at 20 Mbit/s" "${a[r]}" 300 0
    done
    next_job_works "a busy coordinator"
}

# With --max-mpi-stall 2 and links capped at 20 Mbit/s, an all_sum of 32 MiB
# on 2 hosts keeps the engines in one MPI call for over 10 s: each daemon
# answers its rank with MLXD_EUNAVAILABLE ("cannot make progress") and exits
# with status 3 (a rank whose daemon saw the other host go first gets
# MLXD_EPEER naming it), so mpirun ends the world with a failure.
stalled_mpi_call_exits_the_world_non_zero() {
    (( M_ON_HOSTS )) || fail "runs on test hosts only"
    M_WORLD_MAY_END=1
    M_RATE=20mbit
    start_world 2 --max-mpi-stall 2
    new_job
    local r pids=() t0 st
    for r in 0 1; do
        # The first daemon to give up exits; the other may see its host lost first.
        spawn_rank "$JOB" "$r" 2 "$r" "$MHCLIENT_BIN" doomed - "cannot make progress|${HOSTS[1 - r]}" 32
        pids+=("$SPAWNED")
    done
    t0=$(now_ms)
    for r in 0 1; do
        expect_exit "rank $r (host $r), in a 32 MiB all_sum at 20 Mbit/s" "${pids[r]}" 60 0
    done
    wait_until 30 gone "$M_MPIRUN_PID" || fail "mpirun still runs 30 s after the daemons' MPI calls stalled"
    wait "$M_MPIRUN_PID"
    st=$?
    M_MPIRUN_PID=""
    log "mpirun exited with status $st $(( $(now_ms) - t0 )) ms after the all_sum began"
    (( st != 0 )) || fail "mpirun exited 0: nobody would start the world again"
    for r in 0 1; do
        grep -q 'cannot make progress' "$(daemon_log $r)" || soft_fail "the log of the daemon on host $r does not say why it exits"
    done
}

# ---- the world as mlxctl sees it ----

# A job of 4 over 3 daemons (1+2+1) forms and holds; mlxctl status --world
# --json on d1 lists every daemon with the world's size and hosts, the
# daemon's version, pid and endpoint, and the job with its local members.
job_split_over_daemons_forms_and_status_world_shows_all() {
    start_world 3
    new_job
    local r pids=() hosts=(0 1 1 2) local_members=(1 2 1)
    for r in 0 1 2 3; do
        spawn_rank "$JOB" "$r" 4 "${hosts[r]}" "$MHCLIENT_BIN" hold
        pids+=("$SPAWNED")
    done
    wait_until 20 files_exist "$M_DIR"/held.{0,1,2,3} ||
        fail "the job of 4 over 3 daemons did not form and run an all_sum within 20 s"
    mctl 1 status --world --json >"$M_DIR/world.json" ||
        fail "mlxctl status --world --json on d1 failed"
    python3 - "$M_DIR/world.json" "$("$MLXD_BIN" --version | awk '{print $2}')" "$(for r in 0 1 2; do host_name $r; done | xargs)" "$JOB" \
        "${DPID[*]}" "${EP[*]}" "${local_members[*]}" <<'EOF' || soft_fail "mlxctl status --world --json on d1 is not what it should be"
import json, sys
path, version, hosts, job = sys.argv[1:5]
pids, eps, members = (v.split() for v in sys.argv[5:8])
hosts = hosts.split()
daemons = json.load(open(path))["daemons"]
bad = []
ranks = sorted(d["world"]["rank"] for d in daemons)
if ranks != list(range(len(pids))):
    bad.append(f"lists world ranks {ranks}, expected {list(range(len(pids)))}")
for d in daemons:
    r, w = d["world"]["rank"], d["world"]
    if not 0 <= r < len(pids):
        continue
    print(f"daemon {r}: pid {d['pid']}, {d['endpoint']}, version {d['version']}, world of {w['size']} on {w['hosts']}, "
          f"jobs {[(j['id'], j['size'], j['local_members'], j['state']) for j in d['jobs']]}")
    want = {"world size": (w["size"], len(pids)), "hosts": (w["hosts"], hosts),
            "version": (d["version"], version), "pid": (d["pid"], int(pids[r])), "endpoint": (d["endpoint"], eps[r]),
            "MPI version given": (bool(w.get("mpi_version")), True)}
    js = [j for j in d["jobs"] if j["id"] == job]
    want["job listed once"] = (len(js), 1)
    if js:
        want["job size"] = (js[0]["size"], 4)
        want["job's local members"] = (js[0]["local_members"], int(members[r]))
    want["clients of the job"] = (sum(c["job"] == job for c in d["clients"]), int(members[r]))
    bad += [f"daemon {r}: {k} is {got!r}, expected {exp!r}" for k, (got, exp) in want.items() if got != exp]
for b in bad:
    print("FAIL status --world:", b)
sys.exit(1 if bad else 0)
EOF
    local text
    text=$(mctl 1 status --world) || fail "mlxctl status --world on d1 failed"
    for r in 0 1 2; do
        grep -qF "${EP[r]}" <<<"$text" || soft_fail "mlxctl status --world does not show ${EP[r]}"
        grep -qF "$(host_name $r)" <<<"$text" || soft_fail "mlxctl status --world does not show host $(host_name $r)"
    done
    touch "$M_DIR/release"
    for r in 0 1 2 3; do
        expect_exit "rank $r of the held job" "${pids[r]}" 20 0
    done
    world_alive
}

# cpu_ticks PID: utime + stime of the process (all its threads), in clock
# ticks.
cpu_ticks() {
    # Field 2 (comm) may hold spaces: count from after its closing paren.
    sed -E 's/^.*\) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# cpu_fine PID: "NS SWITCHES": nanoseconds on a CPU and voluntary context
# switches (about the wakeups), summed over the process's threads.
cpu_fine() {
    local ns sw
    ns=$(cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print s + 0}')
    sw=$(cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s + 0}')
    echo "$ns $sw"
}

# idle_cpu WHAT SECONDS: measures every daemon's CPU use over SECONDS in which
# nothing asks anything of the world, and fails the test for a daemon at 1%
# of a CPU or more (from utime + stime).
idle_cpu() {
    local what=$1 secs=$2 r hz t0 t1 ms pct fine ticks=() fine0=() a b
    hz=$(getconf CLK_TCK)
    t0=$(now_ms)
    for ((r = 0; r < M_HOSTS; r++)); do
        ticks[r]=$(cpu_ticks "${DPID[r]}")
        fine0[r]=$(cpu_fine "${DPID[r]}")
    done
    sleep "$secs" # the measured interval, not a wait for an event
    t1=$(now_ms)
    ms=$((t1 - t0))
    for ((r = 0; r < M_HOSTS; r++)); do
        ticks[r]=$(( $(cpu_ticks "${DPID[r]}") - ticks[r] ))
        read -r a b <<<"$(cpu_fine "${DPID[r]}")"
        fine=$(awk -v a="$a" -v b="$b" -v f="${fine0[r]}" -v ms="$ms" 'BEGIN {
            split(f, x, " "); printf "%.3f%% (%.1f ms on a CPU), %.0f wakeups/s", (a - x[1]) / 1e4 / ms, (a - x[1]) / 1e6, (b - x[2]) * 1000 / ms }')
        pct=$(awk -v d="${ticks[r]}" -v hz="$hz" -v ms="$ms" 'BEGIN { printf "%.3f", d / hz * 1000 / ms * 100 }')
        log "$what: daemon of world rank $r (pid ${DPID[r]}): ${ticks[r]} ticks of 1/$hz s in $ms ms = $pct% CPU; scheduler: $fine"
        awk -v p="$pct" 'BEGIN { exit !(p < 1.0) }' ||
            soft_fail "$what: the daemon of world rank $r used $pct% of a CPU over $ms ms, expected under 1%"
    done
}

# Three daemons with nothing to do use less than 1% of a CPU each: right
# after the world starts, and after a job on all three has ended.
idle_world_sleeps() {
    start_world 3
    idle_cpu "idle from the start" 5
    new_job
    launch_on 3 30 "0 1 2" -- "$ERRCASE_BIN" smoke || fail "a job of 3 over 3 daemons"
    idle_cpu "idle after a job" 5
    world_alive
}

# ---- MLX's own mpi backend (mpi/, libmlxd_mpi.so) over several daemons ----

mpi_backend_four_ranks_two_daemons() {
    : "${LOADER_BIN:?}" "${MLX_MPI_LIBNAME:?}"
    start_world 2
    new_job
    launch_on 4 200 "0 1" -- "$LOADER_BIN" check || fail "MLX's mpi calls in a job of 4 over 2 daemons (2+2)"
    expect_hellos "$JOB" 0 0 1
    expect_hellos "$JOB" 1 2 3
    world_alive
}

# ---- dispatch ----

# Other scripts source this one for its harness (lifetime_multihost.sh).
[[ -n "${MH_AS_LIBRARY:-}" ]] && return 0

[[ $# -eq 1 || ( $# -eq 2 && "$2" == --test-hosts ) ]] || fail "usage: multihost.sh TEST_NAME [--test-hosts]"
if (( M_ON_HOSTS )) && { (( EUID != 0 )) || ! command -v ip >/dev/null; }; then
    log "SKIPPED: test hosts need root and iproute2"
    trap - EXIT
    rm -rf "$M_DIR"
    exit 77
fi
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1$( (( M_ON_HOSTS )) && echo ' on test hosts')"
"$1"
