"""The command line: --help, start-up errors, signals, --pythonpath, --chdir, the example."""
import signal
import socket
import time

import pytest

from harness import APPS_DIR, ROOT, RawConn, get, group_alive, run_cli

# --- --help and start-up errors ----------------------------------------------


def test_help():
    code, out, err, secs = run_cli("--help", timeout=10)
    assert code == 0, err
    text = out + err
    for flag in ("--bind", "--workers", "--chdir", "--pythonpath"):
        assert flag in text, f"--help does not document {flag}:\n{text}"
    assert "Traceback" not in text


def _assert_clean_startup_error(code, err, secs, *mentions):
    assert code != 0, f"expected a non-zero exit, got 0; stderr:\n{err}"
    assert code > 0, f"killed by signal {-code} instead of exiting with an error; stderr:\n{err}"
    assert secs < 10, f"took {secs:.1f}s to fail"
    assert "Traceback" not in err, f"stderr has a Python traceback:\n{err}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, "no error message on stderr"
    assert len(lines) <= 5, f"expected one clear error line, got {len(lines)} lines:\n{err}"
    if mentions:
        assert any(m in err for m in mentions), f"stderr mentions none of {mentions}:\n{err}"


def test_missing_module():
    code, out, err, secs = run_cli("--bind", "127.0.0.1:0", "nosuchmodule_xyz:app")
    _assert_clean_startup_error(code, err, secs, "nosuchmodule_xyz")


def test_missing_attribute():
    code, out, err, secs = run_cli("--bind", "127.0.0.1:0", "wsgi_basic:nosuchattr_xyz")
    _assert_clean_startup_error(code, err, secs, "nosuchattr_xyz")


def test_module_raising_at_import():
    code, out, err, secs = run_cli("--bind", "127.0.0.1:0", "import_error_app:app")
    _assert_clean_startup_error(code, err, secs, "ringwsgi-test-import-boom", "import_error_app")


def test_port_in_use():
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(8)
        port = blocker.getsockname()[1]
        code, out, err, secs = run_cli("--bind", f"127.0.0.1:{port}", "wsgi_basic:app")
        _assert_clean_startup_error(code, err, secs, str(port), "in use", "Address")
    finally:
        blocker.close()


def test_app_not_found_without_pythonpath():
    """pp_app only exists in apps/extra_path: without --pythonpath it cannot load."""
    code, out, err, secs = run_cli("--bind", "127.0.0.1:0", "pp_app:app")
    _assert_clean_startup_error(code, err, secs, "pp_app")


# --- signals -----------------------------------------------------------------


def _assert_port_closed(port):
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(server_factory, sig):
    srv = server_factory("wsgi_basic:app", "--workers", "2")
    assert get(srv.port, "/").status == 200
    t0 = time.monotonic()
    code = srv.stop(sig, timeout=10)  # asserts nothing of the group is left
    elapsed = time.monotonic() - t0
    assert code == 0, f"exit code {code} after {sig.name}\n{srv.describe()}"
    assert elapsed < 10
    assert not group_alive(srv.pgid)
    _assert_port_closed(srv.port)


def test_sigint_to_whole_group_like_ctrl_c(server_factory):
    srv = server_factory("wsgi_basic:app", "--workers", "2")
    assert get(srv.port, "/").status == 200
    import os

    os.killpg(srv.pgid, signal.SIGINT)
    code = srv.wait_exit(10)
    assert code == 0, f"exit code {code} after SIGINT to the group\n{srv.describe()}"
    assert srv.stop() == 0  # checks that no process of the group is left
    assert "Traceback" not in srv.logs()


def test_sigterm_with_idle_keepalive_connection(server_factory):
    srv = server_factory("wsgi_basic:app", "--workers", "1")
    c = RawConn(srv.port)
    try:
        assert c.request("GET", "/").status == 200  # connection now idle, kept alive
        t0 = time.monotonic()
        code = srv.stop(signal.SIGTERM, timeout=10)
        assert code == 0
        assert time.monotonic() - t0 < 10
        assert c.closed_by_peer(2), "idle keep-alive connection not closed at shutdown"
    finally:
        c.close()


# --- --pythonpath, --chdir, examples ------------------------------------------


def test_pythonpath(server_factory):
    extra = APPS_DIR / "extra_path"
    srv = server_factory("pp_app:app", "--workers", "1", "--pythonpath", str(extra))
    r = get(srv.port, "/")
    assert r.status == 200
    assert r.body.startswith(b"pp_app here\n")


def test_chdir(server_factory, tmp_path):
    target = APPS_DIR / "extra_path"
    srv = server_factory("pp_app:app", "--workers", "1", "--chdir", str(target), cwd=tmp_path)
    r = get(srv.port, "/")
    assert r.status == 200
    assert r.text() == f"pp_app here\ncwd={target}\n"


def test_chdir_relative(server_factory):
    srv = server_factory("pp_app:app", "--workers", "1", "--chdir", "tests/apps/extra_path", cwd=ROOT)
    assert get(srv.port, "/").text().startswith("pp_app here\n")


def test_example_hello(server_factory):
    srv = server_factory("hello:app", "--chdir", str(ROOT / "examples"), "--workers", "1", cwd=ROOT)
    r = get(srv.port, "/")
    assert (r.status, r.body) == (200, b"Hello from ringwsgi\n")
    r = get(srv.port, "/environ?x=1")
    assert r.status == 200
    assert "REQUEST_METHOD = 'GET'" in r.text()
    assert "QUERY_STRING = 'x=1'" in r.text()
    assert get(srv.port, "/missing").status == 404
