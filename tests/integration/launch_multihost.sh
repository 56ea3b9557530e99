#!/bin/bash
# mlxctl launch with ranks on hosts whose daemons form one world: two mlxd
# under mpirun (multihost.sh's harness) stand in for hosts a and b, reached
# through fake-rsh, whose "a" and "b" have those daemons' endpoints as their
# default. One function per behaviour:  bash launch_multihost.sh NAME

MH_AS_LIBRARY=1 source "$(dirname "${BASH_SOURCE[0]}")/multihost.sh"

RSH="$(dirname "${BASH_SOURCE[0]}")/fake-rsh"

# mlxctl launch --hostfile HOSTFILE --rsh fake-rsh --job $JOB ... -- CMD, with
# the clients' directory passed on (fake-rsh's environment is clean).
launch_hosts() {
    local hostfile=$1
    shift
    log "mlxctl launch --hostfile $hostfile --job $JOB $*"
    timeout --kill-after=5 120 "$MLXCTL_BIN" launch --hostfile "$hostfile" --rsh "$RSH" --job "$JOB" \
        --env "MLXT_DIR=$M_DIR" --env "MH_DIR=$M_DIR" --prefix "$@"
}

launch_hostfile_runs_a_job_across_a_world_of_two() {
    start_world 2
    export FAKE_RSH_HOSTS="a=${EP[0]} b=${EP[1]}"
    printf 'a slots=2\nb slots=2\n' >"$M_DIR/hosts"
    new_job
    launch_hosts "$M_DIR/hosts" -- "$OPCHECK_BIN" --quick --no-split || fail "opcheck across hosts a and b"
    # Each rank said hello to its own host's daemon.
    expect_hellos "$JOB" 0 0 1
    expect_hellos "$JOB" 1 2 3
    # A rank that fails on b stops the ranks waiting in the job on both hosts.
    new_job
    local rc=0
    launch_hosts "$M_DIR/hosts" -- sh -c '[ "$MLXD_RANK" = 3 ] && exit 7; exec "$0" smoke' "$ERRCASE_BIN" \
        2>"$M_DIR/err" || rc=$?
    cat "$M_DIR/err"
    [[ "$rc" == 7 ]] || fail "launch with rank 3 failing: exit status $rc, expected 7"
    grep -qx 'mlxctl: rank 3 on b exited with code 7' "$M_DIR/err" || fail "rank 3 on b is not named"
    world_alive
    next_job_works "a failed job across hosts"
}

[[ $# -eq 1 ]] || fail "usage: launch_multihost.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
