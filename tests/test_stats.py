"""--stats: each worker's statistics block, printed on SIGUSR2 and at exit."""
import signal
import time

from harness import RawConn


def test_stats_block_on_sigusr2_and_at_exit(server_factory):
    s = server_factory("wsgi_basic:app", "--workers", "2", "--stats")
    assert s.wait_for_log("worker threads ready", timeout=10), s.logs()
    with RawConn(s.port) as c:
        for _ in range(20):
            assert c.request("GET", "/").status == 200
    s.send_signal(signal.SIGUSR2)
    assert s.wait_for_log("ringwsgi stats: worker 1", timeout=5), s.logs()
    logs = s.logs()
    assert "ringwsgi stats: worker 0" in logs
    for stage in ("receive and parse", "build environ", "app call", "body iteration", "send",
                  "batch sizes", "io_uring submissions"):
        assert stage in logs, stage
    # The 20 requests (plus the harness's readiness probe) are counted by the workers together.
    counts = [int(line.split(": ")[2].split()[0]) for line in logs.splitlines()
              if "ringwsgi stats: worker" in line]
    assert sum(counts) >= 20, counts
    s.stop()
    assert s.logs().count("ringwsgi stats: worker 0") == 2, "printed again at exit"


def test_no_stats_without_the_flag(server_factory):
    s = server_factory("wsgi_basic:app", "--workers", "1")
    with RawConn(s.port) as c:
        assert c.request("GET", "/").status == 200
    s.send_signal(signal.SIGUSR2)
    time.sleep(0.5)
    s.stop()
    assert "ringwsgi stats" not in s.logs()
