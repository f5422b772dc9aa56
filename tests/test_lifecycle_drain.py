"""Graceful stop (SIGTERM): every request the server received is answered in full, idle
keep-alive connections are closed, the process exits within --graceful-timeout. SIGINT stops
at once."""
import signal
import time

import pytest

from harness import RawConn, build_request
from loadgen import LoadGenerator


@pytest.mark.parametrize("mode", ["subinterpreter", "process"])
def test_sigterm_under_load_answers_every_request_sent(server_factory, mode):
    srv = server_factory("lifecycle_app:app", "--workers", "2", "--mode", mode,
                         "--graceful-timeout", "20")
    load = LoadGenerator(srv.port, threads=6).start()
    time.sleep(2.0)
    load.stop()
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    load.join()
    code = srv.wait_exit(25)
    took = time.monotonic() - t0
    assert took < 20, f"exited {took:.1f} s after SIGTERM, past --graceful-timeout 20"
    print(f"SIGTERM under load ({mode} mode): {load.sent} sent, {load.completed} completed, "
          f"{len(load.failures)} failures, {load.connections} connections, exit after {took:.1f} s")
    assert load.failures == [], f"{len(load.failures)} failures: {load.failures[:10]}"
    assert load.completed == load.sent > 100
    assert code == 0, srv.describe(tail=30)


def test_sigterm_while_clients_keep_sending_on_their_connections(server_factory):
    """The generator only stops opening connections: what it sends on open ones is answered
    until the server says Connection: close or closes an idle connection."""
    srv = server_factory("lifecycle_app:app", "--workers", "2", "--graceful-timeout", "20")
    load = LoadGenerator(srv.port, threads=6, keep_sending=True).start()
    time.sleep(2.0)
    load.stop()
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    load.join()
    code = srv.wait_exit(25)
    took = time.monotonic() - t0
    assert took < 20, f"exited {took:.1f} s after SIGTERM, past --graceful-timeout 20"
    print(f"SIGTERM, clients sending on: {load.sent} sent, {load.completed} completed, "
          f"{len(load.failures)} failures, {load.retryable} unanswered after the stop (retryable), "
          f"{load.closes_announced} Connection: close, exit after {took:.1f} s")
    assert load.failures == [], f"{len(load.failures)} failures: {load.failures[:10]}"
    assert load.completed + load.retryable == load.sent > 100
    assert load.closes_announced >= 1
    assert code == 0, srv.describe(tail=30)


def test_requests_keep_coming_on_open_connections_during_a_drain(server_factory):
    """Clients that keep using their keep-alive connections after the signal are answered until
    the server says Connection: close; nothing they sent is lost."""
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--graceful-timeout", "20")
    conns = [RawConn(srv.port) for _ in range(4)]
    for c in conns:
        assert c.request("GET", "/").status == 200
    srv.send_signal(signal.SIGTERM)
    closed = 0
    deadline = time.monotonic() + 10
    open_conns = list(conns)
    while open_conns and time.monotonic() < deadline:
        for c in list(open_conns):
            try:
                c.send(build_request("GET", "/"))
                r = c.read_response()
            except Exception:  # noqa: BLE001
                # The server closed an idle connection before this request left: the client
                # would retry it elsewhere; it must not have been answered half.
                assert c.eof or not c.buf
                open_conns.remove(c)
                continue
            assert r.status == 200 and r.body == b"ok"
            if r.has_token("Connection", "close"):
                closed += 1
                assert c.closed_by_peer(5)
                open_conns.remove(c)
        time.sleep(0.05)
    assert not open_conns, "connections still open 10 s into the drain"
    assert closed >= 1, "no response of the drain said Connection: close"
    assert srv.wait_exit(20) == 0


def test_slow_request_in_flight_completes(server_factory):
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--graceful-timeout", "20")
    with RawConn(srv.port, timeout=20) as c:
        c.send(build_request("GET", "/sleep?s=2"))
        time.sleep(0.3)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        r = c.read_response()
        assert r.status == 200 and r.body == b"slept"
        # Read before the signal: a request pipelined behind it could still be in the kernel's
        # buffer, so the response may keep the connection open; it is closed soon after.
        assert c.closed_by_peer(5)
    assert srv.wait_exit(20) == 0
    assert time.monotonic() - t0 < 15


def test_pipelined_and_half_sent_requests_are_answered(server_factory):
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--graceful-timeout", "20")
    with RawConn(srv.port, timeout=20) as pipelined, RawConn(srv.port, timeout=20) as half:
        assert half.request("GET", "/").status == 200
        pipelined.send(build_request("GET", "/sleep?s=1") + build_request("GET", "/stream?n=3")
                       + build_request("POST", "/echo", body=b"x" * 5000))
        body = b"0123456789"
        raw = build_request("POST", "/echo", body=body)
        half.send(raw[:-5])
        time.sleep(0.3)
        srv.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        half.send(raw[-5:])
        r = half.read_response("POST")
        assert (r.status, r.body) == (200, body)
        assert r.has_token("Connection", "close")
        assert half.closed_by_peer(5)
        first = pipelined.read_response()
        assert (first.status, first.body) == (200, b"slept")
        assert not first.has_token("Connection", "close"), "closed with requests still queued"
        second = pipelined.read_response()
        assert (second.status, second.body) == (200, b"part-0;part-1;part-2;")
        third = pipelined.read_response("POST")
        assert (third.status, third.body) == (200, b"x" * 5000)
        # These were read before the signal (see test_slow_request_in_flight_completes).
        assert pipelined.closed_by_peer(5)
    assert srv.wait_exit(20) == 0


def test_idle_connections_are_closed_and_the_process_exits(server_factory):
    srv = server_factory("lifecycle_app:app", "--workers", "2", "--graceful-timeout", "20")
    conns = [RawConn(srv.port) for _ in range(10)]
    for c in conns:
        assert c.request("GET", "/").status == 200
    srv.send_signal(signal.SIGTERM)
    for c in conns:
        assert c.closed_by_peer(10), "an idle keep-alive connection was not closed"
        c.close()
    assert srv.wait_exit(10) == 0


def test_graceful_timeout_bounds_the_stop(server_factory):
    """A request still running at --graceful-timeout does not keep the process alive."""
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--graceful-timeout", "2")
    with RawConn(srv.port, timeout=30) as c:
        c.send(build_request("GET", "/sleep?s=30"))
        time.sleep(0.3)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        assert srv.wait_exit(20) is not None, "still running 20 s after SIGTERM with --graceful-timeout 2"
        took = time.monotonic() - t0
        assert took < 15, took
        assert "did not stop within --graceful-timeout" in srv.logs()
    srv.stop()


def test_sigint_stops_at_once(server_factory):
    """SIGINT (the master passes it on) does not drain: a request still running is cut off."""
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--threads", "2",
                         "--graceful-timeout", "20")
    with RawConn(srv.port, timeout=30) as c:
        c.send(build_request("GET", "/sleep?s=10"))
        time.sleep(0.3)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGINT)
        raw, eof = c.read_until_eof(timeout=8)
        assert eof and raw == b"", raw[:100]
        assert time.monotonic() - t0 < 8, "SIGINT waited for the running request"
    srv.stop()

