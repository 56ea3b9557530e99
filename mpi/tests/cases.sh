#!/bin/bash
# The tests of libmlxd_mpi.so, one function per behaviour, named like the
# ctest test that runs it:  bash cases.sh NAME
# Each runs against its own real mlxd (tests/integration/harness.sh) with
# real client processes: loader, which loads $MLX_MPI_LIBNAME as MLX's mpi
# backend does, launched by mlxctl launch, by mpirun, or one by one.

source "$(dirname "${BASH_SOURCE[0]}")/../../tests/integration/harness.sh"

: "${LOADER_BIN:?}" "${MLX_MPI_LIBNAME:?}"
export MLX_MPI_LIBNAME

# expect_one_fatal_line FILE REGEX: FILE holds exactly one "mlxd: " line,
# and it matches REGEX.
expect_one_fatal_line() {
    local n line
    n=$(grep -c '^mlxd: ' "$1")
    line=$(grep '^mlxd: ' "$1" | head -n 1)
    (( n == 1 )) || fail "expected one 'mlxd: ' line in $1, found $n"
    [[ "$line" =~ $2 ]] || fail "the error line '$line' does not match /$2/"
    log "error line: $line"
}

# mpirun_ranks N TIMEOUT_S -- CMD...: N processes under Open MPI's mpirun,
# as a plain launcher (it passes the library and the daemon's socket).
mpirun_ranks() {
    local n=$1 timeout=$2
    shift 3
    log "mpirun -n $n -x MLX_MPI_LIBNAME -x MLXD_SOCKET $*"
    timeout --kill-after=5 "$timeout" "${MPIRUN:-mpirun}" --allow-run-as-root --oversubscribe --bind-to none \
        --mca btl self,vader -n "$n" -x MLX_MPI_LIBNAME -x MLXD_SOCKET -x MLXT_DIR "$@"
}

# A fresh job of two that must work: the daemon still serves.
next_job_works() {
    launch 2 30 -- "$LOADER_BIN" wrap || fail "a new job after $1 did not work"
}

# spawn_job N MODE [ENV=VALUE...]: a job of N loaders in MODE started one by
# one (new_job), their pids in PIDS.
spawn_job() {
    local n=$1 mode=$2 r
    shift 2
    new_job
    PIDS=()
    for ((r = 0; r < n; r++)); do
        spawn_rank "$JOB" $r "$n" env "$@" "$LOADER_BIN" "$mode"
        PIDS+=("$SPAWNED")
    done
}

# ---- what MLX loads ----

mpi_library_exports_exactly_what_mlx_loads() {
    local want got dyn
    want=$(printf '%s\n' MPI_Get_library_version MPI_Init MPI_Finalize MPI_Comm_rank MPI_Comm_size \
        MPI_Comm_split MPI_Comm_free MPI_Allreduce MPI_Allgather MPI_Send MPI_Recv MPI_Type_contiguous \
        MPI_Type_commit MPI_Op_create ompi_mpi_comm_world ompi_mpi_op_sum ompi_mpi_op_max ompi_mpi_op_min \
        ompi_mpi_c_bool ompi_mpi_int8_t ompi_mpi_uint8_t ompi_mpi_int16_t ompi_mpi_uint16_t \
        ompi_mpi_int32_t ompi_mpi_uint32_t ompi_mpi_int64_t ompi_mpi_uint64_t ompi_mpi_float \
        ompi_mpi_double ompi_mpi_c_complex | sort)
    got=$(nm -D --defined-only "$MLX_MPI_LIBNAME" | awk '{print $3}' | sort)
    [[ "$got" == "$want" ]] || fail "exports differ from MLX's names: $(diff <(echo "$want") <(echo "$got") | grep '^[<>]' | xargs)"
    # Captured first: grep -q stopping early would fail the pipe (pipefail).
    dyn=$(readelf -d "$MLX_MPI_LIBNAME")
    grep -q 'RUNPATH.*\[\$ORIGIN\]' <<<"$dyn" || fail "no RUNPATH \$ORIGIN"
    grep -q 'NEEDED.*\[libmlxd\.so\.0\]' <<<"$dyn" || fail "libmlxd.so.0 is not NEEDED"
    ! grep -q 'NEEDED.*libmpi' <<<"$dyn" || fail "it links Open MPI"
    # Beside libmlxd, with no help from the environment, it loads.
    env -u LD_LIBRARY_PATH "$LOADER_BIN" single || fail "the loader cannot load $MLX_MPI_LIBNAME by itself"
}

# Installed in the libdir, it finds the installed libmlxd beside it.
mpi_installed_library_finds_libmlxd_beside_it() {
    local p=$T_DIR/inst lib deps
    : "${BUILD_DIR:?}"
    log "cmake --install $BUILD_DIR --prefix $p"
    cmake --install "$BUILD_DIR" --prefix "$p" >"$T_DIR/install.log" 2>&1 || { cat "$T_DIR/install.log"; fail "cmake --install failed"; }
    lib=$(find "$p" -name libmlxd_mpi.so | head -n 1)
    [[ -n "$lib" ]] || fail "libmlxd_mpi.so is not installed under $p"
    [[ -e "$(dirname "$lib")/libmlxd.so.0" ]] || fail "libmlxd.so.0 is not installed beside $lib"
    # Captured first: grep -q stopping early would fail the pipe (pipefail).
    deps=$(env -u LD_LIBRARY_PATH ldd "$lib")
    grep -q "libmlxd.so.0 => $(dirname "$lib")/" <<<"$deps" ||
        fail "$lib does not resolve the libmlxd beside it: $(grep mlxd <<<"$deps")"
    start_daemon
    MLX_MPI_LIBNAME=$lib launch 2 110 -- env -u LD_LIBRARY_PATH "$LOADER_BIN" check ||
        fail "the loader with the installed library in a job of 2"
}

# ---- every op on every dtype, with MLX's call patterns ----

# loader_job N TIMEOUT_S: the loader's whole check in a job of N on one daemon.
loader_job() {
    start_daemon
    launch "$1" "$2" -- "$LOADER_BIN" check || fail "the loader in a job of $1"
    daemon_alive
}

mpi_backend_two_ranks_one_daemon() { loader_job 2 110; }
mpi_backend_three_ranks_one_daemon() { loader_job 3 140; }
mpi_backend_four_ranks_one_daemon() { loader_job 4 170; }

mpi_backend_three_ranks_under_mpirun() {
    start_daemon
    mpirun_ranks 3 140 -- "$LOADER_BIN" check || fail "the loader in a job of 3 under mpirun"
    grep -qE 'Job ompi-[0-9]+: rank 2 said hello' "$T_LOG" || fail "the daemon did not see job ompi-JOBID form"
    daemon_alive
}

# mpirun with no daemon: not a world of one per rank, but one clear line.
mpi_mpirun_without_daemon_fails_in_one_line() {
    local out="$T_DIR/mpirun.out" rc=0
    mpirun_ranks 2 50 -- "$LOADER_BIN" check >"$out" 2>&1 || rc=$?
    cat "$out"
    (( rc != 0 && rc != 124 && rc != 137 )) || fail "mpirun exited with $rc"
    grep -qE '^mlxd: MPI_Init on rank [01]: MLXD_EUNAVAILABLE: no mlxd answers at ipc://' "$out" ||
        fail "no 'mlxd: MPI_Init on rank R: MLXD_EUNAVAILABLE' line"
    ! grep -q '^loader check rank .*: ok' "$out" || fail "a rank ran alone"
}

mpi_uint8_sum_wraps() {
    local out="$T_DIR/wrap.out"
    start_daemon
    launch 3 50 -- "$LOADER_BIN" wrap >"$out" 2>&1 || { cat "$out"; fail "the loader's uint8 sums"; }
    cat "$out"
    [[ $(grep -c 'uint8 sums wrap: 2 253 44 3$' "$out") == 3 ]] || fail "85 + 86 + 87 did not give 2 on every rank"
}

# ---- failures: one line, exit 1, within the deadline ----

# The last rank never calls: the others' MPI_Allreduce times out after
# MLXD_MPI_OP_TIMEOUT (2 s, well below the daemon's 20 s), naming it.
mpi_missing_rank_fails_in_one_line_within_deadline() {
    local r t0 ms
    start_daemon
    t0=$(now_ms)
    spawn_job 3 missing MLXD_MPI_OP_TIMEOUT=2
    for r in 0 1; do
        expect_exit "rank $r" "${PIDS[r]}" 15 1
        expect_one_fatal_line "${T_OUT[${PIDS[r]}]}" \
            "^mlxd: MPI_Allreduce on rank $r: MLXD_ETIMEDOUT: .*timed out after 2\\.0 s.*rank\\(s\\) 2"
    done
    ms=$(( $(now_ms) - t0 ))
    log "ranks 0 and 1 failed ${ms} ms after they started"
    (( ms < 15000 )) || fail "they took $ms ms with a 2 s deadline"
    kill -0 "${PIDS[2]}" 2>/dev/null || fail "the missing rank exited by itself"
    kill -KILL "${PIDS[2]}"
    daemon_alive
}

mpi_killed_rank_fails_in_one_line() {
    local r
    start_daemon
    spawn_job 3 killed
    expect_exit "rank 2" "${PIDS[2]}" 30 137
    for r in 0 1; do
        expect_exit "rank $r" "${PIDS[r]}" 15 1
        expect_one_fatal_line "${T_OUT[${PIDS[r]}]}" "^mlxd: MPI_Allreduce on rank $r: MLXD_EPEER: "
    done
    next_job_works "a killed rank"
}

# launch_fails MODE REGEX: a job of 2 loaders in MODE exits 1, with a line
# that matches REGEX.
launch_fails() {
    local out="$T_DIR/$1.out" rc=0
    launch 2 30 -- "$LOADER_BIN" "$1" >"$out" 2>&1 || rc=$?
    cat "$out"
    expect_status "$1" 1 "$rc"
    grep -qE "$2" "$out" || fail "$1: no line matching /$2/"
}

mpi_unidentified_op_or_type_fails_naming_the_call() {
    start_daemon
    launch_fails badop '^mlxd: MPI_Allreduce on rank [01]: MLXD_EINVAL: cannot tell which reduction op .*computes none of'
    launch_fails badtype \
        '^mlxd: MPI_Allreduce on rank [01]: MLXD_EINVAL: MPI_SUM on a derived datatype \(2 x uint8\) is not supported'
    next_job_works "failed calls"
}

# ---- threads ----

mpi_two_threads_at_once_and_free_in_flight() {
    local r
    start_daemon
    spawn_job 3 threads
    # Ranks 1 and 2 enter an all_sum that waits for rank 0; once the daemon
    # shows them waiting in it, they free its communicator.
    wait_until 60 files_exist "$T_DIR/entering.1" "$T_DIR/entering.2" || fail "ranks 1 and 2 did not get to the free"
    for r in 1 2; do
        wait_until 30 client_pending "${PIDS[r]}" all_sum || fail "rank $r is not waiting in all_sum"
    done
    touch "$T_DIR/go-free"
    for r in 0 1 2; do
        expect_exit "rank $r" "${PIDS[r]}" 60 0
        grep -q "loader threads rank $r: ok" "${T_OUT[${PIDS[r]}]}" || fail "rank $r did not finish"
    done
    daemon_alive
}

# ---- no daemon ----

mpi_without_daemon_is_a_world_of_one() {
    local out="$T_DIR/single.out"
    "$LOADER_BIN" single || fail "without a job: not a world of one"
    # A job but no daemon: libmlxd's singleton fallback, said in one line.
    MLXD_JOB=lonely MLXD_RANK=1 MLXD_SIZE=2 "$LOADER_BIN" single >"$out" 2>&1 || { cat "$out"; fail "no daemon: not a world of one"; }
    cat "$out"
    expect_one_fatal_line "$out" "^mlxd: MPI_Init on rank 1: no mlxd answers at .*: running as a singleton group"
}

# ---- dispatch ----

[[ $# -eq 1 ]] || fail "usage: cases.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
