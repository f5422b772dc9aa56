"""Small Flask app for the integration tests."""
from flask import Flask, jsonify, request

flask_app = Flask(__name__)


@flask_app.route("/")
def index():
    return "Hello from Flask"


@flask_app.route("/json", methods=["POST"])
def post_json():
    data = request.get_json(force=False, silent=False)
    total = sum(data.get("numbers", []))
    return jsonify(received=data, total=total, method=request.method)


@flask_app.route("/query")
def query():
    return jsonify(args={k: request.args.getlist(k) for k in request.args}, path=request.path)


@flask_app.route("/user/<name>")
def user(name):
    return "user=%s" % name


app = flask_app
application = flask_app
