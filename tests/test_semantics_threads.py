"""--threads N: wsgi.multithread and concurrent requests within one worker."""
import threading
import time

from harness import RawConn


def mt_flags(srv):
    with RawConn(srv.port, timeout=5) as c:
        r = c.request("GET", "/mt")
    assert r.status == 200
    return r.json()


def test_threads_4_serves_concurrently_and_sets_multithread(server_factory):
    srv = server_factory("semantics_app:app", "--workers", "1", "--threads", "4")
    assert mt_flags(srv)["multithread"] is True
    slow = {}

    def sleeper():
        with RawConn(srv.port, timeout=10) as c:
            t0 = time.monotonic()
            r = c.request("GET", "/sleep?s=2")
            slow["status"], slow["body"], slow["elapsed"] = r.status, r.body, time.monotonic() - t0

    t = threading.Thread(target=sleeper)
    t.start()
    try:
        time.sleep(0.3)  # the sleeper's request is in the app by now
        t0 = time.monotonic()
        with RawConn(srv.port, timeout=5) as c:
            r = c.request("GET", "/")
        elapsed = time.monotonic() - t0
        assert (r.status, r.body) == (200, b"ok")
        assert elapsed < 1.0, f"a second request waited {elapsed:.2f}s behind a sleeping one with --threads 4"
    finally:
        t.join(10)
    assert (slow.get("status"), slow.get("body")) == (200, b"slept")
    assert slow["elapsed"] >= 1.9


def test_threads_1_is_not_multithread(server_factory):
    srv = server_factory("semantics_app:app", "--workers", "1", "--threads", "1")
    assert mt_flags(srv)["multithread"] is False


def test_default_threads_is_not_multithread(server_factory):
    srv = server_factory("semantics_app:app", "--workers", "1")
    assert mt_flags(srv)["multithread"] is False
