"""A small load generator for the lifecycle tests: client threads on keep-alive connections,
pipelining batches of requests (GET, POST with a body, a streaming response), checking every
response in full. `stop()` makes it open no further connections and send no further requests;
every request it did send must then get its complete 200 response (`failures` counts those
that did not). With `keep_sending=True`, `stop()` only stops new connections: the open ones go
on sending until the server closes them; a request sent after `stop()` that finds the connection
closed without any byte of an answer (the server closed it as idle just then, the case a client
retries) is counted in `retryable`, not in `failures`."""
from __future__ import annotations

import random
import threading

from harness import ConnectionClosed, HTTPParseError, RawConn, build_request


class LoadGenerator:
    def __init__(self, port: int, threads: int = 6, max_pipeline: int = 4, timeout: float = 30.0,
                 keep_sending: bool = False):
        self.port = port
        self.keep_sending = keep_sending
        self.retryable = 0
        self.max_pipeline = max_pipeline
        self.timeout = timeout
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self.sent = 0
        self.completed = 0
        self.failures: list[str] = []
        self.connections = 0
        self.closes_announced = 0
        self.pids: set[str] = set()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(threads)]

    def start(self) -> "LoadGenerator":
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        """No new connections, no new requests; what was sent is still read."""
        self._stopped.set()

    def join(self, timeout: float = 60.0):
        for t in self._threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "load generator threads still running"

    def _batch(self, rng: random.Random, n: int):
        batch = []
        for _ in range(n):
            kind = rng.randrange(4)
            if kind == 0:
                body = rng.randbytes(rng.randrange(1, 3000))
                batch.append(("POST", build_request("POST", "/echo", body=body), body))
            elif kind == 1:
                n_parts = rng.randrange(1, 6)
                expect = b"".join(b"part-%d;" % i for i in range(n_parts))
                batch.append(("GET", build_request("GET", f"/stream?n={n_parts}"), expect))
            elif kind == 2:
                batch.append(("GET", build_request("GET", "/pid"), None))
            else:
                batch.append(("GET", build_request("GET", "/"), b"ok"))
        return batch

    def _client(self, index: int):
        rng = random.Random(index)
        while not self._stopped.is_set():
            try:
                conn = RawConn(self.port, timeout=self.timeout)
            except OSError as e:
                if not self._stopped.is_set():
                    with self._lock:
                        self.failures.append(f"t{index}: connect: {e}")
                return
            with self._lock:
                self.connections += 1
            with conn:
                while self.keep_sending or not self._stopped.is_set():
                    after_stop = self._stopped.is_set()
                    batch = self._batch(rng, rng.randrange(1, self.max_pipeline + 1))
                    try:
                        conn.send(b"".join(raw for _, raw, _ in batch))
                    except OSError as e:
                        with self._lock:
                            if after_stop:
                                self.retryable += len(batch)
                            else:
                                self.failures.append(f"t{index}: send on an open connection failed: {e}")
                        return
                    with self._lock:
                        self.sent += len(batch)
                    if not self._read(index, conn, batch, after_stop) or rng.random() < 0.02:
                        break  # sometimes a new connection, so that some are young at a stop

    def _read(self, index: int, conn: RawConn, batch, after_stop: bool) -> bool:
        """Reads the batch's responses; False when the connection is over."""
        for i, (method, _, expect) in enumerate(batch):
            try:
                r = conn.read_response(method)
            except (HTTPParseError, OSError) as e:
                unanswered = isinstance(e, (ConnectionClosed, ConnectionResetError)) and not conn.buf
                with self._lock:
                    if after_stop and i == 0 and unanswered:
                        self.retryable += len(batch)
                    else:
                        self.failures.append(f"t{index}: {len(batch) - i} responses missing: {e!r}")
                return False
            ok = r.status == 200 and (expect is None or r.body == expect)
            with self._lock:
                if ok:
                    self.completed += 1
                    if expect is None:
                        self.pids.add(r.body.decode())
                else:
                    self.failures.append(f"t{index}: {r.status} {r.body[:80]!r}")
            if r.has_token("Connection", "close"):
                with self._lock:
                    self.closes_announced += 1
                if i + 1 < len(batch):
                    with self._lock:
                        self.failures.append(f"t{index}: Connection: close with {len(batch) - i - 1} requests unanswered")
                return False
        return True
