"""Logging: --log-format json (one object per line), --error-logfile (master and worker process
append to it; records are whole lines even under load) and SIGUSR1 reopening it for logrotate."""
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time

from harness import APPS_DIR, get, ringwsgi_path, run_cli
from wsgi_basic import ERROR_MARKER

LISTENING_RE = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def read(path):
    return path.read_text() if path.exists() else ""


@contextlib.contextmanager
def logging_to_file(log, *args):
    """ringwsgi with --error-logfile LOG: the port is learnt from the file, not stderr."""
    proc = subprocess.Popen(
        [str(ringwsgi_path()), "--bind", "127.0.0.1:0", "--error-logfile", str(log), *args],
        cwd=str(APPS_DIR),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        try:
            wait_for(lambda: "worker threads ready" in read(log) or proc.poll() is not None,
                     what="the workers' ready line in the log file")
        except AssertionError:
            raise AssertionError(f"log file:\n{read(log)}")
        assert proc.poll() is None, f"exited {proc.returncode}: {proc.stderr.read().decode()}"
        proc.port = int(LISTENING_RE.search(read(log)).group(1))
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    return proc.stderr.read().decode()


def json_records(text):
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        record = json.loads(line)  # every line is one whole record
        assert isinstance(record, dict), f"line {n}: {line}"
        assert {"timestamp", "level", "message"} <= record.keys(), f"line {n}: {line}"
        records.append(record)
    return records


def test_json_lines_on_stderr(server_factory):
    srv = server_factory("wsgi_basic:app", "--log-format", "json", "--error-logfile", "-")
    assert get(srv.port, "/error").status == 500
    assert srv.wait_for_log(ERROR_MARKER, timeout=10)
    srv.stop()
    records = json_records(srv.logs())
    messages = [r["message"] for r in records]
    assert any(m.startswith("Listening at: ") for m in messages), messages  # master
    assert any("worker threads ready" in m for m in messages), messages  # worker process
    errors = [r for r in records if r["level"] == "ERROR"]
    assert len(errors) == 1 and ERROR_MARKER in errors[0]["message"], errors
    assert "Traceback" in errors[0]["message"]


def test_error_logfile_gets_both_processes_and_stderr_nothing(tmp_path):
    log = tmp_path / "error.log"
    with logging_to_file(log, "--log-level", "debug", "wsgi_basic:app") as proc:
        assert get(proc.port, "/error").status == 500
        wait_for(lambda: ERROR_MARKER in read(log), what="the app's error in the log file")
        stderr = stop(proc)
    text = read(log)
    assert "Listening at" in text and "worker threads ready" in text, text
    assert "shutting down (SIGTERM)" in text, text
    assert "\x1b[" not in text, "colour escapes in a log file"
    assert "Listening" not in stderr and ERROR_MARKER not in stderr, stderr


def test_relative_error_logfile_is_the_same_file_after_chdir(tmp_path):
    """The worker process runs after --chdir: it must still append to the master's file."""
    (tmp_path / "elsewhere").mkdir()
    proc = subprocess.Popen(
        [str(ringwsgi_path()), "--bind", "127.0.0.1:0", "--error-logfile", "rel.log",
         "--chdir", str(APPS_DIR), "wsgi_basic:app"],
        cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    log = tmp_path / "rel.log"
    try:
        wait_for(lambda: "worker threads ready" in read(log), what="the worker's line in rel.log")
    finally:
        stop(proc)
    assert "Listening at" in read(log)
    assert not (APPS_DIR / "rel.log").exists()


def test_sigusr1_reopens_the_log_file(tmp_path):
    log = tmp_path / "error.log"
    rotated = tmp_path / "error.log.1"
    with logging_to_file(log, "--log-format", "json", "wsgi_basic:app") as proc:
        assert get(proc.port, "/error").status == 500
        wait_for(lambda: ERROR_MARKER in read(log), what="the first error")
        log.rename(rotated)  # what logrotate does
        proc.send_signal(signal.SIGUSR1)
        # Both processes say so, each in the new file.
        wait_for(lambda: read(log).count("reopened the log file") == 2, what="two reopen records")
        assert get(proc.port, "/error").status == 500
        wait_for(lambda: ERROR_MARKER in read(log), what="the second error in the new file")
        stop(proc)
    old, new = json_records(read(rotated)), json_records(read(log))
    assert [r for r in old if ERROR_MARKER in r["message"]], "the first error is not in the old file"
    assert sum(ERROR_MARKER in r["message"] for r in old) == 1, "records went on to the renamed file"
    assert any(r["message"] == "shutting down (SIGTERM)" for r in new)


def test_records_are_whole_under_concurrent_writers(tmp_path):
    """Two worker threads and the master write the same file at once: no record is cut, mixed
    or lost."""
    log = tmp_path / "error.log"
    per_thread, clients = 40, 4
    with logging_to_file(log, "--log-format", "json", "--workers", "2", "wsgi_basic:app") as proc:
        failures = []

        def hammer():
            for _ in range(per_thread):
                if get(proc.port, "/error").status != 500:
                    failures.append("not 500")

        threads = [threading.Thread(target=hammer) for _ in range(clients)]
        for t in threads:
            t.start()
        for _ in range(5):
            proc.send_signal(signal.SIGUSR1)  # the master and the worker write meanwhile
            time.sleep(0.05)
        for t in threads:
            t.join()
        assert not failures
        total = per_thread * clients
        wait_for(lambda: read(log).count(ERROR_MARKER) >= total, what=f"{total} error records")
        stop(proc)
    records = json_records(read(log))
    errors = [r for r in records if r["level"] == "ERROR"]
    assert len(errors) == total
    assert all(r["message"].endswith(f"RuntimeError: {ERROR_MARKER}") for r in errors)
    assert sum(r["message"].startswith("reopened the log file") for r in records) == 10


def test_unopenable_error_logfile_stops_start_up(tmp_path):
    code, out, err, secs = run_cli(
        "--bind", "127.0.0.1:0", "--error-logfile", str(tmp_path / "no" / "such" / "dir.log"),
        "wsgi_basic:app",
    )
    assert code != 0
    assert "cannot open the log file" in err and "dir.log" in err, err
    assert "Listening" not in err
