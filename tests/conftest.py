"""Fixtures for the ringwsgi integration tests (helpers live in harness.py)."""
import contextlib
import sys

import pytest

from harness import APPS_DIR, live_servers, start_or_fail

# Tests import constants and helpers from the apps (e.g. wsgi_basic.pattern_bytes).
sys.path.insert(0, str(APPS_DIR))


@contextlib.contextmanager
def _serving(*args, **kwargs):
    srv = start_or_fail(*args, **kwargs)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def sem():
    """semantics_app with one worker (so the app's counters are shared by all requests)."""
    with _serving("semantics_app:app", "--workers", "1") as srv:
        yield srv


@pytest.fixture(scope="session", autouse=True)
def _no_server_left_behind():
    """Belt and braces: whatever happens, no ringwsgi outlives the session."""
    yield
    leftovers = live_servers()
    for srv in leftovers:
        srv.kill()
    assert not leftovers, "servers left running at session end: " + ", ".join(s.app for s in leftovers)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in live_servers():
            rep.sections.append((f"ringwsgi {srv.app} (port {srv.port})", srv.describe(tail=150)))


@pytest.fixture
def server_factory():
    """start(app, *args, **kw) -> Server; every server is stopped at teardown."""
    started = []

    def start(app, *args, **kwargs):
        srv = start_or_fail(app, *args, **kwargs)
        started.append(srv)
        return srv

    yield start
    errors = []
    for srv in started:
        try:
            srv.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n\n".join(errors)


LEAK_VAR = "RINGWSGI_TEST_LEAK"


@pytest.fixture(scope="module")
def basic():
    """wsgi_basic:app with two workers, shared by a module's tests."""
    with _serving("wsgi_basic:app", "--workers", "2", env={LEAK_VAR: "1"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def basic_w1():
    """wsgi_basic:app with one worker."""
    with _serving("wsgi_basic:app", "--workers", "1", env={LEAK_VAR: "1"}) as srv:
        yield srv
