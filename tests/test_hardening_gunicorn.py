"""Replay gunicorn 23.0.0's request fixtures (tests/fixtures/gunicorn, MIT, see LICENSE there)
over the wire to ringwsgi (hardening_app echo, --workers 1).

The .http files are turned into bytes exactly as gunicorn's tests/treq.py does. The .py
expectations are executed with stand-ins for gunicorn.config.Config (records cfg.set) and
gunicorn.http.errors (any exception name), and treq's uri() helper.

* valid/: a 2xx with gunicorn's method, path, query, body and headers (names without "_";
  Transfer-Encoding is not compared: the server decodes it). Where a valid fixture breaks a
  rule of issue "HTTP/1.1 hardening" (or needs a gunicorn-only option), RULE_OVERRIDES gives
  the status the issue asks for instead.
* invalid/: a 4xx/5xx, or a close without any answer; never a 2xx. GUNICORN_ONLY lists the
  few whose rejection comes from a gunicorn-only option with no HTTP rule behind it.
* gunicorn limit options (limit_request_line, limit_request_fields, limit_request_field_size)
  map to ringwsgi's flags of the same name; 0 (unlimited in gunicorn) keeps ringwsgi's default.
  So do proxy_protocol (`--proxy-protocol`) and forwarded_allow_ips.
* HTTP/1.1 requests without Host (most of gunicorn's fixtures) get `Host: gunicorn.fixture`
  inserted after their request line, so they test what they were written for rather than the
  Host rule (which test_hardening_parsing covers).

tests/fixtures/gunicorn_status_table.md records the statuses from one run.
"""
import socket
import sys
import types
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

import pytest

from harness import ConnectionClosed, HTTPParseError, RawConn, Server

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gunicorn"
INJECTED_HOST = b"Host: gunicorn.fixture\r\n"

# valid fixtures the rules answer differently: name -> (status, rule)
RULE_OVERRIDES = {
    "009": (400, "Content-Length and Transfer-Encoding together"),
    "025": (501, "transfer coding not implemented (gzip, chunked)"),
    "025_line": (501, "transfer coding not implemented (gzip,chunked)"),
    "027": (400, "raw bytes >= 0x80 in the target"),
    "028": (400, "whitespace before the colon (gunicorn: strip_header_spaces option)"),
    "029": (501, "transfer coding not implemented (identity, chunked)"),
    "030": (501, "transfer coding not implemented (identity, chunked)"),
    "compat_obs_fold": (400, "obs-fold (gunicorn: permit_obsolete_folding option)"),
    "compat_obs_fold_huge": (400, "obs-fold (gunicorn: permit_obsolete_folding option)"),
    # treq's conversion drops the body's newlines: 8599 bytes follow "Content-Length: 17914";
    # gunicorn's parser test reads what is there, over the wire the body never completes.
    "099": (None, "body shorter than its Content-Length, then EOF: no 2xx, close"),
}

# invalid fixtures rejected by gunicorn only because of a gunicorn option with no
# counterpart in ringwsgi or in the rules: the request is well-formed HTTP/1.1, so
# the rules ask for it to be served (invalid/040 is byte-identical to valid/040).
GUNICORN_ONLY = {
    "040": "header_map=refuse: underscore header names (same bytes as valid/040)",
    "chunked_07": "header_map=refuse: Transfer_Encoding next to Transfer-Encoding",
    # gunicorn's method pattern is stricter than RFC 9110: `-bl` is a token, so a valid method.
    "003c": "its method regex: [A-Z0-9$-_.]{3,20} (RFC 9110 allows any token)",
}

LIMIT_FLAGS = {
    "limit_request_line": "--limit-request-line",
    "limit_request_fields": "--limit-request-fields",
    "limit_request_field_size": "--limit-request-field-size",
}


# --- loading (mirrors gunicorn tests/treq.py) -----------------------------------------------


class _Config:
    def __init__(self):
        self.settings = {}

    def set(self, name, value):
        self.settings[name] = value


def _install_stubs():
    if "gunicorn.http.errors" in sys.modules and getattr(sys.modules["gunicorn"], "_stub", False):
        return
    g = types.ModuleType("gunicorn")
    g._stub = True
    cfg = types.ModuleType("gunicorn.config")
    cfg.Config = _Config
    http = types.ModuleType("gunicorn.http")
    errors = types.ModuleType("gunicorn.http.errors")
    cache = {}

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return cache.setdefault(name, type(name, (Exception,), {}))

    errors.__getattr__ = __getattr__
    g.config, g.http, http.errors = cfg, http, errors
    sys.modules.update({"gunicorn": g, "gunicorn.config": cfg, "gunicorn.http": http, "gunicorn.http.errors": errors})


def _split_request_uri(uri):
    if uri.startswith("//"):  # as gunicorn.util.split_request_uri
        parts = urlsplit("." + uri)
        return parts._replace(path=parts.path[1:])
    return urlsplit(uri)


def _uri(data):
    parts = _split_request_uri(data)
    return {"raw": data, "path": parts.path or "", "query": parts.query or "", "fragment": parts.fragment or ""}


def load_expectation(py: Path) -> dict:
    _install_stubs()
    ns = {"uri": _uri, "cfg": _Config(), "__name__": "__config__"}
    exec(compile(py.read_text(), str(py), "exec"), ns)
    return ns


def load_http(path: Path) -> bytes:
    data = path.read_bytes()
    data = data.replace(b"\n", b"").replace(b"\\r\\n", b"\r\n")
    data = data.replace(b"\\0", b"\000").replace(b"\\n", b"\n").replace(b"\\t", b"\t")
    assert b"\\" not in data, f"{path}: unexpected backslash"
    return data


def _has_host(head: bytes) -> bool:
    return any(line.lower().startswith(b"host:") for line in head.split(b"\r\n")[1:])


def inject_host_valid(data: bytes, requests: list) -> bytes:
    """Insert a Host line after the request line of each expected HTTP/1.1 request without one."""
    out, pos = b"", 0
    for req in requests:
        tail = b" " + req["uri"]["raw"].encode("latin-1") + b" HTTP/1.1\r\n"
        if req["version"] != (1, 1):
            continue
        if any(k.upper() == "HOST" for k, _ in req["headers"]):
            continue
        i = data.find(tail, pos)
        if i < 0:
            continue
        end = i + len(tail)
        out += data[pos:end] + INJECTED_HOST
        pos = end
    return out + data[pos:]


def inject_host_invalid(data: bytes) -> bytes:
    eol = data.find(b"\r\n")
    if eol < 0 or not data[:eol].endswith(b" HTTP/1.1"):
        return data
    head_end = data.find(b"\r\n\r\n")
    head = data if head_end < 0 else data[:head_end]
    if _has_host(head):
        return data
    return data[:eol + 2] + INJECTED_HOST + data[eol + 2:]


GUNICORN_LIMIT_DEFAULTS = {"limit_request_line": 4094, "limit_request_fields": 100, "limit_request_field_size": 8190}
UNLIMITED = 32768  # stands for gunicorn's 0 (no limit): far above any fixture, under the 64 KiB head cap


def server_args(settings: dict, exc_name: str = "") -> tuple:
    """ringwsgi flags for a fixture's gunicorn limit settings. Fixtures whose expected error is
    a Limit* one were written against gunicorn's defaults (request line 4094, not 8190), so
    those defaults are passed for them too."""
    eff = dict(GUNICORN_LIMIT_DEFAULTS) if exc_name.startswith("Limit") else {}
    eff.update({k: v for k, v in settings.items() if k in LIMIT_FLAGS})
    args = []
    for name, flag in LIMIT_FLAGS.items():
        if name in eff:
            args += [flag, str(eff[name] or UNLIMITED)]
    if settings.get("proxy_protocol"):
        args.append("--proxy-protocol")
    if "forwarded_allow_ips" in settings:
        args += ["--forwarded-allow-ips", settings["forwarded_allow_ips"]]
    return tuple(args)


def _names(kind):
    return sorted(p.stem for p in (FIXTURES / kind).glob("*.http"))


# --- servers: one per distinct flag set, shared by the module ------------------------------


@pytest.fixture(scope="module")
def servers():
    started = {}

    def get(args):
        if args not in started:
            try:
                # A --proxy-protocol server does not answer the plain HTTP start-up probe.
                wait_http = "--proxy-protocol" not in args
                started[args] = Server("hardening_app:app", "--workers", "1", *args, wait_http=wait_http)
            except AssertionError as e:
                started[args] = e
        s = started[args]
        if isinstance(s, Exception):
            pytest.fail(f"could not start ringwsgi {' '.join(args)}: {s}", pytrace=False)
        return s

    yield get
    for s in started.values():
        if isinstance(s, Server):
            s.stop()


def _norm_values(values):
    return [v.strip() for value in values for v in value.split(",")]


def check_echo(name, resp, req, wire_method_casefold):
    assert 200 <= resp.status < 300, f"{name}: {resp.status} {resp.reason}: {resp.body[:200]!r}"
    got = resp.json()
    want_method = req["method"]
    if wire_method_casefold:
        assert got["method"].upper() == want_method.upper()
    else:
        assert got["method"] == want_method
    want_path = unquote_to_bytes(req["uri"]["path"]).decode("latin-1")
    assert got["path"] == want_path
    assert got["query"] == req["uri"]["query"]
    body = req.get("body", b"")
    if isinstance(body, str):
        body = body.encode("latin-1")
    assert got["body"].encode("latin-1") == body
    got_headers = {}
    for k, v in got["headers"]:
        got_headers.setdefault(k.upper(), []).append(v)
    want_headers = {}
    for k, v in req["headers"]:
        want_headers.setdefault(k.upper(), []).append(v)
    for k, vals in want_headers.items():
        if "_" in k or k == "TRANSFER-ENCODING":
            continue
        assert k in got_headers, f"{name}: header {k} missing from environ ({sorted(got_headers)})"
        assert _norm_values(got_headers[k]) == _norm_values(vals), f"{name}: header {k}"


@pytest.mark.parametrize("name", _names("valid"))
def test_gunicorn_valid(servers, name):
    ns = load_expectation(FIXTURES / "valid" / f"{name}.py")
    reqs = ns["request"] if isinstance(ns["request"], list) else [ns["request"]]
    settings = ns["cfg"].settings
    data = inject_host_valid(load_http(FIXTURES / "valid" / f"{name}.http"), reqs)
    s = servers(server_args(settings))
    with RawConn(s.port, timeout=10) as c:
        c.send(data)
        if name in RULE_OVERRIDES:
            status, rule = RULE_OVERRIDES[name]
            if status is None:
                c.sock.shutdown(socket.SHUT_WR)
                raw, eof = c.read_until_eof(5)
                print(f"{name}: {raw[:12]!r} (rule: {rule})")
                assert eof, f"{name}: connection still open"
                assert not raw.startswith(b"HTTP/1.1 2"), f"{name}: {raw[:100]!r}"
                return
            r = c.read_response(reqs[0]["method"])
            print(f"{name}: {r.status} (rule: {rule})")
            assert r.status == status, f"{name}: got {r.status}, the rules ask {status} ({rule})"
            assert r.has_token("Connection", "close")
            assert c.closed_by_peer(5)
            return
        for i, req in enumerate(reqs):
            r = c.read_response(req["method"])
            print(f"{name}[{i}]: {r.status}")
            check_echo(name, r, req, settings.get("casefold_http_method", False))
            if r.has_token("Connection", "close"):
                assert any(k.upper() == "CONNECTION" and v.lower() == "close" for k, v in req["headers"]) \
                    or req["version"] == (1, 0), f"{name}: unexpected close after request {i}"
                break


@pytest.mark.parametrize("name", _names("invalid"))
def test_gunicorn_invalid(servers, name):
    ns = load_expectation(FIXTURES / "invalid" / f"{name}.py")
    exc = ns["request"].__name__
    data = inject_host_invalid(load_http(FIXTURES / "invalid" / f"{name}.http"))
    s = servers(server_args(ns["cfg"].settings, exc))
    with RawConn(s.port, timeout=10) as c:
        try:
            c.send(data)
            c.sock.shutdown(socket.SHUT_WR)  # incomplete heads end in EOF, not in a timeout
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            r = c.read_response()
            status = r.status
        except ConnectionClosed:
            r, status = None, None
    print(f"{name}: gunicorn {exc}, ringwsgi {status if status else 'close'}")
    if name in GUNICORN_ONLY:
        assert status is not None and 200 <= status < 300, (
            f"{name}: {status}; well-formed apart from gunicorn's option {GUNICORN_ONLY[name]}")
        return
    if status is None:
        return  # closed without answering
    assert status >= 400, f"{name} (gunicorn: {exc}) answered {status}"
    assert r.has_token("Connection", "close"), f"{name}: {status} without Connection: close"
