"""The iterable's close(), large streamed responses, slow readers, wsgi.file_wrapper."""
import hashlib
import os
import socket
import time
import uuid
from urllib.parse import quote

import pytest

from harness import RawConn, build_request, decode_chunked_prefix
from semantics_app import blob


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def get_json(srv, path, timeout=5):
    with RawConn(srv.port, timeout=timeout) as c:
        r = c.request("GET", path)
    assert r.status == 200, (path, r.status, r.body[:200])
    return r.json()


def wait_closes(srv, tag, timeout=5.0) -> int:
    """Poll /closes until close() was called at least once (or timeout); then make sure
    no second call follows shortly after. Returns the final count."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n = get_json(srv, f"/closes?tag={tag}")["closes"]
        if n:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    return get_json(srv, f"/closes?tag={tag}")["closes"]


# --- 15. close() exactly once ----------------------------------------------------------------


def test_close_called_once_after_success(sem):
    tag = uuid.uuid4().hex
    with RawConn(sem.port, timeout=5) as c:
        r = c.request("GET", f"/close?tag={tag}&mode=ok")
        assert (r.status, r.body) == (200, b"one;two;three")
    assert wait_closes(sem, tag) == 1


def test_close_called_once_after_error_mid_iteration(sem):
    tag = uuid.uuid4().hex
    with RawConn(sem.port, timeout=5) as c:
        c.send(build_request("GET", f"/close?tag={tag}&mode=raise"))
        head = c.read_head()
        assert head.status == 200
        raw, eof = c.read_until_eof(5)
        assert eof
        assert not decode_chunked_prefix(raw)[1], "a failed response was terminated like a complete one"
    assert wait_closes(sem, tag) == 1


def test_close_called_once_after_error_before_first_byte(sem):
    tag = uuid.uuid4().hex
    with RawConn(sem.port, timeout=5) as c:
        r = c.request("GET", f"/close?tag={tag}&mode=raise-first")
        assert r.status == 500
    assert wait_closes(sem, tag) == 1


def test_close_called_once_after_client_disconnects_mid_response(sem):
    tag = uuid.uuid4().hex
    c = RawConn(sem.port, timeout=5)
    c.send(build_request("GET", f"/close?tag={tag}&mode=big"))
    head = c.read_head()
    assert head.status == 200
    got = 0
    while got < 200000:
        got += len(c.buf)
        c.buf.clear()
        assert c._fill()
    c.close()
    assert wait_closes(sem, tag) == 1
    assert get_json(sem, "/mt")["multithread"] in (True, False)  # still serving


# --- 16. large streamed responses, slow readers ------------------------------------------------

TEN_MIB = 10 << 20


@pytest.mark.parametrize("cl", ["", "1"], ids=["chunked", "content-length"])
def test_10mib_response_byte_exact(sem, cl):
    with RawConn(sem.port, timeout=30) as c:
        r = c.request("GET", f"/stream?total={TEN_MIB}&chunk=65536&cl={cl}")
        assert r.status == 200
        assert r.framing == ("length" if cl else "chunked")
        assert len(r.body) == TEN_MIB
        assert sha(r.body) == sha(blob(TEN_MIB))
        assert c.request("GET", "/").body == b"ok"


def test_stalled_reader_does_not_block_the_worker(sem):
    tag = uuid.uuid4().hex
    total, chunk = 64 << 20, 65536
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # before connect: no autotuning
    try:
        stalled.settimeout(5)
        stalled.connect(("127.0.0.1", sem.port))
        stalled.sendall(build_request("GET", f"/stream?total={total}&chunk={chunk}&constant=1&tag={tag}"))
        time.sleep(1.0)
        t0 = time.monotonic()
        with RawConn(sem.port, timeout=5) as c:
            r = c.request("GET", "/")
        elapsed = time.monotonic() - t0
        assert (r.status, r.body) == (200, b"ok")
        assert elapsed < 1.0, f"another client waited {elapsed:.2f}s behind a stalled reader"
        p1 = get_json(sem, f"/produced?tag={tag}")
        time.sleep(0.5)
        p2 = get_json(sem, f"/produced?tag={tag}")
        for p in (p1, p2):
            assert not p["done"], "the whole 64 MiB generator was consumed while the client read nothing"
            assert 0 < p["chunks"] * chunk < total // 4, f"{p['chunks']} chunks produced for a stalled client"
    finally:
        stalled.close()


# --- 17. wsgi.file_wrapper ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def five_mib_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "five.bin"
    data = os.urandom(5 << 20)
    path.write_bytes(data)
    return str(path), data


def wait_file_closed(srv, tag, timeout=5.0):
    deadline = time.monotonic() + timeout
    st = {}
    while time.monotonic() < deadline:
        st = get_json(srv, f"/file-closed?tag={tag}")
        if st["closed"]:
            return st
        time.sleep(0.05)
    return st


def test_file_wrapper_in_environ(sem):
    mt = get_json(sem, "/mt")
    assert mt["has_file_wrapper"], "wsgi.file_wrapper missing from environ"
    assert mt["file_wrapper_callable"]


@pytest.mark.parametrize("extra", ["", "&block=8192"], ids=["default-block", "block-8192"])
def test_file_wrapper_real_file(sem, five_mib_file, extra):
    path, data = five_mib_file
    tag = uuid.uuid4().hex
    with RawConn(sem.port, timeout=30) as c:
        r = c.request("GET", f"/file?path={quote(path)}&cl=1&tag={tag}{extra}")
        assert r.status == 200, r.body[:300]
        assert r.header_all("Content-Length") == [str(len(data))]
        assert r.framing == "length"
        assert len(r.body) == len(data) and sha(r.body) == sha(data)
        assert c.request("GET", "/").body == b"ok"
    st = wait_file_closed(sem, tag)
    assert st.get("known") and st.get("closed"), f"the wrapped file was not closed: {st}"


def test_file_wrapper_bytesio_without_fileno(sem, five_mib_file):
    path, data = five_mib_file
    tag = uuid.uuid4().hex
    with RawConn(sem.port, timeout=30) as c:
        r = c.request("GET", f"/file?path={quote(path)}&bytesio=1&tag={tag}&block=65536")
        assert r.status == 200, r.body[:300]
        assert len(r.body) == len(data) and sha(r.body) == sha(data)
        assert c.request("GET", "/").body == b"ok"
    st = wait_file_closed(sem, tag)
    assert st.get("known") and st.get("closed"), f"the wrapped BytesIO was not closed: {st}"
