"""--mode: subinterpreter, process, and auto's fallback when an extension module refuses
subinterpreters (orjson's does). Every test names its mode, so the whole suite can run in
process mode with RINGWSGI_MODE=process."""
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import get, run_cli

MODE_LINE = re.compile(r"mode: (\S+)(?: \((.*)\))?$", re.M)


def mode_lines(srv):
    return [m.group(0) for m in MODE_LINE.finditer(srv.logs())]


def wait_mode_line(srv):
    assert srv.wait_for_log("mode: ", timeout=10), srv.logs()
    lines = mode_lines(srv)
    assert len(lines) == 1, f"expected exactly one mode line, got {lines}:\n{srv.logs()}"
    return lines[0]


def served_by(port, path="/", n=40):
    """The JSON answers of n requests, each on its own connection (so the kernel spreads them)."""
    def one(_):
        r = get(port, path, headers=[("Connection", "close")])
        assert r.status == 200, r
        return json.loads(r.body)

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


# --- auto --------------------------------------------------------------------


def test_auto_falls_back_to_processes_for_orjson(server_factory):
    srv = server_factory("orjson_flask_app:app", "--mode", "auto", "--workers", "2")
    line = wait_mode_line(srv)
    assert line == "mode: process (orjson does not support subinterpreters)", srv.logs()
    answers = served_by(srv.port)
    assert all(a["ok"] and a["interpreter"] == "main" for a in answers), answers[:3]
    assert len({a["pid"] for a in answers}) == 2, "--workers 2 in process mode: two processes"


def test_auto_keeps_subinterpreters_for_a_plain_app(server_factory):
    srv = server_factory("procs_app:app", "--mode", "auto", "--workers", "2")
    assert wait_mode_line(srv) == "mode: subinterpreter"
    answers = served_by(srv.port)
    assert {a["interpreter"] for a in answers} == {"sub"}
    assert len({a["pid"] for a in answers}) == 1, "subinterpreter mode: one worker process"
    assert all(a["multiprocess"] for a in answers)


def test_explicit_subinterpreter_mode_refusal_is_a_boot_error():
    code, out, err, secs = run_cli("--bind", "127.0.0.1:0", "--mode", "subinterpreter", "orjson_flask_app:app")
    assert code == 3, err
    assert "orjson does not support subinterpreters: use --mode process" in err, err
    assert "Traceback" not in err, err


def test_import_refused_inside_a_request_says_to_use_process_mode(server_factory):
    srv = server_factory("procs_app:app", "--mode", "subinterpreter", "--workers", "1")
    assert get(srv.port, "/import-orjson").status == 500
    assert srv.wait_for_log("run ringwsgi with --mode process"), srv.logs()
    assert get(srv.port, "/").status == 200, "the worker goes on"


# --- process -----------------------------------------------------------------


@pytest.mark.parametrize(
    "app, path, expected",
    [
        ("wsgi_basic:app", "/", None),
        ("flask_app:app", "/", b"Hello from Flask"),
        ("django_project.wsgi:application", "/", None),
    ],
    ids=["wsgi_basic", "flask", "django"],
)
def test_process_mode_serves_the_integration_apps(server_factory, app, path, expected):
    srv = server_factory(app, "--mode", "process", "--workers", "2")
    assert wait_mode_line(srv) == "mode: process (--mode process)"
    for _ in range(20):
        r = get(srv.port, path, headers=[("Connection", "close")])
        assert r.status == 200, r
        if expected is not None:
            assert r.body == expected


def test_process_mode_runs_one_process_per_worker_in_its_main_interpreter(server_factory):
    srv = server_factory("procs_app:app", "--mode", "process", "--workers", "2")
    answers = served_by(srv.port)
    assert {a["interpreter"] for a in answers} == {"main"}
    assert len({a["pid"] for a in answers}) == 2
    assert all(a["multiprocess"] and not a["multithread"] for a in answers)


def test_process_mode_one_worker_is_not_multiprocess(server_factory):
    srv = server_factory("procs_app:app", "--mode", "process", "--workers", "1")
    answers = served_by(srv.port, n=5)
    assert not any(a["multiprocess"] for a in answers)


def test_process_mode_threads(server_factory):
    """--threads 2: two requests run at the same time in one process (they wait for each other
    at a barrier; run one after the other, the first would time out with a 500)."""
    srv = server_factory("procs_app:app", "--mode", "process", "--workers", "1", "--threads", "2")
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: get(srv.port, "/pair", timeout=30), range(2)))
    assert [r.status for r in answers] == [200, 200], answers
    bodies = [json.loads(r.body) for r in answers]
    assert all(b["multithread"] and b["interpreter"] == "main" for b in bodies)
    assert bodies[0]["thread"] != bodies[1]["thread"]
