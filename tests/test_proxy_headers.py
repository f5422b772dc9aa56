"""X-Forwarded-For and the scheme headers: believed from --forwarded-allow-ips peers only."""
import pytest

from conftest import _serving
from harness import RawConn, build_request, run_cli


def environ_of(port, headers, path="/environ"):
    with RawConn(port) as c:
        c.send(build_request("GET", path, headers))
        r = c.read_response()
        assert r.status == 200, r.body
        env = r.json()
        env["__client_port__"] = c.local_port
        return env


@pytest.fixture(scope="module")
def trusting():
    """The default --forwarded-allow-ips (127.0.0.1,::1): the tests' own address is trusted."""
    with _serving("wsgi_basic:app", "--workers", "1") as srv:
        yield srv


@pytest.fixture(scope="module")
def untrusting():
    """Trusts only 10.9.9.9: the tests, from 127.0.0.1, are an untrusted peer."""
    with _serving("wsgi_basic:app", "--workers", "1", "--forwarded-allow-ips", "10.9.9.9") as srv:
        yield srv


def test_trusted_peer_x_forwarded_for_sets_remote_addr(trusting):
    env = environ_of(trusting.port, [("X-Forwarded-For", "203.0.113.7")])
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert "REMOTE_PORT" not in env, "a forwarded address has no known port"
    # The header itself stays visible, as gunicorn leaves it.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "http"


def test_rightmost_untrusted_hop_is_the_client(trusting):
    # The client forged the first entry; the proxies (one of them 127.0.0.1, trusted) appended the rest.
    env = environ_of(trusting.port, [("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 127.0.0.1")])
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_several_x_forwarded_for_headers_are_one_list(trusting):
    env = environ_of(
        trusting.port,
        [("X-Forwarded-For", "6.6.6.6"), ("Accept", "*/*"), ("X-Forwarded-For", "198.51.100.2, 127.0.0.1")],
    )
    assert env["REMOTE_ADDR"] == "198.51.100.2"
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 198.51.100.2, 127.0.0.1"


def test_malformed_rightmost_entry_leaves_the_peer(trusting):
    # The walk stops at the first malformed entry from the right: nothing walked, so the peer.
    env = environ_of(trusting.port, [("X-Forwarded-For", "203.0.113.7, not-an-ip")])
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(env["__client_port__"])


def test_malformed_entry_behind_a_trusted_hop_stops_at_that_hop(trusting):
    env = environ_of(trusting.port, [("X-Forwarded-For", "203.0.113.7, unknown, 127.0.0.2, ::1")])
    # ::1 is trusted and walked; 127.0.0.2 is not trusted: it is the client.
    assert env["REMOTE_ADDR"] == "127.0.0.2"
    env = environ_of(trusting.port, [("X-Forwarded-For", "203.0.113.7, unknown, ::1")])
    # The last address walked before the malformed entry (a trusted proxy).
    assert env["REMOTE_ADDR"] == "::1"


@pytest.mark.parametrize(
    "header, value, scheme",
    [
        ("X-Forwarded-Proto", "https", "https"),
        ("X-Forwarded-Proto", "http", "http"),
        ("X-Forwarded-Proto", "gopher", "http"),
        ("X-Forwarded-Protocol", "ssl", "https"),
        ("X-Forwarded-Ssl", "on", "https"),
        ("X-Forwarded-Ssl", "off", "http"),
    ],
)
def test_trusted_peer_scheme_headers(trusting, header, value, scheme):
    env = environ_of(trusting.port, [(header, value)])
    assert env["wsgi.url_scheme"] == scheme
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_https_default_port(trusting):
    # Host without a port: SERVER_PORT is the scheme's default, as gunicorn gives it.
    env = environ_of(trusting.port, [("X-Forwarded-Proto", "https")])
    assert (env["HTTP_HOST"], env["SERVER_PORT"]) == ("127.0.0.1", "443")
    assert environ_of(trusting.port, [])["SERVER_PORT"] == "80"


def test_contradictory_scheme_headers_get_400_and_the_worker_goes_on(trusting):
    with RawConn(trusting.port) as c:
        c.send(build_request("GET", "/environ", [("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")]))
        r = c.read_response()
        assert r.status == 400
        assert c.closed_by_peer()
    assert trusting.wait_for_log("contradictory scheme headers")
    assert environ_of(trusting.port, [("X-Forwarded-Proto", "https")])["wsgi.url_scheme"] == "https"


def test_untrusted_peer_cannot_spoof_remote_addr_or_scheme(untrusting):
    env = environ_of(
        untrusting.port,
        [
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Protocol", "ssl"),
            ("X-Forwarded-Ssl", "on"),
        ],
    )
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(env["__client_port__"])
    assert env["wsgi.url_scheme"] == "http"
    # The headers reach the app unchanged, as gunicorn passes them.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"


def test_untrusted_peer_contradictory_scheme_headers_are_not_looked_at(untrusting):
    env = environ_of(untrusting.port, [("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "http")])
    assert env["wsgi.url_scheme"] == "http"


def test_networks_and_star(server_factory):
    srv = server_factory("wsgi_basic:app", "--workers", "1", "--forwarded-allow-ips", "10.0.0.0/8, 127.0.0.0/8")
    env = environ_of(srv.port, [("X-Forwarded-For", "203.0.113.9, 10.1.2.3"), ("X-Forwarded-Proto", "https")])
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["wsgi.url_scheme"] == "https"
    srv = server_factory("wsgi_basic:app", "--workers", "1", "--forwarded-allow-ips", "*")
    # Every hop is trusted: the leftmost.
    env = environ_of(srv.port, [("X-Forwarded-For", "203.0.113.9, 10.1.2.3")])
    assert env["REMOTE_ADDR"] == "203.0.113.9"


def test_thread_pool_gets_the_forwarded_client(server_factory):
    srv = server_factory("wsgi_basic:app", "--workers", "1", "--threads", "2")
    env = environ_of(srv.port, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Ssl", "on")])
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize("value", ["10.0.0.1/8", "localhost", "10.0.0.0/40"])
def test_bad_allow_list_is_refused_at_start(value):
    code, _out, err, _secs = run_cli("--forwarded-allow-ips", value, "wsgi_basic:app")
    assert code != 0
    assert value in err and "--forwarded-allow-ips" in err
