"""start_response and the response iterable (PEP 3333): exc_info, repeated calls, write(),
header/status validation, errors after the first body byte, body types."""
import uuid

import pytest

from harness import RawConn, build_request, decode_chunked_prefix


def get(srv, path, method="GET"):
    with RawConn(srv.port) as c:
        return c.request(method, path)


def read_truncated_chunked(c: RawConn):
    """Read a chunked response that must be cut short: returns (head, body bytes received).

    Asserts the server closed the connection and never sent the last chunk (0 CRLF CRLF)."""
    head = c.read_head()
    assert head.status == 200, head
    assert head.has_token("Transfer-Encoding", "chunked"), head.headers
    raw, eof = c.read_until_eof(5)
    assert eof, "connection still open after the app failed mid-response"
    data, complete = decode_chunked_prefix(raw)
    assert not complete, "a failed response was terminated like a complete one (0\\r\\n\\r\\n sent)"
    return head, data


def assert_500(r, *absent_headers):
    assert r.status == 500, (r.status, r.headers, r.body[:200])
    for name in absent_headers:
        assert r.header(name) is None, f"{name} of the failed start_response leaked into the 500"


# --- 7. exc_info ---------------------------------------------------------------------------


def test_exc_info_before_first_byte_replaces_status_and_headers(sem):
    r = get(sem, "/exc-before")
    assert r.status == 500
    assert r.header("X-Second") == "2"
    assert r.header("X-First") is None, "headers of the first start_response call were sent"
    assert r.body == b"error handled"


def test_exc_info_after_first_byte_reraises_and_truncates(sem):
    tag = uuid.uuid4().hex
    with RawConn(sem.port, timeout=5) as c:
        c.send(build_request("GET", f"/exc-after?tag={tag}"))
        _, data = read_truncated_chunked(c)
    assert data.startswith(b"first chunk;") or data == b""
    assert b"NOT-RERAISED" not in data
    state = get(sem, f"/exc-state?tag={tag}").json()["state"]
    assert state == "reraised", f"start_response(..., exc_info) after the headers were sent: {state}"


# --- 8. start_response misuse -----------------------------------------------------------------


def test_start_response_twice_without_exc_info_is_500(sem):
    r = get(sem, "/start-twice")
    assert_500(r, "X-First", "X-Second")
    assert b"started twice" not in r.body


def test_no_start_response_is_500(sem):
    r = get(sem, "/no-start")
    assert_500(r)
    assert r.body != b"x"


# --- 9. write() ---------------------------------------------------------------------------------


def test_write_callable_data_precedes_iterable(sem):
    with RawConn(sem.port, timeout=5) as c:
        r = c.request("GET", "/write")
        assert (r.status, r.body) == (200, b"abc")
        assert c.request("GET", "/").body == b"ok"


def test_write_buffering_is_bounded(sem):
    """write() data is held until the app returns (the app runs on the I/O thread): over 16 MiB
    the write() call raises, the client gets a 500, and the worker goes on."""
    with RawConn(sem.port, timeout=10) as c:
        r = c.request("GET", "/write-too-much")
        assert r.status == 500
    assert sem.wait_for_log("over 16 MiB", timeout=5), sem.logs()[-2000:]
    with RawConn(sem.port, timeout=5) as c:
        assert c.request("GET", "/").body == b"ok"


# --- 10. header and status validation ---------------------------------------------------------------


def test_latin1_header_value_sent_as_latin1_byte(sem):
    with RawConn(sem.port, timeout=5) as c:
        c.send(build_request("GET", "/hdr?case=latin1_ok"))
        r = c.read_response()
    assert r.status == 200
    # the harness decodes header bytes as latin-1: "café" means the single byte 0xE9
    assert r.header("X-Latin") == "caf\u00e9", r.headers


@pytest.mark.parametrize("case", [
    "non_latin1", "non_latin1_name",
    "cr_in_value", "lf_in_value", "crlf_injection", "cr_in_name", "lf_in_name", "space_in_name",
    "status_no_reason", "status_two_digits", "status_four_digits", "status_1xx", "status_crlf",
    "hop_connection", "hop_transfer_encoding", "hop_keep_alive", "hop_upgrade",
    "headers_tuple", "header_3_tuple", "header_1_tuple",
])
def test_invalid_status_or_headers_give_500(sem, case):
    with RawConn(sem.port, timeout=5) as c:
        r = c.request("GET", f"/hdr?case={case}")
        assert_500(r, "X-Injected", "X-Bad", "X-Euro", "Upgrade", "Keep-Alive", "X-A")
        assert b"header case" not in r.body
        assert not r.interim, "an app's 1xx status was sent as an interim response"


def test_app_date_and_server_headers_replace_the_servers(sem):
    r = get(sem, "/hdr?case=date_server")
    assert r.status == 200
    assert r.header_all("Date") == ["Tue, 01 Jan 2030 00:00:00 GMT"]
    assert r.header_all("Server") == ["semantics-app/1.0"]


# --- 11. errors after the first body byte ------------------------------------------------------------


def test_generator_error_after_first_byte_truncates_chunked_response(sem):
    with RawConn(sem.port, timeout=5) as c:
        c.send(build_request("GET", "/raise-after?n=100000"))
        _, data = read_truncated_chunked(c)
    assert set(data) <= {ord("x")} and len(data) <= 100000


def test_generator_error_with_content_length_sends_fewer_bytes_then_eof(sem):
    with RawConn(sem.port, timeout=5) as c:
        c.send(build_request("GET", "/raise-after?n=100000&cl=200000"))
        head = c.read_head()
        assert head.status == 200
        assert head.header("Content-Length") == "200000"
        data, eof = c.read_until_eof(5)
    assert eof, "connection left open after the app failed mid-body"
    assert len(data) < 200000
    assert set(data) <= {ord("x")}


# --- 12. body types --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["list", "tuple", "gen"])
def test_body_iterables(sem, kind):
    with RawConn(sem.port, timeout=5) as c:
        r = c.request("GET", f"/body?kind={kind}")
        assert (r.status, r.body) == (200, b"abcd")
        assert c.request("GET", "/").body == b"ok"


def test_body_empty_list(sem):
    with RawConn(sem.port, timeout=5) as c:
        c.send(build_request("GET", "/body?kind=empty_list") + build_request("GET", "/"))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"")
        if r.framing == "length":
            assert r.header("Content-Length") == "0"
        assert c.read_response().body == b"ok"


def test_body_single_item_list_gets_content_length(sem):
    r = get(sem, "/body?kind=one")
    assert (r.status, r.body) == (200, b"hello")
    assert r.header_all("Content-Length") == ["5"]
    assert r.header("Transfer-Encoding") is None


@pytest.mark.parametrize("kind", ["str_first_list", "str_first_gen", "bare_bytes", "bare_str"])
def test_bad_body_before_first_byte_is_500(sem, kind):
    r = get(sem, f"/body?kind={kind}")
    assert_500(r)
    assert b"hello" not in r.body and b"text" not in r.body


def test_str_item_after_bytes_closes_connection(sem):
    with RawConn(sem.port, timeout=5) as c:
        c.send(build_request("GET", "/body?kind=str_later_gen"))
        _, data = read_truncated_chunked(c)
    assert b"text" not in data and b"y" not in data
