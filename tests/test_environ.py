"""The WSGI environ (PEP 3333) as the application sees it."""
import os

import pytest

from conftest import LEAK_VAR
from harness import RawConn, build_request, get


def environ_of(port, path="/environ", method="GET", headers=None, body=b"", version="HTTP/1.1", host="127.0.0.1"):
    with RawConn(port) as c:
        c.send(build_request(method, path, headers, body, version, host=host))
        r = c.read_response(method)
        assert r.status == 200, r.body
        env = r.json()
        env["__client_port__"] = c.local_port
        return env


def test_basic_cgi_keys(basic):
    env = environ_of(basic.port, "/environ/x?a=1&b=%20", headers=[("User-Agent", "ringwsgi-tests/1")])
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ/x"
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["RAW_URI"] == "/environ/x?a=1&b=%20"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_USER_AGENT"] == "ringwsgi-tests/1"
    assert env["HTTP_HOST"] == "127.0.0.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(env["__client_port__"])
    # no body: CONTENT_TYPE absent or empty, CONTENT_LENGTH absent, empty or "0"
    assert env.get("CONTENT_TYPE", "") == ""
    assert env.get("CONTENT_LENGTH", "") in ("", "0")
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_query_string_absent_is_empty(basic):
    env = environ_of(basic.port, "/environ")
    assert env["QUERY_STRING"] == ""
    assert env["PATH_INFO"] == "/environ"
    assert env["RAW_URI"] == "/environ"


def test_path_info_percent_decoded_latin1(basic):
    env = environ_of(basic.port, "/environ/a%20b/%C3%A9?q=%C3%A9")
    # PEP 3333: the decoded bytes, as a latin-1 "native string"
    assert env["PATH_INFO"] == "/environ/a b/\u00c3\u00a9"
    assert env["QUERY_STRING"] == "q=%C3%A9"
    assert env["RAW_URI"] == "/environ/a%20b/%C3%A9?q=%C3%A9"


def test_post_content_type_and_length(basic):
    body = b'{"k": 1}'
    env = environ_of(
        basic.port,
        "/environ",
        method="POST",
        headers=[("Content-Type", "application/json; charset=utf-8")],
        body=body,
    )
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "application/json; charset=utf-8"
    assert env["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods(basic, method):
    env = environ_of(basic.port, "/environ", method=method)
    assert env["REQUEST_METHOD"] == method


def test_server_name_port_from_host(basic):
    env = environ_of(basic.port, headers=[("Host", "example.com:8080")])
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "8080")
    assert env["HTTP_HOST"] == "example.com:8080"
    env = environ_of(basic.port, headers=[("Host", "example.org")])
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.org", "80")


def test_server_name_port_http10_without_host(basic):
    env = environ_of(basic.port, version="HTTP/1.0", host=None)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert "HTTP_HOST" not in env
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(basic.port))


def test_http_headers(basic):
    env = environ_of(
        basic.port,
        headers=[
            ("X-Custom-Header", "v1"),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("Accept", "text/plain"),
            ("x-lower-case", "yes"),
        ],
    )
    assert env["HTTP_X_CUSTOM_HEADER"] == "v1"
    assert env["HTTP_X_MULTI"] == "a, b"
    assert env["HTTP_ACCEPT"] == "text/plain"
    assert env["HTTP_X_LOWER_CASE"] == "yes"


@pytest.mark.parametrize("order", ["underscore-first", "underscore-last"])
def test_underscore_header_dropped(basic, order):
    hdrs = [("X_Forwarded_For", "evil"), ("X-Forwarded-For", "good")]
    if order == "underscore-last":
        hdrs.reverse()
    env = environ_of(basic.port, headers=hdrs)
    assert env["HTTP_X_FORWARDED_FOR"] == "good"
    assert "evil" not in str({k: v for k, v in env.items() if k.startswith("HTTP_")})


def test_underscore_header_alone_is_not_mapped(basic):
    env = environ_of(basic.port, headers=[("X_Real_Ip", "1.2.3.4")])
    assert "HTTP_X_REAL_IP" not in env


def test_wsgi_keys(basic):
    env = environ_of(basic.port)
    assert env["wsgi.version"] == [1, 0] and env["__version_is_tuple__"] is True
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is True  # --workers 2
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert "wsgi.input" in env["__types__"]
    assert "wsgi.errors" in env["__types__"]


def test_wsgi_multiprocess_false_with_one_worker(basic_w1):
    env = environ_of(basic_w1.port)
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.multithread"] is False


def test_server_environment_does_not_leak(basic):
    assert os.environ.get(LEAK_VAR) is None  # only the server process has it
    env = environ_of(basic.port)
    assert LEAK_VAR not in env["__keys__"]
    assert "PATH" not in env["__keys__"] and "HOME" not in env["__keys__"]


def test_script_name_from_server_environment(server_factory):
    srv = server_factory("wsgi_basic:app", "--workers", "1", env={"SCRIPT_NAME": "/prefix"})
    env = environ_of(srv.port, "/prefix/environ/sub?x=1")
    assert env["SCRIPT_NAME"] == "/prefix"
    assert env["PATH_INFO"] == "/environ/sub"
    assert env["QUERY_STRING"] == "x=1"
    assert env["RAW_URI"] == "/prefix/environ/sub?x=1"


def test_validator_app_passes(server_factory):
    """The same app wrapped in wsgiref.validate: every request passes its checks."""
    srv = server_factory("wsgi_basic:validated", "--workers", "1")
    with RawConn(srv.port) as c:
        r = c.request("GET", "/")
        assert (r.status, r.body) == (200, b"Hello, World!")
        r = c.request("POST", "/echo", headers=[("Content-Type", "text/plain")], body=b"validated body")
        assert (r.status, r.body) == (200, b"validated body")
        r = c.request("GET", "/gen")
        assert r.status == 200
        r = c.request("GET", "/environ?v=1", headers=[("X-Multi", "a"), ("X-Multi", "b")])
        assert r.status == 200 and r.json()["QUERY_STRING"] == "v=1"
        r = c.request("HEAD", "/headers")
        assert r.status == 200
        r = c.request("GET", "/status/404")
        assert r.status == 404
    with RawConn(srv.port) as c:
        r = c.request("GET", "/environ", version="HTTP/1.0", headers=[("Connection", "close")])
        assert r.status == 200
    # validator failures surface as exceptions / warnings on stderr (e.g. an
    # iterator garbage collected without close()); give them a moment to appear
    get(srv.port, "/")
    srv.wait_for_log("AssertionError", 1.0)
    logs = srv.logs()
    for bad in ("AssertionError", "WSGIWarning", "Traceback"):
        assert bad not in logs, f"wsgiref.validate complained:\n{logs}"
