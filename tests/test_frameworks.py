"""Real frameworks: Flask and Django apps served by ringwsgi."""
import json

import pytest

from conftest import _serving
from harness import RawConn, get


@pytest.fixture(scope="module")
def flask_server():
    with _serving("flask_app:app", "--workers", "2") as srv:
        yield srv


@pytest.fixture(scope="module")
def django_server():
    with _serving("django_project.wsgi:application", "--workers", "2") as srv:
        yield srv


def test_flask_index(flask_server):
    r = get(flask_server.port, "/")
    assert r.status == 200
    assert r.body == b"Hello from Flask"
    assert r.header("Content-Type").startswith("text/html")


def test_flask_path_param(flask_server):
    r = get(flask_server.port, "/user/alice")
    assert (r.status, r.body) == (200, b"user=alice")


def test_flask_json_post(flask_server):
    payload = {"numbers": [1, 2, 3, 4.5], "name": "caf\u00e9"}
    with RawConn(flask_server.port) as c:
        r = c.request(
            "POST", "/json", headers=[("Content-Type", "application/json")], body=json.dumps(payload).encode()
        )
        assert r.status == 200
        assert r.header("Content-Type") == "application/json"
        data = r.json()
        assert data["received"] == payload
        assert data["total"] == 10.5
        assert data["method"] == "POST"
        # same connection, next request
        r = c.request("GET", "/")
        assert r.body == b"Hello from Flask"


def test_flask_query_args(flask_server):
    r = get(flask_server.port, "/query?a=1&b=two%20words&a=3&c=%C3%A9")
    assert r.status == 200
    assert r.json() == {"args": {"a": ["1", "3"], "b": ["two words"], "c": ["\u00e9"]}, "path": "/query"}


def test_flask_404(flask_server):
    r = get(flask_server.port, "/definitely/not/here")
    assert r.status == 404
    r = get(flask_server.port, "/json")  # GET on a POST-only route
    assert r.status == 405


def test_django_index(django_server):
    r = get(django_server.port, "/")
    assert r.status == 200
    assert r.body == b"Hello from Django"


def test_django_view_query_and_post(django_server):
    r = get(django_server.port, "/info/?x=1&x=2&y=%C3%A9")
    assert r.status == 200
    assert r.json() == {"method": "GET", "path": "/info/", "query": {"x": ["1", "2"], "y": ["\u00e9"]}, "body_len": 0}
    with RawConn(django_server.port) as c:
        r = c.request("POST", "/info/", headers=[("Content-Type", "application/octet-stream")], body=b"z" * 3000)
        assert r.status == 200
        assert r.json()["body_len"] == 3000


def test_django_404(django_server):
    r = get(django_server.port, "/nope/")
    assert r.status == 404
    assert b"Not Found" in r.body
