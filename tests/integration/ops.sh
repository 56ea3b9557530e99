#!/bin/bash
# shellcheck disable=SC2016  # eval'd conditions expand their variables when run
# What an operator sees, one function per behaviour, named like the ctest
# test that runs it:  bash ops.sh NAME
# mlxctl status (ids, stalls, recent jobs, usage, the 80-column view and
# --watch), mlxd --metrics (promtool, a real Prometheus), the one ipc path
# limit, and the hints mlxctl gives. Each test has its own temporary
# directory and daemon (see harness.sh). A test whose tool is missing exits
# 77, which ctest reports as skipped.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# shellcheck source=testlib.sh
source "$here/testlib.sh"

case ${1:-} in
    metrics_pass_promtool_check_and_count_errors_by_code) needs promtool:prometheus curl:curl ;;
    metrics_are_scraped_by_a_real_prometheus) needs prometheus:prometheus curl:curl jq:jq ;;
    status_watch_redraws_in_place_and_exits_0_on_ctrl_c) needs tmux:tmux ;;
esac

# shellcheck source=harness.sh
source "$here/harness.sh"

: "${ERRCASE_BIN:?}" "${SUM_BIN:?}"
PYTHON3=${PYTHON3:-/usr/bin/python3}
T_OUTF=$T_DIR/out
T_ERRF=$T_DIR/err

# status_json FILE: mlxctl status --json into FILE.
status_json() {
    "$MLXCTL_BIN" status --json >"$1" 2>"$T_ERRF"
}

# py FILE CODE: runs CODE with d = the first daemon of the status JSON in
# FILE; fails the test when an assert does.
py_check() {
    local file=$1
    shift
    "$PYTHON3" - "$file" <<EOF || fail "status check failed on $(cat "$file")"
import json, re, sys
d = json.load(open(sys.argv[1]))["daemons"][0]
$*
EOF
}

# ---- mlxctl status ----

# A group id is 16 lowercase hex digits in the daemon's log, in the text
# view and in JSON (as a string: jq and JavaScript read numbers as doubles).
status_ids_are_16_hex_digits_everywhere() {
    start_daemon
    start_waiting_job
    status_json "$T_OUTF" || fail "mlxctl status --json failed"
    local gid
    gid=$("$PYTHON3" -c 'import json,sys; d=json.load(open(sys.argv[1]))["daemons"][0]
print([c["group"] for c in d["clients"] if c["job"] == sys.argv[2]][0])' "$T_OUTF" "$JOB") ||
        fail "no client of $JOB in $(cat "$T_OUTF")"
    [[ $gid =~ ^[0-9a-f]{16}$ ]] || fail "the JSON group id is '$gid', not 16 hex digits in a string"
    grep -q "\"group\": \"$gid\"" "$T_OUTF" || fail "the group id is not a JSON string"
    "$MLXCTL_BIN" status >"$T_OUTF" || fail "mlxctl status failed"
    grep -qE "^ +$R0 +[0-9]+ +$JOB +0 +$gid " "$T_OUTF" || fail "the text view does not show group $gid for rank 0: $(cat "$T_OUTF")"
    # The group's end is logged with the same id.
    kill -KILL "$R1"
    wait_until 10 grep -qE "group $gid( |:)" "$T_LOG" || fail "the log does not name group $gid as $gid"
}

# A member waiting for less than a second is how a healthy job runs, not a
# stall; after a second it is one, with the ranks it waits for.
status_shows_a_stall_only_after_a_second() {
    start_daemon
    start_waiting_job
    local checked=0
    # While the job is younger than a second nothing of it may show as
    # stalled (whether this is seen depends on how fast the machine is).
    status_json "$T_OUTF" || fail "mlxctl status --json failed"
    "$PYTHON3" - "$T_OUTF" "$JOB" <<'EOF' && checked=1
import json, sys
d = json.load(open(sys.argv[1]))["daemons"][0]
j = [j for j in d["jobs"] if j["id"] == sys.argv[2]][0]
if j["age_ms"] >= 1000:
    sys.exit(1)          # too late to tell
assert j["stalled_op"] == "" and j["missing_ranks"] == [] and j["stalled_ms"] == 0, j
EOF
    log "a job younger than a second showed no stall: $( ((checked)) && echo checked || echo 'not seen in time')"
    wait_until 20 eval '"$MLXCTL_BIN" status --json >"$T_OUTF" && grep -q "\"stalled_op\": \"all_sum\"" "$T_OUTF"' ||
        fail "rank 0 never showed as stalled in all_sum: $(cat "$T_OUTF")"
    py_check "$T_OUTF" "j = [j for j in d['jobs'] if j['id'] == '$JOB'][0]
assert j['stalled_ms'] >= 1000 and j['missing_ranks'] == [1], j"
    "$MLXCTL_BIN" status >"$T_OUTF" || fail "mlxctl status failed"
    grep -qE "stalled in all_sum for [0-9.]+s, waiting for rank\(s\) 1$" "$T_OUTF" ||
        fail "the text view shows no stall line: $(cat "$T_OUTF")"
}

# Jobs that ended stay in recent_jobs: "ok", or the name and message of the
# first error a member got.
status_keeps_recent_jobs_with_their_result() {
    start_daemon
    launch 2 30 -- "$SUM_BIN" >/dev/null || fail "the sum job failed"
    new_job
    "$MLXCTL_BIN" launch -n 2 --job "$JOB" -- "$ERRCASE_BIN" mismatch >/dev/null || fail "the mismatch job failed its checks"
    local bad=$JOB
    wait_until 10 eval '"$MLXCTL_BIN" status --json >"$T_OUTF" && grep -q "\"id\": \"$bad\"" "$T_OUTF"' ||
        fail "the mismatch job is not among the recent jobs: $(cat "$T_OUTF")"
    py_check "$T_OUTF" "r = d['recent_jobs']
assert len(r) == 2, r
assert r[0]['result'] == 'ok' and r[0]['error'] == '' and r[0]['size'] == 2, r[0]
assert r[1]['id'] == '$bad' and r[1]['result'] == 'MLXD_EMISMATCH', r[1]
assert 'all_sum' in r[1]['error'] and 'all_max' in r[1]['error'], r[1]
assert all(isinstance(x['duration_ms'], int) for x in r), r"
    "$MLXCTL_BIN" status >"$T_OUTF" || fail "mlxctl status failed"
    grep -qE "^  $bad +2 +[^ ]+ +MLXD_EMISMATCH$" "$T_OUTF" || fail "no recent job row: $(cat "$T_OUTF")"
    # The ring keeps the last 32.
    local i
    for ((i = 0; i < 33; i++)); do
        "$MLXCTL_BIN" launch -n 1 --job "ring-$i" -- "$SUM_BIN" >/dev/null || fail "job ring-$i failed"
    done
    wait_until 10 eval '"$MLXCTL_BIN" status --json >"$T_OUTF" && grep -q "\"id\": \"ring-32\"" "$T_OUTF"' ||
        fail "the last job is not among the recent jobs"
    py_check "$T_OUTF" "r = d['recent_jobs']
assert len(r) == 32 and r[0]['id'] == 'ring-1' and r[-1]['id'] == 'ring-32', [x['id'] for x in r]"
}

# The daemon's CPU use and memory, each job's age and rate, and each
# client's command line.
status_shows_usage_age_rate_and_command_lines() {
    start_daemon
    start_waiting_job
    wait_until 10 eval '"$MLXCTL_BIN" status --json >"$T_OUTF" && "$PYTHON3" -c "import json,sys; d=json.load(open(sys.argv[1]))[\"daemons\"][0]; sys.exit(not [j for j in d[\"jobs\"] if j[\"age_ms\"] >= 200])" "$T_OUTF"' ||
        fail "no job aged 200 ms: $(cat "$T_OUTF")"
    py_check "$T_OUTF" "
assert isinstance(d['cpu_percent'], (int, float)) and 0 <= d['cpu_percent'] < 400, d['cpu_percent']
rss = int(open('/proc/%d/statm' % d['pid']).read().split()[1]) * 4096
assert 0.5 * rss < d['rss_bytes'] < 2 * rss + (64 << 20), (d['rss_bytes'], rss)
j = [j for j in d['jobs'] if j['id'] == '$JOB'][0]
assert j['age_ms'] >= 200 and isinstance(j['ops_per_s'], (int, float)) and j['ops_per_s'] >= 0, j
c = [c for c in d['clients'] if c['pid'] == $R0][0]
want = open('/proc/$R0/cmdline').read().rstrip('\0').replace('\0', ' ')
assert c['cmdline'] == want and c['cmdline'].endswith('errcase drain'), (c['cmdline'], want)"
    "$MLXCTL_BIN" status >"$T_OUTF" || fail "mlxctl status failed"
    grep -qE '^  usage: +cpu [0-9.]+% of a core over the last second, rss [0-9.]+ (KiB|MiB|GiB)$' "$T_OUTF" ||
        fail "no usage line: $(cat "$T_OUTF")"
    grep -qE "^ {6}.*it_errcase drain$" "$T_OUTF" || fail "no command line under the client: $(cat "$T_OUTF")"
}

# Every line of the text view fits 80 columns, whatever the daemon holds:
# long job ids, long command lines, long errors.
status_text_fits_80_columns() {
    start_daemon
    local long
    long=$(printf 'job-%0120d' 7)
    spawn_rank "$long" 0 2 "$ERRCASE_BIN" smoke
    "$MLXCTL_BIN" launch -n 2 --job "mm-$$" -- "$ERRCASE_BIN" mismatch >/dev/null || fail "the mismatch job failed"
    wait_until 20 eval '"$MLXCTL_BIN" status >"$T_OUTF" && grep -q "stalled in hello" "$T_OUTF"' ||
        fail "the forming job never showed as stalled: $(cat "$T_OUTF")"
    cat "$T_OUTF"
    "$PYTHON3" - "$T_OUTF" <<'EOF' || fail "the text view is wider than 80 columns"
import sys
bad = [l for l in open(sys.argv[1], encoding="utf-8").read().splitlines() if len(l) > 80]
for l in bad:
    print(len(l), l)
sys.exit(1 if bad else 0)
EOF
    grep -q "job-0000" "$T_OUTF" || fail "the long job id is not shown at all"
}

# --watch redraws in place (cursor home, not a scrolling log), follows what
# changes, and Ctrl-C ends it with status 0.
status_watch_redraws_in_place_and_exits_0_on_ctrl_c() {
    start_daemon
    local tm="tmux -L mlxd-ops-$$" pane
    # shellcheck disable=SC2064 # expanded now, on purpose
    trap "rc=\$?; $tm kill-server 2>/dev/null; (exit \$rc); harness_exit" EXIT
    $tm new-session -d -x 80 -y 60 "MLXD_SOCKET=$T_SOCK $MLXCTL_BIN status --watch 0.2 2>$T_DIR/watch.err; echo \$? >$T_DIR/watch.rc; sleep 600" ||
        fail "tmux did not start"
    wait_until 20 eval '$tm capture-pane -p >"$T_OUTF" && grep -q "^Every 0.2s: mlxctl status" "$T_OUTF" && grep -q "no jobs" "$T_OUTF"' ||
        fail "no first frame: $(cat "$T_OUTF")"
    start_waiting_job
    wait_until 20 eval '$tm capture-pane -p >"$T_OUTF" && grep -q "$JOB" "$T_OUTF"' ||
        fail "the watch did not redraw with the new job: $(cat "$T_OUTF")"
    # Frames replace each other: one header in the whole scrollback.
    $tm capture-pane -p -S - -J >"$T_OUTF"
    pane=$(grep -c '^Every 0.2s' "$T_OUTF")
    [[ $pane == 1 ]] || fail "$pane headers in the scrollback: the frames scroll instead of redrawing: $(cat "$T_OUTF")"
    "$PYTHON3" -c 'import sys; sys.exit(any(len(l) > 80 for l in open(sys.argv[1]).read().splitlines()))' "$T_OUTF" ||
        fail "a line of the frame is wider than 80 columns"
    $tm send-keys C-c
    wait_until 10 test -s "$T_DIR/watch.rc" || fail "mlxctl status --watch did not exit on Ctrl-C"
    [[ $(cat "$T_DIR/watch.rc") == 0 ]] || fail "mlxctl status --watch exited $(cat "$T_DIR/watch.rc") on Ctrl-C: $(cat "$T_DIR/watch.err")"
    # A watch whose daemon goes away says so in the frame and goes on.
    "$MLXCTL_BIN" status --watch 0.1 >"$T_OUTF" 2>&1 &
    local w=$!
    T_PIDS+=("$w")
    wait_until 10 grep -q '^Clients:' "$T_OUTF" || fail "no frame on a pipe"
    stop_daemon || fail "mlxd did not stop cleanly"
    wait_until 10 grep -q "no mlxd answers at $T_SOCK" "$T_OUTF" || fail "the watch does not say the daemon is gone"
    kill -INT "$w"
    wait "$w" || fail "mlxctl status --watch exited $? on SIGINT"
}

# ---- mlxd --metrics ----

# The port mlxd --metrics HOST:0 got, from its log.
metrics_port() {
    sed -n 's|.*Serving metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$T_LOG" | tail -n 1
}

start_daemon_with_metrics() {
    start_daemon --metrics 127.0.0.1:0
    wait_until 10 eval '[[ -n "$(metrics_port)" ]]' || fail "mlxd did not log the metrics port"
    MPORT=$(metrics_port)
    log "metrics on port $MPORT"
}

# Waits until GET /metrics shows a line matching the regex.
metrics_show() {
    curl -sf "http://127.0.0.1:$MPORT/metrics" >"$T_OUTF" && grep -qE "$1" "$T_OUTF"
}

# /metrics is valid Prometheus text (promtool), has every family with HELP
# and TYPE, counts per member request and errors by code, and is the only
# path served.
metrics_pass_promtool_check_and_count_errors_by_code() {
    start_daemon_with_metrics
    launch 2 30 -- "$SUM_BIN" >/dev/null || fail "sum failed"
    "$MLXCTL_BIN" launch -n 2 --job "mm-$$" -- "$ERRCASE_BIN" mismatch >/dev/null || fail "mismatch failed"
    # A snapshot with the mismatch's errors and no client left is one taken
    # after the job: every request of it is counted.
    wait_until 10 eval 'metrics_show "^mlxd_op_errors_total\{op=\"all_max\",code=\"MLXD_EMISMATCH\"\} 1$" && grep -qx "mlxd_clients 0" "$T_OUTF"' ||
        fail "no mismatch counted: $(cat "$T_OUTF")"
    promtool check metrics <"$T_OUTF" || fail "promtool check metrics found problems"
    local f
    for f in mlxd_up mlxd_world_rank mlxd_world_size mlxd_clients mlxd_jobs mlxd_ops_total mlxd_op_bytes_total \
             mlxd_op_errors_total mlxd_op_duration_seconds; do
        grep -q "^# HELP $f " "$T_OUTF" || fail "no # HELP for $f"
        grep -q "^# TYPE $f " "$T_OUTF" || fail "no # TYPE for $f"
    done
    grep -qx 'mlxd_up 1' "$T_OUTF" || fail "mlxd_up is not 1"
    grep -qx 'mlxd_world_size 1' "$T_OUTF" || fail "mlxd_world_size is not 1"
    grep -qx '# TYPE mlxd_op_duration_seconds histogram' "$T_OUTF" || fail "no histogram"
    # sum: each of 2 members does 1 all_sum; mismatch: 4 all_sum per member
    # plus the odd one's all_max, 2 all_gathers... per member request.
    local sums
    sums=$(sed -n 's/^mlxd_ops_total{op="all_sum"} //p' "$T_OUTF")
    (( sums >= 2 + 7 )) || fail "mlxd_ops_total{op=\"all_sum\"} is $sums, expected at least 9 member requests"
    grep -qE "^mlxd_op_duration_seconds_count\{op=\"all_sum\"\} $sums$" "$T_OUTF" || fail "the histogram count is not ops_total"
    grep -qE "^mlxd_op_duration_seconds_bucket\{op=\"all_sum\",le=\"\+Inf\"\} $sums$" "$T_OUTF" || fail "no +Inf bucket"
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/other") == 404 ]] || fail "/other is not 404"
    [[ $(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$MPORT/metrics") == 405 ]] || fail "POST is not 405"
    local head
    head=$(curl -sfI "http://127.0.0.1:$MPORT/metrics") && grep -qi '^content-type: text/plain; version=0.0.4' <<<"$head" ||
        fail "wrong content type"
}

# A real Prometheus server, scraping mlxd every second, answers a query for
# mlxd_ops_total with mlxd's series.
metrics_are_scraped_by_a_real_prometheus() {
    start_daemon_with_metrics
    launch 2 30 -- "$SUM_BIN" >/dev/null || fail "sum failed"
    local pport
    pport=$("$PYTHON3" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$T_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: mlxd
    scrape_interval: 1s
    static_configs:
      - targets: ["127.0.0.1:$MPORT"]
EOF
    log "prometheus on 127.0.0.1:$pport scraping 127.0.0.1:$MPORT"
    prometheus --config.file="$T_DIR/prometheus.yml" --storage.tsdb.path="$T_DIR/prometheus-data" \
        --web.listen-address="127.0.0.1:$pport" >"$T_DIR/prometheus.log" 2>&1 &
    T_PIDS+=("$!")
    # shellcheck disable=SC2034 # used by the eval below
    local q="http://127.0.0.1:$pport/api/v1/query?query=mlxd_ops_total"
    if ! wait_until 90 eval 'curl -sf "$q" >"$T_OUTF" && jq -e ".data.result[] | select(.metric.op == \"all_sum\" and .metric.job == \"mlxd\" and (.value[1] | tonumber) >= 2)" "$T_OUTF" >/dev/null'; then
        tail -n 30 "$T_DIR/prometheus.log"
        fail "Prometheus never answered mlxd_ops_total{op=\"all_sum\"} >= 2: $(cat "$T_OUTF")"
    fi
    jq -c '.data.result[] | {metric, value}' "$T_OUTF"
    curl -sf "http://127.0.0.1:$pport/api/v1/query?query=up%7Bjob%3D%22mlxd%22%7D" | jq -e '.data.result[0].value[1] == "1"' >/dev/null ||
        fail "Prometheus does not see the target up"
}

# --metrics is off unless asked for, and refuses what is not HOST:PORT at
# once, saying so.
metrics_are_off_by_default_and_refuse_bad_addresses() {
    local a rc
    for a in garbage 127.0.0.1: :9464 127.0.0.1:65536 127.0.0.1:-1 127.0.0.1:9x ::1:9464 "[::1" no.such.host.invalid:9464; do
        rc=0
        "$MLXD_BIN" --socket "$T_SOCK" --metrics "$a" >/dev/null 2>"$T_ERRF" || rc=$?
        expect_status "mlxd --metrics '$a'" 2 "$rc"
        grep -q "^mlxd: --metrics takes HOST:PORT" "$T_ERRF" || fail "mlxd --metrics '$a': no clear error: $(cat "$T_ERRF")"
    done
    start_daemon
    ! grep -q 'Serving metrics' "$T_LOG" || fail "metrics are served without --metrics: $(grep metrics "$T_LOG")"
}

# ---- limits and hints ----

# 103 bytes of ipc path is the one limit: mlxd, mlxctl and libmlxd take 103
# and refuse 104, and say 103.
ipc_path_limit_is_103_bytes_everywhere() {
    local dir=$T_DIR/p path ok bad rc
    path=$dir/$(printf 'a%.0s' $(seq 1 $((103 - ${#dir} - 6))))
    ok="ipc://$path.sock"
    bad="ipc://${path}b.sock"
    (( ${#ok} == 6 + 103 && ${#bad} == 6 + 104 )) || fail "the test's paths are ${#ok} and ${#bad} bytes"
    rc=0
    "$MLXD_BIN" --socket "$bad" >"$T_ERRF" 2>&1 || rc=$?
    (( rc != 0 )) || fail "mlxd took a 104-byte path"
    grep -q 'at most 103 bytes' "$T_ERRF" || fail "mlxd's error does not state the limit: $(cat "$T_ERRF")"
    rc=0
    "$MLXCTL_BIN" status --socket "$bad" 2>"$T_ERRF" || rc=$?
    expect_status "mlxctl status with a 104-byte path" 2 "$rc"
    grep -q 'longer than 103 bytes' "$T_ERRF" || fail "mlxctl's error does not state the limit: $(cat "$T_ERRF")"
    local help
    help=$("$MLXD_BIN" --help) && grep -q '103 bytes' <<<"$help" || fail "mlxd --help does not state the limit"
    # 103 bytes work, shared memory (the .shm socket beside it) included.
    T_SOCK=$ok
    export MLXD_SOCKET=$ok
    start_daemon
    [[ -S $path.sock.shm ]] || fail "no shared-memory socket at the 107-byte $path.sock.shm"
    launch 2 30 -- "$SUM_BIN" >"$T_OUTF" || fail "a job on the 103-byte path failed: $(cat "$T_OUTF")"
    [[ $(grep -c 'Data sum total = 10' "$T_OUTF") == 2 ]] || fail "wrong sums: $(cat "$T_OUTF")"
}

# mlxctl suggests only what mlxd accepts: no `mlxd --socket tcp://...`.
hints_suggest_only_what_mlxd_accepts() {
    local rc=0
    "$MLXCTL_BIN" status --socket tcp://127.0.0.1:1 --timeout 0.5 2>"$T_ERRF" || rc=$?
    expect_status "status on tcp:// without a daemon" 1 "$rc"
    ! grep -q 'mlxd --socket tcp://' "$T_ERRF" || fail "mlxctl suggests a tcp:// socket to mlxd: $(cat "$T_ERRF")"
    grep -q 'ipc://' "$T_ERRF" || fail "no useful advice: $(cat "$T_ERRF")"
    # What it suggests for an ipc:// endpoint, mlxd takes.
    rc=0
    env -u MLXD_SOCKET "$MLXCTL_BIN" status --socket "$T_SOCK" 2>"$T_ERRF" || rc=$?
    grep -q "start it with \`mlxd --socket $T_SOCK\`" "$T_ERRF" || fail "no start hint: $(cat "$T_ERRF")"
    start_daemon
    daemon_alive
}

[[ $# -eq 1 ]] || fail "usage: ops.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
