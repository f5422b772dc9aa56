"""Flask app for the multipart/form-data upload test (tests/test_semantics_bodies.py)."""
import hashlib

from flask import Flask, jsonify, request

flask_app = Flask(__name__)


@flask_app.route("/upload", methods=["POST"])
def upload():
    f = request.files["f"]
    data = f.read()
    return jsonify(
        sha256=hashlib.sha256(data).hexdigest(),
        length=len(data),
        filename=f.filename,
        file_content_type=f.content_type,
        text=request.form["text"],
        fields=sorted(request.form.keys()),
        files=sorted(request.files.keys()),
    )


app = flask_app
