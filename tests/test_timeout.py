"""--timeout: an app call running too long is interrupted (504, or the connection closed once the
response began) and the worker goes on serving; --timeout 0 disables it."""
import time

from harness import RawConn, build_request, get


def test_a_call_looping_in_python_gets_504_and_the_worker_goes_on(server_factory):
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--timeout", "1")
    t0 = time.monotonic()
    r = get(srv.port, "/spin?s=30", timeout=30)
    took = time.monotonic() - t0
    assert r.status == 504, (r.status, r.body)
    assert took < 20, f"interrupted only after {took:.1f} s"
    assert srv.wait_for_log("request GET /spin?s=30 timed out")
    assert "RequestTimeout" in srv.logs()
    # The worker thread is free again, and the next request is not hit by a stale interrupt.
    for _ in range(20):
        r = get(srv.port, "/spin?s=0.01")
        assert (r.status, r.body) == (200, b"spun")


def test_except_exception_does_not_swallow_the_timeout(server_factory):
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--timeout", "1")
    r = get(srv.port, "/caught", timeout=40)
    assert r.status == 504


def test_with_threads_pool_calls_are_interrupted_too(server_factory):
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--threads", "2", "--timeout", "1")
    r = get(srv.port, "/spin?s=30", timeout=30)
    assert r.status == 504
    assert get(srv.port, "/").status == 200


def test_a_stalled_streaming_body_closes_the_connection(server_factory):
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--timeout", "1")
    with RawConn(srv.port, timeout=30) as c:
        c.send(build_request("GET", "/stall"))
        raw, eof = c.read_until_eof(timeout=30)
        assert eof, "the connection stayed open"
        assert raw.startswith(b"HTTP/1.1 200 OK")
        assert b"first;" in raw and b"never" not in raw
        assert not raw.endswith(b"0\r\n\r\n"), "a truncated body must not end like a complete one"
    assert srv.wait_for_log("streaming response timed out")
    assert get(srv.port, "/").status == 200


def test_timeout_0_disables_it(server_factory):
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--timeout", "0")
    r = get(srv.port, "/spin?s=2.5", timeout=30)
    assert (r.status, r.body) == (200, b"spun")


def test_a_call_within_the_timeout_is_untouched(server_factory):
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--timeout", "3")
    r = get(srv.port, "/spin?s=1", timeout=30)
    assert (r.status, r.body) == (200, b"spun")


def test_a_call_stuck_outside_python_asks_for_a_replacement(server_factory):
    """time.sleep does not see the interrupt until it returns: --graceful-timeout after the
    timeout the worker process asks the master to replace it."""
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--timeout", "1",
                         "--graceful-timeout", "1", "--log-level", "debug")
    with RawConn(srv.port, timeout=30) as c:
        c.send(build_request("GET", "/sleep?s=4"))
        assert srv.wait_for_log("asking for this worker process to be replaced", timeout=15)
        # When the sleep returns, the pending interrupt fires: 504.
        r = c.read_response()
        assert r.status == 504


def test_a_stuck_worker_process_is_replaced_and_service_goes_on(server_factory):
    """A call that does not return (time.sleep(60) with --timeout 1): the worker process asks
    for a replacement, the new one serves, the stuck one is stopped."""
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--threads", "2", "--timeout", "1",
                         "--graceful-timeout", "1")
    old = get(srv.port, "/pid").body
    with RawConn(srv.port, timeout=60) as c:
        c.send(build_request("GET", "/sleep?s=60"))
        deadline = time.monotonic() + 30
        new = old
        while new == old and time.monotonic() < deadline:
            time.sleep(0.2)
            new = get(srv.port, "/pid", timeout=30).body
        assert new != old, "the stuck worker process was not replaced"
        raw, eof = c.read_until_eof(timeout=20)
        assert eof, "the stuck request's connection outlived its process"
    assert srv.wait_for_log("asking for this worker process to be replaced")


def test_process_mode_interrupts_in_the_main_interpreter(server_factory):
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--mode", "process", "--timeout", "1")
    r = get(srv.port, "/spin?s=30", timeout=30)
    assert r.status == 504
    assert get(srv.port, "/").status == 200
