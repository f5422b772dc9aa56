"""An app whose import crashes the process (as a broken extension module would)."""
import os

os.abort()


def app(environ, start_response):  # never reached
    start_response("200 OK", [])
    return [b""]
