"""A Flask app that imports orjson (whose extension module refuses subinterpreters)."""
import os
import sys

import orjson
from flask import Flask, Response

app = Flask(__name__)


@app.route("/")
def index():
    body = orjson.dumps(
        {"pid": os.getpid(), "interpreter": "main" if "ringwsgi" in sys.modules else "sub", "ok": True}
    )
    return Response(body, mimetype="application/json")
