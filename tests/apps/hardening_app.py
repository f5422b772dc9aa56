"""WSGI app for the HTTP/1.1 hardening tests (tests/test_hardening_*.py).

Module-level state is per interpreter: tests that read it back start the server with
`--workers 1`, so one interpreter serves every request.

Every request except the introspection routes below is recorded in SEEN (its PATH_INFO plus
"?QUERY" when there is one) before anything else happens, so a test can tell whether the
app was ever called for a given path (smuggling, body timeout).

Routes (PATH_INFO):
    /seen                 JSON list of the recorded paths (not itself recorded)
    /closes?tag=T         JSON {"closes": n}: close() calls of /stream?tag=T iterables
    /started?tag=T        JSON {"started": n}: /stream?tag=T calls
    /stream?total=N&chunk=C&tag=T   generator of N bytes (b"s") in C-byte chunks, no
                          Content-Length; its close() is counted under T
    /big?n=N[&i=I]        N bytes with Content-Length; the body is the decimal I padded with
                          b"." (so a client can tell pipelined responses apart)
    anything else         echo: JSON {method, path, query, version, headers, body}
                          headers: [[NAME, value], ...] rebuilt from HTTP_*/CONTENT_* keys
                          (NAME upper-case with "-"), body: wsgi.input read to the end,
                          decoded latin-1
"""
import json
import threading
from urllib.parse import parse_qs

_LOCK = threading.Lock()
SEEN = []
CLOSES = {}
STARTED = {}


def _q(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class _Stream:
    def __init__(self, total, chunk, tag):
        self.total, self.chunk, self.tag = total, chunk, tag

    def __iter__(self):
        sent = 0
        piece = b"s" * self.chunk
        while sent < self.total:
            n = min(self.chunk, self.total - sent)
            sent += n
            yield piece if n == self.chunk else piece[:n]

    def close(self):
        with _LOCK:
            CLOSES[self.tag] = CLOSES.get(self.tag, 0) + 1


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = _q(environ)
    if path == "/seen":
        with _LOCK:
            return _json(start_response, list(SEEN))
    if path == "/closes":
        with _LOCK:
            return _json(start_response, {"closes": CLOSES.get(q.get("tag", ""), 0)})
    if path == "/started":
        with _LOCK:
            return _json(start_response, {"started": STARTED.get(q.get("tag", ""), 0)})

    qs = environ.get("QUERY_STRING", "")
    with _LOCK:
        SEEN.append(path + ("?" + qs if qs else ""))

    if path == "/stream":
        tag = q.get("tag", "")
        with _LOCK:
            STARTED[tag] = STARTED.get(tag, 0) + 1
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _Stream(int(q.get("total", "1048576")), int(q.get("chunk", "65536")), tag)
    if path == "/big":
        n = int(q.get("n", "102400"))
        body = q.get("i", "").encode().ljust(n, b".")
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
        return [body]

    headers = []
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            headers.append([k[5:].replace("_", "-"), v])
        elif k in ("CONTENT_TYPE", "CONTENT_LENGTH") and v != "":
            headers.append([k.replace("_", "-"), v])
    body = environ["wsgi.input"].read()
    return _json(start_response, {
        "method": environ["REQUEST_METHOD"],
        "path": path,
        "raw_uri": environ.get("RAW_URI") or environ.get("REQUEST_URI"),
        "query": qs,
        "version": environ.get("SERVER_PROTOCOL"),
        "headers": headers,
        "body": body.decode("latin-1"),
    })
