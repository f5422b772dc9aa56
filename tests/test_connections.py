"""Keep-alive, Connection: close, HTTP/1.0, pipelining, request bodies."""
import os
import time

import pytest

from harness import RawConn, build_request
from wsgi_basic import GEN_CHUNKS

# --- keep-alive ------------------------------------------------------------


def test_keepalive_many_requests_same_socket(basic):
    with RawConn(basic.port) as c:
        ports = set()
        for i in range(8):
            r = c.request("GET", f"/environ?i={i}")
            assert r.status == 200
            env = r.json()
            assert env["QUERY_STRING"] == f"i={i}"
            ports.add(env["REMOTE_PORT"])
            assert not r.has_token("Connection", "close"), f"request {i} answered with Connection: close"
        # every answer came over this one TCP connection
        assert ports == {str(c.local_port)}
        assert not c.closed_by_peer(0.3), "server closed an idle HTTP/1.1 keep-alive connection at once"
        r = c.request("GET", "/")
        assert r.body == b"Hello, World!"


def test_connection_close_request(basic):
    with RawConn(basic.port) as c:
        r = c.request("GET", "/", headers=[("Connection", "close")])
        assert (r.status, r.body) == (200, b"Hello, World!")
        assert c.closed_by_peer(5), "server kept the connection open after Connection: close"


def test_connection_close_after_keepalive_requests(basic):
    with RawConn(basic.port) as c:
        assert c.request("GET", "/").status == 200
        assert c.request("GET", "/gen").body == b"".join(GEN_CHUNKS)
        r = c.request("GET", "/", headers=[("Connection", "close")])
        assert r.status == 200
        assert c.closed_by_peer(5)


def test_http10_closes_by_default(basic):
    with RawConn(basic.port) as c:
        r = c.request("GET", "/", version="HTTP/1.0")
        assert r.status == 200
        assert r.version in ("HTTP/1.0", "HTTP/1.1")
        assert r.body == b"Hello, World!"
        assert not r.has_token("Connection", "keep-alive")
        assert c.closed_by_peer(5), "HTTP/1.0 request without keep-alive: connection must be closed"


def test_http10_keepalive(basic):
    with RawConn(basic.port) as c:
        for i in range(3):
            r = c.request("GET", "/", headers=[("Connection", "keep-alive")], version="HTTP/1.0")
            assert (r.status, r.body) == (200, b"Hello, World!")
            assert r.has_token("Connection", "keep-alive"), f"response {i} lacks Connection: keep-alive"
            assert r.framing == "length"
        assert not c.closed_by_peer(0.3), "HTTP/1.0 keep-alive connection was closed"
        # a final HTTP/1.0 request without keep-alive ends it
        r = c.request("GET", "/", version="HTTP/1.0")
        assert r.status == 200
        assert c.closed_by_peer(5)


def test_post_body_not_read_by_app_is_skipped(basic):
    """The app ignores the body; the next request on the connection must still parse."""
    with RawConn(basic.port) as c:
        body = os.urandom(5000)
        c.send(build_request("POST", "/", body=body) + build_request("GET", "/environ?after=1"))
        r1 = c.read_response()
        r2 = c.read_response()
        assert (r1.status, r1.body) == (200, b"Hello, World!")
        assert r2.status == 200 and r2.json()["QUERY_STRING"] == "after=1"


# --- pipelining ------------------------------------------------------------


def test_pipelining_ten_requests(basic):
    reqs = []
    expected = []
    for i in range(10):
        if i % 3 == 0:
            body = f"body-{i}-".encode() * (i + 1)
            reqs.append(build_request("POST", "/echo", [("Content-Type", f"text/x-{i}")], body))
            expected.append(("echo", body, f"text/x-{i}"))
        elif i == 5:
            reqs.append(build_request("GET", "/gen"))
            expected.append(("gen", b"".join(GEN_CHUNKS), None))
        else:
            reqs.append(build_request("GET", f"/environ/p{i}?i={i}"))
            expected.append(("environ", i, None))
    with RawConn(basic.port) as c:
        c.send(b"".join(reqs))
        for i, (kind, want, ctype) in enumerate(expected):
            r = c.read_response()
            assert r.status == 200, f"response {i}"
            if kind == "echo":
                assert r.body == want, f"response {i} is not the echo of request {i}"
                assert r.header("Content-Type") == ctype
            elif kind == "gen":
                assert r.body == want
            else:
                env = r.json()
                assert (env["PATH_INFO"], env["QUERY_STRING"]) == (f"/environ/p{want}", f"i={want}"), (
                    f"response {i} answers another request"
                )
        assert not c.closed_by_peer(0.2)


def test_pipelining_with_connection_close_last(basic):
    with RawConn(basic.port) as c:
        c.send(
            build_request("GET", "/environ?n=1")
            + build_request("GET", "/environ?n=2")
            + build_request("GET", "/environ?n=3", [("Connection", "close")])
        )
        qs = [c.read_response().json()["QUERY_STRING"] for _ in range(3)]
        assert qs == ["n=1", "n=2", "n=3"]
        assert c.closed_by_peer(5)


def test_pipelining_many_small_requests(basic):
    n = 100
    with RawConn(basic.port) as c:
        c.send(b"".join(build_request("GET", f"/environ?k={i}") for i in range(n)))
        for i in range(n):
            assert c.read_response().json()["QUERY_STRING"] == f"k={i}"


# --- request bodies --------------------------------------------------------


@pytest.mark.parametrize("size", [0, 10, 100 * 1024, 1024 * 1024], ids=["0B", "10B", "100KiB", "1MiB"])
def test_post_echo_sizes(basic, size):
    body = os.urandom(size)
    with RawConn(basic.port, timeout=30) as c:
        c.send(build_request("POST", "/echo", [("Content-Type", "application/octet-stream"),
                                                ("Content-Length", str(size))], body))
        r = c.read_response()
        assert r.status == 200
        assert r.header("Content-Length") == str(size)
        assert len(r.body) == size
        assert r.body == body
        # and the connection is still in sync
        r2 = c.request("GET", "/")
        assert r2.body == b"Hello, World!"


def test_post_body_in_small_writes_with_pauses(basic):
    body = b"".join(b"piece-%02d|" % i for i in range(20))
    with RawConn(basic.port) as c:
        raw = build_request("POST", "/echo", [("Content-Type", "text/plain")], body)
        head_end = raw.index(b"\r\n\r\n") + 4
        # split inside the request line, inside a header, and the body in pieces
        cuts = [5, 20, head_end - 3, head_end, head_end + 7, head_end + 50, head_end + 120]
        prev = 0
        for cut in cuts + [len(raw)]:
            c.send(raw[prev:cut])
            prev = cut
            time.sleep(0.1)
        r = c.read_response()
        assert r.status == 200
        assert r.body == body


def test_post_chunked_request_body(basic):
    """HTTP/1.1 servers must accept chunked request bodies (wsgi.input_terminated)."""
    parts = [b"hello ", b"chunked ", b"world", b"!" * 300]
    payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    with RawConn(basic.port) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked"), ("Content-Type", "text/plain")])
               + payload)
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"".join(parts)
        r2 = c.request("GET", "/")
        assert r2.body == b"Hello, World!"


def test_expect_100_continue(basic):
    body = b"x" * 2048
    with RawConn(basic.port) as c:
        c.send(build_request("POST", "/echo", [("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        # A client may send the body without waiting for 100 Continue.
        time.sleep(0.2)
        c.send(body)
        r = c.read_response()
        assert r.status == 200
        assert r.body == body
        assert all(i.status == 100 for i in r.interim)


# --- misbehaving clients ---------------------------------------------------


def test_malformed_request_line_gets_400_and_server_survives(basic):
    with RawConn(basic.port) as c:
        c.send(b"THIS IS NOT HTTP\r\n\r\n")
        try:
            r = c.read_response()
        except Exception:  # noqa: BLE001 - a plain close is acceptable too
            r = None
        if r is not None:
            assert 400 <= r.status < 500, f"malformed request answered with {r.status}"
        assert c.closed_by_peer(5), "connection left open after a malformed request"
    assert get_ok(basic)


def test_client_disconnect_mid_body_and_mid_response(basic):
    # body announced but never fully sent
    c = RawConn(basic.port)
    c.send(build_request("POST", "/echo", [("Content-Length", "100000")]) + b"x" * 1000)
    time.sleep(0.1)
    c.close()
    # large response, client goes away without reading it
    for _ in range(5):
        c = RawConn(basic.port)
        c.send(build_request("GET", f"/bytes/{8 << 20}"))
        time.sleep(0.05)
        c.close()
    # pipelined requests, client closes at once
    c = RawConn(basic.port)
    c.send(b"".join(build_request("GET", f"/environ?z={i}") for i in range(20)))
    c.close()
    time.sleep(0.2)
    assert get_ok(basic)
    assert basic.proc.poll() is None, "server died after client disconnects"


def get_ok(srv):
    with RawConn(srv.port) as c:
        r = c.request("GET", "/")
        return r.status == 200 and r.body == b"Hello, World!"
