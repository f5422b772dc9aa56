"""The master supervises its worker processes: a worker process killed under load is replaced
(the listeners stay open, so queued connections are served by the replacement), a worker that
dies before it is ready is a boot error (exit code 3), SIGHUP replaces every worker process with
new code without failing a request.

The load tests print their failure counts (pytest -s shows them)."""
import http.client
import json
import os
import signal
import threading
import time

import pytest

from harness import get, run_cli

CLIENTS = 8


class Load:
    """CLIENTS threads sending GET `path` back to back, each on a new connection, counting
    answers and failures (connect errors, resets, timeouts, non-2xx)."""

    def __init__(self, port, path="/"):
        self.port = port
        self.path = path
        self.ok = 0
        self.failures = []
        self.answers = []  # (time, pid, version) of each 200
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _client(self):
        while not self._stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", self.path, headers={"Connection": "close"})
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    failure = f"status {r.status}"
                else:
                    a = json.loads(body)
                    with self._lock:
                        self.ok += 1
                        self.answers.append((time.monotonic(), a["pid"], a["version"]))
                    continue
            except (OSError, http.client.HTTPException) as e:
                failure = f"{type(e).__name__}: {e}"
            finally:
                conn.close()
            with self._lock:
                self.failures.append(failure)

    def pids_since(self, t):
        with self._lock:
            return {pid for at, pid, _ in self.answers if at >= t}

    def wait_for(self, predicate, timeout=30.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                answers = list(self.answers)
            if predicate(answers):
                return
            time.sleep(0.05)
        raise AssertionError(f"load: no {what} within {timeout}s; {self.report()}")

    def report(self):
        with self._lock:
            kinds = {}
            for f in self.failures:
                kinds[f] = kinds.get(f, 0) + 1
            return f"{self.ok} ok, {len(self.failures)} failed {kinds}"


def pids(port, n=40):
    return {json.loads(get(port, "/", headers=[("Connection", "close")]).body)["pid"] for _ in range(n)}


# --- restarts ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/sleep?0.02"], ids=["fast", "20ms"])
def test_kill9_worker_process_under_load(server_factory, path):
    """Subinterpreter mode: one worker process serves everything; kill -9 it under load. Only
    the requests in flight in it (accepted by it, not yet answered) can fail: at most one per
    client, since each has one connection at a time; connections queued in the listeners
    meanwhile are served by the replacement. With 20 ms requests most clients have one in
    flight at any time."""
    srv = server_factory("procs_app:app", "--mode", "subinterpreter", "--workers", "2")
    (old,) = pids(srv.port, 5)
    with Load(srv.port, path) as load:
        load.wait_for(lambda a: len(a) > 200, what="warm-up")
        os.kill(old, signal.SIGKILL)
        killed_at = time.monotonic()
        load.wait_for(lambda a: any(t > killed_at and pid != old for t, pid, _ in a), what="replacement")
        resumed = time.monotonic()
        load.wait_for(lambda a: sum(t > resumed for t, _, _ in a) > 200, what="service after the restart")
    print(f"\nkill -9 of the worker process (subinterpreter mode, GET {path}): {load.report()}")
    assert load.pids_since(resumed) - {old}, "no answers from the replacement"
    assert len(load.failures) <= CLIENTS, load.report()
    assert srv.wait_for_log("was killed by SIGKILL: restarting it"), srv.logs()


@pytest.mark.parametrize("path", ["/", "/sleep?0.02"], ids=["fast", "20ms"])
def test_kill9_one_process_in_process_mode(server_factory, path):
    """Process mode, two worker processes: kill -9 one under load; the other keeps serving and
    the killed one's slot gets a new process."""
    srv = server_factory("procs_app:app", "--mode", "process", "--workers", "2")
    before = pids(srv.port)
    assert len(before) == 2
    victim, survivor = sorted(before)
    with Load(srv.port, path) as load:
        load.wait_for(lambda a: len(a) > 200, what="warm-up")
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        load.wait_for(
            lambda a: any(t > killed_at and pid not in before for t, pid, _ in a), what="replacement"
        )
        resumed = time.monotonic()
        load.wait_for(lambda a: sum(t > resumed for t, _, _ in a) > 200, what="service after the restart")
        served = load.pids_since(killed_at)
    print(f"\nkill -9 of one of two worker processes (process mode, GET {path}): {load.report()}")
    assert survivor in served, "the surviving process stopped serving"
    assert victim not in load.pids_since(resumed)
    assert len(load.failures) <= CLIENTS, load.report()
    assert srv.wait_for_log("(slot ", timeout=1) and "SIGKILL: restarting it" in srv.logs(), srv.logs()


def test_crash_loop_backs_off(server_factory):
    """A slot whose process keeps dying soon after start is restarted at once the first time,
    then after growing delays."""
    srv = server_factory("procs_app:app", "--workers", "1")
    for n, delay in enumerate(("", " in 1s", " in 2s")):
        (pid,) = pids(srv.port, 3)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while srv.logs().count("restarting it") <= n and time.monotonic() < deadline:
            time.sleep(0.05)
        restarts = [ln for ln in srv.logs().splitlines() if "restarting it" in ln]
        assert len(restarts) == n + 1, srv.logs()
        assert restarts[-1].endswith(f"was killed by SIGKILL: restarting it{delay}"), srv.logs()
        # Wait for the replacement to serve.
        deadline = time.monotonic() + 30
        while pids(srv.port, 1) == {pid} and time.monotonic() < deadline:
            time.sleep(0.1)
    assert get(srv.port, "/").status == 200


@pytest.mark.parametrize("mode", ["auto", "process"])
def test_worker_dying_before_ready_is_a_boot_error(mode):
    """A worker process that dies while loading the app (here: abort()) makes the master exit
    with code 3 instead of restarting it forever."""
    code, out, err, secs = run_cli(
        "--bind", "127.0.0.1:0", "--mode", mode, "--workers", "2", "abort_at_import_app:app", timeout=30
    )
    assert code == 3, err
    assert "before it was ready" in err, err
    assert "restarting" not in err, err


def test_sigusr1_is_passed_on_and_harmless(server_factory):
    srv = server_factory("procs_app:app", "--mode", "process", "--workers", "2")
    before = pids(srv.port)
    srv.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    assert pids(srv.port) == before, srv.logs()


# --- SIGHUP --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "process"])
def test_sighup_reloads_new_code_without_failing_a_request(server_factory, tmp_path, mode):
    version_file = tmp_path / "version"
    version_file.write_text("v1")
    srv = server_factory(
        "procs_app:app",
        "--mode",
        mode,
        "--workers",
        "2",
        env={"RINGWSGI_TEST_VERSION_FILE": str(version_file)},
    )
    old = pids(srv.port)
    with Load(srv.port) as load:
        load.wait_for(lambda a: len(a) > 200, what="warm-up")
        version_file.write_text("v2")
        srv.send_signal(signal.SIGHUP)
        hup = time.monotonic()
        load.wait_for(lambda a: any(t > hup and v == "v2" for t, _, v in a), what="new code")
        # Every old process is gone once all answers are v2 for a while.
        load.wait_for(
            lambda a: sum(t > hup for t, _, _ in a) > 200
            and all(v == "v2" for t, _, v in a[-100:]),
            what="only new code answering",
        )
    print(f"\nSIGHUP reload under load ({mode}): {load.report()}")
    assert not load.failures, load.report()
    assert not pids(srv.port) & old
