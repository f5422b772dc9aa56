"""Several workers share the load; sustained concurrent load without errors."""
import http.client
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from harness import RawConn


def _worker_ids(port, connections, threads=4):
    def one(_):
        with RawConn(port) as c:
            r = c.request("GET", "/worker", headers=[("Connection", "close")])
            assert r.status == 200
            return r.text()

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(connections)))


def test_two_workers_both_serve(basic):
    ids = _worker_ids(basic.port, 200)
    assert len(ids) == 200
    assert all(i.isdigit() for i in ids), ids[:5]
    counts = {i: ids.count(i) for i in set(ids)}
    assert len(counts) == 2, f"--workers 2: expected exactly 2 distinct workers, got {counts}"


def test_one_worker_is_one_thread(basic_w1):
    ids = _worker_ids(basic_w1.port, 50)
    assert len(set(ids)) == 1, f"--workers 1 served from several threads: {set(ids)}"


def test_concurrent_load_keepalive(basic):
    duration = 3.0
    nthreads = 8
    stop_at = time.monotonic() + duration
    counts = [0] * nthreads
    errors = []

    def client(idx):
        conn = http.client.HTTPConnection("127.0.0.1", basic.port, timeout=10)
        n = 0
        try:
            while time.monotonic() < stop_at:
                kind = n % 4
                if kind == 3:
                    body = os.urandom(1 + (n * 37) % 8000)
                    conn.request("POST", "/echo", body=body, headers={"Content-Type": "application/x-load"})
                    r = conn.getresponse()
                    data = r.read()
                    if r.status != 200 or data != body:
                        errors.append(f"t{idx} #{n}: POST /echo -> {r.status}, {len(data)} of {len(body)} bytes")
                elif kind == 2:
                    conn.request("GET", f"/environ?t={idx}&n={n}")
                    r = conn.getresponse()
                    data = r.read()
                    import json

                    if r.status != 200 or json.loads(data)["QUERY_STRING"] != f"t={idx}&n={n}":
                        errors.append(f"t{idx} #{n}: GET /environ -> {r.status} {data[:100]!r}")
                else:
                    conn.request("GET", "/")
                    r = conn.getresponse()
                    data = r.read()
                    if r.status != 200 or data != b"Hello, World!":
                        errors.append(f"t{idx} #{n}: GET / -> {r.status} {data[:100]!r}")
                if r.will_close:
                    errors.append(f"t{idx} #{n}: server closed a keep-alive connection")
                    conn.close()
                n += 1
        except Exception as e:  # noqa: BLE001 - any failure is a test failure
            errors.append(f"t{idx} #{n}: {e!r}")
        finally:
            conn.close()
            counts[idx] = n

    threads = [threading.Thread(target=client, args=(i,)) for i in range(nthreads)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 30)
    elapsed = time.monotonic() - t0
    total = sum(counts)
    print(f"\nload: {total} requests in {elapsed:.1f}s from {nthreads} keep-alive clients "
          f"({total / elapsed:.0f} req/s), per client {counts}, errors {len(errors)}")
    assert not any(t.is_alive() for t in threads), "a load client hung"
    assert not errors, f"{len(errors)} errors, first ones: {errors[:10]}"
    assert all(c > 0 for c in counts)
    # the server is still fine afterwards
    with RawConn(basic.port) as c:
        assert c.request("GET", "/").body == b"Hello, World!"


def test_default_workers_is_cpu_count(server_factory):
    cpus = len(os.sched_getaffinity(0))
    srv = server_factory("wsgi_basic:app")  # no --workers
    ids = set(_worker_ids(srv.port, 200))
    if cpus <= 4:
        assert len(ids) == cpus, f"default workers: {len(ids)} distinct workers served, {cpus} CPUs available"
    else:
        assert 1 < len(ids) <= cpus
