"""Plain WSGI app used by the integration tests (no framework).

Routes (dispatched on PATH_INFO):
    /                 "Hello, World!" with Content-Length
    /echo             the request body (read from wsgi.input), same Content-Type
    /environ...       JSON of the environ (str/int/bool values, tuples as lists),
                      "__types__": type names of the other values,
                      "__keys__": every environ key
    /error            raises before start_response
    /gen              generator body (several chunks, no Content-Length)
    /status/<code>    answers with that status
    /headers          a few custom response headers (one repeated)
    /bytes/<n>        n bytes (a repeating pattern) with Content-Length
    /worker           threading.get_native_id() of the thread serving it
    /pid              os.getpid()

`validated` is the same app wrapped by wsgiref.validate.validator;
`create_app()` is a factory returning `app`.
"""
import json
import os
import threading
import wsgiref.validate

GEN_CHUNKS = [b"chunk-%d;" % i for i in range(5)] + [b"", b"last-chunk\n"]
ERROR_MARKER = "ringwsgi-test-intentional-error-7f3a"

REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    301: "Moved Permanently",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    418: "I'm a teapot",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def pattern_bytes(n):
    """n bytes of a deterministic, non-repeating-at-small-period pattern."""
    unit = bytes(range(256)) + b"ringwsgi"
    reps = n // len(unit) + 1
    return (unit * reps)[:n]


def _read_body(environ):
    inp = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    if length:
        n = int(length)
        return inp.read(n) if n > 0 else b""
    if environ.get("wsgi.input_terminated"):
        # e.g. a chunked request body: read until the server's EOF marker.
        return inp.read(-1)
    return b""


def _plain(start_response, status, body, ctype="text/plain; charset=utf-8", extra=()):
    headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
    headers.extend(extra)
    start_response(status, headers)
    return [body]


def _environ_json(environ):
    out = {}
    types = {}
    for key, value in environ.items():
        if isinstance(value, (str, int, bool)) or value is None:
            out[key] = value
        elif isinstance(value, tuple) and all(isinstance(v, (int, str)) for v in value):
            out[key] = list(value)
        else:
            types[key] = type(value).__name__
    out["__types__"] = types
    out["__keys__"] = sorted(environ.keys())
    out["__version_is_tuple__"] = isinstance(environ.get("wsgi.version"), tuple)
    return json.dumps(out, sort_keys=True).encode("ascii")


def _gen():
    for chunk in GEN_CHUNKS:
        yield chunk


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")

    if path == "/":
        return _plain(start_response, "200 OK", b"Hello, World!")

    if path == "/echo":
        body = _read_body(environ)
        ctype = environ.get("CONTENT_TYPE") or "application/octet-stream"
        return _plain(start_response, "200 OK", body, ctype=ctype)

    if path.startswith("/environ"):
        return _plain(start_response, "200 OK", _environ_json(environ), ctype="application/json")

    if path == "/error":
        raise RuntimeError(ERROR_MARKER)

    if path == "/gen":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _gen()

    if path.startswith("/status/"):
        code = int(path[len("/status/"):])
        status = "%d %s" % (code, REASONS.get(code, "Whatever"))
        if code in (204, 304) or 100 <= code < 200:
            start_response(status, [])
            return []
        return _plain(start_response, status, b"status %d" % code)

    if path == "/headers":
        return _plain(
            start_response,
            "200 OK",
            b"custom headers",
            extra=[
                ("X-Custom-One", "one"),
                ("X-Custom-Two", "two words"),
                ("Set-Cookie", "a=1; Path=/"),
                ("Set-Cookie", "b=2; Path=/"),
            ],
        )

    if path.startswith("/bytes/"):
        n = int(path[len("/bytes/"):])
        return _plain(start_response, "200 OK", pattern_bytes(n), ctype="application/octet-stream")

    if path == "/worker":
        return _plain(start_response, "200 OK", str(threading.get_native_id()).encode())

    if path == "/pid":
        return _plain(start_response, "200 OK", str(os.getpid()).encode())

    return _plain(start_response, "404 Not Found", b"not found: " + path.encode("latin-1"))


validated = wsgiref.validate.validator(app)


def create_app():
    return app


application = app
