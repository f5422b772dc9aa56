"""A minimal plain WSGI app for ringwsgi.

Serve it from the project root with either of:

    scripts/serve-example                  # builds/installs first, then serves
    ringwsgi --chdir examples hello:app    # once ringwsgi is installed

then open http://127.0.0.1:8000/ ("Hello from ringwsgi") or
http://127.0.0.1:8000/environ (a few WSGI environ values, as plain text).
Pass --bind HOST:PORT to listen elsewhere and --workers N to choose the
number of workers.
"""

SHOWN_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "HTTP_HOST",
    "HTTP_USER_AGENT",
    "wsgi.url_scheme",
    "wsgi.multithread",
    "wsgi.multiprocess",
)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        body = b"Hello from ringwsgi\n"
        status = "200 OK"
    elif path == "/environ":
        lines = ["%s = %r" % (key, environ.get(key)) for key in SHOWN_KEYS]
        body = ("\n".join(lines) + "\n").encode("utf-8")
        status = "200 OK"
    else:
        body = b"Not Found\n"
        status = "404 Not Found"
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


application = app
