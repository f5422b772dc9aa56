"""Basic serving, response headers, framing of response bodies, HEAD, errors, factory."""
import re
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import pytest

from harness import RawConn, get
from wsgi_basic import ERROR_MARKER, GEN_CHUNKS, pattern_bytes

GEN_BODY = b"".join(GEN_CHUNKS)

RFC7231_DATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT"
)


def assert_date_header(resp):
    dates = resp.header_all("Date")
    assert len(dates) == 1, f"expected exactly one Date header, got {dates}"
    assert RFC7231_DATE.fullmatch(dates[0]), f"Date is not an RFC 7231 IMF-fixdate: {dates[0]!r}"
    when = parsedate_to_datetime(dates[0])
    skew = abs((datetime.now(timezone.utc) - when).total_seconds())
    assert skew < 60, f"Date {dates[0]!r} is {skew:.0f}s away from now"


def test_get_root(basic):
    r = get(basic.port, "/")
    assert r.version == "HTTP/1.1"
    assert r.status == 200
    assert r.reason == "OK"
    assert r.body == b"Hello, World!"
    assert r.header("Content-Length") == "13"
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert_date_header(r)
    server = r.header_all("Server")
    assert len(server) == 1 and server[0].strip(), f"expected one non-empty Server header, got {server}"


def test_http_client_interop(basic):
    """The standard library client is happy with the server too."""
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", basic.port, timeout=10)
    try:
        for _ in range(3):
            c.request("GET", "/")
            r = c.getresponse()
            assert r.status == 200
            assert r.read() == b"Hello, World!"
        c.request("POST", "/echo", body=b"via http.client", headers={"Content-Type": "text/x-test"})
        r = c.getresponse()
        assert r.status == 200
        assert r.getheader("Content-Type") == "text/x-test"
        assert r.read() == b"via http.client"
    finally:
        c.close()


def test_generator_body_is_chunked_on_http11(basic):
    with RawConn(basic.port) as c:
        r = c.request("GET", "/gen")
        assert r.status == 200
        assert r.framing == "chunked", r.headers
        assert r.has_token("Transfer-Encoding", "chunked")
        assert r.header("Content-Length") is None
        assert r.body == GEN_BODY
        assert_date_header(r)
        # the connection stays usable after the terminating chunk
        r2 = c.request("GET", "/")
        assert r2.status == 200 and r2.body == b"Hello, World!"


def test_generator_body_on_http10_is_delimited_by_close(basic):
    with RawConn(basic.port) as c:
        r = c.request("GET", "/gen", version="HTTP/1.0")
        assert r.status == 200
        assert r.header("Transfer-Encoding") is None, "no chunked encoding towards an HTTP/1.0 client"
        assert r.framing == "close"
        assert r.body == GEN_BODY
        assert c.closed_by_peer(5)


def test_app_content_length_passed_through(basic):
    for n in (1, 1000, 65537, 1 << 20):
        r = get(basic.port, f"/bytes/{n}")
        assert r.status == 200
        assert r.header_all("Content-Length") == [str(n)]
        assert r.framing == "length"
        assert r.body == pattern_bytes(n)


def test_custom_headers(basic):
    r = get(basic.port, "/headers")
    assert r.status == 200
    assert r.header("X-Custom-One") == "one"
    assert r.header("X-Custom-Two") == "two words"
    assert sorted(r.header_all("Set-Cookie")) == ["a=1; Path=/", "b=2; Path=/"], (
        "repeated response headers must be sent as separate header lines"
    )
    assert r.body == b"custom headers"
    assert_date_header(r)


@pytest.mark.parametrize(
    "code,reason",
    [(201, "Created"), (404, "Not Found"), (418, "I'm a teapot"), (503, "Service Unavailable")],
)
def test_status_codes(basic, code, reason):
    r = get(basic.port, f"/status/{code}")
    assert r.status == code
    assert r.reason == reason
    assert r.body == b"status %d" % code


@pytest.mark.parametrize("code", [204, 304])
def test_bodyless_status_keeps_connection_in_sync(basic, code):
    with RawConn(basic.port) as c:
        r = c.request("GET", f"/status/{code}")
        assert r.status == code
        assert r.header("Transfer-Encoding") is None, f"{code} must not carry a chunked body"
        r2 = c.request("GET", "/")
        assert (r2.status, r2.body) == (200, b"Hello, World!")


def test_unknown_route_is_app_404(basic):
    r = get(basic.port, "/no/such/route")
    assert r.status == 404
    assert r.body == b"not found: /no/such/route"


def test_head_same_headers_no_body(basic):
    for path in ("/", "/bytes/5000", "/headers"):
        with RawConn(basic.port) as c:
            g = c.request("GET", path)
            h = c.request("HEAD", path)
            # HEAD sent no body bytes: a following request still parses correctly
            g2 = c.request("GET", path)
        assert h.status == g.status == 200
        strip = lambda r: sorted((k.lower(), v) for k, v in r.headers if k.lower() != "date")  # noqa: E731
        assert strip(h) == strip(g), f"HEAD {path} headers differ from GET"
        assert h.header("Content-Length") == str(len(g.body))
        assert h.body == b""
        assert g2.body == g.body


def test_head_then_pipelined_request_no_stray_bytes(basic):
    with RawConn(basic.port) as c:
        c.send(
            b"HEAD /bytes/3000 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        h = c.read_response("HEAD")
        g = c.read_response("GET")
        assert h.status == 200 and h.header("Content-Length") == "3000"
        assert (g.status, g.body) == (200, b"Hello, World!")


def test_app_exception_gives_500_and_logs_traceback(basic):
    with RawConn(basic.port) as c:
        r = c.request("GET", "/error")
    assert r.status == 500
    assert ERROR_MARKER.encode() not in r.body, "the exception must not leak to the client"
    assert basic.wait_for_log(ERROR_MARKER, 5), "the exception message was not logged to stderr"
    assert "RuntimeError" in basic.logs()
    # the server keeps serving, on a new connection
    r2 = get(basic.port, "/")
    assert (r2.status, r2.body) == (200, b"Hello, World!")
    # and again after several errors in a row
    for _ in range(5):
        assert get(basic.port, "/error").status == 500
    assert get(basic.port, "/").status == 200


def test_factory_app_spec(server_factory):
    srv = server_factory("wsgi_basic:create_app()", "--workers", "1")
    r = get(srv.port, "/")
    assert (r.status, r.body) == (200, b"Hello, World!")
    r = get(srv.port, "/echo", headers=[("X-A", "b")])
    assert r.status == 200


def test_date_header_advances(basic):
    """The Date header is the current time, not frozen at start-up."""
    d1 = parsedate_to_datetime(get(basic.port, "/").header("Date"))
    time.sleep(2.1)
    d2 = parsedate_to_datetime(get(basic.port, "/").header("Date"))
    assert (d2 - d1).total_seconds() >= 1
