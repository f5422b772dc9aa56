"""Where ringwsgi listens: repeated --bind (TCP, IPv6, unix sockets, inherited fds), systemd
socket activation, bad binds, and --user/--group (workers never run as root)."""
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time

import pytest

from harness import APPS_DIR, RINGWSGI, get, run_cli, start_or_fail, worker_pid

LISTENING = re.compile(r"Listening at: (\S+)")


def listening(srv) -> list:
    """Every `Listening at:` address the server logged, in order."""
    return LISTENING.findall(srv.logs())


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def unix_get(path: str, target: str = "/") -> "tuple[int, bytes]":
    """GET over a unix-domain socket (HTTP/1.1, Connection: close): (status, body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: unix\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_two_tcp_binds_both_serve(server_factory):
    srv = server_factory("wsgi_basic:app", "--bind", "127.0.0.1:0", "--workers", "2")
    urls = listening(srv)
    assert len(urls) == 2, srv.logs()
    ports = {port_of(u) for u in urls}
    assert len(ports) == 2
    for port in ports:
        for _ in range(4):  # several connections: every worker thread's socket
            r = get(port, "/")
            assert r.status == 200 and r.body == b"Hello, World!"


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this host has no IPv6 loopback (::1)")
def test_ipv6_bind_serves(server_factory):
    srv = server_factory("wsgi_basic:app", "--bind", "[::1]:0")
    v6 = [u for u in listening(srv) if u.startswith("http://[::1]:")]
    assert len(v6) == 1, srv.logs()
    port = port_of(v6[0])
    with socket.create_connection(("::1", port), timeout=10) as s:
        s.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    environ = json.loads(raw.partition(b"\r\n\r\n")[2])
    assert environ["REMOTE_ADDR"] == "::1"
    # IPV6_V6ONLY: the port is not taken on IPv4 by this socket.
    with socket.socket() as s4:
        s4.bind(("127.0.0.1", port))


def test_unix_socket_serves_with_umask_mode(server_factory, tmp_path):
    path = tmp_path / "app.sock"
    srv = server_factory(
        "wsgi_basic:app", "--bind", f"unix:{path}", "--umask", "007", "--workers", "2"
    )
    assert f"unix:{path}" in listening(srv), srv.logs()
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o770, oct(stat.S_IMODE(mode))
    for _ in range(4):
        assert unix_get(str(path)) == (200, b"Hello, World!")
    status, body = unix_get(str(path), "/environ")
    environ = json.loads(body)
    assert status == 200
    assert environ["REMOTE_ADDR"] == "" and "REMOTE_PORT" not in environ
    srv.stop()
    assert not path.exists(), "the socket file is removed when the server stops"


@pytest.mark.parametrize("mode, route", [("subinterpreter", "/worker"), ("process", "/pid")])
def test_every_worker_takes_turns_on_a_shared_unix_socket(server_factory, tmp_path, mode, route):
    """One unix socket, two workers (threads or processes): both accept on it, idle ones in
    turn, even for one client at a time."""
    path = tmp_path / "app.sock"
    srv = server_factory(
        "wsgi_basic:app", "--bind", f"unix:{path}", "--mode", mode, "--workers", "2"
    )
    deadline = time.monotonic() + 30
    while srv.logs().count("worker threads ready") < (2 if mode == "process" else 1):
        assert time.monotonic() < deadline, srv.logs()
        time.sleep(0.05)
    # io_uring keeps each idle worker's accept queued in the kernel, so they alternate exactly;
    # epoll wakes whichever worker waits at that moment, so a busy machine may give one worker
    # a run of connections: ask until both answered (or 100 went to one).
    seen = set()
    for _ in range(100):
        status, body = unix_get(str(path), route)
        assert status == 200
        seen.add(int(body))
        if len(seen) == 2:
            break
    assert len(seen) == 2, f"one worker answered 100 unix connections in a row: {seen}"
    assert get(srv.port, "/").status == 200


def test_stale_unix_socket_is_replaced_live_one_refused(server_factory, tmp_path):
    path = tmp_path / "app.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # a file nobody listens on: what a killed server leaves
    srv = server_factory("wsgi_basic:app", "--bind", f"unix:{path}")
    assert unix_get(str(path)) == (200, b"Hello, World!")
    # A second server must not steal the live socket.
    code, out, err, secs = run_cli("--bind", f"unix:{path}", "wsgi_basic:app")
    assert code == 1, err
    assert "another server is listening" in err and str(path) in err, err
    assert unix_get(str(path)) == (200, b"Hello, World!")
    srv.stop()


def test_inherited_fd_serves(server_factory):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    try:
        srv = server_factory(
            "wsgi_basic:app", "--workers", "2", bind=f"fd://{fd}", pass_fds=(fd,)
        )
    finally:
        sock.close()  # the server holds its own copy
    assert listening(srv) == [f"http://127.0.0.1:{port}"], srv.logs()
    for _ in range(4):
        assert get(port, "/").status == 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate missing: scripts/setup-system installs the systemd package",
)
def test_systemd_socket_activation():
    port = free_port()
    proc = subprocess.Popen(
        ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=web",
         str(RINGWSGI), "--bind", "127.0.0.1:1", "wsgi_basic:app"],
        cwd=str(APPS_DIR),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # systemd-socket-activate listens first, starts ringwsgi on a connection
            try:
                r = get(port, "/", timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert r.status == 200 and r.body == b"Hello, World!"
        environ = json.loads(get(port, "/environ").body)
        assert not any(k.startswith("LISTEN_") for k in environ), "LISTEN_* leaked to the app"
    finally:
        os.killpg(proc.pid, 15)
        _, err = proc.communicate(timeout=30)
    err = err.decode()
    assert "systemd socket activation: 1 socket(s), --bind ignored" in err, err
    assert f"Listening at: http://127.0.0.1:{port} (systemd: web)" in err, err


@pytest.mark.parametrize(
    "bind, mention",
    [
        ("unix:/nonexistent-dir-ringwsgi/app.sock", "/nonexistent-dir-ringwsgi/app.sock"),
        ("fd://99", "fd://99"),
        ("no.such.host:80", "invalid --bind 'no.such.host:80'"),
        ("127.0.0.1:99999", "invalid --bind"),
    ],
)
def test_bad_bind_fails_clearly(bind, mention):
    code, out, err, secs = run_cli("--bind", bind, "wsgi_basic:app")
    assert code == 1, err
    assert mention in err, err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) <= 2, err


def groups(pid: int) -> list:
    """Supplementary groups of a process."""
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("Groups:"))
    return [int(g) for g in line.split()[1:]]


def status_ids(pid: int) -> "tuple[int, int]":
    """Real uid and gid of a process (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


# The Python interpreter lives under /root (mode 0700 here), which nobody may not enter: run
# the server in a private mount namespace where /root is a world-readable tmpfs that holds only
# the pyenv tree (the host's /root is untouched).
PYENV = os.path.realpath(os.path.join(os.path.dirname(RINGWSGI), "python3"))
ROOT_VIEW = (
    'set -e; spot=$1; shift; mount --bind /root/.pyenv "$spot"; '
    "mount -t tmpfs -o mode=755 tmpfs /root; "
    'mkdir /root/.pyenv; mount --bind "$spot" /root/.pyenv; '
    'exec "$@"'
)


def nobody_wrapper(spot) -> tuple:
    """The command prefix under which user nobody can run the Python interpreter."""
    if os.geteuid() != 0:
        pytest.skip("--user needs root")
    wrap = ()
    if PYENV.startswith("/root/.pyenv/"):
        spot.mkdir()
        wrap = ("unshare", "-m", "--propagation", "private", "sh", "-c", ROOT_VIEW, "sh", str(spot))
    probe = subprocess.run(
        [*wrap, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", PYENV, "-c", "0"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot run {PYENV} here: {probe.stderr.decode()[-300:]}")
    return wrap


def test_user_drops_root_in_master_and_workers(server_factory, tmp_path):
    wrap = nobody_wrapper(tmp_path / "pyenv")
    sock_dir = tmp_path / "run"
    sock_dir.mkdir()
    os.chmod(sock_dir, 0o777)
    path = sock_dir / "app.sock"
    srv = server_factory(
        "wsgi_basic:app", "--bind", f"unix:{path}", "--user", "nobody", wrap=wrap
    )
    nobody = 65534
    pid = int(get(srv.port, "/pid").body)
    assert pid == worker_pid(srv)
    assert status_ids(pid)[0] == nobody, "the worker process runs as nobody"
    assert status_ids(srv.proc.pid)[0] == nobody, "the master dropped root too"
    assert groups(pid) == [65534], "root's supplementary groups are gone"
    assert os.stat(path).st_uid == nobody, "the socket file belongs to --user"
    assert unix_get(str(path)) == (200, b"Hello, World!")


def test_unknown_user_fails_clearly():
    code, out, err, secs = run_cli("--bind", "127.0.0.1:0", "--user", "no-such-user-xyz", "wsgi_basic:app")
    assert code == 1 and "--user no-such-user-xyz: no such user" in err, err


UNITS = APPS_DIR.parent.parent / "tuning" / "systemd"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze missing: scripts/setup-system installs the systemd package",
)
def test_systemd_units_verify(tmp_path):
    """tuning/systemd/ as shipped, with this checkout's ringwsgi and app directory filled in."""
    for unit in ("ringwsgi.socket", "ringwsgi.service"):
        text = (UNITS / unit).read_text()
        text = text.replace("/srv/myapp/.venv/bin/ringwsgi", str(RINGWSGI))
        text = text.replace("/srv/myapp", str(APPS_DIR))
        (tmp_path / unit).write_text(text)
    service = (tmp_path / "ringwsgi.service").read_text()
    assert f"ExecStart={RINGWSGI} " in service and "Type=notify" in service
    proc = subprocess.run(
        ["systemd-analyze", "verify", "ringwsgi.socket", "ringwsgi.service"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), (
        proc.stdout + proc.stderr
    )


def test_sd_notify_ready(server_factory, tmp_path):
    """Type=notify: the master sends READY=1 to $NOTIFY_SOCKET once it serves."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    with notify:
        srv = server_factory("wsgi_basic:app", env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert notify.recv(256) == b"READY=1"
        assert get(srv.port, "/").status == 200
