"""App for the lifecycle tests (graceful stop, --timeout, --max-requests).

Routes (PATH_INFO, parameters in the query string):
    /             "ok" with Content-Length
    /echo         the request body
    /stream?n=N   N chunks of a generator body (no Content-Length)
    /sleep?s=S    time.sleep(S) then "slept"
    /spin?s=S     a pure-Python loop for S seconds (interruptible at any bytecode)
    /stall        a streaming body: one chunk, then a pure-Python loop for 60 s
    /pid          os.getpid()
    /caught       loops 30 s catching Exception (a timeout is not an Exception)
"""
import os
import time
from urllib.parse import parse_qs


def _arg(environ, name, default):
    values = parse_qs(environ.get("QUERY_STRING", "")).get(name)
    return float(values[0]) if values else default


def _spin(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def _ok(start_response, body):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        return _ok(start_response, environ["wsgi.input"].read(length))
    if path == "/stream":
        n = int(_arg(environ, "n", 5))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part-%d;" % i for i in range(n))
    if path == "/sleep":
        time.sleep(_arg(environ, "s", 1.0))
        return _ok(start_response, b"slept")
    if path == "/spin":
        _spin(_arg(environ, "s", 1.0))
        return _ok(start_response, b"spun")
    if path == "/stall":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def stall():
            yield b"first;"
            _spin(60)
            yield b"never"

        return stall()
    if path == "/caught":
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                _spin(0.1)
            except Exception:  # noqa: BLE001 - what a careless app does
                pass
        return _ok(start_response, b"finished")
    if path == "/pid":
        return _ok(start_response, str(os.getpid()).encode())
    return _ok(start_response, b"ok")
