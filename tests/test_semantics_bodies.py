"""Request bodies: chunked uploads, Expect: 100-continue, truncated bodies, spooling,
--limit-request-body, wsgi.input as a file, multipart via Flask (apps/semantics_app.py)."""
import hashlib
import io
import json
import os
import socket
import time
import uuid

import pytest

from harness import RawConn, build_request, start_or_fail
from semantics_app import INPUT_SCENARIOS, run_scenario


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunked(parts, ext=None, trailers=b"") -> bytes:
    """Encode parts as a chunked body; ext(i) gives the extension text of chunk i."""
    out = bytearray()
    for i, p in enumerate(parts):
        out += b"%X" % len(p)
        if ext:
            out += ext(i)
        out += b"\r\n" + p + b"\r\n"
    out += b"0" + (ext(len(parts)) if ext else b"") + b"\r\n" + trailers + b"\r\n"
    return bytes(out)


def split_sizes(data: bytes, sizes):
    parts, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        parts.append(data[pos:pos + n])
        pos += n
        i += 1
    return parts


def post_report(c: RawConn, path: str, body: bytes, headers=()):
    c.send(build_request("POST", path, list(headers), body))
    r = c.read_response()
    assert r.status == 200, (r.status, r.body[:300])
    return r.json()


def calls(srv, tag) -> int:
    with RawConn(srv.port) as c:
        return c.request("GET", f"/calls?tag={tag}").json()["calls"]


# --- 1. chunked request bodies --------------------------------------------------------


def test_chunked_body_with_extensions_and_trailers(sem):
    parts = [b"hello ", b"chunked", b" ", b"w" * 5000, b"orld\n"]
    ext = lambda i: [b";name=value", b";flag", b' ; q="quoted;str"', b";a=1;b=2", b"", b";last"][i]  # noqa: E731
    body = chunked(parts, ext=ext, trailers=b"X-Trailer: one\r\nX-Checksum: abc\r\n")
    want = b"".join(parts)
    with RawConn(sem.port) as c:
        c.send(build_request("POST", "/sha256", [("Transfer-Encoding", "chunked")]) + body
               + build_request("GET", "/"))
        r = c.read_response()
        assert r.status == 200, r.body[:300]
        rep = r.json()
        assert (rep["length"], rep["sha256"]) == (len(want), sha(want))
        # the trailers were consumed as part of the body: the next request parses
        r2 = c.read_response()
        assert (r2.status, r2.body) == (200, b"ok")


def test_chunked_upload_8mib_sha256(sem):
    data = os.urandom(8 << 20)
    parts = split_sizes(data, [1, 4093, 65536, 100000, 7, 1 << 20])
    with RawConn(sem.port, timeout=60) as c:
        rep = post_report(c, "/sha256", chunked(parts), [("Transfer-Encoding", "chunked")])
    assert rep["length"] == len(data)
    assert rep["sha256"] == sha(data)


def test_content_length_upload_8mib_sha256(sem):
    data = os.urandom(8 << 20)
    with RawConn(sem.port, timeout=60) as c:
        rep = post_report(c, "/sha256", data)
        assert rep["length"] == len(data)
        assert rep["sha256"] == sha(data)
        assert c.request("GET", "/").body == b"ok"


# --- 2. Expect: 100-continue --------------------------------------------------------


def test_expect_100_continue_sent_before_body(sem):
    body = os.urandom(50000)
    with RawConn(sem.port) as c:
        c.send(build_request("POST", "/sha256", [("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        c.sock.settimeout(2)
        try:
            interim = c.read_head()
        except (socket.timeout, TimeoutError):
            pytest.fail("no '100 Continue' within 2 s of a head with Expect: 100-continue (body not sent yet)")
        c.sock.settimeout(10)
        assert (interim.version, interim.status) == ("HTTP/1.1", 100), interim
        assert interim.header("Content-Length") is None
        c.send(body)
        r = c.read_response()
        assert r.status == 200
        assert r.interim == [], "more than one interim response"
        rep = r.json()
        assert (rep["length"], rep["sha256"]) == (len(body), sha(body))
        assert c.request("GET", "/").body == b"ok"


def test_expect_100_continue_ignored_on_http10(sem):
    body = b"http/1.0 body " * 100
    with RawConn(sem.port) as c:
        c.send(build_request("POST", "/sha256", [("Expect", "100-continue"), ("Content-Length", str(len(body)))],
                             version="HTTP/1.0"))
        early, eof = c.read_until_eof(0.7)
        assert early == b"" and not eof, f"server answered an HTTP/1.0 head before its body: {early[:200]!r}"
        c.send(body)
        r = c.read_response()
        assert r.status == 200
        assert r.interim == [], "100 Continue sent to an HTTP/1.0 client"
        rep = r.json()
        assert (rep["length"], rep["sha256"]) == (len(body), sha(body))


def test_expect_100_continue_http10_body_sent_at_once(sem):
    body = b"x" * 3000
    with RawConn(sem.port) as c:
        r = c.request("POST", "/sha256", [("Expect", "100-continue")], body, version="HTTP/1.0")
        assert r.status == 200
        assert r.interim == []
        assert r.json()["sha256"] == sha(body)


@pytest.mark.parametrize("value", ["something", "200-ok"])
def test_unknown_expectation_gets_417(sem, value):
    tag = uuid.uuid4().hex
    with RawConn(sem.port) as c:
        r = c.request("POST", f"/count?tag={tag}", [("Expect", value)], b"hello")
        assert r.status == 417, (r.status, r.body[:200])
    assert calls(sem, tag) == 0


# --- 3. truncated body ------------------------------------------------------------------


def test_truncated_body_then_half_close_never_calls_app(sem):
    tag = uuid.uuid4().hex
    with RawConn(sem.port) as c:
        c.send(build_request("POST", f"/count?tag={tag}", [("Content-Length", "1000")]) + b"y" * 300)
        c.sock.shutdown(socket.SHUT_WR)
        data, eof = c.read_until_eof(5)
        assert eof, "connection left open after the client half-closed with 700 body bytes missing"
        if data:
            m = data.split(b"\r\n", 1)[0]
            assert not m.startswith(b"HTTP/1.1 2") and not m.startswith(b"HTTP/1.0 2"), (
                f"2xx answer to a truncated body: {data[:300]!r}"
            )
    time.sleep(0.2)
    assert calls(sem, tag) == 0, "the app was called with a truncated body"


# --- 4. spooling and --limit-request-body ------------------------------------------------


@pytest.fixture
def spool(server_factory, tmp_path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    srv = server_factory("semantics_app:app", "--workers", "1", "--spool-threshold", "1024",
                         "--spool-dir", str(spool_dir))
    return srv, spool_dir


def test_spooled_body_exact_in_unlinked_file_in_spool_dir(spool):
    srv, spool_dir = spool
    data = os.urandom(64 * 1024)
    with RawConn(srv.port) as c:
        rep = post_report(c, "/sha256", data)
        assert (rep["length"], rep["sha256"]) == (len(data), sha(data))
        assert isinstance(rep["fileno"], int), f"wsgi.input of a spooled body has no fileno(): {rep}"
        assert rep["nlink"] == 0, f"the spool file is not unlinked: {rep}"
        assert rep["fd_path"].startswith(os.path.realpath(spool_dir) + "/"), f"spool file not in --spool-dir: {rep}"
        # a small body (under the threshold) still arrives exact
        small = b"s" * 500
        rep2 = post_report(c, "/sha256", small)
        assert rep2["sha256"] == sha(small)
        # and a chunked one over the threshold
        rep3 = post_report(c, "/sha256", chunked(split_sizes(data, [3000])), [("Transfer-Encoding", "chunked")])
        assert rep3["sha256"] == sha(data)
        assert isinstance(rep3["fileno"], int)
    assert os.listdir(spool_dir) == [], "files left in the spool dir after the responses"


def test_spool_dir_empty_after_client_disconnects_mid_upload(spool):
    srv, spool_dir = spool
    c = RawConn(srv.port)
    c.send(build_request("POST", "/sha256", [("Content-Length", str(1 << 20))]) + os.urandom(200 * 1024))
    time.sleep(0.3)
    assert os.listdir(spool_dir) == [], "the spool file of an upload in progress is visible (not unlinked)"
    c.close()
    deadline = time.monotonic() + 5
    while os.listdir(spool_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(spool_dir) == []
    with RawConn(srv.port) as c2:
        data = os.urandom(10000)
        assert post_report(c2, "/sha256", data)["sha256"] == sha(data)


def test_default_spool_threshold_is_1mib(sem):
    data = os.urandom((1 << 20) + 1)
    with RawConn(sem.port, timeout=30) as c:
        rep = post_report(c, "/sha256", data)
    assert rep["sha256"] == sha(data)
    assert isinstance(rep["fileno"], int) and rep["nlink"] == 0, f"a body over 1 MiB was not spooled: {rep}"


def test_default_spool_dir_is_the_system_temp_dir(server_factory, tmp_path):
    tmpdir = tmp_path / "systmp"
    tmpdir.mkdir()
    srv = server_factory("semantics_app:app", "--workers", "1", "--spool-threshold", "1024",
                         env={"TMPDIR": str(tmpdir)})
    data = os.urandom(8192)
    with RawConn(srv.port) as c:
        rep = post_report(c, "/sha256", data)
    assert rep["sha256"] == sha(data)
    assert isinstance(rep["fileno"], int), rep
    assert (rep["fd_path"] or "").startswith(os.path.realpath(tmpdir) + "/"), f"not spooled in $TMPDIR: {rep}"
    assert os.listdir(tmpdir) == []


def test_limit_request_body_413_before_body(server_factory):
    srv = server_factory("semantics_app:app", "--workers", "1", "--limit-request-body", "1000")
    tag = uuid.uuid4().hex
    with RawConn(srv.port, timeout=5) as c:
        c.send(build_request("POST", f"/count?tag={tag}", [("Content-Length", "5000")]))
        r = c.read_response()
        assert r.status == 413
        assert c.closed_by_peer(5), "connection left open after 413"
    assert calls(srv, tag) == 0
    with RawConn(srv.port) as c:
        body = b"b" * 1000
        assert post_report(c, "/sha256", body)["sha256"] == sha(body), "a body of exactly the limit is refused"


def test_default_limit_request_body_is_1gib(sem):
    with RawConn(sem.port, timeout=5) as c:
        c.send(build_request("POST", "/sha256", [("Content-Length", str((1 << 30) + 1))]))
        r = c.read_response()
        assert r.status == 413
        assert c.closed_by_peer(5)


def test_limit_request_body_zero_is_unlimited(server_factory):
    srv = server_factory("semantics_app:app", "--workers", "1", "--limit-request-body", "0")
    with RawConn(srv.port) as c:
        c.send(build_request("POST", "/sha256", [("Content-Length", str(4 << 30))]) + b"z" * 1000)
        early, _ = c.read_until_eof(0.5)
        assert not early.startswith(b"HTTP/1.1 413"), "--limit-request-body 0 must mean unlimited"
    with RawConn(srv.port) as c:
        data = os.urandom(2 << 20)
        assert post_report(c, "/sha256", data)["sha256"] == sha(data)


# --- 5. wsgi.input behaves like io.BufferedReader / BytesIO ---------------------------------

INPUT_BODY = (
    b"first line\nsecond\n\n\nthird line, longer than the others\r\nno carriage\rreturn\n"
    + b"L" * 10000 + b"\n" + b"short\n" + bytes(range(256)) + b"\n" + b"tail without newline"
)


def expected_ops(name, body=INPUT_BODY):
    got = run_scenario(name, io.BytesIO(body))
    assert got == run_scenario(name, io.BufferedReader(io.BytesIO(body))), "BytesIO and BufferedReader disagree"
    return got


@pytest.fixture(scope="module")
def spool16():
    srv = start_or_fail("semantics_app:app", "--workers", "1", "--spool-threshold", "16")
    yield srv
    srv.stop()


@pytest.fixture(params=["memory", "spooled"])
def input_server(request):
    return request.getfixturevalue("sem" if request.param == "memory" else "spool16")


@pytest.mark.parametrize("name", sorted(INPUT_SCENARIOS))
def test_wsgi_input_file_semantics(input_server, name):
    with RawConn(input_server.port) as c:
        r = c.request("POST", f"/input-ops?ops={name}", body=INPUT_BODY)
    assert r.status == 200, r.body[:500]
    assert r.json()["results"] == expected_ops(name)


@pytest.mark.parametrize("name", ["mixed", "readlines_hint", "iterate"])
def test_wsgi_input_file_semantics_chunked(input_server, name):
    body = chunked(split_sizes(INPUT_BODY, [5, 1000, 3]))
    with RawConn(input_server.port) as c:
        r = c.request("POST", f"/input-ops?ops={name}", [("Transfer-Encoding", "chunked")], body)
    assert r.status == 200, r.body[:500]
    assert r.json()["results"] == expected_ops(name)


def test_wsgi_input_empty_body(input_server):
    with RawConn(input_server.port) as c:
        r = c.request("POST", "/input-ops?ops=mixed", [("Content-Length", "0")])
    assert r.status == 200
    assert r.json()["results"] == expected_ops("mixed", b"")


# --- 6. multipart/form-data through Flask ---------------------------------------------------


def test_flask_multipart_upload(server_factory):
    srv = server_factory("semantics_flask:app", "--workers", "1")
    data = os.urandom(1536 * 1024)
    text = "h\u00e9llo w\u00f6rld \u2603"
    boundary = "----ringwsgi" + uuid.uuid4().hex
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="text"\r\n\r\n'
    ).encode() + text.encode("utf-8") + (
        f"\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="f"; filename="blob.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    with RawConn(srv.port, timeout=30) as c:
        r = c.request("POST", "/upload", [("Content-Type", f"multipart/form-data; boundary={boundary}")], body)
    assert r.status == 200, r.body[:500]
    got = json.loads(r.body)
    assert got["sha256"] == sha(data)
    assert got["length"] == len(data)
    assert got["filename"] == "blob.bin"
    assert got["text"] == text
    assert (got["fields"], got["files"]) == (["text"], ["f"])
