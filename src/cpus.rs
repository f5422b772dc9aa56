//! How many CPUs the server may use: the CPUs of its affinity mask (sched_getaffinity), capped
//! by the cgroup's CPU quota (`cpu.max` in cgroup v2, `cpu.cfs_quota_us` / `cpu.cfs_period_us`
//! in v1). A container limited to 2 CPUs on a 64-core host sees all 64 in its affinity mask but
//! may only use 2 CPUs' worth of time: 2 pinned workers serve it better than 64.
//!
//! The quota is read along the process's cgroup path up to the mount's root; the smallest limit
//! on the way counts (a parent's limit binds its children).

use std::path::{Path, PathBuf};

/// The CPUs this process may run on (sched_getaffinity), in order.
pub fn affinity() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|id| id.id).collect::<Vec<_>>())
        .filter(|ids| !ids.is_empty())
        .unwrap_or_else(|| vec![0])
}

/// The CPUs for the default worker count: the affinity mask, cut to the cgroup quota rounded up
/// (at least one). Returns the CPUs and the quota when it cut.
pub fn usable() -> (Vec<usize>, Option<f64>) {
    let mut cpus = affinity();
    let quota = cgroup_quota();
    if let Some(limit) = quota {
        let n = (limit.ceil() as usize).max(1);
        if n < cpus.len() {
            cpus.truncate(n);
            return (cpus, quota);
        }
    }
    (cpus, None)
}

/// The cgroup CPU quota of this process in CPUs (e.g. 1.5), None when unlimited or unknown.
pub fn cgroup_quota() -> Option<f64> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    quota_from(&mountinfo, &cgroups, |path| {
        std::fs::read_to_string(path).ok()
    })
}

/// Where the cgroup hierarchy with the CPU controller is mounted, and in which version.
#[derive(Debug, PartialEq)]
struct CpuMount {
    point: PathBuf,
    /// The mount's root inside the hierarchy (usually "/").
    root: String,
    v2: bool,
}

/// The quota from the text of /proc/self/mountinfo and /proc/self/cgroup; `read` reads a file
/// (injected, for tests). A v1 `cpu` controller wins over v2 when both are mounted, since a v2
/// hierarchy then has no CPU controller.
fn quota_from(
    mountinfo: &str,
    cgroups: &str,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<f64> {
    let mount = cpu_mount(mountinfo)?;
    let path = cgroup_path(cgroups, mount.v2)?;
    let relative = path.strip_prefix(mount.root.as_str()).unwrap_or(&path);
    let mut dir = mount.point.join(relative.trim_start_matches('/'));
    let mut limit: Option<f64> = None;
    loop {
        let here = if mount.v2 {
            read(&dir.join("cpu.max")).and_then(|text| parse_cpu_max(&text))
        } else {
            let quota = read(&dir.join("cpu.cfs_quota_us"));
            let period = read(&dir.join("cpu.cfs_period_us"));
            quota.zip(period).and_then(|(q, p)| parse_cfs(&q, &p))
        };
        if let Some(here) = here {
            limit = Some(limit.map_or(here, |l| l.min(here)));
        }
        if dir == mount.point || !dir.pop() || !dir.starts_with(&mount.point) {
            break;
        }
    }
    limit
}

/// Finds the v1 mount with the `cpu` controller, else the v2 mount.
fn cpu_mount(mountinfo: &str) -> Option<CpuMount> {
    let mut v2 = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let (Some(fstype), _, Some(options)) = (right.next(), right.next(), right.next()) else {
            continue;
        };
        let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let mount = |v2| CpuMount {
            point: PathBuf::from(point),
            root: root.to_string(),
            v2,
        };
        match fstype {
            "cgroup" if options.split(',').any(|o| o == "cpu") => return Some(mount(false)),
            "cgroup2" if v2.is_none() => v2 = Some(mount(true)),
            _ => {}
        }
    }
    v2
}

/// The process's path in the hierarchy: the `0::` line for v2, the line listing `cpu` for v1.
fn cgroup_path(cgroups: &str, v2: bool) -> Option<String> {
    cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if v2 {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == "cpu")
        };
        matches.then(|| path.to_owned())
    })
}

/// `cpu.max`: "QUOTA PERIOD" in microseconds, or "max PERIOD" for no limit.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next().unwrap_or("100000").parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// v1: `cpu.cfs_quota_us` (-1 for no limit) over `cpu.cfs_period_us`.
fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const V1: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    const V2: &str = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

    fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let map: HashMap<PathBuf, String> = entries
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        move |p| map.get(p).cloned()
    }

    #[test]
    fn v2_quota_and_the_tightest_ancestor() {
        let cgroups = "0::/kubepods/pod1/ctr\n";
        let read = files(&[
            ("/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n"),
            ("/sys/fs/cgroup/kubepods/pod1/cpu.max", "150000 100000\n"),
            ("/sys/fs/cgroup/kubepods/cpu.max", "400000 100000\n"),
        ]);
        assert_eq!(quota_from(V2, cgroups, read), Some(1.5));
        let unlimited = files(&[("/sys/fs/cgroup/a/cpu.max", "max 100000\n")]);
        assert_eq!(quota_from(V2, "0::/a\n", unlimited), None);
    }

    #[test]
    fn v1_cfs_quota() {
        let cgroups = "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n0::/\n";
        let read = files(&[
            (
                "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us",
                "200000\n",
            ),
            (
                "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us",
                "100000\n",
            ),
            ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n"),
            ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
        ]);
        assert_eq!(quota_from(V1, cgroups, read), Some(2.0));
    }

    #[test]
    fn mount_root_is_stripped_and_garbage_is_no_limit() {
        // Inside a container the mount's root is the container's own cgroup.
        let mountinfo = "40 31 0:29 /docker/abc /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        let read = files(&[
            ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "50000"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000"),
        ]);
        assert_eq!(
            quota_from(mountinfo, "3:cpu:/docker/abc\n", read),
            Some(0.5)
        );
        let bad = files(&[("/sys/fs/cgroup/cpu.max", "lots 100000")]);
        assert_eq!(quota_from(V2, "0::/\n", bad), None);
        assert_eq!(quota_from("", "0::/\n", files(&[])), None);
    }
}
