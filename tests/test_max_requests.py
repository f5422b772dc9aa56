"""--max-requests: a worker process that served its quota asks to be replaced, keeps serving
until the replacement is ready, then drains; clients see no failure."""
import time

from harness import get
from loadgen import LoadGenerator


def test_max_requests_replaces_the_worker_process_without_failures(server_factory):
    srv = server_factory("lifecycle_app:app", "--workers", "1", "--max-requests", "50",
                         "--max-requests-jitter", "10", "--graceful-timeout", "20")
    first_pid = get(srv.port, "/pid").body.decode()
    load = LoadGenerator(srv.port, threads=4).start()
    deadline = time.monotonic() + 60
    while load.sent < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Let the replacements take over for a while under load.
    time.sleep(2)
    load.stop()
    load.join()
    print(f"--max-requests 50: {load.sent} sent, {load.completed} completed, "
          f"{len(load.failures)} failures, {len(load.pids)} worker pids, {load.connections} connections")
    assert load.failures == [], f"{len(load.failures)} failures: {load.failures[:10]}"
    assert load.completed == load.sent >= 500
    assert get(srv.port, "/pid").body.decode() != first_pid
    assert len(load.pids) >= 2, f"the worker process was never replaced: {load.pids}"
    assert srv.wait_for_log("--max-requests")
