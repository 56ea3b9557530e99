#!/usr/bin/env bash
# bench_smoke: `mlxd-bench --quick` with 2 ranks must finish with status 0
# and print the table header, a row with both mlxd and MPI times for each op,
# the floors and the daemon's memory; its CSV and JSON must parse and hold
# the same rows, and the plot must be a PNG (when gnuplot is installed).
# Nothing about the numbers themselves is asserted.
#
#   smoke.sh PATH/TO/mlxd-bench    (binaries from MLXD_BIN, MLXCTL_BIN,
#                                   BENCH_CLIENT_BIN, BENCH_MPI_BIN,
#                                   BENCH_FLOORS_BIN, as ctest sets them)
set -u -o pipefail

bench=${1:?usage: smoke.sh PATH/TO/mlxd-bench}
dir=$(mktemp -d /tmp/mxs.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
ops=(all_sum all_gather sum_scatter sendrecv)
failed=0

fail() {
    echo "bench_smoke: FAIL: $*" >&2
    failed=1
}

args=(--quick --ranks 2 --out-csv "$dir/bench.csv" --out-json "$dir/bench.json")
if command -v gnuplot >/dev/null; then
    args+=(--plot "$dir/bench.png")
else
    echo "bench_smoke: gnuplot is not installed; the plot is not checked"
fi

echo "bench_smoke: bash $bench ${args[*]}"
bash "$bench" "${args[@]}" >"$dir/table.txt"
rc=$?
cat "$dir/table.txt"
((rc == 0)) || { echo "bench_smoke: FAIL: mlxd-bench exited with status $rc" >&2; exit 1; }

t=$dir/table.txt
num='[0-9]+(\.[0-9]+)?'
grep -qE '^op +bytes +ranks +mlxd µs +MPI µs +mlxd/MPI +mlxd GB/s +MPI GB/s' "$t" ||
    fail "no table header (op, bytes, ranks, mlxd µs, MPI µs, mlxd/MPI, mlxd GB/s, MPI GB/s)"
for op in "${ops[@]}"; do
    n=$(grep -cE "^$op +[0-9]+ +2 +$num +$num +$num +$num +$num " "$t")
    ((n == 3)) || fail "$n rows with mlxd and MPI times for $op, expected 3 (8 B, 64 KiB, 1 MiB)"
done
grep -qE "ZeroMQ ipc round trip, 8 B: +$num µs" "$t" || fail "no ZeroMQ round trip floor"
grep -qE "Unix socket round trip, 8 B: +$num µs" "$t" || fail "no Unix socket round trip floor"
grep -qE "memcpy, 64 MiB: +$num GB/s" "$t" || fail "no memcpy floor"
grep -qE "idle CPU $num%" "$t" || fail "no idle CPU of the daemon"
grep -qE "RssAnon: idle $num MiB; peak $num MiB" "$t" || fail "no RssAnon idle and peak of the daemon"
grep -q "^targets (recorded, not asserted):" "$t" || fail "no targets"

c=$dir/bench.csv
head_line=$(grep -v '^#' "$c" | head -n 1)
[[ $head_line == op,bytes,ranks,daemons,memory,iters,mlxd_us,mlxd_min_us,mpi_us,mpi_min_us,ratio,mlxd_gbps,mpi_gbps ]] ||
    fail "CSV header is '$head_line'"
for op in "${ops[@]}"; do
    n=$(grep -cE "^$op,[0-9]+,2,1," "$c")
    ((n == 3)) || fail "$n CSV rows for $op, expected 3"
done

if command -v python3 >/dev/null; then
    python3 - "$dir/bench.json" "${ops[@]}" <<'EOF' || fail "the JSON output is not what it should be"
import json, sys
d = json.load(open(sys.argv[1]))
for op in sys.argv[2:]:
    rows = [r for r in d["rows"] if r["op"] == op]
    assert len(rows) == 3, (op, rows)
    assert all(r["mlxd_us"] > 0 and r["mpi_us"] > 0 and r["ratio"] is not None for r in rows), rows
assert d["config"]["ranks"] == 2 and d["config"]["daemons"] == 1
assert d["floors"]["zmq_ipc_rtt_us"] > 0 and d["floors"]["memcpy_gbps"] > 0
assert len(d["daemons"]) == 1 and d["daemons"][0]["rss_anon_idle_kib"] > 0
assert d["targets"]
EOF
else
    grep -q '"rows"' "$dir/bench.json" || fail "the JSON output has no rows"
fi

if [[ -f $dir/bench.png || " ${args[*]} " == *" --plot "* ]]; then
    [[ $(head -c 4 "$dir/bench.png" 2>/dev/null | od -An -c | tr -d ' ') == '211PNG' ]] ||
        fail "the plot is not a PNG"
fi

((failed == 0)) && echo "bench_smoke: PASSED"
exit $failed
