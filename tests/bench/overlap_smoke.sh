#!/usr/bin/env bash
# bench_overlap_smoke: `mlxd-bench --quick --overlap` must finish with status
# 0 and report the overlap case (a 64 MiB all_sum in flight over a sleep as
# long as the blocking one): in the table, with its target, and in the JSON
# with every figure. Nothing about the numbers themselves is asserted.
#
#   overlap_smoke.sh PATH/TO/mlxd-bench   (binaries as for smoke.sh)
set -u -o pipefail

bench=${1:?usage: overlap_smoke.sh PATH/TO/mlxd-bench}
dir=$(mktemp -d /tmp/mxo.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
failed=0
fail() {
    echo "bench_overlap_smoke: FAIL: $*" >&2
    failed=1
}

echo "bench_overlap_smoke: bash $bench --quick --overlap --ops all_sum --sizes 8"
bash "$bench" --quick --overlap --ops all_sum --sizes 8 --out-json "$dir/bench.json" >"$dir/table.txt"
rc=$?
cat "$dir/table.txt"
((rc == 0)) || { echo "bench_overlap_smoke: FAIL: mlxd-bench exited with status $rc" >&2; exit 1; }
num='[0-9]+(\.[0-9]+)?'
grep -qE "^overlap: 64 MiB all_sum alone $num µs; in flight over a sleep of $num µs: $num µs in all" "$dir/table.txt" ||
    fail "no overlap line in the table"
grep -qE "64 MiB all_sum in flight over an equal sleep: total/\(both\) +$num +<= 0.7" "$dir/table.txt" ||
    fail "no overlap target in the table"
/usr/bin/python3 - "$dir/bench.json" <<'PY' || fail "the JSON has no complete overlap figures"
import json, sys
o = json.load(open(sys.argv[1]))["overlap"]
assert o["bytes"] == 64 << 20, o
assert o["comm_us"] > 0 and o["compute_us"] > 0 and o["total_us"] > 0 and o["ratio"] > 0, o
PY
((failed == 0)) && echo "bench_overlap_smoke: PASSED"
exit $failed
