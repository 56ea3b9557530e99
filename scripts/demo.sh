#!/usr/bin/env bash
# Shows mlxd at work: builds it, starts a daemon on a private socket, runs the
# `sum` example as a job of 2 ranks with `mlxctl launch`, in C and then in
# Python (examples/sum.py, `import mlxd as mx`), shows `mlxctl status`, and
# stops the daemon. Cleans up after itself, also when a
# step fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$root/build

"$root/scripts/deps.sh"
if ((EUID == 0)); then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

echo "== building"
cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" --parallel "$(nproc 2>/dev/null || echo 2)" --target mlxd mlxctl sum
# The Python module is configured only where python3-dev and numpy are.
python=/usr/bin/python3
have_python=0
if [[ -f $build/python/mlxd/__init__.py ]]; then
    cmake --build "$build" --parallel "$(nproc 2>/dev/null || echo 2)" --target mlxd_python
    have_python=1
fi

# ipc:// paths are limited to 103 bytes: a short directory under /tmp.
tmp=$(mktemp -d /tmp/mlxd-demo.XXXXXX)
daemon_pid=

stop_daemon() {
    [[ -n $daemon_pid ]] || return 0
    local pid=$daemon_pid rc=0
    daemon_pid=
    kill -TERM "$pid" 2>/dev/null || true
    # A graceful drain takes well under a second; SIGKILL after 10 s.
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" || rc=$?
    return "$rc"
}

cleanup() {
    local rc=$?
    stop_daemon || true
    if ((rc != 0)) && [[ -s $tmp/mlxd.log ]]; then
        echo "== the daemon's log" >&2
        cat "$tmp/mlxd.log" >&2
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export MLXD_SOCKET=ipc://$tmp/mlxd.sock

echo "== starting: mlxd --socket $MLXD_SOCKET"
"$build/mlxd" --socket "$MLXD_SOCKET" >"$tmp/mlxd.log" 2>&1 &
daemon_pid=$!
"$build/mlxctl" wait --timeout 30

echo "== mlxctl launch -n 2 -- build/examples/sum"
"$build/mlxctl" launch -n 2 -- "$build/examples/sum" | tee "$tmp/sum.out"
n=$(grep -c '^Data sum total = 10$' "$tmp/sum.out" || true)
if [[ $n != 2 ]]; then
    echo "demo.sh: expected 'Data sum total = 10' from both ranks, got it $n times" >&2
    exit 1
fi

if ((have_python)); then
    echo "== mlxctl launch -n 2 -- $python examples/sum.py"
    PYTHONPATH=$build/python "$build/mlxctl" launch -n 2 -- "$python" "$root/examples/sum.py" | tee "$tmp/sum.py.out"
    n=$(grep -c '^Data sum total = 10$' "$tmp/sum.py.out" || true)
    if [[ $n != 2 ]]; then
        echo "demo.sh: expected 'Data sum total = 10' from both Python ranks, got it $n times" >&2
        exit 1
    fi
else
    echo "== examples/sum.py skipped: the Python module was not built (needs python3-dev and python3-numpy)"
fi

echo "== mlxctl status"
"$build/mlxctl" status

echo "== stopping the daemon (SIGTERM)"
rc=0
stop_daemon || rc=$?
if ((rc != 0)); then
    echo "demo.sh: mlxd exited with status $rc after SIGTERM" >&2
    exit 1
fi
echo "== the daemon's log"
sed 's/^/  /' "$tmp/mlxd.log"
echo "demo.sh: done"
