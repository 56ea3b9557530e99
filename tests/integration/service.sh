#!/bin/bash
# Running mlxd as a service, one function per behaviour, named like the ctest
# test that runs it:  bash service.sh NAME
# The sd_notify protocol, socket activation, the units as systemd reads them,
# the installed tree as an application builds against it, and a stop in the
# middle of a job. Each test has its own temporary directory and daemon (see
# harness.sh). A test whose tool is missing exits 77, which ctest reports as
# skipped.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)

# ---- what a test needs, checked before the harness starts anything ----

# shellcheck source=testlib.sh
source "$here/testlib.sh"        # needs TOOL:PACKAGE...

# needs_libsystemd: skips the test when mlxd was built without libsystemd
# (then it neither notifies nor adopts sockets, by design).
needs_libsystemd() {
    # ldd's output first: `ldd | grep -q` under pipefail fails whenever grep
    # exits before ldd has written everything (SIGPIPE).
    local libs
    libs=$(ldd "${MLXD_BIN:?}" 2>/dev/null)
    if [[ $libs != *libsystemd.so* ]]; then
        echo "SKIP: $MLXD_BIN was built without libsystemd (install libsystemd-dev and reconfigure)"
        exit 77
    fi
}

case ${1:-} in
    notify_ready_status_watchdog_stopping_in_order) needs_libsystemd ;;
    socket_activation_runs_a_job) needs_libsystemd; needs systemd-socket-activate:systemd ;;
    systemd_analyze_verify_units) needs systemd-analyze:systemd systemd-sysusers:systemd \
        systemd-tmpfiles:systemd xmllint:libxml2-utils ;;
    installed_tree_builds_with_pkg_config_and_find_package) needs pkg-config:pkgconf cmake:cmake cc:gcc ;;
    man_pages_say_what_help_says) needs groff:groff-base ;;
    installed_programs_find_libmlxd_from_any_prefix) needs cmake:cmake readelf:binutils ;;
    debian_package_installs_runs_the_examples_and_removes_cleanly) needs apt-get:apt dpkg-deb:dpkg cmake:cmake \
        pkg-config:pkgconf cc:gcc systemd-sysusers:systemd systemd-tmpfiles:systemd ;;
esac

# shellcheck source=harness.sh
source "$here/harness.sh"

: "${ERRCASE_BIN:?}" "${OPCHECK_BIN:?}" "${SUM_BIN:?}" "${BUILD_DIR:?BUILD_DIR must name the build tree to install}"
PYTHON3=${PYTHON3:-/usr/bin/python3}
[[ -x $PYTHON3 ]] || PYTHON3=python3

# install_tree DIR: `cmake --install` of the build tree with prefix DIR.
# Through a DESTDIR that is then moved into place, so that what a build
# configured for / would put outside the prefix (units under
# /lib/systemd/system for prefix /usr) lands in the test's directory too.
install_tree() {
    local prefix=$1 stage=$T_DIR/stage
    log "cmake --install $BUILD_DIR --prefix $prefix"
    DESTDIR=$stage cmake --install "$BUILD_DIR" --prefix "$prefix" >"$T_DIR/install.log" 2>&1 || {
        cat "$T_DIR/install.log"
        fail "cmake --install failed"
    }
    mkdir -p "$(dirname "$prefix")"
    mv "$stage$prefix" "$prefix" || fail "could not move the installed tree into place"
}

# The listening Unix socket path of the descriptor FD of process PID.
fd_socket_path() {
    local ino
    ino=$(readlink "/proc/$1/fd/$2" 2>/dev/null) || return 1
    [[ $ino =~ ^socket:\[([0-9]+)\]$ ]] || return 1
    awk -v ino="${BASH_REMATCH[1]}" '$7 == ino { print $8 }' /proc/net/unix
}

# The daemon's status shows some client waiting in OP.
some_client_pending() {
    local out
    out=$("$MLXCTL_BIN" status --json 2>/dev/null | tr -d ' \n') && grep -q "\"pending\":\"$1\"" <<<"$out"
}

# ---- sd_notify ----

# READY=1 once the socket answers, STATUS=, WATCHDOG=1 at half the interval,
# STOPPING=1 on SIGTERM, exit 0: notify_check.py plays the service manager.
notify_ready_status_watchdog_stopping_in_order() {
    "$PYTHON3" "$here/notify_check.py" "$MLXD_BIN" "$MLXCTL_BIN" "$T_DIR" ||
        fail "the daemon did not follow the sd_notify protocol (see above)"
}

# ---- socket activation ----

# systemd-socket-activate listens on both sockets as mlxd.socket does and
# starts mlxd at the first connection; mlxd adopts both (descriptors 3 and 4)
# and runs a job. (One systemd-socket-activate listens on one socket type,
# so a second one, started by the first, adds the seqpacket socket; both
# pass what they were given on, and exec rather than fork.)
socket_activation_runs_a_job() {
    local path=$T_DIR/d.sock out
    log "systemd-socket-activate -l $path systemd-socket-activate --seqpacket -l $path.shm mlxd"
    systemd-socket-activate -l "$path" \
        systemd-socket-activate --seqpacket -l "$path.shm" \
        "$MLXD_BIN" --op-timeout "$T_OP_TIMEOUT" --log-level debug >>"$T_LOG" 2>&1 &
    T_DAEMON_PID=$!
    # The second systemd-socket-activate, and its $path.shm, come with the
    # first connection.
    wait_until 10 test -S "$path" || fail "systemd-socket-activate did not create $path"
    [[ "$(cat "/proc/$T_DAEMON_PID/comm")" == systemd-socket* ]] ||
        fail "mlxd started before any client connected"
    [[ ! -e "$path.lock" ]] || fail "something took the endpoint's lock before activation"

    "$MLXCTL_BIN" wait --socket "ipc://$path" --timeout 20 || fail "the activated mlxd did not answer on $path"
    [[ "$(cat "/proc/$T_DAEMON_PID/comm")" == mlxd ]] ||
        fail "process $T_DAEMON_PID is $(cat "/proc/$T_DAEMON_PID/comm"), not mlxd, after the first connection"
    [[ "$(fd_socket_path "$T_DAEMON_PID" 3)" == "$path" ]] ||
        fail "mlxd's descriptor 3 is not the passed socket $path"
    [[ "$(fd_socket_path "$T_DAEMON_PID" 4)" == "$path.shm" ]] ||
        fail "mlxd's descriptor 4 is not the passed seqpacket socket $path.shm"
    [[ ! -e "$path.lock" ]] || fail "the activated mlxd took a lock on a socket it did not create"
    log "mlxd (pid $T_DAEMON_PID) adopted $path (fd 3) and $path.shm (fd 4)"

    out=$(launch 2 60 -- "$SUM_BIN") || fail "examples/sum under the activated mlxd failed: $out"
    echo "$out"
    [[ "$(grep -c '^Data sum total = 10$' <<<"$out")" == 2 ]] ||
        fail "examples/sum did not print 'Data sum total = 10' once per rank"
    # Through the adopted shared-memory socket (opcheck uses mlxd_alloc).
    launch 2 60 -- "$OPCHECK_BIN" --quick --no-split --only all_sum ||
        fail "all_sum in shared memory under the activated mlxd failed"

    stop_daemon || fail "the activated mlxd did not exit 0 after SIGTERM"
    # systemd owns the sockets it passed: they stay for the next activation.
    [[ -S "$path" && -S "$path.shm" ]] || fail "mlxd removed the sockets that were passed to it"
}

# ---- the units as systemd reads them ----

# The installed units pass systemd-analyze verify without a word (it also
# checks that ExecStart= names an executable: the installed mlxd), the
# sysusers.d and tmpfiles.d files make the user, group and directory they
# should in a scratch root, and the launchd plist is well-formed with the
# keys launchd needs.
systemd_analyze_verify_units() {
    local p=$T_DIR/inst unitdir userdir out f root=$T_DIR/root
    install_tree "$p"
    unitdir=$p/lib/systemd/system
    userdir=$p/lib/systemd/user
    for f in "$unitdir"/mlxd.service "$unitdir"/mlxd.socket "$unitdir"/mlxd-world.service \
             "$userdir"/mlxd.service "$userdir"/mlxd.socket; do
        [[ -f $f ]] || fail "cmake --install did not install $f (the prefix's unit directories)"
    done
    grep -qx "ExecStart=$p/bin/mlxd --socket ipc:///run/mlxd/mlxd.sock \$MLXD_OPTS" "$unitdir/mlxd.service" ||
        fail "mlxd.service does not run the installed $p/bin/mlxd: $(grep ExecStart= "$unitdir/mlxd.service")"

    log "systemd-analyze verify --man=no (system units)"
    out=$(systemd-analyze verify --man=no "$unitdir/mlxd.service" "$unitdir/mlxd.socket" \
          "$unitdir/mlxd-world.service" 2>&1) || fail "systemd-analyze verify failed on the system units: $out"
    [[ -z $out ]] || fail "systemd-analyze verify complained about the system units: $out"
    log "systemd-analyze verify --user --man=no (user units)"
    mkdir -m 0700 "$T_DIR/xdg"
    out=$(XDG_RUNTIME_DIR=$T_DIR/xdg systemd-analyze verify --user --man=no "$userdir/mlxd.service" \
          "$userdir/mlxd.socket" 2>&1) || fail "systemd-analyze verify failed on the user units: $out"
    [[ -z $out ]] || fail "systemd-analyze verify complained about the user units: $out"

    log "systemd-sysusers and systemd-tmpfiles --create in a scratch root"
    mkdir -p "$root/etc" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d"
    cp "$p/lib/sysusers.d/mlxd.conf" "$root/usr/lib/sysusers.d/"
    cp "$p/lib/tmpfiles.d/mlxd.conf" "$root/usr/lib/tmpfiles.d/"
    systemd-sysusers --root="$root" || fail "systemd-sysusers refused sysusers.d/mlxd.conf"
    grep -q '^mlxd:x:[0-9]*:[0-9]*:' "$root/etc/passwd" || fail "sysusers.d/mlxd.conf made no user mlxd"
    grep -q '^mlxd:x:[0-9]*:' "$root/etc/group" || fail "sysusers.d/mlxd.conf made no group mlxd"
    systemd-tmpfiles --root="$root" --create || fail "systemd-tmpfiles refused tmpfiles.d/mlxd.conf"
    [[ "$(stat -c %a "$root/run/mlxd")" == 770 ]] || fail "/run/mlxd is not mode 0770"
    [[ "$(stat -c %g "$root/run/mlxd")" == "$(awk -F: '$1 == "mlxd" { print $3 }' "$root/etc/group")" ]] ||
        fail "/run/mlxd does not belong to group mlxd"

    f=$BUILD_DIR/configured/launchd/org.mlxd.mlxd.plist
    log "xmllint --noout $f"
    xmllint --noout "$f" || fail "the launchd plist is not well-formed XML"
    "$PYTHON3" - "$f" <<'EOF' || fail "the launchd plist lacks what launchd needs"
import plistlib, sys
p = plistlib.load(open(sys.argv[1], "rb"))
errors = []
if p.get("Label") != "org.mlxd.mlxd":
    errors.append(f"Label is {p.get('Label')!r}")
args = p.get("ProgramArguments") or []
if not args or not args[0].endswith("/bin/mlxd") or "--socket" not in args:
    errors.append(f"ProgramArguments is {args!r}")
if p.get("RunAtLoad") is not True:
    errors.append("RunAtLoad is not true")
if p.get("KeepAlive") in (None, False):
    errors.append("no KeepAlive")
for k in ("StandardOutPath", "StandardErrorPath"):
    if not str(p.get(k, "")).startswith("/"):
        errors.append(f"{k} is {p.get(k)!r}")
for e in errors:
    print("plist:", e)
sys.exit(1 if errors else 0)
EOF
}

# ---- the installed tree ----

# An application builds against the installed tree with pkg-config and with
# find_package(mlxd), and both builds run as a job.
installed_tree_builds_with_pkg_config_and_find_package() {
    local p=$T_DIR/inst pcdir libdir out flags soname
    install_tree "$p"
    pcdir=$(dirname "$(find "$p" -name mlxd.pc -path '*/pkgconfig/*' | head -n 1)")
    [[ -f $pcdir/mlxd.pc ]] || fail "no mlxd.pc installed under $p"
    libdir=$(dirname "$pcdir")
    soname=$(readelf -d "$libdir/libmlxd.so" 2>/dev/null | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
    [[ $soname == libmlxd.so.0 ]] || fail "the installed libmlxd.so has soname '$soname', expected libmlxd.so.0"
    [[ -f $p/include/mlxd/mlxd.h ]] || fail "mlxd.h is not installed"

    flags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs mlxd) || fail "pkg-config --cflags --libs mlxd failed"
    log "pkg-config --cflags --libs mlxd: $flags"
    [[ $flags == *"-I$p/include"* && $flags == *"-L$p/"* ]] ||
        fail "pkg-config does not point into the installed prefix $p: $flags"
    # shellcheck disable=SC2086 # the flags are words
    cc -std=c11 -Wall -Werror -o "$T_DIR/consumer-pc" "$src/tests/consumer/consumer.c" $flags ||
        fail "the consumer does not build with pkg-config's flags"

    log "cmake -S tests/consumer -DCMAKE_PREFIX_PATH=$p"
    if ! cmake -S "$src/tests/consumer" -B "$T_DIR/consumer-build" -DCMAKE_PREFIX_PATH="$p" \
            -DCMAKE_BUILD_TYPE=Release >"$T_DIR/consumer-cmake.log" 2>&1 ||
        ! cmake --build "$T_DIR/consumer-build" >>"$T_DIR/consumer-cmake.log" 2>&1; then
        cat "$T_DIR/consumer-cmake.log"
        fail "the consumer does not build with find_package(mlxd)"
    fi

    start_daemon
    log "the pkg-config build, under mlxctl launch -n 2"
    out=$(LD_LIBRARY_PATH=$libdir launch 2 60 -- "$T_DIR/consumer-pc") ||
        fail "the pkg-config build of the consumer failed in a job: $out"
    echo "$out"
    [[ "$(grep -c '^consumer rank [01] of 2: ok$' <<<"$out")" == 2 ]] || fail "the pkg-config build did not report ok from both ranks"
    for exe in consumer consumer_static; do
        log "the find_package build ($exe), under mlxctl launch -n 2"
        out=$(launch 2 60 -- "$T_DIR/consumer-build/$exe") || fail "the find_package build ($exe) failed in a job: $out"
        echo "$out"
        [[ "$(grep -c '^consumer rank [01] of 2: ok$' <<<"$out")" == 2 ]] ||
            fail "the find_package build ($exe) did not report ok from both ranks"
    done
    # The shared build loads the installed library, not the build tree's.
    local libs
    libs=$(ldd "$T_DIR/consumer-build/consumer")
    [[ $libs == *"libmlxd.so.0 => $p/"* ]] ||
        fail "the find_package build does not load $p's libmlxd: $(grep mlxd <<<"$libs")"
    daemon_alive
}

# Installed to a prefix that no loader path names, the programs linking
# libmlxd (the examples, and whatever else is installed: libmlxd_mpi.so,
# the Python module) load the prefix's libmlxd through their RUNPATH, with
# no LD_LIBRARY_PATH; the tree still works once moved elsewhere.
installed_programs_find_libmlxd_from_any_prefix() {
    local p=$T_DIR/inst moved=$T_DIR/moved f libs n=0 out
    install_tree "$p"
    unset LD_LIBRARY_PATH
    while IFS= read -r -d '' f; do
        out=$(readelf -d "$f" 2>/dev/null) && grep -q 'NEEDED.*\[libmlxd\.so\.0\]' <<<"$out" || continue
        libs=$(ldd "$f" 2>&1)
        [[ $libs == *"libmlxd.so.0 => $p/"* ]] || fail "$f does not load $p's libmlxd: $(grep mlxd <<<"$libs")"
        log "${f#"$p"/} loads ${p}'s libmlxd: $(readelf -d "$f" | sed -n 's/.*RUNPATH.*\[\(.*\)\]/\1/p')"
        n=$((n + 1))
    done < <(find "$p" -type f \( -perm -u+x -o -name '*.so*' \) -print0)
    (( n >= 2 )) || fail "only $n installed files link libmlxd; the examples hello and sum should"
    mv "$p" "$moved" || fail "could not move the tree"
    start_daemon
    out=$(launch 2 60 -- "$(find "$moved" -path '*/mlxd/examples/sum' -type f)") || fail "the moved sum failed: $out"
    [[ $(grep -c 'Data sum total = 10' <<<"$out") == 2 ]] || fail "the moved sum printed: $out"
    libs=$(ldd "$(find "$moved" -path '*/mlxd/examples/sum' -type f)")
    [[ $libs == *"libmlxd.so.0 => $moved/"* ]] || fail "the moved sum does not load the moved libmlxd: $libs"
}

# ---- the Debian package ----

# `cmake --build --target package` makes mlxd_VERSION_ARCH.deb holding
# everything installed (with libmlxd_mpi.so and the Python module when the
# build has them); apt-get installs it, its postinst creates the user and
# /run/mlxd and starts nothing; the installed mlxd, mlxctl and examples run
# a job; apt-get purge leaves none of its files. The system is left as it
# was found (the mlxd user and /run/mlxd go again when they were not there).
debian_package_installs_runs_the_examples_and_removes_cleanly() {
    local deb files prefix out had_user=0 had_group=0 run_was="" f apt=(apt-get -y -q -o DPkg::Lock::Timeout=300)
    getent passwd mlxd >/dev/null && had_user=1
    getent group mlxd >/dev/null && had_group=1
    [[ -d /run/mlxd ]] && run_was=$(stat -c '%u:%g %a' /run/mlxd)
    # A run killed at its timeout leaves the package installed.
    if dpkg -s mlxd >/dev/null 2>&1; then
        log "removing an mlxd package left by an earlier run"
        "${apt[@]}" purge mlxd >/dev/null 2>&1 || fail "could not remove the mlxd package already installed"
    fi
    log "cmake --build $BUILD_DIR --target package"
    rm -f "$BUILD_DIR"/mlxd_*.deb
    cmake --build "$BUILD_DIR" --target package >"$T_DIR/package.log" 2>&1 || { cat "$T_DIR/package.log"; fail "the package target failed"; }
    deb=$(ls "$BUILD_DIR"/mlxd_*_*.deb 2>/dev/null)
    [[ $(basename "$deb") =~ ^mlxd_[0-9]+\.[0-9]+\.[0-9]+_amd64\.deb$ ]] || fail "no mlxd_VERSION_amd64.deb: '$deb'"
    dpkg-deb -I "$deb"
    local depends
    depends=$(dpkg-deb -f "$deb" Depends) || fail "cannot read the package's Depends"
    grep -q 'libzmq5' <<<"$depends" || fail "the package does not depend on libzmq5"
    grep -q 'libmicrohttpd12' <<<"$depends" || fail "the package does not depend on libmicrohttpd12"
    dpkg-deb -c "$deb" | awk '{ print $6 }' >"$T_DIR/contents"
    for f in bin/mlxd bin/mlxctl 'libmlxd\.so\.0$' include/mlxd/mlxd.h pkgconfig/mlxd.pc cmake/mlxd/mlxdConfig.cmake \
             systemd/system/mlxd.service systemd/system/mlxd.socket systemd/system/mlxd-world.service \
             systemd/user/mlxd.service sysusers.d/mlxd.conf tmpfiles.d/mlxd.conf man1/mlxctl.1 man8/mlxd.8 \
             mlxd/examples/hello mlxd/examples/sum examples/hello.c examples/sum.c; do
        grep -qE "$f" "$T_DIR/contents" || fail "the package has no $f"
    done
    # What the build has, the package has: libmlxd_mpi.so and the Python
    # module, once their targets exist.
    if [[ -n $(find "$BUILD_DIR" -name 'libmlxd_mpi.so*' -print -quit) ]]; then
        grep -q 'libmlxd_mpi\.so' "$T_DIR/contents" || fail "the build has libmlxd_mpi.so but the package does not"
    else
        log "no libmlxd_mpi.so in the build: not checked"
    fi
    if [[ -n $(find "$BUILD_DIR" -path "$BUILD_DIR/_CPack_Packages" -prune -o \( -name 'mlxd*.so' -o -name '_mlxd*.so' \) -print -quit) ]]; then
        grep -qE 'dist-packages/.*mlxd' "$T_DIR/contents" || fail "the build has the Python module but the package does not"
    else
        log "no Python module in the build: not checked"
    fi

    log "apt-get install $deb"
    "${apt[@]}" install "$deb" >"$T_DIR/apt.log" 2>&1 || { cat "$T_DIR/apt.log"; fail "apt-get install failed"; }
    files=$(dpkg -L mlxd)
    prefix=$(dirname "$(dirname "$(grep -m1 '/bin/mlxd$' <<<"$files")")")
    log "installed under $prefix"
    getent passwd mlxd >/dev/null || fail "the postinst did not create the mlxd user"
    [[ $(stat -c %G /run/mlxd 2>/dev/null) == mlxd ]] || fail "the postinst did not create /run/mlxd for group mlxd"
    ! systemctl is-enabled mlxd.service >/dev/null 2>&1 || fail "the package enabled mlxd.service"

    # The installed programs, on a socket of the test's own.
    T_SOCK="ipc://$T_DIR/pkg.sock"
    export MLXD_SOCKET=$T_SOCK
    MLXD_BIN=$prefix/bin/mlxd MLXCTL_BIN=$prefix/bin/mlxctl
    start_daemon
    out=$(launch 2 60 -- "$prefix/libexec/mlxd/examples/sum") || fail "the installed sum failed: $out"
    [[ $(grep -c 'Data sum total = 10' <<<"$out") == 2 ]] || fail "the installed sum printed: $out"
    out=$(launch 2 60 -- "$prefix/libexec/mlxd/examples/hello") || fail "the installed hello failed: $out"
    echo "$out"
    # The example's source builds against the installed files alone.
    # shellcheck disable=SC2046 # the flags are words
    cc -o "$T_DIR/hello" "$prefix/share/doc/mlxd/examples/hello.c" $(pkg-config --cflags --libs mlxd) ||
        fail "hello.c does not build with the installed pkg-config file"
    out=$(launch 2 60 -- "$T_DIR/hello") || fail "hello built from the installed files failed: $out"
    if grep -qE 'dist-packages/.*mlxd' <<<"$files"; then
        for f in hello.py sum.py; do
            out=$(launch 2 60 -- /usr/bin/python3 "$prefix/share/doc/mlxd/examples/$f") ||
                fail "the installed $f failed under the installed mlxctl: $out"
            echo "$out"
        done
    else
        log "the package has no Python module: the Python examples are not run"
    fi
    stop_daemon || fail "the installed mlxd did not stop cleanly"

    log "apt-get purge mlxd"
    "${apt[@]}" purge mlxd >"$T_DIR/apt.log" 2>&1 || { cat "$T_DIR/apt.log"; fail "apt-get purge failed"; }
    ! dpkg -s mlxd >/dev/null 2>&1 || fail "mlxd is still installed"
    while IFS= read -r f; do
        [[ -e $f && ! -d $f ]] && soft_fail "$f is left after apt-get purge"
    done <<<"$files"
    # The postinst's user and /run/mlxd (tmpfiles gives it to mlxd, 0770)
    # are the admin's to keep; the test puts back what it found.
    if [[ -n $run_was ]]; then
        chown "${run_was% *}" /run/mlxd && chmod "${run_was#* }" /run/mlxd
    else
        rmdir /run/mlxd 2>/dev/null
    fi
    (( had_user )) || userdel mlxd 2>/dev/null
    (( had_group )) || ! getent group mlxd >/dev/null || groupdel mlxd 2>/dev/null
    true
}

# ---- the manual pages ----

# mlxd(8) and mlxctl(1) list every option and command of --help with the same
# words, and no option the programs lack.
man_pages_say_what_help_says() {
    "$PYTHON3" "$here/man_check.py" "$MLXD_BIN" "$MLXCTL_BIN" "$src" ||
        fail "the manual pages and --help disagree (see above): update man/"
}

# ---- stopping in the middle of a job ----

# SIGTERM while one rank of a launched job waits in all_sum for a rank that
# never calls it (errcase drain: rank 0 waits, rank 1 holds back), with an op
# deadline far away: the waiting rank gets MLXD_EUNAVAILABLE at once rather
# than hanging until the deadline, the other rank's next op too, the job ends
# with status 0 (every check held), and the daemon exits 0 within seconds.
sigterm_during_a_job_gives_eunavailable() {
    T_OP_TIMEOUT=600
    start_daemon
    local job rc=0 t0 pid
    launch 2 60 -- "$ERRCASE_BIN" drain >"$T_DIR/job.out" 2>&1 &
    job=$!
    wait_until 20 some_client_pending all_sum || fail "no rank showed as waiting in all_sum"
    pid=$T_DAEMON_PID
    t0=$(now_ms)
    stop_daemon || fail "mlxd did not exit 0 after SIGTERM with a rank waiting in all_sum"
    log "mlxd exited $(( $(now_ms) - t0 )) ms after SIGTERM"
    (( $(now_ms) - t0 < 5000 )) || fail "mlxd took more than 5 s to stop"
    wait_until 10 eval "! kill -0 $job 2>/dev/null" || fail "the job still runs 10 s after SIGTERM: a rank hangs"
    wait "$job" || rc=$?
    log "the job ended $(( $(now_ms) - t0 )) ms after SIGTERM, status $rc"
    sed 's/^/  [job] /' "$T_DIR/job.out"
    expect_status "the job (rank 0 got MLXD_EUNAVAILABLE in all_sum, rank 1 in barrier)" 0 "$rc"
    ! kill -0 "$pid" 2>/dev/null || fail "mlxd still runs"
}

# ---- dispatch ----

[[ $# -eq 1 ]] || fail "usage: service.sh TEST_NAME"
declare -F "$1" >/dev/null || fail "no test named $1"
log "test $1"
"$1"
