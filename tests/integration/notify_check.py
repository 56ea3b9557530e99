"""notify_check: mlxd speaks the sd_notify protocol as a Type=notify service
must. Plays the service manager: binds the NOTIFY_SOCKET datagram socket,
starts mlxd with NOTIFY_SOCKET and WATCHDOG_USEC, and checks, in order:

  READY=1 (with MAINPID= the daemon's pid) arrives, and at that moment the
    daemon's socket and its shared-memory socket already accept connections
    and the daemon answers `mlxctl status`;
  STATUS= arrives;
  WATCHDOG=1 arrives again and again, about every half interval (the
    median gap), none skipped;
  after SIGTERM, STOPPING=1 arrives, and then mlxd exits 0.

  python3 notify_check.py MLXD MLXCTL DIR     (standard library only)
Exit status 0 when everything held, 1 otherwise (the reasons printed)."""

import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

WATCHDOG_USEC = 400000
WATCH_FOR_S = 2.0          # how long the watchdog pings are collected
DEADLINE_S = 20.0          # for READY, STOPPING and the exit
# Each datagram is timed by the kernel as it arrives (SO_TIMESTAMP), so that
# this process being scheduled late does not look like a late ping.
SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)   # Linux's value


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main():
    mlxd, mlxctl, tmp = sys.argv[1:4]
    sock_path = os.path.join(tmp, "d.sock")
    endpoint = "ipc://" + sock_path
    notify_path = os.path.join(tmp, "notify")
    failures = []

    def fail(msg):
        log("FAIL: " + msg)
        failures.append(msg)

    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    ns.bind(notify_path)
    ns.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC=str(WATCHDOG_USEC))
    env.pop("WATCHDOG_PID", None)
    env.pop("LISTEN_FDS", None)
    env.pop("LISTEN_PID", None)
    daemon_log = open(os.path.join(tmp, "mlxd.log"), "ab")
    proc = subprocess.Popen([mlxd, "--socket", endpoint, "--log-level", "debug"], env=env,
                            stdout=daemon_log, stderr=subprocess.STDOUT)
    log(f"mlxd pid {proc.pid}, NOTIFY_SOCKET={notify_path}, WATCHDOG_USEC={WATCHDOG_USEC}")

    # Every message as (seconds since start when it arrived, {field: value}, raw text).
    t0, t0_real = time.monotonic(), time.time()
    messages = []

    def receive(until, stop_when=None):
        """Collects datagrams until the deadline, or until stop_when(fields)."""
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return None
            ns.settimeout(left)
            try:
                data, anc, _, _ = ns.recvmsg(4096, socket.CMSG_SPACE(16))
            except socket.timeout:
                return None
            at = time.monotonic() - t0
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(value) >= 16:
                    sec, usec = struct.unpack("qq", value[:16])
                    at = sec + usec / 1e6 - t0_real
            text = data.decode("utf-8", "replace")
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            messages.append((at, fields, text))
            if stop_when and stop_when(fields):
                return fields

    try:
        # READY=1, and the daemon must answer at that very moment.
        ready = receive(time.monotonic() + DEADLINE_S, lambda f: f.get("READY") == "1")
        if ready is None:
            fail(f"no READY=1 within {DEADLINE_S} s (exit status {proc.poll()})")
            return failures
        log(f"READY=1 after {messages[-1][0]:.3f} s: {messages[-1][2]!r}")
        for path, kind, what in ((sock_path, socket.SOCK_STREAM, "socket"),
                                 (sock_path + ".shm", socket.SOCK_SEQPACKET, "shared-memory socket")):
            s = socket.socket(socket.AF_UNIX, kind)
            try:
                s.connect(path)
            except OSError as e:
                fail(f"at READY=1 the daemon's {what} {path} refused a connection: {e}")
            finally:
                s.close()
        st = subprocess.run([mlxctl, "status", "--socket", endpoint, "--timeout", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        if st.returncode != 0:
            fail(f"mlxctl status right after READY=1 exited {st.returncode}: {st.stdout.decode()}")
        if ready.get("MAINPID") != str(proc.pid):
            fail(f"READY=1 came with MAINPID={ready.get('MAINPID')}, the daemon is pid {proc.pid}")

        # The watchdog, for a while.
        receive(time.monotonic() + WATCH_FOR_S)
        if not any("STATUS" in f for _, f, _ in messages):
            fail("no STATUS= message")
        else:
            log("STATUS= " + next(f["STATUS"] for _, f, _ in messages if "STATUS" in f))
        pings = [t for t, f, _ in messages if f.get("WATCHDOG") == "1"]
        ready_at = next(t for t, f, _ in messages if f.get("READY") == "1")
        if any(t < ready_at for t in pings):
            fail("WATCHDOG=1 came before READY=1")
        half = WATCHDOG_USEC / 2e6
        if len(pings) < 5:
            fail(f"{len(pings)} WATCHDOG=1 in {WATCH_FOR_S} s; expected about {WATCH_FOR_S / half:.0f}")
        else:
            gaps = [b - a for a, b in zip(pings, pings[1:])]
            log(f"{len(pings)} WATCHDOG=1, gaps median {statistics.median(gaps) * 1000:.0f} ms, "
                f"max {max(gaps) * 1000:.0f} ms (interval {WATCHDOG_USEC // 1000} ms)")
            if not 0.5 * half <= statistics.median(gaps) <= 1.5 * half:
                fail(f"WATCHDOG=1 every {statistics.median(gaps) * 1000:.0f} ms (median); "
                     f"expected about half the interval, {half * 1000:.0f} ms")
            # A ping is due every half interval, so one late by a whole half
            # interval still keeps systemd content. On a loaded machine any
            # process may wake late: only a gap of two whole intervals, a
            # skipped ping rather than a late one, counts as a failure.
            if max(gaps) >= 2 * WATCHDOG_USEC / 1e6:
                fail(f"two WATCHDOG=1 were {max(gaps) * 1000:.0f} ms apart, two intervals: "
                     "the daemon skipped pings and systemd would have killed it")

        # SIGTERM: STOPPING=1, then exit 0.
        n_before = len(messages)
        t_term = time.time() - t0_real
        proc.send_signal(signal.SIGTERM)
        stopping = receive(time.monotonic() + DEADLINE_S, lambda f: f.get("STOPPING") == "1")
        if stopping is None:
            fail(f"no STOPPING=1 within {DEADLINE_S} s of SIGTERM")
        else:
            log(f"STOPPING=1 {(messages[-1][0] - t_term) * 1000:.0f} ms after SIGTERM: {messages[-1][2]!r}")
        try:
            rc = proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            fail(f"mlxd did not exit within {DEADLINE_S} s of SIGTERM")
            return failures
        if rc != 0:
            fail(f"mlxd exited with status {rc} after SIGTERM")
        else:
            log("mlxd exited 0")
        receive(time.monotonic() + 0.05)
        after = [text for _, f, text in messages[n_before:] if "READY" in f]
        if after:
            fail(f"READY=1 again after SIGTERM: {after}")
        order = [k for _, f, _ in messages for k in ("READY", "STOPPING") if k in f]
        if order != ["READY", "STOPPING"]:
            fail(f"READY and STOPPING came in the order {order}")
        return failures
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ns.close()


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
