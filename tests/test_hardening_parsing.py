"""HTTP/1.1 hardening: one answer per malformed request (issue "HTTP/1.1 hardening").

Every case is sent over a real socket to hardening_app (--workers 1) followed by a valid
pipelined `GET /smuggled-<case>`; a 4xx/5xx caused by framing must carry
`Connection: close`, the server must close, and the app must never see the smuggled path
(checked through /seen on a fresh connection).
"""
import pytest

from harness import RawConn, get, reject_and_close

H = b"Host: t.example\r\n"


@pytest.fixture(scope="module")
def srv():
    from conftest import _serving

    with _serving("hardening_app:app", "--workers", "1") as s:
        yield s


def seen(srv):
    r = get(srv.port, "/seen")
    assert r.status == 200
    return r.json()


def smuggle(case_id: str) -> bytes:
    return f"GET /smuggled-{case_id} HTTP/1.1\r\nHost: t.example\r\n\r\n".encode()


def post_chunked(body: bytes, extra: bytes = b"") -> bytes:
    return b"POST /c HTTP/1.1\r\n" + H + extra + b"Transfer-Encoding: chunked\r\n\r\n" + body


def post_cl(cl_lines: bytes, body: bytes = b"hello") -> bytes:
    return b"POST /c HTTP/1.1\r\n" + H + cl_lines + b"\r\n" + body


# (id, request bytes, expected status). The smuggled GET is appended after each.
CASES = [
    # request line
    ("method-paren", b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method-at", b"GE@T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method-nonascii", b"G\xc3\x89T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method-empty", b" / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("line-double-space", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("line-extra-token", b"GET / HTTP/1.1 extra\r\n" + H + b"\r\n", 400),
    ("line-leading-space", b" GET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("line-tab-separator", b"GET\t/\tHTTP/1.1\r\n" + H + b"\r\n", 400),
    ("version-empty", b"GET / \r\n" + H + b"\r\n", 400),
    ("version-no-digits", b"GET / HTTP/\r\n" + H + b"\r\n", 400),
    ("version-no-minor", b"GET / HTTP/1\r\n" + H + b"\r\n", 400),
    ("version-lowercase", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("version-garbage", b"GET / FOO/1.1\r\n" + H + b"\r\n", 400),
    # request target
    ("target-utf8", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-0x80", b"GET /a\x80b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-0xff", b"GET /a\xffb HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-ctl-01", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-nul", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-del", b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-bare-cr", b"GET /a\rb HTTP/1.1\r\n" + H + b"\r\n", 400),
    # other major versions
    ("http-2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("http-3.0", b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505),
    ("http-0.9", b"GET /\r\n", 505),
    # header names and lines
    ("name-space", b"GET / HTTP/1.1\r\n" + H + b"Bad Name: x\r\n\r\n", 400),
    ("name-at", b"GET / HTTP/1.1\r\n" + H + b"Bad@Name: x\r\n\r\n", 400),
    ("name-nonascii", b"GET / HTTP/1.1\r\n" + H + b"X-\xc3\xa9: x\r\n\r\n", 400),
    ("name-empty", b"GET / HTTP/1.1\r\n" + H + b": x\r\n\r\n", 400),
    ("name-no-colon", b"GET / HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n", 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : x\r\n\r\n", 400),
    ("tab-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-A\t: x\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n", 400),
    ("ws-after-request-line", b"GET / HTTP/1.1\r\n X-A: b\r\n" + H + b"\r\n", 400),
    # header values
    ("value-nul", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("value-bare-cr", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    ("value-ctl-01", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    ("value-ctl-1f", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x1fb\r\n\r\n", 400),
    ("value-del", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", 400),
    # line endings
    ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: t.example\n\n", 400),
    ("bare-lf-request-line", b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    ("bare-lf-one-header", b"GET / HTTP/1.1\r\nHost: t.example\nX-A: b\r\n\r\n", 400),
    ("bare-lf-end-of-head", b"GET / HTTP/1.1\r\n" + H + b"\n", 400),
    # Host
    ("host-missing", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("host-twice", b"GET / HTTP/1.1\r\n" + H + b"Host: other.example\r\n\r\n", 400),
    ("host-twice-same", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    ("host-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400),
    ("host-port-overflow", b"GET / HTTP/1.1\r\nHost: x:99999\r\n\r\n", 400),
    ("host-port-empty", b"GET / HTTP/1.1\r\nHost: x:\r\n\r\n", 400),
    # Content-Length / Transfer-Encoding
    ("cl-and-te", post_chunked(b"5\r\nhello\r\n0\r\n\r\n", b"Content-Length: 5\r\n"), 400),
    ("te-and-cl", b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 15\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 400),
    ("cl-differing", post_cl(b"Content-Length: 5\r\nContent-Length: 6\r\n"), 400),
    ("cl-repeated-equal", post_cl(b"Content-Length: 5\r\nContent-Length: 5\r\n"), 400),
    ("cl-list-equal", post_cl(b"Content-Length: 5, 5\r\n"), 400),
    ("cl-list-differing", post_cl(b"Content-Length: 5, 6\r\n"), 400),
    ("cl-plus", post_cl(b"Content-Length: +5\r\n"), 400),
    ("cl-minus", post_cl(b"Content-Length: -5\r\n"), 400),
    ("cl-inner-space", post_cl(b"Content-Length: 1 0\r\n", b"helloworld"), 400),
    ("cl-hex", post_cl(b"Content-Length: 0x5\r\n"), 400),
    ("cl-letters", post_cl(b"Content-Length: five\r\n"), 400),
    ("cl-decimal-point", post_cl(b"Content-Length: 5.0\r\n"), 400),
    ("cl-empty", post_cl(b"Content-Length: \r\n", b""), 400),
    ("cl-u64-overflow", post_cl(b"Content-Length: 18446744073709551616\r\n"), 400),
    ("cl-huge-overflow", post_cl(b"Content-Length: 99999999999999999999999999999999\r\n"), 400),
    ("te-gzip-only", post_cl(b"Transfer-Encoding: gzip\r\n"), 400),
    ("te-chunked-then-gzip", post_chunked(b"5\r\nhello\r\n0\r\n\r\n").replace(
        b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked, gzip"), 400),
    ("te-chunked-twice-list", post_chunked(b"5\r\nhello\r\n0\r\n\r\n").replace(
        b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked, chunked"), 400),
    ("te-chunked-twice-lines", post_chunked(b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: chunked\r\n"), 400),
    ("te-unknown-token", post_cl(b"Transfer-Encoding: bogus\r\n"), 400),
    ("te-gzip-chunked", post_chunked(b"5\r\nhello\r\n0\r\n\r\n").replace(
        b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked"), 501),
    ("te-gzip-line-chunked-line", post_chunked(b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: gzip\r\n"), 501),
    ("te-in-http10", b"POST /c HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    # chunk framing
    ("chunk-size-nonhex", post_chunked(b"zz\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-empty", post_chunked(b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-minus", post_chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-plus", post_chunked(b"+5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-0x", post_chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-leading-space", post_chunked(b" 5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-trailing-space", post_chunked(b"5 \r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-inner-space", post_chunked(b"1 0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"), 400),
    ("chunk-size-17-digits", post_chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-overflow", post_chunked(b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-data-no-crlf", post_chunked(b"5\r\nhelloXX0\r\n\r\n"), 400),
    ("chunk-data-bare-lf", post_chunked(b"5\r\nhello\n0\r\n\r\n"), 400),
    ("chunk-size-bare-lf", post_chunked(b"5\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-over-4k", post_chunked(b"5;a=" + b"b" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-over-4k-total", post_chunked(
        b"".join(b"1;e=" + b"x" * 1000 + b"\r\nh\r\n" for _ in range(5)) + b"0\r\n\r\n"), 400),
    ("trailer-field-too-big", post_chunked(b"5\r\nhello\r\n0\r\nX-T: " + b"t" * 9000 + b"\r\n\r\n"), 431),
    ("trailer-too-many", post_chunked(
        b"5\r\nhello\r\n0\r\n" + b"".join(b"X-T%d: t\r\n" % i for i in range(101)) + b"\r\n"), 431),
]


@pytest.mark.parametrize("case_id,raw,status", CASES, ids=[c[0] for c in CASES])
def test_bad_request_rejected_and_closed(srv, case_id, raw, status):
    resp, closed = reject_and_close(srv.port, raw + smuggle(case_id))
    assert resp.status == status, f"{case_id}: got {resp.status} {resp.reason}, want {status}"
    assert resp.has_token("Connection", "close"), f"{case_id}: no Connection: close on {resp.status}"
    assert closed, f"{case_id}: server kept the connection open after {resp.status}"
    assert f"/smuggled-{case_id}" not in seen(srv), f"{case_id}: bytes after the bad request were served"


def test_smuggle_check_positive_control(srv):
    """The /seen mechanism does see a pipelined request after a good one (else the
    smuggling assertions above would be vacuous)."""
    with RawConn(srv.port) as c:
        c.send(b"GET /ctl HTTP/1.1\r\n" + H + b"\r\n" + smuggle("control"))
        assert c.read_response().status == 200
        assert c.read_response().status == 200
    assert "/smuggled-control" in seen(srv)


def test_http_1_2_served_as_http_1_1(srv):
    with RawConn(srv.port) as c:
        c.send(b"GET /v12 HTTP/1.2\r\n" + H + b"\r\n" + smuggle("v12"))
        r = c.read_response()
        assert r.status == 200
        assert r.version == "HTTP/1.1"
        assert not r.has_token("Connection", "close")
        # persistent as 1.1: the pipelined request is served on the same connection
        assert c.read_response().status == 200
    assert "/smuggled-v12" in seen(srv)


def test_http_1_9_served_as_http_1_1(srv):
    r = get(srv.port, "/v19", version="HTTP/1.9", headers=[("Host", "t.example")])
    assert r.status == 200
    assert r.version == "HTTP/1.1"


def test_valid_host_forms_accepted(srv):
    for host in ("t.example", "t.example:8080", "127.0.0.1:1", "[::1]:80", "0.0.0.0=5000"):
        r = get(srv.port, "/host", headers=[("Host", host)])
        assert r.status == 200, f"Host: {host} -> {r.status}"


def test_small_chunk_extensions_accepted(srv):
    with RawConn(srv.port) as c:
        c.send(post_chunked(b"5;a=b;c=\"d\"\r\nhello\r\n0;z\r\nX-Trailer: ok\r\n\r\n"))
        r = c.read_response()
    assert r.status == 200
    assert r.json()["body"] == "hello"


@pytest.mark.parametrize("expect", ["something-else", "100-continue-please", "200-ok"])
def test_expect_other_than_100_continue_is_417(srv, expect):
    with RawConn(srv.port) as c:
        c.send(b"POST /expect HTTP/1.1\r\n" + H + f"Expect: {expect}\r\nContent-Length: 0\r\n\r\n".encode())
        r = c.read_response("POST")
    assert r.status == 417
    assert "/expect" not in seen(srv)


def test_expect_100_continue_still_works(srv):
    with RawConn(srv.port) as c:
        c.send(b"POST /expect-ok HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        head = c.read_head()
        assert head.status == 100
        c.send(b"hello")
        r = c.read_response("POST")
    assert r.status == 200
    assert r.json()["body"] == "hello"
