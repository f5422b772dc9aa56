"""--io: the epoll transport serves, and `auto` falls back to it where io_uring is blocked.

"Blocked" is made real the way Docker's default seccomp profile does it: a seccomp filter
(installed in the server's preexec_fn, inherited by its worker process) that fails
io_uring_setup/io_uring_enter/io_uring_register with EPERM and allows everything else.
"""
import ctypes
import platform
import re

import pytest

from harness import run_cli, start_or_fail

# x86_64 syscall numbers and audit arch (the filter checks the arch, as Docker's does).
AUDIT_ARCH_X86_64 = 0xC000003E
IO_URING_SYSCALLS = (425, 426, 427)  # io_uring_setup, io_uring_enter, io_uring_register
EPERM = 1

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
# Classic BPF opcodes.
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06
# Offsets in struct seccomp_data.
NR_OFFSET = 0
ARCH_OFFSET = 4

needs_x86_64 = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="the seccomp filter uses x86_64 syscall numbers"
)


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def _io_uring_blocking_program():
    allow, deny = 6, 7  # instruction indexes below
    insns = [
        (BPF_LD_W_ABS, 0, 0, ARCH_OFFSET),
        (BPF_JEQ_K, 0, allow - 2, AUDIT_ARCH_X86_64),  # another arch: allow
        (BPF_LD_W_ABS, 0, 0, NR_OFFSET),
        *((BPF_JEQ_K, deny - (3 + i) - 1, 0, nr) for i, nr in enumerate(IO_URING_SYSCALLS)),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM),
    ]
    assert len(insns) == deny + 1
    filters = (SockFilter * len(insns))(*(SockFilter(*i) for i in insns))
    return filters, SockFprog(len(insns), filters)


# Built before any fork: the child only makes two prctl calls.
_FILTERS, _PROG = _io_uring_blocking_program()
_LIBC = ctypes.CDLL(None, use_errno=True)


def block_io_uring():
    """preexec_fn: install the filter (no new privileges first, so no CAP_SYS_ADMIN needed)."""
    if _LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if _LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(_PROG), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def io_lines(srv):
    return re.findall(r"io: .*", srv.logs())


def get_ok(srv, path="/"):
    with srv.conn() as c:
        r = c.request("GET", path)
        assert r.status == 200, r
        return r


def test_epoll_serves_keep_alive_and_large_bodies(server_factory):
    srv = server_factory("wsgi_basic:app", "--io", "epoll", "--workers", "2")
    assert srv.wait_for_log("io: epoll (--io epoll)")
    with srv.conn() as c:
        for _ in range(20):  # one connection, many requests
            assert c.request("GET", "/").status == 200
        # Above the spool threshold (1 MiB): the body goes through write_file.
        body = b"x" * (3 * 1024 * 1024 + 7)
        r = c.request("POST", "/echo", headers=[("Content-Type", "application/octet-stream")], body=body)
        assert r.status == 200
        assert r.body == body
    # The choice is logged once per process, not once per worker thread.
    assert io_lines(srv) == ["io: epoll (--io epoll)"], srv.logs()


def test_auto_uses_io_uring_where_it_works(server_factory):
    srv = server_factory("wsgi_basic:app", "--io", "auto", "--workers", "2")
    get_ok(srv)
    assert srv.wait_for_log("io: ")
    assert io_lines(srv) == ["io: io_uring"], srv.logs()


@needs_x86_64
def test_auto_falls_back_to_epoll_when_seccomp_blocks_io_uring(server_factory):
    srv = server_factory("wsgi_basic:app", "--io", "auto", "--workers", "2", preexec_fn=block_io_uring)
    get_ok(srv)
    assert srv.wait_for_log("io: epoll")
    expected = (
        "io: epoll (io_uring unavailable: Operation not permitted (os error 1), "
        "a seccomp profile or kernel.io_uring_disabled)"
    )
    assert io_lines(srv) == [expected], srv.logs()


@needs_x86_64
def test_io_uring_forced_under_seccomp_is_a_clear_start_up_error():
    code, _out, err, _secs = run_cli(
        "--io", "uring", "--bind", "127.0.0.1:0", "wsgi_basic:app", preexec_fn=block_io_uring
    )
    assert code != 0
    assert "cannot set up io_uring: Operation not permitted (os error 1)" in err, err
    assert "seccomp" in err and "--io epoll" in err, err


def test_io_flag_rejects_unknown_values():
    code, _out, err, _secs = run_cli("--io", "kqueue", "wsgi_basic:app")
    assert code == 2
    assert "kqueue" in err and "auto" in err and "epoll" in err, err
