"""Configuration sources: --config TOML file, RINGWSGI_* environment variables, the command line
(that precedence, per setting), --print-config, gunicorn's spellings, and errors in a file or
variable reported with where they came from (exit 2, nothing bound)."""
import re
import socket
import tomllib

import pytest

from harness import get, post, run_cli


def write_config(tmp_path, text, name="ringwsgi.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def print_config(*args, env=None):
    code, out, err, _ = run_cli("--print-config", *args, env=env, timeout=15)
    assert code == 0, f"--print-config exited {code}:\n{err}"
    return out, tomllib.loads(out)


def assert_config_error(code, err, *mentions):

    assert code == 2, f"expected exit 2, got {code}:\n{err}"
    assert "Listening at" not in err, f"the server started anyway:\n{err}"
    assert "Traceback" not in err, err
    for m in mentions:
        assert m in err, f"stderr does not mention {m!r}:\n{err}"


# --- the file and the environment reach the running server -------------------------------


def test_file_gives_app_and_flags(server_factory, tmp_path):
    path = write_config(
        tmp_path,
        'app = "wsgi_basic:app"\nworkers = 1\nlimit-request-body = 1000\n',
    )
    # No positional on the command line: the app comes from the file.
    srv = server_factory(f"--config={path}")
    assert get(srv.port, "/").body == b"Hello, World!"
    assert post(srv.port, "/echo", b"x" * 900).status == 200
    assert post(srv.port, "/echo", b"x" * 1100).status == 413


def test_env_overrides_file_and_command_line_overrides_env(server_factory, tmp_path):
    path = write_config(tmp_path, "limit_request_body = 1000\nworkers = 1\n")
    env = {"RINGWSGI_LIMIT_REQUEST_BODY": "3000"}
    srv = server_factory("wsgi_basic:app", "-c", str(path), env=env)
    assert post(srv.port, "/echo", b"x" * 2000).status == 200, "the file won over the environment"
    assert post(srv.port, "/echo", b"x" * 4000).status == 413, "the environment was ignored"
    srv.stop()
    srv = server_factory(
        "wsgi_basic:app", "-c", str(path), "--limit-request-body", "5000", env=env
    )
    assert post(srv.port, "/echo", b"x" * 4000).status == 200, "the environment won over the CLI"
    assert post(srv.port, "/echo", b"x" * 6000).status == 413


# --- precedence and value forms, read back with --print-config ----------------------------


def test_precedence_per_setting(tmp_path):
    path = write_config(tmp_path, 'workers = 3\nbacklog = 100\nlog-level = "debug"\n')
    env = {"RINGWSGI_BACKLOG": "200", "RINGWSGI_LOG_LEVEL": "warn"}
    _, cfg = print_config("--config", str(path), "--log-level", "error", env=env)
    assert cfg["workers"] == 3  # file only
    assert cfg["backlog"] == 200  # env over file
    assert cfg["log-level"] == "error"  # command line over both
    assert cfg["threads"] == 1  # default


def test_worker_connections_from_environment():
    """RINGWSGI_WORKER_CONNECTIONS is a setting, whatever the master's RINGWSGI_WORKER_* are."""
    _, cfg = print_config(env={"RINGWSGI_WORKER_CONNECTIONS": "77"})
    assert cfg["worker-connections"] == 77


def test_config_file_from_environment(tmp_path):
    path = write_config(tmp_path, "threads = 4\n")
    _, cfg = print_config(env={"RINGWSGI_CONFIG": str(path)})
    assert cfg["threads"] == 4


def test_switches_from_file_and_environment(tmp_path):
    path = write_config(tmp_path, "stats = true\n")
    assert print_config("--config", str(path))[1]["stats"] is True
    for text, expected in [("0", False), ("false", False), ("1", True), ("TRUE", True)]:
        _, cfg = print_config("--config", str(path), env={"RINGWSGI_STATS": text})
        assert cfg["stats"] is expected, text
    assert print_config("--stats", env={"RINGWSGI_STATS": "0"})[1]["stats"] is True


def test_gunicorn_spellings(tmp_path):
    path = write_config(tmp_path, "workers = 3\n")
    _, cfg = print_config(
        "-c", str(path), "-w", "2", "-b", "127.0.0.1:9",
        "--limit-request-field_size", "4000", "--log-file", str(tmp_path / "log"),
        "--log-level", "warning",
    )
    assert cfg["log-level"] == "warning"
    assert cfg["workers"] == 2
    assert cfg["bind"] in ("127.0.0.1:9", ["127.0.0.1:9"])
    assert cfg["limit-request-field-size"] == 4000
    assert cfg["error-logfile"] == str(tmp_path / "log")


# --- --print-config ---------------------------------------------------------------------------


def test_print_config_lists_every_flag_and_neither_binds_nor_imports():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        # The port is taken and the module does not exist: binding or importing would fail.
        text, cfg = print_config("--bind", f"127.0.0.1:{port}", "nosuchmodule_xyz:app")
    finally:
        blocker.close()
    assert cfg["app"] == "nosuchmodule_xyz:app"
    code, out, err, _ = run_cli("--help")
    flags = set(re.findall(r"--([a-z][a-z0-9-]*[a-z0-9])", out))
    flags -= {"help", "version", "config", "print-config"}
    listed = set(cfg) | set(re.findall(r"^# ([a-z0-9-]+) is not set$", text, re.M))
    missing = {f for f in flags if f not in listed}
    assert not missing, f"--print-config leaves out {sorted(missing)}:\n{text}"


def test_print_config_round_trip(tmp_path):
    first, _ = print_config(
        "-w", "2", "--keep-alive", "2.5", "--stats", "--pythonpath", "a,b", "wsgi_basic:app",
        env={"RINGWSGI_LIMIT_REQUEST_BODY": "123"},
    )
    path = write_config(tmp_path, first, "printed.toml")
    second, _ = print_config("--config", str(path))
    assert second == first


# --- errors: where, what, and the server does not start ---------------------------------------


def test_unknown_key_in_file(tmp_path):
    path = write_config(tmp_path, "wokers = 2\n")
    code, _, err, _ = run_cli("--config", str(path), "wsgi_basic:app", "--bind", "127.0.0.1:0")
    assert_config_error(code, err, f'{path}: key "wokers": unknown setting', 'did you mean "workers"')


@pytest.mark.parametrize(
    "text, key, value",
    [
        ('workers = "x"', "workers", '"x"'),
        ("limit-request-fields = 1000", "limit-request-fields", '"1000"'),
        ('log-format = "xml"', "log-format", '"xml"'),
    ],
)
def test_bad_value_in_file(tmp_path, text, key, value):
    path = write_config(tmp_path, text + "\n")
    code, _, err, _ = run_cli("--config", str(path), "wsgi_basic:app", "--bind", "127.0.0.1:0")
    assert_config_error(code, err, f'{path}: key "{key}": invalid value {value}: ')


@pytest.mark.parametrize(
    "text, reason",
    [
        ("stats = 1", "expected true or false"),
        ("workers = [1, 2]", "expected one value, not a list"),
        ("workers = 2\nworkers = 3", "duplicate key"),
        ("workers = ", "string values must be quoted"),
    ],
)
def test_malformed_file(tmp_path, text, reason):
    path = write_config(tmp_path, text + "\n")
    code, _, err, _ = run_cli("--config", str(path), "wsgi_basic:app", "--bind", "127.0.0.1:0")
    assert_config_error(code, err, str(path))
    assert reason in err or "invalid" in err, err


def test_missing_file(tmp_path):
    code, _, err, _ = run_cli("--config", str(tmp_path / "nope.toml"), "wsgi_basic:app")
    assert_config_error(code, err, "nope.toml", "cannot read")


@pytest.mark.parametrize(
    "env, mentions",
    [
        ({"RINGWSGI_WORKERS": "x"}, ['RINGWSGI_WORKERS: invalid value "x": ']),
        ({"RINGWSGI_STATS": "maybe"}, ['RINGWSGI_STATS: invalid value "maybe"', "1, 0, true or false"]),
        ({"RINGWSGI_LOG_LEVEL": "loud"}, ['RINGWSGI_LOG_LEVEL: invalid value "loud": expected error, warn']),
        ({"RINGWSGI_WOKERS": "2"}, ["RINGWSGI_WOKERS: unknown setting", 'did you mean "RINGWSGI_WORKERS"']),
    ],
)
def test_bad_environment_variable(env, mentions):
    code, _, err, _ = run_cli("wsgi_basic:app", "--bind", "127.0.0.1:0", env=env)
    assert_config_error(code, err, *mentions)


def test_command_line_value_does_not_hide_a_bad_file(tmp_path):
    """A bad value is an error even where the command line overrides it: the file is wrong."""
    path = write_config(tmp_path, 'workers = "x"\n')
    code, _, err, _ = run_cli("--config", str(path), "-w", "1", "wsgi_basic:app")
    assert_config_error(code, err, 'key "workers"')
