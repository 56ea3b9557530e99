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

# multihost.sh runs the function named by $1, found among these too.
source "$P_HERE/../integration/multihost.sh" "$1"
