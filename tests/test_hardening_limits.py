"""HTTP/1.1 hardening: request size limits, pipelining/back-pressure bounds and
--worker-connections (issue "HTTP/1.1 hardening", "Limits").

Boundaries: a line "just under" a byte limit is 2 bytes under it without its CRLF (so it is
under whether or not the server counts the CRLF); "just over" is 1 byte over it without
the CRLF (over either way). For the field-size limit the over case makes the *value alone*
exceed the limit, so it is over whether the server counts the whole line or the value.
"""
import socket
import threading
import time

import pytest

from harness import RawConn, server_rss_kib, worker_pid, vm_rss_kib

H = b"Host: t.example\r\n"
KIB = 1024
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def srv():
    from conftest import _serving

    with _serving("hardening_app:app", "--workers", "1") as s:
        yield s


def line_of(total_len: int) -> bytes:
    """A request line of exactly total_len bytes (without CRLF)."""
    fixed = len(b"GET / HTTP/1.1")
    return b"GET /" + b"a" * (total_len - fixed) + b" HTTP/1.1"


def field_of(total_len: int, name: bytes = b"X-Pad") -> bytes:
    """A header line `name: vvv` of exactly total_len bytes (without CRLF)."""
    return name + b": " + b"v" * (total_len - len(name) - 2)


def send_one(port, raw: bytes, method="GET"):
    with RawConn(port, timeout=15) as c:
        try:
            c.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response(method)
        closed = None
        if r.status >= 400:
            closed = c.closed_by_peer(5)
        return r, closed


def assert_rejected(port, raw, status, method="GET"):
    r, closed = send_one(port, raw, method)
    assert r.status == status, f"got {r.status} {r.reason}, want {status}"
    assert r.has_token("Connection", "close")
    assert closed, "server kept the connection open after rejecting"


def assert_served(port, raw, method="GET"):
    r, _ = send_one(port, raw, method)
    assert r.status == 200, f"got {r.status} {r.reason}, want 200"
    return r


# --- request line -------------------------------------------------------------------------


def test_request_line_default_limit(srv):
    assert_served(srv.port, line_of(8190 - 2) + b"\r\n" + H + b"\r\n")
    assert_rejected(srv.port, line_of(8190 + 1) + b"\r\n" + H + b"\r\n", 414)


def test_request_line_limit_flag(server_factory):
    s = server_factory("hardening_app:app", "--workers", "1", "--limit-request-line", "100")
    assert_served(s.port, line_of(98) + b"\r\n" + H + b"\r\n")
    assert_rejected(s.port, line_of(101) + b"\r\n" + H + b"\r\n", 414)


# --- header fields ------------------------------------------------------------------------


def head_with_fields(n_total: int) -> bytes:
    """GET / with exactly n_total header fields, Host included."""
    return b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-F%d: v\r\n" % i for i in range(n_total - 1)) + b"\r\n"


def test_header_count_default_limit(srv):
    assert_served(srv.port, head_with_fields(100))
    assert_rejected(srv.port, head_with_fields(101), 431)


def test_header_count_limit_flag(server_factory):
    s = server_factory("hardening_app:app", "--workers", "1", "--limit-request-fields", "10")
    assert_served(s.port, head_with_fields(10))
    assert_rejected(s.port, head_with_fields(11), 431)


def test_header_field_size_default_limit(srv):
    assert_served(srv.port, b"GET / HTTP/1.1\r\n" + H + field_of(8190 - 2) + b"\r\n\r\n")
    assert_rejected(srv.port, b"GET / HTTP/1.1\r\n" + H + b"X-Pad: " + b"v" * (8190 + 1) + b"\r\n\r\n", 431)


@pytest.mark.parametrize("flag", ["--limit-request-field-size", "--limit-request-field_size"])
def test_header_field_size_limit_flag_and_gunicorn_alias(server_factory, flag):
    s = server_factory("hardening_app:app", "--workers", "1", flag, "100")
    assert_served(s.port, b"GET / HTTP/1.1\r\n" + H + field_of(98) + b"\r\n\r\n")
    assert_rejected(s.port, b"GET / HTTP/1.1\r\n" + H + b"X-Pad: " + b"v" * 101 + b"\r\n\r\n", 431)


def test_total_header_block_64k(srv):
    # 15 x 4000-byte fields (~60 KB) fit in 64 KiB; 20 x 4000 (~80 KB) do not. Each field
    # and the count are well inside the per-field and per-count defaults.
    under = b"GET / HTTP/1.1\r\n" + H + b"".join(field_of(4000, b"X-P%d" % i) + b"\r\n" for i in range(15)) + b"\r\n"
    over = b"GET / HTTP/1.1\r\n" + H + b"".join(field_of(4000, b"X-P%d" % i) + b"\r\n" for i in range(20)) + b"\r\n"
    assert len(under) < 64 * KIB < len(over)
    assert_served(srv.port, under)
    assert_rejected(srv.port, over, 431)


# --- body -----------------------------------------------------------------------------


def test_body_default_limit_checked_before_reading(srv):
    # At the limit: the server is willing to read it (100 Continue), over it: 413 at once.
    with RawConn(srv.port, timeout=10) as c:
        c.send(b"POST /at-limit HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (1 << 30))
        head = c.read_head()
        assert head.status == 100, f"got {head.status} for a body of exactly 1 GiB"
    t0 = time.monotonic()
    assert_rejected(srv.port, b"POST /over HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % ((1 << 30) + 1), 413, "POST")
    assert time.monotonic() - t0 < 3, "413 should come before any body byte is sent"


def test_body_limit_flag(server_factory):
    s = server_factory("hardening_app:app", "--workers", "1", "--limit-request-body", "100")
    r = assert_served(s.port, b"POST /b HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\n" + b"x" * 100, "POST")
    assert len(r.json()["body"]) == 100
    assert_rejected(s.port, b"POST /b HTTP/1.1\r\n" + H + b"Content-Length: 101\r\n\r\n", 413, "POST")
    # chunked: the limit applies to the decoded body as it arrives
    assert_rejected(s.port, b"POST /b HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                    b"65\r\n" + b"x" * 101 + b"\r\n0\r\n\r\n", 413, "POST")


def test_body_limit_zero_means_none(server_factory):
    s = server_factory("hardening_app:app", "--workers", "1", "--limit-request-body", "0")
    with RawConn(s.port, timeout=10) as c:
        c.send(b"POST /huge HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (8 << 30))
        assert c.read_head().status == 100


# --- 1 MiB heads sent in pieces: rejected early, not buffered ------------------------------


def _hostile_head(kind: str) -> bytes:
    if kind == "line":
        return b"GET /" + b"a" * MIB + b" HTTP/1.1\r\n" + H + b"\r\n"
    # 1 MiB of small header fields (each under the field size limit)
    fields = b"".join(b"X-H%d: %s\r\n" % (i, b"h" * 1000) for i in range(MIB // 1010))
    return b"GET / HTTP/1.1\r\n" + H + fields + b"\r\n"


def _send_in_pieces(port, data, statuses, idx):
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    got = b""
    try:
        for off in range(0, len(data), 16 * KIB):
            try:
                s.sendall(data[off:off + 16 * KIB])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.002)
        s.settimeout(10)
        while b"\r\n" not in got:
            try:
                b = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            got += b
    finally:
        s.close()
    statuses[idx] = got.split(b"\r\n", 1)[0]


class RssSampler:
    def __init__(self, srv):
        self.srv = srv
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, server_rss_kib(self.srv))
            time.sleep(0.01)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, server_rss_kib(self.srv))


# 20 concurrent 1 MiB heads would add ~20 MiB if buffered; allocator and per-connection
# state of a bounded parser stay well under 6 MiB.
HEAD_RSS_TOLERANCE_KIB = 6 * 1024


@pytest.mark.parametrize("kind,status", [("line", b"414"), ("headers", b"431")])
def test_1mib_head_in_pieces_rejected_without_buffering(server_factory, kind, status):
    s = server_factory("hardening_app:app", "--workers", "1")
    data = _hostile_head(kind)

    def round_():
        statuses = [None] * 20
        ts = [threading.Thread(target=_send_in_pieces, args=(s.port, data, statuses, i)) for i in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        return statuses

    round_()  # warm-up: first-use allocations of the connection slots
    before = server_rss_kib(s)
    with RssSampler(s) as sampler:
        statuses = round_()
    print(f"{kind}: server RSS before {before} KiB, peak during {sampler.peak} KiB")
    assert all(st is not None and st.startswith(b"HTTP/1.1 " + status) for st in statuses), statuses
    assert sampler.peak - before < HEAD_RSS_TOLERANCE_KIB, (
        f"server RSS grew by {sampler.peak - before} KiB for 20 x 1 MiB {kind} heads")


# --- pipelining and unsent-bytes back-pressure ------------------------------------------


def test_pipelined_200_large_responses_bounded_and_complete(server_factory):
    """200 pipelined requests for 100 KiB responses (20 MiB in all) while the client reads
    nothing: the server must stop (64 in flight, 4 MiB unsent), so its RSS stays bounded;
    afterwards every response arrives complete and in order."""
    s = server_factory("hardening_app:app", "--workers", "1")
    n, size = 200, 100 * KIB
    with RawConn(s.port, timeout=30) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KIB)
        # warm-up on the same connection
        c.send(b"GET /big?n=%d&i=warm HTTP/1.1\r\n" % size + H + b"\r\n")
        assert c.read_response().status == 200
        before = server_rss_kib(s)
        with RssSampler(s) as sampler:
            c.send(b"".join(b"GET /big?n=%d&i=%d HTTP/1.1\r\n" % (size, i) + H + b"\r\n" for i in range(n)))
            time.sleep(2.0)
        print(f"pipelined: server RSS before {before} KiB, peak while not reading {sampler.peak} KiB")
        # 20 MiB (or 40 MiB with copies) if it buffered everything; 4 MiB unsent cap + one
        # response + allocator slack stay under 10 MiB.
        assert sampler.peak - before < 10 * 1024, f"server RSS grew by {sampler.peak - before} KiB"
        for i in range(n):
            r = c.read_response()
            assert r.status == 200
            assert len(r.body) == size
            assert r.body.startswith(str(i).encode() + b"."), f"response {i} out of order: {r.body[:10]!r}"


def test_pipelined_requests_beyond_64_not_all_dispatched(server_factory):
    """With the client not reading, at most 64 pipelined requests are in flight: the app is
    not called for all 200 while nothing is read (the 4 MiB unsent cap stops it even earlier
    with 100 KiB responses)."""
    s = server_factory("hardening_app:app", "--workers", "1")
    with RawConn(s.port, timeout=30) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * KIB)
        c.send(b"".join(b"GET /big?n=102400&i=q%d HTTP/1.1\r\n" % i + H + b"\r\n" for i in range(200)))
        time.sleep(1.5)
        from harness import get

        called = [p for p in get(s.port, "/seen").json() if p.startswith("/big?n=102400&i=q")]
        print(f"app called for {len(called)} of 200 pipelined requests while the client read nothing")
        assert len(called) <= 64, f"the app was called for {len(called)} pipelined requests"


# --- --worker-connections ------------------------------------------------------------


def test_worker_connections_leaves_extra_connection_in_backlog(server_factory):
    s = server_factory("hardening_app:app", "--workers", "1", "--worker-connections", "5")
    held = []
    try:
        for i in range(5):
            c = RawConn(s.port, timeout=10)
            c.send(b"GET /held%d HTTP/1.1\r\n" % i + H + b"\r\n")
            assert c.read_response().status == 200
            held.append(c)
        sixth = RawConn(s.port, timeout=10)  # connect succeeds: the kernel backlog takes it
        held.append(sixth)
        sixth.send(b"GET /sixth HTTP/1.1\r\n" + H + b"\r\n")
        sixth.sock.settimeout(1.0)
        with pytest.raises(socket.timeout):
            sixth.sock.recv(1)
        held[0].close()
        sixth.sock.settimeout(3.0)
        r = sixth.read_response()
        assert r.status == 200
    finally:
        for c in held:
            c.close()
