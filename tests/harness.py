"""Test harness for ringwsgi: a Server process wrapper and raw HTTP/1.1 helpers.

Server runs `<venv>/bin/ringwsgi --bind 127.0.0.1:0 ... MODULE:APP` in its own
process group, collects its stderr/stdout in background threads, learns the port
from the `Listening at: http://127.0.0.1:PORT` line, and waits until the server
answers HTTP. stop() always leaves nothing of the process group behind.

RawConn sends exact bytes and parses responses with a small HTTP/1.1 parser of
its own so that tests can check framing (Content-Length / chunked / close).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
APPS_DIR = TESTS_DIR / "apps"
RINGWSGI = Path(sys.executable).parent / "ringwsgi"

LISTENING_RE = re.compile(r"Listening at: http://([0-9.]+):(\d+)")

# Set to auto, uring or epoll: every Server gets `--io` with it (unless its test passes --io),
# so the whole suite can run against either transport (scripts/test runs it under epoll too).
TEST_IO_VAR = "RINGWSGI_TEST_IO"


def io_args(args) -> list:
    """`--io $RINGWSGI_TEST_IO` when that is set and args choose no transport themselves."""
    mode = os.environ.get(TEST_IO_VAR)
    if not mode or any(a == "--io" or a.startswith("--io=") for a in args):
        return []
    return ["--io", mode]

# Every Server started and not yet stopped (the session fixture kills leftovers).
_LIVE_SERVERS: "list[Server]" = []
_LIVE_LOCK = threading.Lock()


def live_servers() -> "list[Server]":
    with _LIVE_LOCK:
        return list(_LIVE_SERVERS)


def _chain(*fns):
    """One preexec_fn that runs each of fns (None entries skipped) in order."""
    fns = [f for f in fns if f is not None]

    def run():
        for f in fns:
            f()

    return run


def _die_with_parent():
    """preexec_fn: SIGKILL the server if the test process dies (e.g. pytest killed -9)."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # noqa: BLE001 - best effort only
        pass


class ServerStartError(AssertionError):
    pass


def ringwsgi_path() -> Path:
    if not RINGWSGI.exists():
        raise ServerStartError(
            f"{RINGWSGI} does not exist: ringwsgi is not installed in the Python running the "
            f"tests ({sys.executable}); run scripts/setup"
        )
    return RINGWSGI


def group_alive(pgid: int) -> bool:
    """True if any process (zombies included) is still in process group pgid."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_members(pgid: int) -> list[str]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("latin-1")
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) > 2 and int(rest[2]) == pgid:
            comm = stat[stat.find("(") + 1: stat.rfind(")")]
            out.append(f"pid={entry} comm={comm} state={rest[0]}")
    return out


class Server:
    """A running `ringwsgi` process (see module docstring)."""

    def __init__(
        self,
        app: str,
        *args: str,
        cwd: Path | str = APPS_DIR,
        env: dict | None = None,
        bind: str = "127.0.0.1:0",
        wait_http: bool = True,
        start_timeout: float = 30.0,
        pass_fds: tuple = (),
        wrap: tuple = (),
        preexec_fn=None,
    ):
        """pass_fds: fds the server inherits; wrap: a command prefix it runs under;
        preexec_fn: runs in the child before exec (e.g. a seccomp filter)."""
        self.app = app
        self.args = list(args)
        self.cwd = Path(cwd)
        self.bind = bind
        full_env = dict(os.environ)
        # Make the app's own output unbuffered so tests can see it promptly.
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        full_env.pop("SCRIPT_NAME", None)
        if env:
            full_env.update(env)
        self.cmd = [
            *wrap, str(ringwsgi_path()), "--bind", bind, *io_args(self.args), *self.args, app
        ]
        self._stderr_lines: list[str] = []
        self._stdout_lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._listening = threading.Event()
        self.host: str | None = None
        self.port: int | None = None
        self.returncode: int | None = None
        self._stopped = False
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=str(self.cwd),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_chain(_die_with_parent, preexec_fn),
            pass_fds=pass_fds,
        )
        self.pgid = self.proc.pid  # start_new_session: the child leads its own group
        with _LIVE_LOCK:
            _LIVE_SERVERS.append(self)
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._stderr_lines, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._stdout_lines, False), daemon=True),
        ]
        for t in self._threads:
            t.start()
        try:
            self._wait_listening(start_timeout)
            if wait_http:
                self._wait_http(start_timeout)
        except BaseException:
            self.kill()
            raise

    # -- output -------------------------------------------------------------
    def _pump(self, stream, lines, is_stderr):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._lines_lock:
                lines.append(line)
            if is_stderr and self.port is None:
                m = LISTENING_RE.search(line)
                if m:
                    self.host, self.port = m.group(1), int(m.group(2))
                    self._listening.set()
        stream.close()

    def logs(self) -> str:
        """Everything the server wrote to stderr so far."""
        with self._lines_lock:
            return "\n".join(self._stderr_lines)

    def stdout(self) -> str:
        with self._lines_lock:
            return "\n".join(self._stdout_lines)

    def describe(self, tail: int | None = None) -> str:
        """Command, exit code and output (only the last `tail` lines of each stream if given)."""
        with self._lines_lock:
            err, out = list(self._stderr_lines), list(self._stdout_lines)
        if tail is not None:
            err = (["[... %d earlier lines]" % (len(err) - tail)] if len(err) > tail else []) + err[-tail:]
            out = (["[... %d earlier lines]" % (len(out) - tail)] if len(out) > tail else []) + out[-tail:]
        return (
            f"command: {' '.join(self.cmd)} (cwd={self.cwd})\n"
            f"returncode: {self.proc.poll()}\n"
            "--- stderr ---\n" + "\n".join(err) + "\n--- stdout ---\n" + "\n".join(out)
        )

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.logs():
                return True
            time.sleep(0.05)
        return needle in self.logs()

    # -- start-up -----------------------------------------------------------
    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None:
                # Let the pump threads drain what is left.
                for t in self._threads:
                    t.join(2)
                if self._listening.is_set():
                    break
                raise ServerStartError(
                    f"ringwsgi exited with code {self.proc.returncode} before listening\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"no 'Listening at: http://HOST:PORT' line on stderr within {timeout}s\n{self.describe()}"
                )

    def _wait_http(self, timeout):
        deadline = time.monotonic() + timeout
        last_err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"ringwsgi exited with code {self.proc.returncode} while starting\n{self.describe()}"
                )
            try:
                with RawConn(self.port, timeout=5) as c:
                    c.send(
                        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                    )
                    c.read_response()
                    return
            except (OSError, HTTPParseError) as e:
                last_err = e
                time.sleep(0.05)
        raise ServerStartError(
            f"ringwsgi did not answer HTTP within {timeout}s (last error: {last_err!r})\n{self.describe()}"
        )

    # -- address ------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def conn(self, timeout: float = 10.0) -> "RawConn":
        return RawConn(self.port, timeout=timeout)

    # -- stopping -----------------------------------------------------------
    def send_signal(self, sig: int):
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _wait_group_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while group_alive(self.pgid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def kill(self):
        """Unconditionally SIGKILL the whole group (used on errors)."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._wait_group_gone(5)
        self._finish()

    def _finish(self):
        self._stopped = True
        self.returncode = self.proc.poll()
        for t in self._threads:
            t.join(2)
        with _LIVE_LOCK:
            if self in _LIVE_SERVERS:
                _LIVE_SERVERS.remove(self)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0, check_group: bool = True) -> int:
        """Send sig to the master, wait up to timeout s, then SIGKILL the group.

        Returns the exit code. Raises AssertionError if the server had to be
        killed or if anything of its process group outlived it.
        """
        if self._stopped:
            return self.returncode
        problems = []
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            if self.wait_exit(timeout) is None:
                problems.append(f"did not exit within {timeout}s of {signal.Signals(sig).name}")
        code = self.proc.poll()
        if check_group and not self._wait_group_gone(5):
            problems.append("processes of its group outlived it: " + "; ".join(_group_members(self.pgid)))
        if problems:
            self.kill()
            raise AssertionError("ringwsgi " + ", ".join(problems) + "\n" + self.describe())
        self._finish()
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.stop()
        else:
            self.kill()


def start_or_fail(*args: str, **kwargs) -> Server:
    """Start a Server; a start-up failure becomes a test failure with the logs."""
    import pytest

    try:
        return Server(*args, **kwargs)
    except AssertionError as e:
        pytest.fail(f"could not start ringwsgi: {e}", pytrace=False)


def run_cli(
    *args: str, cwd: Path | str = APPS_DIR, timeout: float = 15.0, env: dict | None = None, preexec_fn=None
):
    """Run ringwsgi to completion (for --help and start-up errors).

    Returns (returncode, stdout, stderr, seconds). Kills the group on timeout.
    """
    full_env = dict(os.environ)
    full_env.pop("SCRIPT_NAME", None)
    if env:
        full_env.update(env)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(ringwsgi_path()), *args],
        cwd=str(cwd),
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"ringwsgi {' '.join(args)} still running after {timeout}s\n"
            f"stderr:\n{err.decode('utf-8', 'replace')}"
        )
    finally:
        # Never leave anything of the group behind, even if the master exited.
        deadline = time.monotonic() + 5
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.monotonic() - t0


# ---------------------------------------------------------------------------
# Raw HTTP/1.1
# ---------------------------------------------------------------------------


class HTTPParseError(Exception):
    pass


class ConnectionClosed(HTTPParseError):
    """EOF where a response (or the rest of one) was expected."""


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list  # [(name, value)] in wire order, names as sent
    body: bytes = b""
    framing: str = "none"  # "length" | "chunked" | "close" | "none"
    trailers: list = field(default_factory=list)
    interim: list = field(default_factory=list)  # 1xx responses seen before this one

    def header(self, name: str, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name: str) -> list:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_token(self, name: str, token: str) -> bool:
        """True if the comma-separated header `name` contains token (case-insensitive)."""
        token = token.lower()
        return any(
            t.strip().lower() == token for v in self.header_all(name) for t in v.split(",")
        )

    def json(self):
        import json

        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8")


class RawConn:
    """A client socket with a read buffer and an exact HTTP/1.1 response parser."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reading -------------------------------------------------------------
    def _fill(self) -> bool:
        """Read more bytes into the buffer; False on EOF."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_line(self, limit: int = 65536) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            if len(self.buf) > limit:
                raise HTTPParseError(f"line too long: {bytes(self.buf[:200])!r}")
            if not self._fill():
                raise ConnectionClosed(f"connection closed mid-line (buffer={bytes(self.buf[:200])!r})")

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionClosed(f"connection closed after {len(self.buf)} of {n} body bytes")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _read_headers(self) -> list:
        headers = []
        while True:
            line = self._read_line()
            if line == b"":
                return headers
            if line[:1] in (b" ", b"\t"):
                raise HTTPParseError(f"obsolete line folding in response: {line!r}")
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise HTTPParseError(f"bad header line: {line!r}")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))

    def read_response(self, method: str = "GET") -> Response:
        """Read one complete response (1xx interim responses are collected)."""
        interim = []
        while True:
            if not self.buf and not self._fill():
                raise ConnectionClosed("connection closed before a response")
            line = self._read_line()
            m = re.fullmatch(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?", line)
            if not m:
                raise HTTPParseError(f"bad status line: {line!r}")
            version = m.group(1).decode()
            status = int(m.group(2))
            reason = (m.group(3) or b"").decode("latin-1")
            headers = self._read_headers()
            resp = Response(version, status, reason, headers)
            if 100 <= status < 200:
                interim.append(resp)
                continue
            resp.interim = interim
            break

        te = [t.strip().lower() for v in resp.header_all("Transfer-Encoding") for t in v.split(",")]
        cls = resp.header_all("Content-Length")
        if method.upper() == "HEAD" or status in (204, 304):
            resp.framing = "none"
        elif te:
            if te[-1] != "chunked":
                raise HTTPParseError(f"Transfer-Encoding without final chunked: {te}")
            if cls:
                raise HTTPParseError("both Transfer-Encoding and Content-Length in a response")
            resp.framing = "chunked"
            resp.body, resp.trailers = self._read_chunked()
        elif cls:
            if len(set(cls)) != 1 or not cls[0].isdigit():
                raise HTTPParseError(f"bad Content-Length: {cls}")
            resp.framing = "length"
            resp.body = self._read_exact(int(cls[0]))
        else:
            resp.framing = "close"
            while self._fill():
                pass
            resp.body = bytes(self.buf)
            self.buf.clear()
        return resp

    def _read_chunked(self):
        body = bytearray()
        while True:
            line = self._read_line()
            size_s = line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]+", size_s):
                raise HTTPParseError(f"bad chunk size line: {line!r}")
            size = int(size_s, 16)
            if size == 0:
                break
            body += self._read_exact(size)
            if self._read_exact(2) != b"\r\n":
                raise HTTPParseError("chunk data not followed by CRLF")
        trailers = self._read_headers()
        return bytes(body), trailers

    def read_head(self) -> Response:
        """Read the next status line and headers only (a 1xx is returned as is; no body read)."""
        if not self.buf and not self._fill():
            raise ConnectionClosed("connection closed before a response")
        line = self._read_line()
        m = re.fullmatch(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?", line)
        if not m:
            raise HTTPParseError(f"bad status line: {line!r}")
        headers = self._read_headers()
        return Response(m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1"), headers)

    def read_until_eof(self, timeout: float = 5.0) -> "tuple[bytes, bool]":
        """Everything the server sends until it closes the connection, at most timeout s.

        Returns (bytes, eof): eof is False if the connection was still open at the deadline.
        """
        saved = self.sock.gettimeout()
        deadline = time.monotonic() + timeout
        try:
            while not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                try:
                    self._fill()
                except socket.timeout:
                    break
        finally:
            self.sock.settimeout(saved)
        data = bytes(self.buf)
        self.buf.clear()
        return data, self.eof

    def request(self, method: str, path: str, headers=None, body: bytes = b"", version: str = "HTTP/1.1") -> Response:
        self.send(build_request(method, path, headers, body, version))
        return self.read_response(method)

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """Wait up to timeout for EOF from the server, with no stray bytes.

        True if the server closed the connection; False if it is still open.
        Unexpected extra bytes raise HTTPParseError.
        """
        if self.eof:
            return True
        if self.buf:
            raise HTTPParseError(f"unexpected bytes after the response: {bytes(self.buf[:200])!r}")
        saved = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(saved)
        if data:
            raise HTTPParseError(f"unexpected bytes after the response: {data[:200]!r}")
        self.eof = True
        return True


def build_request(method, path, headers=None, body=b"", version="HTTP/1.1", host="127.0.0.1") -> bytes:
    """Build exact request bytes. headers: list of (name, value); Host added for
    HTTP/1.1 unless given; Content-Length added when there is a body and no
    Content-Length/Transfer-Encoding header."""
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if version == "HTTP/1.1" and "host" not in names and host is not None:
        headers.insert(0, ("Host", host))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body


def get(port: int, path: str, headers=None, version: str = "HTTP/1.1", timeout: float = 10.0) -> Response:
    """One request on a fresh connection."""
    with RawConn(port, timeout=timeout) as c:
        return c.request("GET", path, headers=headers, version=version)


def post(port: int, path: str, body: bytes, headers=None, timeout: float = 10.0) -> Response:
    with RawConn(port, timeout=timeout) as c:
        return c.request("POST", path, headers=headers, body=body)


def decode_chunked_prefix(raw: bytes) -> "tuple[bytes, bool]":
    """Decode as much of a chunked body as raw holds: (data, complete).

    complete is True only if the last chunk (size 0) and the end of the trailer section
    were both received; a body cut short by a closed connection gives complete=False.
    Malformed chunk framing raises HTTPParseError.
    """
    data = bytearray()
    pos = 0
    while True:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return bytes(data), False
        size_s = raw[pos:eol].split(b";", 1)[0].strip()
        if not re.fullmatch(rb"[0-9a-fA-F]+", size_s):
            raise HTTPParseError(f"bad chunk size line: {raw[pos:eol][:100]!r}")
        size = int(size_s, 16)
        pos = eol + 2
        if size == 0:
            # trailer section: header lines, then an empty line
            while True:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    return bytes(data), False
                if eol == pos:
                    return bytes(data), True
                pos = eol + 2
        if len(raw) < pos + size:
            data += raw[pos:]
            return bytes(data), False
        data += raw[pos:pos + size]
        pos += size
        if raw[pos:pos + 2] != b"\r\n":
            if len(raw) < pos + 2:
                return bytes(data), False
            raise HTTPParseError("chunk data not followed by CRLF")
        pos += 2


# ---------------------------------------------------------------------------
# Hardening helpers: process introspection and "bad request, then close" checks
# ---------------------------------------------------------------------------


def worker_pids(srv: "Server") -> "list[int]":
    """PIDs of the master's child processes (ringwsgi's worker process)."""
    pids = []
    base = f"/proc/{srv.proc.pid}/task"
    try:
        tasks = os.listdir(base)
    except OSError:
        return pids
    for t in tasks:
        try:
            with open(f"{base}/{t}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return sorted(set(pids))


def worker_pid(srv: "Server", timeout: float = 10.0) -> int:
    """The single worker process of a server (falls back to the master if it has no child)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = worker_pids(srv)
        if pids:
            return pids[0]
        if time.monotonic() > deadline:
            return srv.proc.pid
        time.sleep(0.05)


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def server_rss_kib(srv: "Server") -> int:
    """VmRSS of the master plus its workers, in KiB."""
    total = 0
    for pid in [srv.proc.pid, *worker_pids(srv)]:
        try:
            total += vm_rss_kib(pid)
        except OSError:
            pass
    return total


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def reject_and_close(port: int, raw: bytes, timeout: float = 10.0) -> "tuple[Response, bool]":
    """Send raw bytes, read one response, then wait for the server to close.

    Returns (response, closed). Extra bytes after the response raise HTTPParseError
    (a second response would mean bytes after the bad request were parsed).
    """
    with RawConn(port, timeout=timeout) as c:
        try:
            c.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = c.read_response()
        return resp, c.closed_by_peer(timeout)
