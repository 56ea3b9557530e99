#!/bin/bash
# The port of MLX's tests (Python, and the same cases in C) with 8 ranks
# over 3 daemons under mpirun (standing in for hosts), with the world harness of
# tests/integration/multihost.sh:  bash multihost_cases.sh NAME

P_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONPATH="${PYTHONPATH_MLXD:-}:$P_HERE" PYTHONDONTWRITEBYTECODE=1
PYTHON=${PYTHON:-/usr/bin/python3}

# Deadlines of minutes: 8 ranks on two busy cores fall behind on the large arrays.
python_mlx_tests_eight_ranks_three_daemons() {
    M_OP_TIMEOUT=180
    start_world 3
    new_job
    (cd "$P_HERE" && launch_on 8 900 "0 1 2" -- "$PYTHON" -m pytest -q -p no:cacheprovider \
        test_mlx_distributed.py test_module.py) || fail "pytest with 8 ranks over 3 daemons"
    world_alive
}

c_mlx_cases_eight_ranks_three_daemons() {
    M_OP_TIMEOUT=180
    start_world 3
    new_job
    launch_on 8 900 "0 1 2" -- "${MLX_CASES_BIN:?}" || fail "mlx_cases with 8 ranks over 3 daemons"
    world_alive
}

# The seed programs, C then Python, with one rank on each of two test hosts
# (run with --test-hosts): mlxctl launch --hostfile through the test hosts'
# own rsh agent, each rank on its host's daemon at the default endpoint, as
# on real hosts with ssh.
blog_programs_run_across_test_hosts_with_launch_hostfile() {
    (( M_ON_HOSTS )) || fail "this test runs on test hosts: add --test-hosts"
    start_world 2
    hosts_hostfile "$M_DIR/hostfile"
    local post=("[0] Process 1/2 initialized." "[1] Process 2/2 initialized."
                "[0] Process 0 computed data sum to be 3" "[1] Process 1 computed data sum to be 7"
                "[0] Data sum total = 10" "[1] Data sum total = 10")
    local prog want got
    for prog in "${SUM_BIN:?}" "$PYTHON $P_HERE/../../examples/sum.py"; do
        new_job
        log "mlxctl launch --hostfile --rsh $HOSTS_AGENT --job $JOB -- $prog"
        # shellcheck disable=SC2086
        timeout --kill-after=5 180 "$MLXCTL_BIN" launch --hostfile "$M_DIR/hostfile" --rsh "$HOSTS_AGENT" \
            --job "$JOB" --prefix --env "PYTHONPATH=$PYTHONPATH" -- $prog >"$M_DIR/out.txt" ||
            { cat "$M_DIR/out.txt"; fail "$prog across test hosts"; }
        got=$(sort "$M_DIR/out.txt")
        want=$(printf '%s\n' "${post[@]}" | sort)
        [[ "$got" == "$want" ]] || { diff <(echo "$want") <(echo "$got"); fail "$prog: not the blog's lines"; }
        # Each rank said hello to the daemon of its own host.
        expect_hellos "$JOB" 0 0
        expect_hellos "$JOB" 1 1
        log "$prog: the blog's lines, rank 0 on ${HOSTS[0]}, rank 1 on ${HOSTS[1]}"
    done
    world_alive
}

# multihost.sh runs the function named by $1, found among these too.
source "$P_HERE/../integration/multihost.sh" "$@"
