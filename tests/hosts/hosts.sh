# Test hosts on one machine (sourced by tests; needs root and iproute2).
#
#   hosts_setup N [RATE]   makes N hosts: HOSTS[i] their names, HOST_ADDR[i]
#                          their addresses; RATE (tc's units, e.g. 2gbit)
#                          caps every link both ways
#   hosts_exec I CMD...    runs CMD on host I (see agent); in the background,
#                          "$HOSTS_AGENT" --argv "${HOSTS[I]}" CMD... & keeps
#                          $! the command's pid
#   hosts_mpirun ARGS...   mpirun, on the head, with one process per host on
#                          every host, over TCP only, ARGS after its options
#                          (hosts_mpirun_cmd [N]: that command, with N
#                          processes in blocks over the hosts, in HOSTS_MPIRUN)
#   hosts_rate I RATE      caps host I's link both ways (tbf)
#   hosts_link I up|down   takes host I's link down or up
#   hosts_kill I           SIGKILL to every process on host I
#   hosts_pids I           the processes on host I
#   hosts_hostfile FILE    writes the hosts' names, one a line (for
#                          mpirun --hostfile, mlxctl launch --hostfile)
#   hosts_teardown         removes everything hosts_setup made
#
# Each host is a network namespace (named like the host), a UTS namespace
# (its host name) and a mount namespace with a private tmpfs on /run/mlxd,
# so that the default endpoint, ipc:///run/mlxd/mlxd.sock, is one path on
# every host and a different socket on each, as on real hosts. The mount and
# UTS namespaces are kept by bind mounts in /run/mlxh/PREFIX/HOST/ (mnt, uts),
# which the agent (tests/hosts/agent, also mpirun's plm_rsh_agent) enters
# with the network namespace: a process started through it, at any time, is
# on that host. /tmp and the rest of the file system are shared, as an NFS
# home would be.
#
# The network: each host's eth0 is a veth whose peer is enslaved to a bridge
# in a namespace of its own, the head (PREFIX-head), which also runs mpirun.
# Addresses are in 198.18.0.0/24 (of the benchmarking range 198.18.0.0/15):
# the head 198.18.0.254, host i 198.18.0.(i+1). Nothing else is routed.
#
# Names carry a per-run prefix, mlxh<pid of the shell that made them>. Every
# setup first sweeps what an earlier run left whose shell is gone (a test
# killed at its timeout cannot clean up): its processes, namespaces, mounts.
# The tests that make hosts share the ctest RESOURCE_LOCK test_hosts.

HOSTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOSTS_AGENT="$HOSTS_DIR/agent"
HOSTS_STATE=/run/mlxh
HOSTS_NET=198.18.0
HOSTS_PREFIX=""
HOSTS_HEAD=""
HOSTS=()
HOST_ADDR=()

_hosts_log() { printf '[%s] hosts: %s\n' "$(date +%T.%3N)" "$*" >&2; }

# The state directory must be a private mount for unshare --mount=FILE to
# keep a mount namespace there (util-linux's unshare(1)).
_hosts_state_dir() {
    mkdir -p "$HOSTS_STATE" /run/mlxd || return 1
    if ! findmnt -rn -o TARGET "$HOSTS_STATE" >/dev/null 2>&1 ||
        [[ "$(findmnt -rn -o TARGET "$HOSTS_STATE" | tail -n 1)" != "$HOSTS_STATE" ]]; then
        mount --bind "$HOSTS_STATE" "$HOSTS_STATE" || return 1
    fi
    mount --make-private "$HOSTS_STATE"
}

# _hosts_remove PREFIX: everything of the run PREFIX: processes on its hosts
# (by network namespace, and by the mount namespaces it kept), namespaces,
# mounts, state.
_hosts_remove() {
    local p=$1 d ns h pids ino pid i
    for ((i = 0; i < 3; i++)); do
        pids=()
        for ns in /run/netns/"$p"-*; do
            [[ -e "$ns" ]] || continue
            mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "${ns##*/}" 2>/dev/null)
        done
        for d in "$HOSTS_STATE/$p"/*/; do
            [[ -e "$d/mnt" ]] || continue
            ino=$(stat -L -c %i "$d/mnt" 2>/dev/null) || continue
            for pid in /proc/[0-9]*; do
                [[ "$(stat -L -c %i "$pid/ns/mnt" 2>/dev/null)" == "$ino" ]] && pids+=("${pid#/proc/}")
            done
        done
        (( ${#pids[@]} )) || break
        kill -KILL "${pids[@]}" 2>/dev/null
        for pid in "${pids[@]}"; do
            local t=0
            while [[ -e /proc/$pid && "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" != Z ]] && (( t++ < 200 )); do
                sleep 0.01
            done
        done
    done
    for d in "$HOSTS_STATE/$p"/*/; do
        [[ -d "$d" ]] || continue
        umount "$d/mnt" "$d/uts" 2>/dev/null
    done
    for ns in /run/netns/"$p"-*; do
        [[ -e "$ns" ]] && ip netns del "${ns##*/}" 2>/dev/null
    done
    rm -rf "${HOSTS_STATE:?}/$p"
}

# _hosts_start_time PID: when the process started (clock ticks after boot).
_hosts_start_time() { sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

# hosts_sweep: removes what runs whose shell has gone left behind.
hosts_sweep() {
    local p pid seen=()
    for p in "$HOSTS_STATE"/mlxh* /run/netns/mlxh*; do
        [[ -e "$p" ]] || continue
        p=${p##*/}
        p=${p%%-*}
        pid=${p#mlxh}
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        [[ " ${seen[*]} " == *" $p "* ]] && continue
        seen+=("$p")
        if [[ "$p" != "$HOSTS_PREFIX" ]] && kill -0 "$pid" 2>/dev/null &&
            [[ -e "$HOSTS_STATE/$p/owner" && "$(cat "$HOSTS_STATE/$p/owner")" == "$(_hosts_start_time "$pid")" ]]; then
            continue    # its shell still runs: another run, not a leftover
        fi
        _hosts_log "sweeping what run $p left"
        _hosts_remove "$p"
    done
}

# _hosts_ns_of I: the state directory of host I.
_hosts_ns_of() { echo "$HOSTS_STATE/$HOSTS_PREFIX/${HOSTS[$1]}"; }

hosts_setup() {
    local n=$1 rate=${2:-} i h d
    [[ -z "$HOSTS_PREFIX" ]] || { _hosts_log "hosts_setup: hosts already made"; return 1; }
    (( EUID == 0 )) || { _hosts_log "test hosts need root"; return 1; }
    command -v ip >/dev/null && command -v nsenter >/dev/null && command -v unshare >/dev/null ||
        { _hosts_log "test hosts need ip (iproute2), nsenter and unshare (util-linux)"; return 1; }
    HOSTS_PREFIX="mlxh$$"
    hosts_sweep
    _hosts_state_dir || { _hosts_log "cannot make $HOSTS_STATE a private mount"; return 1; }
    mkdir -p "$HOSTS_STATE/$HOSTS_PREFIX" || return 1
    # Who owns the run: the pid in the name and its start time.
    _hosts_start_time $$ >"$HOSTS_STATE/$HOSTS_PREFIX/owner"
    HOSTS_HEAD="$HOSTS_PREFIX-head"
    ip netns add "$HOSTS_HEAD" &&
        ip -n "$HOSTS_HEAD" link set lo up &&
        ip -n "$HOSTS_HEAD" link add br0 type bridge &&
        ip -n "$HOSTS_HEAD" addr add "$HOSTS_NET.254/24" dev br0 &&
        ip -n "$HOSTS_HEAD" link set br0 up || { _hosts_log "cannot make the head namespace"; return 1; }
    for ((i = 0; i < n; i++)); do
        h="$HOSTS_PREFIX-$i"
        HOSTS[i]=$h
        HOST_ADDR[i]="$HOSTS_NET.$((i + 1))"
        d=$(_hosts_ns_of "$i")
        mkdir -p "$d" && touch "$d/mnt" "$d/uts" || return 1
        ip netns add "$h" &&
            ip -n "$h" link set lo up &&
            ip link add eth0 netns "$h" type veth peer name "v$i" netns "$HOSTS_HEAD" &&
            ip -n "$HOSTS_HEAD" link set "v$i" master br0 &&
            ip -n "$HOSTS_HEAD" link set "v$i" up &&
            ip -n "$h" addr add "${HOST_ADDR[i]}/24" dev eth0 &&
            ip -n "$h" link set eth0 up || { _hosts_log "cannot make the network of host $h"; return 1; }
        unshare --uts="$d/uts" hostname "$h" &&
            unshare --mount="$d/mnt" --propagation private \
                mount -t tmpfs -o mode=0755,size=256m "mlxd-$h" /run/mlxd ||
            { _hosts_log "cannot make the UTS and mount namespaces of host $h"; return 1; }
        [[ -z "$rate" ]] || hosts_rate "$i" "$rate" || return 1
    done
    _hosts_log "made $n hosts ${HOSTS[*]} (${HOST_ADDR[*]}) on bridge $HOSTS_NET.254 in $HOSTS_HEAD${rate:+, links capped at $rate}"
}

hosts_exec() {
    local i=$1
    shift
    "$HOSTS_AGENT" --argv "${HOSTS[$i]}" "$@"
}

hosts_pids() { ip netns pids "${HOSTS[$1]}" 2>/dev/null; }

hosts_hostfile() { printf '%s\n' "${HOSTS[@]}" >"$1"; }

hosts_kill() {
    local pids
    mapfile -t pids < <(hosts_pids "$1")
    (( ${#pids[@]} == 0 )) || kill -KILL "${pids[@]}" 2>/dev/null
    _hosts_log "killed every process on ${HOSTS[$1]}: ${pids[*]}"
}

hosts_link() {
    ip -n "$HOSTS_HEAD" link set "v$1" "$2" && ip -n "${HOSTS[$1]}" link set eth0 "$2"
}

# hosts_rate_bits RATE: RATE (tc's bit, kbit, mbit, gbit) in bits per second;
# 0 when it is not one.
hosts_rate_bits() {
    awk -v r="$1" 'BEGIN {
        n = r + 0; u = tolower(r); sub(/^[0-9.]+/, "", u)
        m = u == "kbit" ? 1e3 : u == "mbit" ? 1e6 : u == "gbit" ? 1e9 : u == "bit" || u == "" ? 1 : 0
        printf "%.0f", n * m }'
}

# tbf on both ends of the link: the host's eth0 caps what it sends, the
# head's end what it receives. The burst is what the rate moves in 1 ms,
# at least 64 KiB (tbf needs the burst to hold a whole GSO packet).
hosts_rate() {
    local i=$1 rate=$2 bits burst
    bits=$(hosts_rate_bits "$rate")
    (( bits > 0 )) || { _hosts_log "hosts_rate: '$rate' is not a rate (e.g. 2gbit, 500mbit)"; return 1; }
    burst=$(( bits / 8 / 1000 ))
    (( burst >= 65536 )) || burst=65536
    tc -n "${HOSTS[$i]}" qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms &&
        tc -n "$HOSTS_HEAD" qdisc replace dev "v$i" root tbf rate "$rate" burst "$burst" latency 50ms
}

# The options that make mpirun reach the hosts through the agent and the
# daemons talk TCP only, on the hosts' network.
# With N (processes in all), each host gets N/H slots (rounded up), filled
# host after host, as mlxctl launch places ranks in blocks.
hosts_mpi_options() {
    local n=${1:-${#HOSTS[@]}} h list=""
    for h in "${HOSTS[@]}"; do
        list+="${list:+,}$h:$(( (n + ${#HOSTS[@]} - 1) / ${#HOSTS[@]} ))"
    done
    echo --host "$list" --map-by slot --bind-to none \
        --mca plm_rsh_agent "$HOSTS_AGENT" --mca plm_rsh_no_tree_spawn 1 \
        --mca btl tcp,self --mca btl_tcp_if_include "$HOSTS_NET.0/24" --mca oob_tcp_if_include "$HOSTS_NET.0/24"
}

# hosts_mpirun_cmd [N]: sets HOSTS_MPIRUN to mpirun on the head (its network
# and a host name of its own) with hosts_mpi_options and N processes (one
# per host by default), for "${HOSTS_MPIRUN[@]}" ARGS... & (its pid is then
# mpirun's: every step execs the next).
hosts_mpirun_cmd() {
    local n=${1:-${#HOSTS[@]}}
    # shellcheck disable=SC2207
    HOSTS_MPIRUN=(nsenter --net="/run/netns/$HOSTS_HEAD" -- unshare --uts
        sh -c 'hostname "$0" && exec "$@"' "$HOSTS_HEAD"
        "${MPIRUN:-mpirun}" --allow-run-as-root $(hosts_mpi_options "$n") -n "$n")
}

# hosts_mpirun ARGS...: runs that mpirun with ARGS.
hosts_mpirun() {
    hosts_mpirun_cmd
    "${HOSTS_MPIRUN[@]}" "$@"
}

hosts_teardown() {
    [[ -n "$HOSTS_PREFIX" ]] || return 0
    _hosts_remove "$HOSTS_PREFIX"
    _hosts_log "removed hosts ${HOSTS[*]}"
    HOSTS_PREFIX=""
    HOSTS=()
    HOST_ADDR=()
}
