"""--access-logfile and --access-logformat: one line per request, gunicorn's atoms."""
import re
import threading
import time

from harness import RawConn, run_cli

# Apache combined log format.
COMBINED_RE = re.compile(
    r'^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
    r'"(?P<method>[A-Z]+) (?P<target>\S+) (?P<proto>HTTP/1\.[01])" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)


def read_lines(path, n, timeout=5.0):
    """The file's lines once it has at least n of them."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        lines = text.splitlines()
        if len(lines) >= n or time.monotonic() > deadline:
            assert text.endswith("\n") or not text, "no partial line"
            return lines


def test_combined_format_for_get_post_404_and_500(server_factory, tmp_path):
    log = tmp_path / "access.log"
    srv = server_factory("wsgi_basic:app", "--workers", "2", "--access-logfile", str(log))
    probes = len(read_lines(log, 1))  # the harness's readiness request
    with RawConn(srv.port) as c:
        assert c.request("GET", "/?a=1", headers=[("User-Agent", 'tester "1"'),
                                                  ("Referer", "http://x/")]).status == 200
        assert c.request("POST", "/echo", body=b"hello").status == 200
        assert c.request("GET", "/missing").status == 404
    with RawConn(srv.port) as c:
        assert c.request("GET", "/error").status == 500
    lines = read_lines(log, probes + 4)[probes:]
    assert len(lines) == 4, lines
    parsed = [COMBINED_RE.match(line) for line in lines]
    assert all(parsed), lines
    got = [(m["method"], m["target"], m["status"], m["size"]) for m in parsed]
    assert got == [
        ("GET", "/?a=1", "200", "13"),
        ("POST", "/echo", "200", "5"),
        ("GET", "/missing", "404", str(len("not found: /missing"))),
        ("GET", "/error", "500", got[3][3]),
    ]
    first = parsed[0]
    assert first["host"] == "127.0.0.1"
    assert first["referer"] == "http://x/"
    assert first["agent"] == 'tester \\"1\\"'
    assert (first["ident"], first["user"]) == ("-", "-")
    assert first["time"].endswith("+0000")


def test_custom_format(server_factory, tmp_path):
    log = tmp_path / "custom.log"
    fmt = "%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%({x-test}i)s|%({content-type}o)s|%(D)s|%(p)s|%(u)s"
    srv = server_factory("wsgi_basic:app", "--workers", "1", "--access-logfile", str(log),
                         "--access-logformat", fmt)
    probes = len(read_lines(log, 1))
    with RawConn(srv.port) as c:
        assert c.request("GET", "/headers?x=y", headers=[("X-Test", "abc"),
                                                         ("Authorization", "Basic dXNlcjpwYXNz")]).status == 200
        assert c.request("GET", "/status/204", version="HTTP/1.0").status == 204
    lines = read_lines(log, probes + 2)[probes:]
    first = lines[0].split("|")
    assert first[:9] == ["GET", "/headers", "x=y", "HTTP/1.1", "200", "14", "14", "abc",
                         "text/plain; charset=utf-8"], lines
    assert int(first[9]) >= 0
    assert re.fullmatch(r"<\d+>", first[10])
    assert first[11] == "user"
    second = lines[1].split("|")
    assert second[3:9] == ["HTTP/1.0", "204", "0", "-", "-", "-"], lines


def test_dash_writes_to_stdout(server_factory):
    srv = server_factory("wsgi_basic:app", "--workers", "1", "--access-logfile", "-")
    with RawConn(srv.port) as c:
        assert c.request("GET", "/to-stdout").status == 404
    deadline = time.monotonic() + 5
    while "/to-stdout" not in srv.stdout() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(l for l in srv.stdout().splitlines() if "/to-stdout" in l)
    assert COMBINED_RE.match(line), line
    assert "/to-stdout" not in srv.logs(), "not on stderr"


def test_off_by_default(server_factory):
    srv = server_factory("wsgi_basic:app", "--workers", "1")
    with RawConn(srv.port) as c:
        for _ in range(5):
            assert c.request("GET", "/quiet").status == 404
    time.sleep(0.3)
    srv.stop()
    assert "/quiet" not in srv.stdout()
    assert "/quiet" not in srv.logs()


def test_lines_stay_whole_under_concurrent_workers(server_factory, tmp_path):
    log = tmp_path / "busy.log"
    srv = server_factory("wsgi_basic:app", "--workers", "2", "--access-logfile", str(log))
    probes = len(read_lines(log, 1))
    per_thread, threads_n = 200, 4
    errors = []

    def hammer(i):
        try:
            with RawConn(srv.port) as c:
                for j in range(per_thread):
                    assert c.request("GET", f"/t{i}/{j}/" + "x" * 300).status == 404
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    lines = read_lines(log, probes + per_thread * threads_n)[probes:]
    assert len(lines) == per_thread * threads_n
    assert all(COMBINED_RE.match(line) for line in lines)
    targets = {COMBINED_RE.match(line)["target"] for line in lines}
    assert len(targets) == per_thread * threads_n


def test_bad_format_and_unwritable_file_stop_the_start(tmp_path):
    code, _, err, _ = run_cli("--bind", "127.0.0.1:0", "--access-logformat", "%(nope)s",
                              "wsgi_basic:app")
    assert code != 0
    assert "unknown atom '%(nope)s'" in err, err
    code, _, err, _ = run_cli("--bind", "127.0.0.1:0", "--access-logfile",
                              str(tmp_path / "missing-dir" / "x.log"), "wsgi_basic:app")
    assert code != 0
    assert "cannot open --access-logfile" in err, err
