"""App importable only through --pythonpath (or --chdir) pointing here.

Answers "pp_app here" plus the process's current directory.
"""
import os


def app(environ, start_response):
    body = ("pp_app here\ncwd=%s\n" % os.getcwd()).encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
