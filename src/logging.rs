//! Logging through `tracing`: a level filter, text or JSON lines, to stderr or to a file that
//! SIGUSR1 reopens (for logrotate).
//!
//! The master and the worker process append to the same file, each having opened it with
//! O_APPEND: tracing-subscriber formats each record whole into one buffer and hands it over in
//! one `write_all`, which a regular file takes in one write(2) at its end, so records of
//! different processes and threads never interleave and none overwrites another.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per record.
    Text,
    /// One JSON object per line: timestamp, level, message and the record's fields.
    Json,
}

/// How a process logs; the master passes its own to the worker process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogConfig {
    /// A level (`info`, `debug`, gunicorn's `warning`...) or `EnvFilter` directive, checked by
    /// [`parse_level`].
    pub level: String,
    pub format: LogFormat,
    /// An absolute path, or `None` for stderr.
    pub file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the log file {}: {source}", path.display())]
pub struct OpenError {
    path: PathBuf,
    source: io::Error,
}

/// The log file at its path, swapped for a fresh open by [`LogHandle::reopen`].
struct LogFile {
    path: PathBuf,
    file: RwLock<File>,
}

/// Where a process's records go; kept by its signal loop to reopen the file on SIGUSR1.
pub struct LogHandle(Option<Arc<LogFile>>);

impl LogHandle {
    /// Opens the log file at its path again (a no-op for stderr): after logrotate renamed the
    /// old one, records go to a new file at the path. On failure the old file stays in use.
    pub fn reopen(&self) {
        let Some(log) = &self.0 else { return };
        match open(&log.path) {
            Ok(file) => {
                *log.file.write().unwrap_or_else(PoisonError::into_inner) = file;
                tracing::info!("reopened the log file {}", log.path.display());
            }
            Err(err) => tracing::error!("{err}"),
        }
    }
}

/// Installs the process's subscriber. Fails only when the log file cannot be opened.
pub fn init_logging(config: &LogConfig) -> Result<LogHandle, OpenError> {
    let filter = filter(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let log_file = match &config.file {
        Some(path) => Some(Arc::new(LogFile {
            path: path.clone(),
            file: RwLock::new(open(path)?),
        })),
        None => None,
    };
    let ansi = log_file.is_none() && io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Destination(log_file.clone()))
        .with_target(false);
    // Another subscriber already installed (tests) keeps its place.
    let _ = match config.format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(LogHandle(log_file))
}

/// The filter for a `--log-level`: tracing's levels and directives, and gunicorn's level names.
fn filter(level: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let level = level.to_ascii_lowercase();
    EnvFilter::try_new(match level.as_str() {
        "warning" => "warn",
        "critical" => "error",
        other => other,
    })
}

/// `--log-level`'s value parser: the level must be one [`init_logging`] understands.
/// Besides levels, `target=level` directives are accepted; a bare word that is no level is
/// refused (`EnvFilter` would take it for a target and log nothing else).
pub fn parse_level(level: &str) -> Result<String, String> {
    let lower = level.to_ascii_lowercase();
    let is_level = |d: &str| {
        matches!(
            d,
            "off" | "error" | "warn" | "warning" | "critical" | "info" | "debug" | "trace"
        )
    };
    if !lower.is_empty()
        && lower.split(',').all(|d| is_level(d) || d.contains('='))
        && filter(level).is_ok()
    {
        Ok(level.to_owned())
    } else {
        Err("expected error, warn, info, debug or trace".to_owned())
    }
}

fn open(path: &Path) -> Result<File, OpenError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| OpenError {
            path: path.to_owned(),
            source,
        })
}

/// The subscriber's writer: stderr, or the current log file.
struct Destination(Option<Arc<LogFile>>);

/// Where one record is written.
enum RecordWriter<'a> {
    Stderr(io::Stderr),
    File(RwLockReadGuard<'a, File>),
}

impl<'a> MakeWriter<'a> for Destination {
    type Writer = RecordWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match &self.0 {
            None => RecordWriter::Stderr(io::stderr()),
            Some(log) => {
                RecordWriter::File(log.file.read().unwrap_or_else(PoisonError::into_inner))
            }
        }
    }
}

impl Write for RecordWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RecordWriter::Stderr(stderr) => stderr.write(buf),
            RecordWriter::File(file) => (&**file).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_level;

    #[test]
    fn levels() {
        for ok in [
            "info",
            "DEBUG",
            "warning",
            "critical",
            "ringwsgi=debug,info",
        ] {
            assert!(parse_level(ok).is_ok(), "{ok}");
        }
        for bad in ["x", "loud", "info,x", ""] {
            assert!(parse_level(bad).is_err(), "{bad}");
        }
    }
}
