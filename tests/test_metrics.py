"""--metrics-bind: the master's Prometheus endpoint, read with prometheus_client's parser."""
import http.client
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import RawConn

METRICS_RE = re.compile(r"Metrics at: http://([0-9.]+):(\d+)/metrics")


def metrics_url(srv):
    assert srv.wait_for_log("Metrics at:", timeout=10), srv.logs()
    host, port = METRICS_RE.search(srv.logs()).groups()
    return f"http://{host}:{port}/metrics"


def scrape(url):
    """{(sample name, frozenset(labels)): value} from one scrape."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def requests_by(samples):
    return {
        (dict(labels)["method"], dict(labels)["status"]): v
        for (name, labels), v in samples.items()
        if name == "ringwsgi_requests_total"
    }


@pytest.fixture(scope="module")
def served():
    from conftest import _serving

    with _serving("wsgi_basic:app", "--workers", "2", "--metrics-bind", "127.0.0.1:0") as srv:
        yield srv, metrics_url(srv)


def test_counters_match_the_requests_sent(served):
    srv, url = served
    before = scrape(url)
    sent = {("GET", "2xx"): 0, ("POST", "2xx"): 0, ("GET", "4xx"): 0, ("GET", "5xx"): 0,
            ("HEAD", "2xx"): 0, ("DELETE", "3xx"): 0}
    # Several connections, so that both workers (one listener each) answer some.
    for _ in range(6):
        with RawConn(srv.port) as c:
            for _ in range(5):
                assert c.request("GET", "/").status == 200
                sent["GET", "2xx"] += 1
            assert c.request("POST", "/echo", body=b"x" * 100).status == 200
            sent["POST", "2xx"] += 1
            assert c.request("GET", "/nowhere").status == 404
            sent["GET", "4xx"] += 1
            assert c.request("HEAD", "/").status == 200
            sent["HEAD", "2xx"] += 1
            assert c.request("DELETE", "/status/302").status == 302
            sent["DELETE", "3xx"] += 1
        with RawConn(srv.port) as c:
            assert c.request("GET", "/error").status == 500
            sent["GET", "5xx"] += 1
    after = scrape(url)
    old, new = requests_by(before), requests_by(after)
    grown = {key: new[key] - old[key] for key in new if new[key] != old[key]}
    assert grown == sent
    total = sum(sent.values())
    for hist in ("ringwsgi_request_duration_seconds", "ringwsgi_request_queue_seconds"):
        count = value(after, hist + "_count") - value(before, hist + "_count")
        assert count == total, hist
        inf = value(after, hist + "_bucket", le="+Inf") - value(before, hist + "_bucket", le="+Inf")
        assert inf == total, hist
        assert value(after, hist + "_sum") > value(before, hist + "_sum"), hist
    assert value(after, "ringwsgi_batch_size_count") > value(before, "ringwsgi_batch_size_count")
    assert value(after, "ringwsgi_batch_size_bucket", le="1") > 0
    assert value(after, "ringwsgi_io_uring_enters_total") > value(before, "ringwsgi_io_uring_enters_total")
    assert value(after, "ringwsgi_stage_seconds_total", stage="call") > 0
    assert value(after, "ringwsgi_stage_seconds_total", stage="app") == 0, "only with --stats"
    assert value(after, "ringwsgi_worker_restarts_total") == 0
    assert value(after, "ringwsgi_requests_in_flight") == 0


def test_a_pipelined_batch_is_counted_whole(served):
    """The requests of a batch are counted once it is answered (the worker keeps them until
    then): every one, with its time, and none left in flight."""
    srv, url = served
    before = scrape(url)
    with RawConn(srv.port) as c:
        c.send(b"".join(b"GET /b%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(12)))
        assert [c.read_response().status for _ in range(12)] == [404] * 12
    after = scrape(url)
    old, new = requests_by(before), requests_by(after)
    assert {key: new[key] - old.get(key, 0) for key in new if new[key] != old.get(key, 0)} == {
        ("GET", "4xx"): 12}
    for hist in ("ringwsgi_request_duration_seconds", "ringwsgi_request_queue_seconds"):
        assert value(after, hist + "_count") - value(before, hist + "_count") == 12, hist
    assert value(after, "ringwsgi_requests_in_flight") == 0


def test_open_connections_follow_held_connections(served):
    srv, url = served

    def open_now():
        return value(scrape(url), "ringwsgi_open_connections")

    def settles_at(n):
        deadline = time.monotonic() + 10
        while open_now() != n and time.monotonic() < deadline:
            time.sleep(0.05)
        return open_now() == n

    # Nothing else talks to this server now: earlier tests' connections finish closing.
    assert settles_at(0)
    held = []
    try:
        for _ in range(10):
            c = RawConn(srv.port)
            assert c.request("GET", "/").status == 200  # accepted and answered: counted
            held.append(c)
        assert open_now() == 10
    finally:
        for c in held:
            c.close()
    assert settles_at(0)


def test_the_endpoint_keeps_serving_while_workers_serve_load(served):
    srv, url = served
    stop = threading.Event()
    errors = []

    def load():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            while not stop.is_set():
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
            conn.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        seen = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            samples = scrape(url)
            seen.append(sum(requests_by(samples).values()))
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert not errors, errors
    assert len(seen) >= 3
    assert seen == sorted(seen), "counters only grow"
    assert seen[-1] > seen[0], "the load was counted while it ran"


def test_other_paths_and_methods(served):
    _, url = served
    base = url.rsplit("/", 1)[0]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/other", timeout=10)
    assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"), timeout=10)
    assert e.value.code == 405
    # A client that sends garbage gets 400 and the endpoint goes on.
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"\x00\x01 nonsense\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert "ringwsgi_requests_total" in str(scrape(url))


def test_metrics_and_stats_share_the_block(server_factory):
    import signal

    srv = server_factory("wsgi_basic:app", "--workers", "1", "--stats", "--metrics-bind",
                         "127.0.0.1:0")
    url = metrics_url(srv)
    with RawConn(srv.port) as c:
        for _ in range(7):
            assert c.request("GET", "/").status == 200
    total = sum(requests_by(scrape(url)).values())
    assert total >= 7
    srv.send_signal(signal.SIGUSR2)
    assert srv.wait_for_log("ringwsgi stats: worker 0", timeout=5), srv.logs()
    assert f"ringwsgi stats: worker 0 (CPU" in srv.logs()
    line = next(l for l in srv.logs().splitlines() if "ringwsgi stats: worker 0" in l)
    assert int(line.split(": ")[2].split()[0]) == total, line


def test_no_endpoint_without_the_flag(server_factory):
    srv = server_factory("wsgi_basic:app", "--workers", "1")
    with RawConn(srv.port) as c:
        assert c.request("GET", "/").status == 200
    assert "Metrics at" not in srv.logs()


def test_an_unusable_metrics_address_stops_the_start(server_factory):
    from harness import run_cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err, _ = run_cli("--bind", "127.0.0.1:0", "--metrics-bind", f"127.0.0.1:{port}",
                                  "wsgi_basic:app")
    assert code != 0
    assert "--metrics-bind" in err, err


def test_in_flight_counts_calls_and_unfinished_streams(server_factory):
    srv = server_factory("semantics_app:app", "--workers", "1", "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(srv)

    def in_flight():
        return value(scrape(url), "ringwsgi_requests_in_flight")

    assert in_flight() == 0
    # A slow call: the worker is inside the app; the master's endpoint still answers.
    sleeper = RawConn(srv.port)
    sleeper.send(b"GET /sleep?s=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + 5
    while in_flight() != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_flight() == 1
    assert sleeper.read_response("GET").status == 200
    sleeper.close()
    assert in_flight() == 0
    # A streamed body the client does not read stays in flight until the connection goes.
    reader = RawConn(srv.port)
    reader.send(b"GET /stream?total=67108864&chunk=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + 5
    while in_flight() != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_flight() == 1
    reader.close()
    deadline = time.monotonic() + 10
    while in_flight() != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_flight() == 0


def test_counters_survive_a_worker_crash_and_a_reload(server_factory):
    import os
    import signal

    srv = server_factory("wsgi_basic:app", "--mode", "process", "--workers", "2",
                         "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(srv)

    def total():
        return sum(requests_by(scrape(url)).values())

    def send(n):
        for _ in range(n):
            with RawConn(srv.port) as c:
                assert c.request("GET", "/pid").status == 200

    send(10)
    before = total()
    assert before >= 10
    with RawConn(srv.port) as c:
        victim = int(c.request("GET", "/pid").body)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while value(scrape(url), "ringwsgi_worker_restarts_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert value(scrape(url), "ringwsgi_worker_restarts_total") == 1
    # The replacement continues the dead worker's counters: nothing goes backwards.
    assert total() >= before + 1
    send(10)
    after_crash = total()
    assert after_crash >= before + 11
    srv.send_signal(signal.SIGHUP)
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        send(2)
        seen.append(total())
        time.sleep(0.1)
    assert seen == sorted(seen), "counters never go backwards across a reload"
    assert seen[-1] >= after_crash + 2 * len(seen)
    assert value(scrape(url), "ringwsgi_worker_restarts_total") == 1, "a reload is no restart"
    deadline = time.monotonic() + 10
    while value(scrape(url), "ringwsgi_open_connections") != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert value(scrape(url), "ringwsgi_open_connections") == 0


def test_pool_refused_and_streamed_requests_are_counted(server_factory):
    srv = server_factory("semantics_app:app", "--workers", "1", "--threads", "2",
                         "--metrics-bind", "127.0.0.1:0", "--limit-request-body", "10")
    url = metrics_url(srv)
    before = scrape(url)
    with RawConn(srv.port) as c:
        for _ in range(3):
            assert c.request("GET", "/").status == 200  # answered by the pool
        r = c.request("GET", "/stream?total=300000&chunk=65536")  # streamed by the pool
        assert (r.status, len(r.body)) == (200, 300000)
    for raw, status in [(b"GARBAGE\r\n\r\n", 400),
                        (b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n", 413),
                        (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505)]:
        with RawConn(srv.port) as c:
            c.send(raw)
            assert c.read_response("GET").status == status
    after = scrape(url)
    old, new = requests_by(before), requests_by(after)
    grown = {key: new[key] - old.get(key, 0) for key in new if new[key] != old.get(key, 0)}
    assert grown == {("GET", "2xx"): 4, ("other", "4xx"): 1, ("POST", "4xx"): 1,
                     ("other", "5xx"): 1}
    hist = "ringwsgi_request_duration_seconds"
    assert value(after, hist + "_count") - value(before, hist + "_count") == 7
    assert value(after, "ringwsgi_requests_in_flight") == 0


def test_a_stream_counts_its_duration_until_it_is_sent(server_factory):
    srv = server_factory("semantics_app:app", "--workers", "1", "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(srv)
    hist = "ringwsgi_request_duration_seconds"
    before = scrape(url)
    c = RawConn(srv.port, timeout=30)
    c.send(b"GET /stream?total=16777216&chunk=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(1.0)
    assert value(scrape(url), hist + "_count") == value(before, hist + "_count"), "not before it is sent"
    assert len(c.read_response("GET").body) == 16777216
    c.close()
    after = scrape(url)
    assert value(after, hist + "_count") - value(before, hist + "_count") == 1
    assert value(after, hist + "_sum") - value(before, hist + "_sum") >= 1.0
    assert value(after, hist + "_bucket", le="0.5") == value(before, hist + "_bucket", le="0.5")
