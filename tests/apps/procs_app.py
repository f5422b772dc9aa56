"""App for the mode and supervision tests: says which process and interpreter served, and the
code version read from a file at import time (RINGWSGI_TEST_VERSION_FILE), so a reload shows;
/sleep?SECONDS answers after a while, /pair when two requests meet (--threads)."""
import json
import os
import sys
import threading
import time

VERSION_FILE = os.environ.get("RINGWSGI_TEST_VERSION_FILE")
if VERSION_FILE:
    with open(VERSION_FILE) as f:
        VERSION = f.read().strip()
else:
    VERSION = "none"

# The worker process's main interpreter has the ringwsgi package imported; subinterpreters never.
INTERPRETER = "main" if "ringwsgi" in sys.modules else "sub"

# Two requests meet here only if they run at the same time (--threads).
_pair = threading.Barrier(2)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    status = "200 OK"
    if path == "/pair":
        try:
            _pair.wait(timeout=20)
        except threading.BrokenBarrierError:
            status = "500 Internal Server Error"
    elif path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or 0))
    elif path == "/import-orjson":
        import orjson  # noqa: F401 - refuses subinterpreters: a 500 there

    body = json.dumps(
        {
            "pid": os.getpid(),
            "version": VERSION,
            "interpreter": INTERPRETER,
            "thread": threading.get_ident(),
            "multiprocess": environ["wsgi.multiprocess"],
            "multithread": environ["wsgi.multithread"],
        }
    ).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
