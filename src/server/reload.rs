//! `--reload` (development only): a thread of the master polls the modification times of the
//! `.py` files under the app's directories once a second (polling: no inotify limits, no extra
//! crate, and a second is fast enough for a person editing) and, when a file changed, appeared
//! or went, sends SIGHUP to the master, which replaces the workers gracefully.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often the files are looked at.
const POLL: Duration = Duration::from_secs(1);
/// Directories not looked into: caches, virtual environments, VCS data.
const SKIPPED_DIRS: &[&str] = &["__pycache__", "node_modules", "site-packages"];

/// Every `.py` file under some directories, with its modification time.
#[derive(Debug)]
pub(super) struct Snapshot(HashMap<PathBuf, SystemTime>);

impl Snapshot {
    pub(super) fn take(dirs: &[PathBuf]) -> Snapshot {
        let mut files = HashMap::new();
        for dir in dirs {
            scan(dir, &mut files);
        }
        Snapshot(files)
    }

    /// A file that differs between `self` and `newer` (changed, new or removed), if any.
    pub(super) fn changed<'a>(&self, newer: &'a Snapshot) -> Option<&'a Path> {
        if let Some((path, _)) = newer
            .0
            .iter()
            .find(|(path, mtime)| self.0.get(*path) != Some(mtime))
        {
            return Some(path);
        }
        self.0
            .keys()
            .find(|path| !newer.0.contains_key(*path))
            .map(|_| Path::new("(a removed file)"))
    }
}

fn scan(dir: &Path, files: &mut HashMap<PathBuf, SystemTime>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_ref()) {
                scan(&path, files);
            }
        } else if name.ends_with(".py") {
            if let Ok(mtime) = entry.metadata().and_then(|m| m.modified()) {
                files.insert(path, mtime);
            }
        }
    }
}

/// Starts the watcher thread over `dirs` (the app's sys.path entries).
pub(super) fn watch(dirs: Vec<PathBuf>) {
    tracing::info!(
        "--reload: watching .py files under {} (development only)",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let spawned = std::thread::Builder::new()
        .name("ringwsgi-reload".into())
        .spawn(move || {
            let mut last = Snapshot::take(&dirs);
            loop {
                std::thread::sleep(POLL);
                let now = Snapshot::take(&dirs);
                if let Some(path) = last.changed(&now) {
                    tracing::info!("{} changed: reloading", path.display());
                    let _ = kill(Pid::this(), Signal::SIGHUP);
                }
                last = now;
            }
        });
    if let Err(e) = spawned {
        tracing::error!("--reload: cannot start the watcher thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_changed_new_and_removed_py_files_only() {
        let dir = std::env::temp_dir().join(format!("ringwsgi-reload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pkg/__pycache__")).unwrap();
        std::fs::write(dir.join("app.py"), "x = 1\n").unwrap();
        std::fs::write(dir.join("pkg/mod.py"), "y = 1\n").unwrap();
        let dirs = vec![dir.clone()];
        let before = Snapshot::take(&dirs);
        assert_eq!(before.0.len(), 2);

        // Not watched: other files, caches.
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        std::fs::write(dir.join("pkg/__pycache__/mod.py"), "x").unwrap();
        assert_eq!(before.changed(&Snapshot::take(&dirs)), None);

        // An edit (a later mtime, set explicitly: filesystems may count whole seconds).
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join("pkg/mod.py"))
            .unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        let edited = Snapshot::take(&dirs);
        assert_eq!(
            before.changed(&edited),
            Some(dir.join("pkg/mod.py").as_path())
        );

        std::fs::write(dir.join("new.py"), "").unwrap();
        let added = Snapshot::take(&dirs);
        assert_eq!(edited.changed(&added), Some(dir.join("new.py").as_path()));

        std::fs::remove_file(dir.join("app.py")).unwrap();
        assert!(added.changed(&Snapshot::take(&dirs)).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
