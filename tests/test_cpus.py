"""The default worker count honours the cgroup's CPU quota, not only the affinity mask.

A real cgroup is made for the server (cgroup v1 `cpu` controller or cgroup v2 with `cpu`
enabled), limited to one CPU's worth of time; the server started inside it must run one worker
where the machine's affinity mask would give one per CPU. Needs root and a writable cgroup
hierarchy; skipped otherwise.
"""
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness import APPS_DIR, get, ringwsgi_path, LISTENING_RE


def _cpu_cgroup_root() -> "tuple[Path, bool] | None":
    """Mount point of the hierarchy with the cpu controller, and whether it is cgroup v2."""
    v2 = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        if rest[0] == "cgroup" and "cpu" in rest[2].split(","):
            return Path(fields[4]), False
        if rest[0] == "cgroup2" and v2 is None:
            v2 = Path(fields[4])
    if v2 is not None and "cpu" in (v2 / "cgroup.subtree_control").read_text().split():
        return v2, True
    return None


@pytest.fixture
def one_cpu_cgroup():
    if os.geteuid() != 0:
        pytest.skip("making a cgroup needs root")
    found = _cpu_cgroup_root()
    if found is None:
        pytest.skip("no cgroup hierarchy with the cpu controller")
    root, v2 = found
    group = root / f"ringwsgi-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        if v2:
            (group / "cpu.max").write_text("100000 100000\n")
        else:
            (group / "cpu.cfs_period_us").write_text("100000\n")
            (group / "cpu.cfs_quota_us").write_text("100000\n")
    except OSError as e:
        if group.exists():
            group.rmdir()
        pytest.skip(f"cannot make a cgroup with a CPU quota: {e}")
    yield group
    for _ in range(50):
        try:
            group.rmdir()
            break
        except OSError:
            time.sleep(0.1)


def test_default_workers_follow_the_cgroup_cpu_quota(one_cpu_cgroup):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs at least 2 CPUs in the affinity mask to tell a quota of 1 apart")
    procs = str(one_cpu_cgroup / "cgroup.procs")

    def enter_cgroup():
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    proc = subprocess.Popen(
        [str(ringwsgi_path()), "--bind", "127.0.0.1:0", "wsgi_basic:app"],
        cwd=str(APPS_DIR),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=enter_cgroup,
        text=True,
    )
    try:
        lines, port = [], None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            m = LISTENING_RE.search(line)
            if m:
                port = int(m.group(2))
        log = "".join(lines)
        assert port is not None, log
        assert "1 workers: the cgroup CPU quota is 1 CPUs" in log, log
        deadline = time.monotonic() + 30
        while True:
            try:
                assert get(port, "/").status == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
