#!/usr/bin/env python3
"""Load benchmark of ringwsgi against its peers (run through scripts/bench).

Method (../shared/bench/README.md): each server runs one worker pinned to CPU 1
(taskset -c 1), started fresh for every measured run in its own process group
with cwd = the shared apps directory; wrk is pinned to CPU 0. A 2 s warm-up run,
then the measured run

    taskset -c 0 wrk -t1 -c64 -d{S}s --latency --timeout 2s -s bench.lua URL -- MODE

Server CPU is utime+stime (/proc/PID/stat fields 14, 15) summed over every
process of the server's process group, before and after the measured run; peak
RSS is VmHWM summed over the group at the end. Rounds interleave workloads and
servers; the table reports medians. Everything listens on 127.0.0.1 only.

Standard library only.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOADS = {
    # name: (app, wrk mode args)
    "plaintext": ("plaintext:app", ["get"]),
    "json": ("json_app:app", ["get"]),
    "echo": ("echo_post:app", ["post", "4096"]),
    "large": ("large:app", ["get"]),
    "flask": ("flask_app:app", ["get"]),
    "pipelined": ("plaintext:app", ["pipeline", "16"]),
    # Two workers each, on both cores (the load generator shares them): not pinned.
    "plaintext-w2": ("plaintext:app", ["get"]),
}
# ringwsgi-epoll: ringwsgi on its epoll fallback (`--io epoll`), as where io_uring is blocked.
SERVERS = ("ringwsgi", "ringwsgi-epoll", "granian", "gunicorn", "bjoern")
# --variant NAME=FLAGS: server "ringwsgi:NAME" is ringwsgi run with these extra flags.
# "{run}" in them is a directory of the run's own, removed after it (as logrotate would
# remove an access log: a log that grows over all the rounds gets slower to append to).
VARIANTS: dict[str, list[str]] = {}

# bjoern has no command line: listen once, fork, run in every process (shared/bench/README.md).
BJOERN_RUNNER = """
import importlib, os, sys
sys.path.insert(0, os.getcwd())
module, _, name = sys.argv[1].partition(":")
app = getattr(importlib.import_module(module), name)
import bjoern
bjoern.listen(app, "127.0.0.1", int(sys.argv[2]))
for _ in range(int(sys.argv[3]) - 1):
    if os.fork() == 0:
        break
bjoern.run()
"""
SERVER_CPU = "1"
WRK_CPU = "0"
CONNECTIONS = 64
STARTUP_TIMEOUT = 30.0
STOP_GRACE = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Process groups (servers, wrk) still alive; killed on any exit path.
LIVE_GROUPS: set[int] = set()


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def group_pids(pgid: int) -> list[int]:
    """PIDs of every live process whose process group is pgid."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        rest = raw[raw.rfind(b")") + 2:].split()
        # rest[0] = field 3 (state), rest[2] = field 5 (pgrp)
        if len(rest) > 2 and int(rest[2]) == pgid and rest[0] != b"Z":
            pids.append(int(name))
    return pids


def group_cpu_seconds(pgid: int) -> float:
    """utime+stime (fields 14, 15) summed over the group, in seconds."""
    ticks = 0
    for pid in group_pids(pgid):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        rest = raw[raw.rfind(b")") + 2:].split()
        ticks += int(rest[11]) + int(rest[12])  # fields 14 and 15
    return ticks / CLK_TCK


def group_hwm_kib(pgid: int) -> int:
    """VmHWM summed over the group, in KiB."""
    total = 0
    for pid in group_pids(pgid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


# --------------------------------------------------------------------------- processes


def kill_group(pgid: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM the group, SIGKILL whatever is left after `grace` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        LIVE_GROUPS.discard(pgid)
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:  # reap the leader if it is our child
            os.waitpid(pgid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not group_pids(pgid):
            break
        time.sleep(0.05)
    else:
        log(f"process group {pgid} still alive {grace:.0f}s after SIGTERM: SIGKILL")
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pgid, 0)
    except ChildProcessError:
        pass
    LIVE_GROUPS.discard(pgid)


def kill_all_groups(*_args) -> None:
    for pgid in list(LIVE_GROUPS):
        kill_group(pgid, grace=2.0)


def on_signal(signum, _frame):
    log(f"signal {signum}: stopping")
    kill_all_groups()
    sys.exit(128 + signum)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cmd(server: str, app: str, port: int, root: Path, workers: int = 1,
               scratch: Path | None = None) -> list[str]:
    # One worker: pinned to SERVER_CPU. Several: on every CPU (taskset keeps argv[3] the exe).
    pin = ["taskset", "-c", SERVER_CPU if workers == 1 else f"0-{os.cpu_count() - 1}"]
    w = str(workers)
    if server in ("ringwsgi", "ringwsgi-epoll") or server.startswith("ringwsgi:"):
        exe = root / ".venv" / "bin" / "ringwsgi"
        io = ["--io", "epoll"] if server == "ringwsgi-epoll" else []
        extra = VARIANTS.get(server.partition(":")[2], []) if server.startswith("ringwsgi:") else []
        extra = [flag.replace("{run}", str(scratch)) for flag in extra]
        return pin + [str(exe), "--workers", w, *io, "--bind", f"127.0.0.1:{port}", *extra, app]
    if server == "granian":
        exe = root / ".bench-venv" / "bin" / "granian"
        return pin + [str(exe), "--interface", "wsgi", "--workers", w,
                      "--blocking-threads", "1", "--host", "127.0.0.1",
                      "--port", str(port), app]
    if server == "gunicorn":
        exe = root / ".bench-venv" / "bin" / "gunicorn"
        return pin + [str(exe), "-k", "gthread", "--threads", "4", "-w", w,
                      "-b", f"127.0.0.1:{port}", app]
    if server == "bjoern":
        exe = root / ".bench-venv" / "bin" / "python"
        runner = root / ".bench-venv" / "bjoern_runner.py"
        runner.write_text(BJOERN_RUNNER)
        return pin + [str(exe), str(runner), app, str(port), w]
    raise ValueError(server)


def answers(port: int) -> bool:
    """True if something on the port answers a GET with an HTTP status line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


class StartError(Exception):
    pass


def tail(path: Path, n: int = 3) -> str:
    try:
        lines = [l.strip() for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    errs = [l for l in lines if "error" in l.lower() or "Traceback" in l]
    return " | ".join(errs[-n:] if errs else lines[-n:])


def start_server(server, app, port, root, apps_dir, logfile: Path, workers: int = 1,
                 scratch: Path | None = None) -> subprocess.Popen:
    cmd = server_cmd(server, app, port, root, workers, scratch)
    exe = Path(cmd[3])
    if not exe.exists():
        raise StartError(f"{exe} is missing")
    out = open(logfile, "wb")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=apps_dir, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True, env=env)
    out.close()
    LIVE_GROUPS.add(proc.pid)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            kill_group(proc.pid, grace=1.0)
            raise StartError(f"exited with {proc.returncode} at start-up: {tail(logfile)}")
        if answers(port):
            return proc
        time.sleep(0.1)
    kill_group(proc.pid)
    raise StartError(f"no answer within {STARTUP_TIMEOUT:.0f}s: {tail(logfile)}")


def run_wrk(port, mode, duration, bench_dir: Path, latency: bool, pinned: bool = True) -> dict:
    cmd = (["taskset", "-c", WRK_CPU] if pinned else []) + ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}s"]
    if latency:
        cmd.append("--latency")
    cmd += ["--timeout", "2s", "-s", str(bench_dir / "bench.lua"),
            f"http://127.0.0.1:{port}/", "--", *mode]
    proc = subprocess.Popen(cmd, cwd=bench_dir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)
    LIVE_GROUPS.add(proc.pid)
    try:
        out, _ = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid, grace=1.0)
        raise RuntimeError("wrk did not finish in time")
    LIVE_GROUPS.discard(proc.pid)
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise RuntimeError(f"wrk rc={proc.returncode}, no BENCHJSON: {out.strip()[-300:]}")


def one_run(server, workload, args, root, bench_dir, log_dir) -> dict:
    # The directory "{run}" names in a variant's flags: the run's own, removed after it.
    with tempfile.TemporaryDirectory(prefix=f"{server}-{workload}-", dir=log_dir) as scratch:
        return measure_run(server, workload, args, root, bench_dir, log_dir, Path(scratch))


def measure_run(server, workload, args, root, bench_dir, log_dir, scratch: Path) -> dict:
    app, mode = WORKLOADS[workload]
    port = free_port()
    logfile = log_dir / f"{server}-{workload}-{port}.log"
    try:
        workers = 2 if workload.endswith("-w2") else 1
        proc = start_server(server, app, port, root, bench_dir / "apps", logfile, workers, scratch)
    except StartError as e:
        return {"ok": False, "error": f"start: {e}"}
    pgid = proc.pid
    try:
        pinned = not workload.endswith("-w2")
        run_wrk(port, mode, args.warmup, bench_dir, latency=False, pinned=pinned)
        if proc.poll() is not None:
            return {"ok": False, "error": f"died during warm-up: {tail(logfile)}"}
        cpu0 = group_cpu_seconds(pgid)
        t0 = time.monotonic()
        res = run_wrk(port, mode, args.duration, bench_dir, latency=True, pinned=pinned)
        cpu = group_cpu_seconds(pgid) - cpu0
        wall = time.monotonic() - t0
        hwm = group_hwm_kib(pgid)
        alive = proc.poll() is None
    except (RuntimeError, ValueError) as e:
        return {"ok": False, "error": f"wrk: {e}"}
    finally:
        kill_group(pgid)
    with open(log_dir / "runs.jsonl", "a") as f:
        f.write(json.dumps({"server": server, "workload": workload, "cpu_s": cpu,
                            "rss_kib": hwm, "wrk": res}) + "\n")
    secs = res["duration_us"] / 1e6
    errors = sum(res[k] for k in ("err_connect", "err_read", "err_write", "err_timeout", "non2xx"))
    run = {
        "ok": True,
        "requests": res["requests"],
        "rps": res["requests"] / secs if secs > 0 else 0.0,
        "cpu_s": cpu,
        "rps_cpu": res["requests"] / cpu if cpu > 0 else float("nan"),
        "cpu_util": cpu / wall if wall > 0 else 0.0,
        # wrk's percentile() returns 0 when its (coordinated-omission corrected)
        # histogram has samples below its recorded minimum: treat as unknown.
        "p50_ms": res["lat_pct_us"]["50"] / 1000 or float("nan"),
        "p99_ms": res["lat_pct_us"]["99"] / 1000 or float("nan"),
        "rss_mib": hwm / 1024,
        "errors": errors,
        "alive": alive,
    }
    if not alive:
        run["note"] = "server exited during the run"
    return run


# --------------------------------------------------------------------------- report


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine_header(root: Path, servers) -> list[str]:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for s in servers:
        if s.startswith("ringwsgi:") or s == "ringwsgi-epoll":
            continue
        if s == "ringwsgi":
            v = sh([str(root / ".venv" / "bin" / "ringwsgi"), "--version"])
        else:
            v = sh([str(root / ".bench-venv" / "bin" / s), "--version"])
        versions.append(v.splitlines()[0] if v else f"{s} ?")
    load = open("/proc/loadavg").read().split()[:3]
    return [
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"- machine: nproc {sh(['nproc'])} (online CPUs {os.cpu_count()}), "
        f"kernel {platform.release()}, CPU {model}",
        f"- load average at start: {' '.join(load)}",
        f"- servers: {', '.join(versions)}; {sh([str(root / '.venv' / 'bin' / 'python'), '-V'])}",
    ]


def fmt_rate(x: float) -> str:
    if x != x:  # nan
        return "n/a"
    if x >= 10_000:
        return f"{x / 1000:.1f}k"
    return f"{x:.0f}"


def summarize(runs: list[dict]) -> dict | None:
    ok = [r for r in runs if r["ok"]]
    if not ok:
        return None
    def med(k):
        vals = [r[k] for r in ok if r[k] == r[k]]  # skip NaN
        return statistics.median(vals) if vals else float("nan")
    return {
        "n_ok": len(ok),
        "n": len(runs),
        "rps": med("rps"),
        "rps_cpu": med("rps_cpu"),
        "cpu_util": med("cpu_util"),
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "rss_mib": max(r["rss_mib"] for r in ok),
        "errors": sum(r["errors"] for r in ok),
        "errs": [r["error"] for r in runs if not r["ok"]],
    }


def cell(s: dict | None, runs: list[dict]) -> str:
    if s is None:
        why = runs[0]["error"] if runs else "not run"
        return f"FAILED ({why})".replace("|", "/")[:200]
    parts = [
        f"**{fmt_rate(s['rps'])}** rps",
        f"{fmt_rate(s['rps_cpu'])}/CPU-s ({s['cpu_util'] * 100:.0f}% CPU)",
        f"p50 {fmt_ms(s['p50_ms'])} / p99 {fmt_ms(s['p99_ms'])} ms",
        f"{s['rss_mib']:.1f} MiB",
        f"{s['errors']} err",
    ]
    if s["n_ok"] < s["n"]:
        parts.append(f"{s['n_ok']}/{s['n']} runs ok: {s['errs'][0]}".replace("|", "/")[:160])
    return " · ".join(parts)


def fmt_ms(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}"


def ratio(a: float, b: float) -> str:
    if not (a == a and b == b) or b <= 0:
        return "n/a"
    return f"×{a / b:.2f}"


def table(results, servers, workloads, args) -> list[str]:
    peers = [s for s in servers if s != "ringwsgi"] if "ringwsgi" in servers else []
    head = ["workload"] + list(servers) + [f"ringwsgi ÷ {p}" for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in workloads:
        sums = {s: summarize(results[(w, s)]) for s in servers}
        row = [w] + [cell(sums[s], results[(w, s)]) for s in servers]
        for p in peers:
            r, q = sums["ringwsgi"], sums[p]
            if r is None or q is None:
                row.append("n/a")
            else:
                row.append(f"rps {ratio(r['rps'], q['rps'])} · /CPU-s "
                           f"{ratio(r['rps_cpu'], q['rps_cpu'])}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


# --------------------------------------------------------------------------- main


def csv_list(value: str, allowed) -> list[str]:
    items = [x.strip() for x in value.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {bad or 'empty list'}; choose from {','.join(allowed)}")
    return items


def main() -> int:
    ap = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark ringwsgi against granian/gunicorn on the shared workloads "
                    "(server on CPU 1, wrk on CPU 0, medians over rounds).")
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                    help=argparse.SUPPRESS)
    ap.add_argument("--servers", type=lambda v: csv_list(v, SERVERS),
                    default=["ringwsgi", "granian", "bjoern"],
                    help="comma-separated: " + ",".join(SERVERS) + " (default ringwsgi,granian,bjoern; "
                         "ringwsgi-epoll is ringwsgi with --io epoll)")
    ap.add_argument("--workloads", type=lambda v: csv_list(v, list(WORKLOADS)),
                    default=list(WORKLOADS),
                    help="comma-separated: " + ",".join(WORKLOADS) + " (default all)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--duration", type=int, default=8, help="measured seconds per run (default 8)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds per run (default 2)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                    help="also run ringwsgi with extra flags as server ringwsgi:NAME, in the same "
                         "rounds (e.g. --variant 'log=--access-logfile {run}/access.log', {run} being "
                         "a directory of each run's own, removed after it); its "
                         "column and the ringwsgi ÷ ringwsgi:NAME ratio show the flags' cost")
    ap.add_argument("--out", type=Path, help="also write the report (Markdown) to this file")
    ap.add_argument("--no-setup", action="store_true",
                    help="do not run scripts/setup first (handled by scripts/bench)")
    args = ap.parse_args()
    if args.rounds < 1 or args.duration < 1 or args.warmup < 1:
        ap.error("--rounds, --duration and --warmup must be >= 1")

    for variant in args.variant:
        name, sep, flags = variant.partition("=")
        if not sep or not name:
            ap.error(f"--variant {variant!r}: expected NAME=FLAGS")
        VARIANTS[name] = shlex.split(flags)
        args.servers.append(f"ringwsgi:{name}")
    root = args.root.resolve()
    bench_dir = Path(os.environ.get("RINGWSGI_BENCH_DIR", root.parent / "shared" / "bench")).resolve()
    if not (bench_dir / "bench.lua").is_file() or not (bench_dir / "apps").is_dir():
        print(f"scripts/bench: error: {bench_dir} has no bench.lua / apps/", file=sys.stderr)
        return 2
    if os.cpu_count() is None or os.cpu_count() < 2:
        print("scripts/bench: error: needs at least 2 CPUs (server on 1, wrk on 0)", file=sys.stderr)
        return 2

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"ringwsgi-bench-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    servers, workloads = args.servers, args.workloads
    header = machine_header(root, servers)
    for line in header:
        log(line[2:])
    total = args.rounds * len(workloads) * len(servers)
    per_run = args.warmup + args.duration + 3
    log(f"{total} runs, about {total * per_run / 60:.1f} min; server logs in {log_dir}")

    results = {(w, s): [] for w in workloads for s in servers}
    k = 0
    try:
        for rnd in range(args.rounds):
            # rotate the server order each round so no server always goes first
            order = servers[rnd % len(servers):] + servers[:rnd % len(servers)]
            for w in workloads:
                for s in order:
                    k += 1
                    run = one_run(s, w, args, root, bench_dir, log_dir)
                    results[(w, s)].append(run)
                    if run["ok"]:
                        log(f"[{k}/{total}] round {rnd + 1} {w:9} {s:8} "
                            f"{run['rps']:9.0f} rps  {run['rps_cpu']:9.0f}/CPU-s  "
                            f"cpu {run['cpu_util'] * 100:3.0f}%  p50 {fmt_ms(run['p50_ms'])} "
                            f"p99 {fmt_ms(run['p99_ms'])} ms  {run['rss_mib']:.1f} MiB  "
                            f"{run['errors']} err" + (f"  ({run['note']})" if "note" in run else ""))
                    else:
                        log(f"[{k}/{total}] round {rnd + 1} {w:9} {s:8} FAILED: {run['error']}")
    finally:
        kill_all_groups()

    cmdline = "scripts/bench " + " ".join(a for a in sys.argv[1:] if not a.startswith("--root")
                                          and a != str(root))
    report = [f"## ringwsgi load benchmark", "", *header,
              f"- command: `{cmdline.strip()}`",
              f"- method: server `taskset -c {SERVER_CPU}`, one worker, fresh per run; "
              f"`taskset -c {WRK_CPU} wrk -t1 -c{CONNECTIONS} -d{args.duration}s --latency "
              f"--timeout 2s -s bench.lua` after a {args.warmup} s warm-up; "
              f"{args.rounds} round(s), medians",
              "- cells: median requests/s · median requests per server CPU-second (median server "
              "CPU use) · median p50 / p99 latency · peak RSS (VmHWM, max over runs) · errors "
              "(connect+read+write+timeout+non-2xx, total over runs); latency n/a = wrk's "
              "histogram gave 0 (a wrk quirk, seen with pipelining)",
              f"- raw wrk results per run: {log_dir / 'runs.jsonl'}",
              "", *table(results, servers, workloads, args), ""]
    text = "\n".join(report)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text + "\n")
        log(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
