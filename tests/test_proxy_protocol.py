"""--proxy-protocol: every connection starts with a PROXY header (v1 text or v2 binary) from a
--proxy-allow-from peer; its source address is the client."""
import ipaddress
import socket
import struct
import time

import pytest

from conftest import _serving
from harness import RawConn, build_request, run_cli

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src="203.0.113.7", dst="127.0.0.1", sport=40001, dport=8000, proto="TCP4"):
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src="203.0.113.7", dst="127.0.0.1", sport=40002, dport=8000, command=1, tlvs=b""):
    """A v2 header for TCP over IPv4 or IPv6 (by the source's family); command 0 is LOCAL."""
    src_ip, dst_ip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x11 if src_ip.version == 4 else 0x21
    body = src_ip.packed + dst_ip.packed + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def get_environ(c, path="/environ", headers=None):
    c.send(build_request("GET", path, headers))
    r = c.read_response()
    assert r.status == 200, r.body
    return r.json()


def refused(srv, data: bytes, needle: str) -> bool:
    """Sends data on a new connection; True if it is closed without a byte in answer."""
    with RawConn(srv.port) as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out, eof = c.read_until_eof(timeout=10)
    assert out == b"", out[:200]
    assert eof
    return srv.wait_for_log(needle)


@pytest.fixture(scope="module")
def proxied():
    """--proxy-protocol (auto: v1 or v2) with the default --proxy-allow-from (this host)."""
    with _serving("wsgi_basic:app", "--workers", "1", "--proxy-protocol", wait_http=False) as srv:
        yield srv


def test_v1_sets_remote_addr_and_port(proxied):
    with RawConn(proxied.port) as c:
        c.send(v1())
        env = get_environ(c)
        assert env["REMOTE_ADDR"] == "203.0.113.7"
        assert env["REMOTE_PORT"] == "40001"
        # The next request on the connection is from the same client, with no header of its own.
        env = get_environ(c)
        assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_v1_tcp6(proxied):
    with RawConn(proxied.port) as c:
        c.send(v1(src="2001:db8::7", dst="::1", proto="TCP6") + build_request("GET", "/environ"))
        r = c.read_response()
        assert r.json()["REMOTE_ADDR"] == "2001:db8::7"


def test_v1_unknown_keeps_the_peer(proxied):
    with RawConn(proxied.port) as c:
        c.send(b"PROXY UNKNOWN\r\n")
        env = get_environ(c)
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        assert env["REMOTE_PORT"] == str(c.local_port)


def test_v2_ipv4_with_tlvs_and_the_request_in_the_same_send(proxied):
    tlvs = b"\x04\x00\x03abc" + b"\x20\x00\x05\x01\x00\x00\x00\x00"
    with RawConn(proxied.port) as c:
        c.send(v2(tlvs=tlvs) + build_request("GET", "/environ"))
        env = c.read_response().json()
        assert env["REMOTE_ADDR"] == "203.0.113.7"
        assert env["REMOTE_PORT"] == "40002"


def test_v2_ipv6(proxied):
    with RawConn(proxied.port) as c:
        c.send(v2(src="2001:db8::9", dst="::1", sport=1234))
        env = get_environ(c)
        assert env["REMOTE_ADDR"] == "2001:db8::9"
        assert env["REMOTE_PORT"] == "1234"


def test_v2_local_keeps_the_peer(proxied):
    with RawConn(proxied.port) as c:
        c.send(v2(command=0))
        env = get_environ(c)
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        assert env["REMOTE_PORT"] == str(c.local_port)


@pytest.mark.parametrize("header", [v1(), v2()], ids=["v1", "v2"])
def test_header_split_across_sends(proxied, header):
    with RawConn(proxied.port) as c:
        data = header + build_request("GET", "/environ")
        for i in range(len(header) + 5):
            c.send(data[i : i + 1])
            time.sleep(0.002)
        c.send(data[len(header) + 5 :])
        env = c.read_response().json()
        assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_request_without_header_is_refused(proxied):
    assert refused(proxied, build_request("GET", "/environ"), "does not start with a PROXY protocol header")
    # A plain HTTP client is not mistaken for a proxy: no response at all.


@pytest.mark.parametrize(
    "garbage, needle",
    [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n", "malformed PROXY v1 line"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 80\n", "malformed PROXY v1 line"),
        (b"PROXY UNKNOWN " + b"x" * 120, "longer than 107 bytes"),
        (V2_SIGNATURE + b"\x21\x11\xff\xff", "PROXY v2 header longer than"),
        (V2_SIGNATURE + b"\x31\x11\x00\x0c", "unknown version or command"),
        (V2_SIGNATURE + b"\x21\x12\x00\x0c" + b"\x00" * 12, "datagram"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "does not start with a PROXY"),
    ],
    ids=["v1-port", "v1-bare-lf", "v1-long", "v2-long", "v2-version", "v2-udp", "tls"],
)
def test_garbage_is_refused_and_the_worker_goes_on(proxied, garbage, needle):
    assert refused(proxied, garbage, needle)
    with RawConn(proxied.port) as c:
        c.send(v1(src="198.51.100.4"))
        assert get_environ(c)["REMOTE_ADDR"] == "198.51.100.4"


def test_connection_ending_inside_the_header_is_closed(proxied):
    with RawConn(proxied.port) as c:
        c.send(b"PROXY TCP4 1.2.3.4")
        c.sock.shutdown(socket.SHUT_WR)
        out, eof = c.read_until_eof(timeout=10)
        assert (out, eof) == (b"", True)
    assert proxied.wait_for_log("ended inside its PROXY header")


def test_proxy_source_decides_forwarded_trust(proxied):
    # The header names an outside client: its own X-Forwarded-* headers are not believed, even
    # though the socket's peer (the proxy, 127.0.0.1) is in --forwarded-allow-ips.
    with RawConn(proxied.port) as c:
        c.send(v1(src="203.0.113.7"))
        env = get_environ(c, headers=[("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")])
        assert env["REMOTE_ADDR"] == "203.0.113.7"
        assert env["wsgi.url_scheme"] == "http"
    # The header names a trusted proxy (an HTTP proxy behind the TCP one): they are.
    with RawConn(proxied.port) as c:
        c.send(v1(src="127.0.0.1"))
        env = get_environ(c, headers=[("X-Forwarded-For", "198.51.100.8"), ("X-Forwarded-Proto", "https")])
        assert env["REMOTE_ADDR"] == "198.51.100.8"
        assert env["wsgi.url_scheme"] == "https"


def test_thread_pool_gets_the_proxied_client(server_factory):
    srv = server_factory("wsgi_basic:app", "--workers", "1", "--threads", "2", "--proxy-protocol=v1", wait_http=False)
    with RawConn(srv.port) as c:
        c.send(v1(src="198.51.100.9", sport=1111))
        env = get_environ(c)
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("198.51.100.9", "1111")


def test_peer_not_in_proxy_allow_from_is_refused(server_factory):
    srv = server_factory(
        "wsgi_basic:app", "--workers", "1", "--proxy-protocol", "--proxy-allow-from", "10.9.9.9", wait_http=False
    )
    assert refused(srv, v1() + build_request("GET", "/environ"), "not in --proxy-allow-from")


def test_proxy_allow_from_networks(server_factory):
    srv = server_factory(
        "wsgi_basic:app", "--workers", "1", "--proxy-protocol=v2", "--proxy-allow-from", "127.0.0.0/8", wait_http=False
    )
    with RawConn(srv.port) as c:
        c.send(v2())
        assert get_environ(c)["REMOTE_ADDR"] == "203.0.113.7"
    # v2 only: a v1 header is refused.
    assert refused(srv, v1(), "does not start with a PROXY protocol header")


def test_without_the_flag_a_proxy_line_is_a_bad_request(server_factory):
    srv = server_factory("wsgi_basic:app", "--workers", "1")
    with RawConn(srv.port) as c:
        c.send(v1() + build_request("GET", "/environ"))
        assert c.read_response().status == 400


def test_bad_mode_is_refused_at_start():
    code, _out, err, _secs = run_cli("--proxy-protocol=v3", "wsgi_basic:app")
    assert code != 0 and "--proxy-protocol" in err
