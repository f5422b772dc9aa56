"""--access-logfile and --access-logformat: one line per request, gunicorn's atoms."""
import re
import threading
import time

from harness import RawConn, get, run_cli

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


# The line of a request the server answered itself; what it does not know is "-".
REFUSED_RE = re.compile(
    r'^127\.0\.0\.1 - - \[[^\]]+\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<size>\d+) "-" "-"$'
)


def test_requests_answered_by_the_threads_pool_are_logged(server_factory, tmp_path):
    log = tmp_path / "threads.log"
    srv = server_factory("wsgi_basic:app", "--workers", "1", "--threads", "4",
                         "--access-logfile", str(log), "--access-logformat", "%(r)s|%(s)s|%(B)s|%(b)s")
    probes = len(read_lines(log, 1))
    with RawConn(srv.port) as c:
        assert c.request("GET", "/", headers=[("User-Agent", "pool")]).status == 200
        assert c.request("POST", "/echo", body=b"twelve bytes").status == 200
        assert c.request("GET", "/missing").status == 404
        gen = c.request("GET", "/gen")  # a generator: streamed in chunks from a pool thread
        assert gen.status == 200 and gen.header("Transfer-Encoding") == "chunked"
        assert c.request("GET", "/status/204").status == 204
    with RawConn(srv.port) as c:
        assert c.request("GET", "/error").status == 500
    lines = read_lines(log, probes + 6)[probes:]
    assert len(lines) == 6, lines
    got = [line.split("|") for line in lines]
    assert got[:5] == [
        ["GET / HTTP/1.1", "200", "13", "13"],
        ["POST /echo HTTP/1.1", "200", "12", "12"],
        ["GET /missing HTTP/1.1", "404", str(len("not found: /missing")), str(len("not found: /missing"))],
        ["GET /gen HTTP/1.1", "200", str(len(gen.body)), str(len(gen.body))],
        ["GET /status/204 HTTP/1.1", "204", "0", "-"],
    ], lines
    assert got[5][:2] == ["GET /error HTTP/1.1", "500"], lines


def test_a_timed_out_call_is_logged_with_504_inline_and_in_the_pool(server_factory, tmp_path):
    for threads in ("1", "2"):
        log = tmp_path / f"timeout-{threads}.log"
        srv = server_factory("lifecycle_app:app", "--workers", "1", "--threads", threads,
                             "--timeout", "1", "--access-logfile", str(log))
        probes = len(read_lines(log, 1))
        assert get(srv.port, "/spin?s=30", timeout=30).status == 504
        lines = read_lines(log, probes + 1)[probes:]
        m = COMBINED_RE.match(lines[0])
        assert m, lines
        assert (m["target"], m["status"]) == ("/spin?s=30", "504"), lines
        srv.stop()


def test_requests_the_server_refuses_are_logged(server_factory, tmp_path):
    log = tmp_path / "refused.log"
    srv = server_factory("wsgi_basic:app", "--workers", "1", "--access-logfile", str(log),
                         "--limit-request-body", "10", "--header-timeout", "1")
    probes = len(read_lines(log, 1))
    sent = [
        (b"GARBAGE\r\n\r\n", "400"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "414"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 9000 + b"\r\n\r\n", "431"),
        (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "413"),
        (b"GET / HTTP/1.1\r\n", "408"),  # the head never completes
    ]
    for raw, status in sent:
        with RawConn(srv.port, timeout=15) as c:
            c.send(raw)
            assert str(c.read_response("GET").status) == status, raw[:40]
    lines = read_lines(log, probes + len(sent))[probes:]
    assert len(lines) == len(sent), lines
    matched = [REFUSED_RE.match(line) for line in lines]
    assert all(matched), lines
    got = [(m["request"], m["status"]) for m in matched]
    assert got == [("-", "400"), ("-", "414"), ("-", "431"),
                   ("POST /upload HTTP/1.1", "413"), ("-", "408")], lines
    assert all(int(m["size"]) > 0 for m in matched)
    # The worker goes on serving, and logging.
    with RawConn(srv.port) as c:
        assert c.request("GET", "/after").status == 404
    assert "/after" in read_lines(log, probes + len(sent) + 1)[-1]


def test_a_streamed_response_is_logged_once_sent_with_its_bytes_and_duration(server_factory, tmp_path):
    log = tmp_path / "stream.log"
    srv = server_factory("semantics_app:app", "--workers", "1", "--access-logfile", str(log),
                         "--access-logformat", "%(U)s %(s)s %(B)s %(D)s")
    probes = len(read_lines(log, 1))
    total = 16 << 20  # far more than the socket buffers: sent only as the client reads
    for query in (f"total={total}&chunk=65536", f"total={total}&chunk=65536&cl=1"):
        c = RawConn(srv.port, timeout=30)
        c.send(f"GET /stream?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(1.0)
        assert len(read_lines(log, probes + 1, timeout=0.2)) == probes, "not logged before it is sent"
        r = c.read_response("GET")
        assert (r.status, len(r.body)) == (200, total)
        c.close()
        lines = read_lines(log, probes + 1)[probes:]
        assert len(lines) == 1, lines
        path, status, size, micros = lines[0].split()
        assert (path, status, size) == ("/stream", "200", str(total)), lines
        assert int(micros) >= 1_000_000, lines
        probes += 1
    # A stream cut short by the client: logged when the connection closes, with what was sent.
    c = RawConn(srv.port)
    c.send(f"GET /stream?total={total}&chunk=65536 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    c.read_head()
    c.close()
    lines = read_lines(log, probes + 1, timeout=10)[probes:]
    assert len(lines) == 1, lines
    path, status, size, _ = lines[0].split()
    assert (path, status) == ("/stream", "200")
    assert 0 < int(size) < total, lines


def test_a_pipelined_batch_is_logged_in_order_through_a_chunked_body_and_a_refusal(
        server_factory, tmp_path):
    """The requests of a batch are counted and logged together once it is answered (the
    worker keeps them until then): still one line each, in the order sent, also when the
    batch goes on with a chunked body and ends with a request the server refuses."""
    log = tmp_path / "batch.log"
    srv = server_factory("wsgi_basic:app", "--workers", "1", "--access-logfile", str(log))
    probes = len(read_lines(log, 1))
    batch = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    batch += (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n0\r\n\r\n")
    batch += b"GET /p6 HTTP/1.1\r\nHost: x\r\n\r\n"
    batch += b"GET /bad\x01 HTTP/1.1\r\nHost: x\r\n\r\n"
    with RawConn(srv.port) as c:
        c.send(batch)
        methods = ["GET"] * 5 + ["POST", "GET", "GET"]
        statuses = [c.read_response(m).status for m in methods]
    assert statuses == [404] * 5 + [200, 404, 400]
    lines = read_lines(log, probes + 8)[probes:]
    assert len(lines) == 8, lines
    got = [re.search(r'"([^"]*)" (\d{3}) (\S+)', line).groups() for line in lines]
    assert got == [(f"GET /p{i} HTTP/1.1", "404", str(len(f"not found: /p{i}")))
                   for i in range(5)] + [
        ("POST /echo HTTP/1.1", "200", "5"),
        ("GET /p6 HTTP/1.1", "404", str(len("not found: /p6"))),
        ("-", "400", got[7][2]),
    ], lines
