"""Every exception class, raised by the failure that causes it. Run with 2
ranks on a daemon started with --op-timeout 3 --max-shm-bytes 8M (cases.sh
does); the classes that need a daemon that misbehaves get a fake one (a
ZeroMQ socket in this process that answers like a broken mlxd), and
init() runs in a child process wherever a fresh init is needed."""

import gc
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import zmq

import mlxd as mx
from mlxdtest import DIR, touch, wait_file, world

W = world()
R, N = W.rank(), W.size()
KEEP = []  # groups a rank must not leave while another waits on them
pytestmark = pytest.mark.skipif(N != 2, reason="written for 2 ranks")


def expect(cls, code, name, fn, *also):
    with pytest.raises(cls) as info:
        fn()
    e = info.value
    assert isinstance(e, mx.Error) and isinstance(e, RuntimeError)
    for base in also:
        assert isinstance(e, base)
    assert e.code == code and e.name == name and str(e).startswith(name + ": ")
    return e


def test_send_to_own_rank_is_invalid_error():
    e = expect(mx.InvalidError, -1, "MLXD_EINVAL", lambda: mx.send(np.ones(2), R), ValueError)
    assert "own rank" in str(e)


def test_members_that_disagree_get_mismatch_error():
    x = np.ones(3, np.float32 if R == 0 else np.int32)
    expect(mx.MismatchError, -3, "MLXD_EMISMATCH", lambda: mx.all_sum(x))


def test_member_that_never_arrives_gives_timeout_error():
    sub = W.split(0)
    KEEP.append(sub)
    if R == 0:
        e = expect(mx.TimeoutError, -5, "MLXD_ETIMEDOUT", lambda: mx.all_sum(np.ones(2), group=sub),
                   TimeoutError)
        assert "1" in str(e)
        touch("timed-out")
    else:
        wait_file("timed-out")


def test_member_that_left_gives_peer_error():
    sub = W.split(0)
    if R == 1:
        del sub
        gc.collect()
        touch("left")
    else:
        wait_file("left")
        expect(mx.PeerError, -4, "MLXD_EPEER", lambda: mx.all_sum(np.ones(2), group=sub))
    mx.barrier()


def test_alloc_over_the_daemons_cap_is_limit_error():
    e = expect(mx.LimitError, -6, "MLXD_ENOMEM", lambda: mx.alloc((64 << 20,), mx.uint8), MemoryError)
    assert str(e)


def child_init(env):
    """init(strict=True) in a child process: its exception's class, code and message."""
    code = ("import mlxd\n"
            "try:\n"
            "    mlxd.init(strict=True)\n"
            "except mlxd.Error as e:\n"
            "    print(type(e).__name__, e.code, e, sep='|')\n")
    pre = env.pop("_preexec", None)
    full = dict(os.environ, MLXD_JOB="child-%d" % os.getpid(), MLXD_RANK="0", MLXD_SIZE="2", **env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=60,
                         preexec_fn=pre)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split("|", 2)


def test_no_daemon_with_strict_is_unavailable_error():
    cls, code, msg = child_init({"MLXD_SOCKET": "ipc://%s/nobody-%d.sock" % (DIR, R)})
    assert (cls, code) == ("UnavailableError", "-2") and "no mlxd answers" in msg


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another user")
def test_socket_of_another_user_is_denied_error():
    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    env = {"_preexec": drop}
    cls, code, msg = child_init(env)
    assert (cls, code) == ("DeniedError", "-8"), msg
    assert issubclass(mx.DeniedError, PermissionError)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def fake_daemon(endpoint, hello_answer):
    """A ROUTER that answers a Ping properly and the Hello with hello_answer(id)."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)

    def serve():
        while True:
            frames = sock.recv_multipart()
            pb = frames[1]
            # Request: field 1 (id, varint) comes first; the body's field number says what it is.
            assert pb[0] == 0x08
            i, rid, shift = 1, 0, 0
            while True:
                rid |= (pb[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not pb[i - 1] & 0x80:
                    break
            is_ping = b"\x72" in pb[i:i + 8]  # field 14, length-delimited
            reply = b"\x08" + varint(rid) if is_ping else hello_answer(rid)
            sock.send_multipart([frames[0], reply])
            if not is_ping:
                return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t, sock


def test_daemon_reply_that_does_not_decode_is_protocol_error():
    ep = "ipc://%s/fake-proto-%d.sock" % (DIR, R)
    t, sock = fake_daemon(ep, lambda rid: b"\xff\xff\xff")
    cls, code, msg = child_init({"MLXD_SOCKET": ep})
    t.join(10)
    sock.close(0)
    assert (cls, code) == ("ProtocolError", "-7") and "does not decode" in msg


def test_daemon_internal_failure_is_internal_error():
    ep = "ipc://%s/fake-internal-%d.sock" % (DIR, R)
    text = b"MPI_Allreduce failed"
    # Reply {id, code = -9 (zigzag-free int32: ten-byte varint), message}
    code = varint((1 << 64) - 9)
    t, sock = fake_daemon(ep, lambda rid: b"\x08" + varint(rid) + b"\x10" + code + b"\x1a" + varint(len(text)) + text)
    cls, c, msg = child_init({"MLXD_SOCKET": ep})
    t.join(10)
    sock.close(0)
    assert (cls, c) == ("InternalError", "-9") and "MPI_Allreduce failed" in msg
