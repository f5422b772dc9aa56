"""WSGI app for the PEP 3333 / HTTP/1.1 message-semantics tests (tests/test_semantics_*.py).

Module-level state (call counters, close() counters, produced counts, open files) is per
interpreter: the tests that read it back start the server with `--workers 1`, so one
interpreter serves every request. Counters are keyed by a `tag` query parameter so tests
sharing a server do not see each other's numbers.

Routes (PATH_INFO; parameters in the query string):
    /                      "ok"
    /sha256                reads wsgi.input.read(); JSON {sha256, length, type, fileno,
                           nlink, fd_path}
    /count?tag=T           counts its calls under T, then like /sha256
    /calls?tag=T           JSON {"calls": n}
    /input-ops?ops=NAME    runs INPUT_SCENARIOS[NAME] on wsgi.input; JSON list of repr()s
    /exc-before            start_response 200, then again with exc_info (500) before any byte
    /exc-after?tag=T       yields a chunk, then start_response(..., exc_info) must raise
    /exc-state?tag=T       JSON of what /exc-after saw
    /start-twice           start_response twice without exc_info
    /no-start              returns [b"x"] without calling start_response
    /write                 write(b"a"), write(b"b"), returns [b"c"]
    /write-too-much        write()s 17 MiB in one call (over the server's bound)
    /hdr?case=NAME         start_response with HEADER_CASES[NAME] (status, headers)
    /raise-after?n=N[&cl=L] generator: b"x" * N, then raises (L: app Content-Length)
    /body?kind=NAME        the body as BODY_KINDS[NAME]
    /cl?declared=D&sent=S[&gen=1]  app Content-Length D, S bytes of body
    /nobody?code=C&kind=list|gen|bytes   status C (204/304) with an (empty or not) body
    /close?tag=T&mode=ok|raise|raise-first|big   iterable with close() counted under T
    /closes?tag=T          JSON {"closes": n}
    /stream?total=N&chunk=C[&cl=1][&tag=T][&constant=1]  generator of blob(N) (or of b"z"s)
                           in C-byte chunks; the number of chunks produced is counted under T
    /produced?tag=T        JSON {"chunks": n, "done": bool}
    /file?path=P[&block=B][&cl=1][&bytesio=1]&tag=T  wsgi.file_wrapper over P
    /file-closed?tag=T     JSON {"closed": bool} for the file object of /file?tag=T
    /sleep?s=S             sleeps S seconds
    /mt                    JSON {multithread, multiprocess, run_once, has_file_wrapper}
"""
import hashlib
import io
import json
import os
import random
import sys
import threading
import time
from urllib.parse import parse_qs

_LOCK = threading.Lock()
CALLS = {}
CLOSES = {}
PRODUCED = {}
FILES = {}
EXC_STATE = {}

_BLOBS = {}


def blob(n):
    """n deterministic pseudo-random bytes (same in the tests and in the app)."""
    data = _BLOBS.get(n)
    if data is None:
        data = random.Random(20240611).randbytes(n)
        if n <= 64 << 20:
            _BLOBS[n] = data
    return data


# --- wsgi.input scenarios -----------------------------------------------------------

def _read_chunks(f, n):
    out = []
    while True:
        b = f.read(n)
        out.append(b)
        if not b:
            return out


def _readline_chunks(f, n):
    out = []
    while True:
        b = f.readline(n)
        out.append(b)
        if not b:
            return out


INPUT_SCENARIOS = {
    "mixed": lambda f: [
        f.read(5), f.readline(), f.readline(3), f.readline(), f.read(10),
        f.readlines(20), f.readline(0), f.read(0), f.read(), f.read(1), f.readline(),
        f.read(-1), f.readlines(),
    ],
    "read_all": lambda f: [f.read(), f.read(), f.read(1)],
    "read_neg": lambda f: [f.read(-1), f.read(-1), f.readline()],
    "read_n": lambda f: _read_chunks(f, 7),
    "read_big_n": lambda f: [f.read(1 << 20), f.read(1 << 20)],
    "readline": lambda f: [f.readline() for _ in range(40)],
    "readline_size": lambda f: _readline_chunks(f, 4),
    "readlines": lambda f: [f.readlines(), f.readlines(), f.read()],
    "readlines_hint": lambda f: [f.readlines(10), f.readlines(1), f.readlines(100), f.readlines()],
    "iterate": lambda f: [list(iter(f)), f.read()],
    "iterate_after_read": lambda f: [f.read(3), [line for line in f], f.readline()],
}


def run_scenario(name, f):
    return [repr(x) for x in INPUT_SCENARIOS[name](f)]


# --- header-validation cases ---------------------------------------------------------

CT = ("Content-Type", "text/plain")

HEADER_CASES = {
    "latin1_ok": ("200 OK", [CT, ("X-Latin", "caf\u00e9")]),
    "non_latin1": ("200 OK", [CT, ("X-Euro", "\u20ac")]),
    "non_latin1_name": ("200 OK", [CT, ("X-\u20ac", "v")]),
    "cr_in_value": ("200 OK", [CT, ("X-Bad", "a\rb")]),
    "lf_in_value": ("200 OK", [CT, ("X-Bad", "a\nb")]),
    "crlf_injection": ("200 OK", [CT, ("X-Bad", "a\r\nX-Injected: 1")]),
    "cr_in_name": ("200 OK", [CT, ("X-Bad\r", "v")]),
    "lf_in_name": ("200 OK", [CT, ("X-B\nad", "v")]),
    "space_in_name": ("200 OK", [CT, ("X Bad", "v")]),
    "status_no_reason": ("200", [CT]),
    "status_two_digits": ("20 OK", [CT]),
    "status_four_digits": ("2000 OK", [CT]),
    "status_1xx": ("100 Continue", [CT]),
    "status_crlf": ("200 OK\r\nX-Injected: 1", [CT]),
    "hop_connection": ("200 OK", [CT, ("Connection", "close")]),
    "hop_transfer_encoding": ("200 OK", [CT, ("Transfer-Encoding", "chunked")]),
    "hop_keep_alive": ("200 OK", [CT, ("Keep-Alive", "timeout=5")]),
    "hop_upgrade": ("200 OK", [CT, ("Upgrade", "websocket")]),
    "headers_tuple": ("200 OK", (CT, ("X-A", "1"))),
    "header_3_tuple": ("200 OK", [CT, ("X-A", "1", "2")]),
    "header_1_tuple": ("200 OK", [CT, ("X-A",)]),
    "header_list_pair": ("200 OK", [CT, ["X-A", "1"]]),
    "date_server": ("200 OK", [CT, ("Date", "Tue, 01 Jan 2030 00:00:00 GMT"), ("Server", "semantics-app/1.0")]),
}


# --- bodies -------------------------------------------------------------------------

def _gen(*items):
    for item in items:
        yield item


BODY_KINDS = {
    "list": lambda: [b"ab", b"cd"],
    "tuple": lambda: (b"ab", b"cd"),
    "gen": lambda: _gen(b"ab", b"", b"cd"),
    "empty_list": lambda: [],
    "one": lambda: [b"hello"],
    "str_first_list": lambda: ["text"],
    "str_first_gen": lambda: _gen("text", b"more"),
    "str_later_gen": lambda: _gen(b"x" * 1000, "text", b"y" * 1000),
    "bare_bytes": lambda: b"hello",
    "bare_str": lambda: "hello",
}


class Closing:
    """An iterable (not a list or generator) whose close() calls are counted under tag."""

    def __init__(self, tag, chunks, raise_at=None):
        self.tag = tag
        self.chunks = chunks
        self.raise_at = raise_at

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.raise_at:
                raise RuntimeError("semantics-app: intentional error mid-iteration")
            yield chunk

    def close(self):
        with _LOCK:
            CLOSES[self.tag] = CLOSES.get(self.tag, 0) + 1


def _big_chunks(n_chunks, size):
    chunk = b"z" * size
    for _ in range(n_chunks):
        yield chunk


# --- helpers ------------------------------------------------------------------------

def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _input_report(environ):
    inp = environ["wsgi.input"]
    data = inp.read()
    report = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "length": len(data),
        "type": type(inp).__name__,
        "fileno": None,
        "nlink": None,
        "fd_path": None,
    }
    try:
        fd = inp.fileno()
    except Exception as e:  # noqa: BLE001
        report["fileno_error"] = "%s: %s" % (type(e).__name__, e)
    else:
        report["fileno"] = fd
        try:
            report["nlink"] = os.fstat(fd).st_nlink
            report["fd_path"] = os.readlink("/proc/self/fd/%d" % fd)
        except OSError as e:
            report["fileno_error"] = "%s: %s" % (type(e).__name__, e)
    return report


def _stream(total, chunk, tag, constant=False):
    data = None if constant else blob(total)
    filler = b"z" * chunk
    with _LOCK:
        PRODUCED[tag] = {"chunks": 0, "done": False}
    for off in range(0, total, chunk):
        with _LOCK:
            PRODUCED[tag]["chunks"] += 1
        yield filler[: min(chunk, total - off)] if constant else data[off:off + chunk]
    with _LOCK:
        PRODUCED[tag]["done"] = True


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    tag = q.get("tag", "")

    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    if path == "/sha256":
        return _json(start_response, _input_report(environ))

    if path == "/count":
        with _LOCK:
            CALLS[tag] = CALLS.get(tag, 0) + 1
        return _json(start_response, _input_report(environ))

    if path == "/calls":
        with _LOCK:
            return _json(start_response, {"calls": CALLS.get(tag, 0)})

    if path == "/input-ops":
        results = run_scenario(q["ops"], environ["wsgi.input"])
        return _json(start_response, {"results": results, "type": type(environ["wsgi.input"]).__name__})

    if path == "/exc-before":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            raise ValueError("semantics-app: handled error")
        except ValueError:
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain"), ("X-Second", "2"), ("Content-Length", "13")],
                sys.exc_info(),
            )
        return [b"error handled"]

    if path == "/exc-after":
        def gen():
            yield b"first chunk;"
            try:
                raise KeyError("semantics-app: late error")
            except KeyError as original:
                try:
                    start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
                except BaseException as e:  # noqa: BLE001
                    with _LOCK:
                        EXC_STATE[tag] = "reraised" if e is original else "raised-other:%s" % type(e).__name__
                    raise
                with _LOCK:
                    EXC_STATE[tag] = "not-reraised"
            yield b"NOT-RERAISED"

        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()

    if path == "/exc-state":
        with _LOCK:
            return _json(start_response, {"state": EXC_STATE.get(tag)})

    if path == "/start-twice":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Second", "2")])
        return [b"started twice"]

    if path == "/no-start":
        return [b"x"]

    if path == "/write-too-much":
        # 17 MiB through write() in one call of the app: over ringwsgi's 16 MiB bound.
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        chunk = b"w" * (1 << 20)
        for _ in range(17):
            write(chunk)
        return [b"unreachable"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"a")
        write(b"b")
        return [b"c"]

    if path == "/hdr":
        status, headers = HEADER_CASES[q["case"]]
        start_response(status, headers)
        return [b"header case " + q["case"].encode()]

    if path == "/raise-after":
        n = int(q["n"])
        headers = [("Content-Type", "application/octet-stream")]
        if "cl" in q:
            headers.append(("Content-Length", q["cl"]))

        def gen():
            yield b"x" * n
            raise RuntimeError("semantics-app: error after %d bytes" % n)

        start_response("200 OK", headers)
        return gen()

    if path == "/body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return BODY_KINDS[q["kind"]]()

    if path == "/cl":
        declared, sent = int(q["declared"]), int(q["sent"])
        data = b"0123456789" * (sent // 10 + 1)
        data = data[:sent]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(declared))])
        if q.get("gen"):
            return _gen(data[: sent // 2], data[sent // 2:])
        return [data]

    if path == "/nobody":
        code = int(q["code"])
        status = {204: "204 No Content", 304: "304 Not Modified"}[code]
        start_response(status, [("X-Code", str(code))])
        kind = q.get("kind", "list")
        if kind == "gen":
            return _gen(b"")
        if kind == "bytes":
            return [b"this body must not be sent"]
        return []

    if path == "/close":
        mode = q.get("mode", "ok")
        if mode == "ok":
            it = Closing(tag, [b"one;", b"two;", b"three"])
        elif mode == "raise":
            it = Closing(tag, [b"x" * 1000, b"y" * 1000, b"z"], raise_at=2)
        elif mode == "raise-first":
            it = Closing(tag, [b"x"], raise_at=0)
        elif mode == "big":
            it = Closing(tag, _big_chunks(4096, 65536))  # 256 MiB if fully read
        else:
            raise ValueError(mode)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return it

    if path == "/closes":
        with _LOCK:
            return _json(start_response, {"closes": CLOSES.get(tag, 0)})

    if path == "/stream":
        total, chunk = int(q["total"]), int(q.get("chunk", 65536))
        headers = [("Content-Type", "application/octet-stream")]
        if q.get("cl"):
            headers.append(("Content-Length", str(total)))
        start_response("200 OK", headers)
        return _stream(total, chunk, tag, constant=bool(q.get("constant")))

    if path == "/produced":
        with _LOCK:
            return _json(start_response, PRODUCED.get(tag, {"chunks": 0, "done": False}))

    if path == "/file":
        if q.get("bytesio"):
            with open(q["path"], "rb") as real:
                f = io.BytesIO(real.read())
        else:
            f = open(q["path"], "rb")  # noqa: SIM115 - closed by the server via the wrapper
        with _LOCK:
            FILES[tag] = f
        headers = [("Content-Type", "application/octet-stream")]
        if q.get("cl"):
            headers.append(("Content-Length", str(os.path.getsize(q["path"]))))
        start_response("200 OK", headers)
        wrapper = environ["wsgi.file_wrapper"]
        if "block" in q:
            return wrapper(f, int(q["block"]))
        return wrapper(f)

    if path == "/file-closed":
        with _LOCK:
            f = FILES.get(tag)
        return _json(start_response, {"known": f is not None, "closed": None if f is None else f.closed})

    if path == "/sleep":
        time.sleep(float(q.get("s", "1")))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"slept"]

    if path == "/mt":
        return _json(start_response, {
            "multithread": environ.get("wsgi.multithread"),
            "multiprocess": environ.get("wsgi.multiprocess"),
            "run_once": environ.get("wsgi.run_once"),
            "has_file_wrapper": "wsgi.file_wrapper" in environ,
            "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
        })

    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]


application = app
