"""Response framing: the app's Content-Length is enforced; HEAD, 204 and 304 carry no body."""
import pytest

from harness import RawConn, build_request


def digits(n):
    return (b"0123456789" * (n // 10 + 1))[:n]


# --- 13. the app's Content-Length is enforced ------------------------------------------------


@pytest.mark.parametrize("gen", ["", "1"], ids=["list", "generator"])
def test_fewer_bytes_than_content_length_then_close(sem, gen):
    with RawConn(sem.port, timeout=5) as c:
        c.send(build_request("GET", f"/cl?declared=100&sent=50&gen={gen}"))
        head = c.read_head()
        assert head.status == 200
        assert head.header_all("Content-Length") == ["100"]
        data, eof = c.read_until_eof(5)
    assert eof, "connection left open after a body shorter than its Content-Length"
    assert data == digits(50), f"expected the 50 bytes the app produced, got {len(data)}: {data[:80]!r}"


@pytest.mark.parametrize("gen", ["", "1"], ids=["list", "generator"])
def test_more_bytes_than_content_length_are_cut_and_framing_kept(sem, gen):
    with RawConn(sem.port, timeout=5) as c:
        c.send(build_request("GET", f"/cl?declared=10&sent=25&gen={gen}")
               + build_request("GET", "/")
               + build_request("GET", f"/cl?declared=3&sent=3&gen={gen}"))
        r1 = c.read_response()
        assert r1.status == 200
        assert r1.header_all("Content-Length") == ["10"]
        assert r1.body == digits(10)
        r2 = c.read_response()
        assert (r2.status, r2.body) == (200, b"ok"), "bytes past the Content-Length corrupted the next response"
        r3 = c.read_response()
        assert (r3.status, r3.body) == (200, b"012")
        assert not c.closed_by_peer(0.3)


# --- 14. HEAD, 204, 304 ---------------------------------------------------------------------------


def _headers_sans_date(r):
    return sorted((k.lower(), v) for k, v in r.headers if k.lower() != "date")


@pytest.mark.parametrize("path", ["/body?kind=one", "/cl?declared=10&sent=10", "/cl?declared=7&sent=7&gen=1",
                                  "/stream?total=100000&chunk=1000&cl=1"])
def test_head_same_headers_as_get_with_content_length_no_body(sem, path):
    with RawConn(sem.port, timeout=5) as c:
        g = c.request("GET", path)
        c.send(build_request("HEAD", path) + build_request("GET", "/"))
        h = c.read_response("HEAD")
        after = c.read_response()
    assert g.status == h.status == 200
    assert h.header("Content-Length") == str(len(g.body)), h.headers
    assert _headers_sans_date(h) == _headers_sans_date(g)
    assert h.header("Transfer-Encoding") is None
    assert (after.status, after.body) == (200, b"ok"), "HEAD response was followed by body bytes"


@pytest.mark.parametrize("path", ["/body?kind=gen", "/stream?total=300000&chunk=65536"])
def test_head_of_generator_has_no_transfer_encoding_and_no_body(sem, path):
    with RawConn(sem.port, timeout=5) as c:
        g = c.request("GET", path)
        assert g.framing == "chunked"
        c.send(build_request("HEAD", path) + build_request("GET", "/"))
        h = c.read_response("HEAD")
        assert h.status == 200
        assert h.header("Transfer-Encoding") is None, f"HEAD response carries {h.header('Transfer-Encoding')!r}"
        after = c.read_response()
        assert (after.status, after.body) == (200, b"ok"), "HEAD response was followed by body bytes"


@pytest.mark.parametrize("code", [204, 304])
@pytest.mark.parametrize("kind", ["list", "gen", "bytes"])
def test_204_304_no_body_no_length_no_chunked(sem, code, kind):
    with RawConn(sem.port, timeout=5) as c:
        c.send(build_request("GET", f"/nobody?code={code}&kind={kind}") + build_request("GET", "/")
               + build_request("GET", f"/nobody?code={code}&kind={kind}") + build_request("GET", "/"))
        for _ in range(2):
            r = c.read_response()
            assert r.status == code
            assert r.header("X-Code") == str(code)
            assert r.header("Content-Length") is None, f"{code} with Content-Length {r.header('Content-Length')}"
            assert r.header("Transfer-Encoding") is None
            after = c.read_response()
            assert (after.status, after.body) == (200, b"ok"), f"{code} response was followed by body bytes"
        assert not c.closed_by_peer(0.3)
