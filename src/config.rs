//! The user's front door: command-line flags and the settings derived from them.
//!
//! Flags are named as gunicorn names them where the meaning is the same (`--bind`, `--workers`,
//! `--chdir`, `--pythonpath`, `--backlog`). The master parses them; the worker process receives
//! the resolved [`WorkerConfig`] from the master (serialized), never the raw command line.
//!
//! [`load`] fills [`Args`] from the command line, `RINGWSGI_*` environment variables and a TOML
//! file ([`sources`]), and answers `--print-config` ([`print`]).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};
use serde::{Deserialize, Serialize};

use crate::http::forwarded::{self, AllowList};
use crate::http::proxy_protocol::Versions;
use crate::logging::{LogConfig, LogFormat};

mod print;
mod sources;

pub use sources::SourceError;

/// Command line of the `ringwsgi` command.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ringwsgi",
    version,
    about = "A WSGI (PEP 3333) HTTP/1.1 server: one pinned io_uring worker thread per core, \
             each running the app in its own-GIL subinterpreter.",
    after_help = "Example: ringwsgi --bind 0.0.0.0:8000 --workers 4 myproject.wsgi:application"
)]
pub struct Args {
    /// The WSGI application: MODULE:NAME, or MODULE:FACTORY() to call a factory that returns it
    /// (as gunicorn). MODULE is imported with the current directory (after --chdir) on sys.path.
    #[arg(value_name = "MODULE:APP")]
    pub app: String,

    /// Where to listen; repeat for several: HOST:PORT (an IP address or localhost; port 0 picks
    /// a free port), [IPv6]:PORT, unix:PATH (a unix-domain socket), fd://N (an inherited
    /// listening socket). Ignored under systemd socket activation (LISTEN_FDS), as in gunicorn.
    #[arg(short, long, value_name = "ADDRESS", default_value = "127.0.0.1:8000")]
    pub bind: Vec<String>,

    /// File mode mask for unix sockets created by --bind unix:PATH (octal with a leading 0 or
    /// 0o, hex with 0x, else decimal).
    #[arg(long, value_name = "INT", default_value = "0", value_parser = clap::builder::ValueParser::new(parse_umask))]
    pub umask: u32,

    /// Run the workers (and the master, once the sockets are bound) as this user: a name or a
    /// numeric id. Unix socket files are given to it.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Run as this group (a name or a numeric id). Default with --user: the user's group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,

    /// With --user: the supplementary groups become the user's groups (/etc/group), not just
    /// the one group.
    #[arg(long)]
    pub initgroups: bool,

    /// Development only: restart the workers when a .py file under the app's directory (or a
    /// --pythonpath directory) changes.
    #[arg(long)]
    pub reload: bool,

    /// Number of worker threads, each pinned to one CPU with its own io_uring loop, listener and
    /// subinterpreter. Default: the CPUs this process may run on (sched_getaffinity), at most
    /// the cgroup's CPU quota (cpu.max) rounded up.
    #[arg(short, long, value_name = "INT")]
    pub workers: Option<usize>,

    /// Change to this directory before loading the app.
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// Comma-separated directories to add to the app's sys.path (before the current directory).
    #[arg(long, value_name = "DIRS")]
    pub pythonpath: Option<String>,

    /// Maximum number of pending connections per listening socket.
    #[arg(long, value_name = "INT", default_value_t = 2048)]
    pub backlog: i32,

    /// Python threads per worker, for apps that block on I/O. With 1 (the default) the app runs
    /// inline on the worker's I/O thread, the fast path; with N > 1 requests are handed to N
    /// threads of the worker's interpreter and wsgi.multithread is True.
    #[arg(long, value_name = "INT", default_value_t = 1)]
    pub threads: usize,

    /// Largest request body accepted, in bytes (0: no limit). A larger declared body is
    /// answered with 413 before it is read.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    pub limit_request_body: u64,

    /// Request bodies larger than this many bytes are stored in an unlinked temporary file
    /// instead of memory.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub spool_threshold: usize,

    /// Directory for spooled request bodies. Default: the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Largest request line (method, target, version) in bytes; longer ones get 414.
    #[arg(long, value_name = "BYTES", default_value_t = 8190)]
    pub limit_request_line: usize,

    /// Most header fields in a request (at most 128); more get 431.
    #[arg(long, value_name = "INT", default_value_t = 100, value_parser = clap::builder::ValueParser::new(parse_fields_limit))]
    pub limit_request_fields: usize,

    /// Largest header field in bytes (name, value and CRLF, counted as gunicorn does); longer
    /// ones get 431.
    #[arg(
        long,
        alias = "limit-request-field_size",
        value_name = "BYTES",
        default_value_t = 8190
    )]
    pub limit_request_field_size: usize,

    /// Open connections per worker; further clients wait in the listen backlog.
    #[arg(long, value_name = "INT", default_value_t = 10_000)]
    pub worker_connections: usize,

    /// Seconds a client has to send a complete request head (then 408).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub header_timeout: f64,

    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub keep_alive: f64,

    /// Seconds a request body may make no progress before the connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub body_timeout: f64,

    /// Seconds a response may make no progress (the client does not read) before the
    /// connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub write_timeout: f64,

    /// Seconds an app call (including each step of iterating its response body) may run before
    /// it is interrupted with an exception (the client gets 504, or a closed connection once the
    /// response began). 0 disables it. A call that still has not returned --graceful-timeout
    /// later has the worker process replaced.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub timeout: f64,

    /// Requests a worker thread serves before its worker process is replaced (gracefully, by a
    /// new one), to bound the effect of leaks. 0 disables it.
    #[arg(long, value_name = "INT", default_value_t = 0)]
    pub max_requests: u64,

    /// Each worker thread's limit is --max-requests plus a random number from 0 to this, so that
    /// the workers are not all replaced at once.
    #[arg(long, value_name = "INT", default_value_t = 0)]
    pub max_requests_jitter: u64,

    /// Keep per-worker statistics (where request time goes, batch sizes, io_uring submissions
    /// per request) and print them at exit and on SIGUSR2. Costs a few clock reads per request.
    #[arg(long)]
    pub stats: bool,

    /// Front-end addresses trusted to name the client: from them, X-Forwarded-For sets
    /// REMOTE_ADDR (its rightmost address not in this list) and X-Forwarded-Proto: https,
    /// X-Forwarded-Protocol: ssl or X-Forwarded-Ssl: on set wsgi.url_scheme to https.
    /// Comma-separated IP addresses or CIDR networks, or '*' for every peer. Unix-domain peers
    /// are always trusted.
    #[arg(long, value_name = "ADDRESSES", default_value = forwarded::LOCALHOST, value_parser = parse_allow_list)]
    pub forwarded_allow_ips: AllowList,

    /// Every connection must start with a PROXY protocol header (HAProxy's; v1 text, v2
    /// binary, or either with 'auto', the mode of a bare --proxy-protocol), whose source
    /// address becomes the client's. Connections without one, or from peers not in
    /// --proxy-allow-from, are closed.
    #[arg(long, value_name = "MODE", value_enum, default_value = "off", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub proxy_protocol: ProxyProtocol,

    /// Peers allowed to connect with --proxy-protocol: comma-separated IP addresses or CIDR
    /// networks, or '*'. Unix-domain peers are always allowed.
    #[arg(long, value_name = "ADDRESSES", default_value = forwarded::LOCALHOST, value_parser = parse_allow_list)]
    pub proxy_allow_from: AllowList,

    /// Log level: error, warn, info, debug or trace (gunicorn's critical and warning too).
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = crate::logging::parse_level)]
    pub log_level: String,

    /// Serve Prometheus metrics (GET /metrics) from the master at HOST:PORT: requests by method
    /// and status class, request and queue time histograms, batch sizes, in-flight requests,
    /// open connections, io_uring submissions, worker restarts, stage times. Port 0 picks a free
    /// port (logged as `Metrics at: …`). Costs a few clock reads per request.
    #[arg(long, value_name = "ADDRESS")]
    pub metrics_bind: Option<String>,

    /// Write one line per request to this file (appended; `-`: standard output). Off by
    /// default.
    #[arg(long, value_name = "FILE")]
    pub access_logfile: Option<PathBuf>,

    /// Format of the access log's lines, with gunicorn's atoms: h l u t r m U q H s B b f a T
    /// D M L p, {header}i, {header}o ({var}e is written as -). Default: Apache combined format.
    #[arg(long, value_name = "FORMAT", default_value = crate::worker::access_log::DEFAULT_FORMAT)]
    pub access_logformat: String,

    /// How the app is run. subinterpreter: one worker process, one own-GIL subinterpreter per
    /// worker thread (Python 3.13+). process: one worker process per worker, each running the
    /// app in its main interpreter (for extension modules that refuse subinterpreters). auto:
    /// subinterpreter, falling back to process when an extension module imported while the app
    /// loads refuses subinterpreters (process before Python 3.13).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = Mode::Auto)]
    pub mode: Mode,

    /// Seconds a stopping worker process (SIGTERM, reload, replacement) gets to finish its
    /// requests: it answers every request already received, then what is left is aborted
    /// (and the process is killed soon after).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub graceful_timeout: f64,

    /// Log format: `text` (one line per record) or `json` (one JSON object per line with
    /// timestamp, level, message and the record's fields).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Where the log goes: a file, opened for appending by the master and the worker process
    /// and reopened on SIGUSR1 (for logrotate), or `-` for stderr.
    #[arg(long, alias = "log-file", value_name = "FILE", default_value = "-")]
    pub error_logfile: String,

    /// Read settings from this TOML file: keys are the long flag names (`workers = 2`,
    /// `bind = "127.0.0.1:8000"`, `app = "module:app"`). RINGWSGI_* environment variables
    /// (`RINGWSGI_WORKERS=2`) override it and the command line overrides both. Default: the
    /// file named by RINGWSGI_CONFIG, if set.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration (every setting, as TOML that --config reads) and exit
    /// without binding or loading the app.
    #[arg(long)]
    pub print_config: bool,

    /// I/O loop: io_uring, or epoll where io_uring is unavailable (blocked by a container's
    /// seccomp profile or kernel.io_uring_disabled, or a kernel before 6.1). `auto` probes at
    /// start-up and logs what it chose and why; `uring` makes an unavailable io_uring a start-up
    /// error; `epoll` never uses io_uring.
    #[arg(long, value_enum, value_name = "LOOP", default_value_t = IoMode::Auto)]
    pub io: IoMode,
}

/// `--io`: which transport the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    Auto,
    Uring,
    Epoll,
}

/// `--mode`: where the app's Python code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Auto,
    Subinterpreter,
    Process,
}

/// The interpreter a worker process runs the app in (the master resolves `--mode auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interpreters {
    /// One own-GIL subinterpreter per worker thread.
    Sub,
    /// The process's main interpreter, shared by its threads.
    Main,
}

/// gunicorn's one-letter flags for settings that mean the same here, given to whichever of
/// them the command has (and whose letter is free): a flag gets its gunicorn letter by
/// being named as gunicorn names it.
const GUNICORN_SHORTS: &[(&str, char)] = &[
    ("timeout", 't'),
    ("umask", 'm'),
    ("user", 'u'),
    ("group", 'g'),
];

/// The clap command of [`Args`], with gunicorn's one-letter flags.
pub fn command() -> clap::Command {
    with_gunicorn_shorts(Args::command())
}

fn with_gunicorn_shorts(mut cmd: clap::Command) -> clap::Command {
    for &(id, short) in GUNICORN_SHORTS {
        let exists = cmd.get_arguments().any(|a| a.get_id() == id);
        let taken = cmd.get_arguments().any(|a| a.get_short() == Some(short));
        if exists && !taken {
            cmd = cmd.mut_arg(id, |a| a.short(short));
        }
    }
    cmd
}

/// What the user asked for.
#[derive(Debug)]
pub enum Invocation {
    Serve(Box<Args>),
    /// `--print-config`: the text to print.
    PrintConfig(String),
}

/// Why the command line, the environment or the configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A usage error, or `--help`/`--version`, that clap prints itself.
    #[error(transparent)]
    Usage(#[from] clap::Error),
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl LoadError {
    /// Exit code: clap's (2 for usage errors, 0 for --help), 2 for a bad setting.
    pub fn exit_code(&self) -> i32 {
        match self {
            LoadError::Usage(err) => err.exit_code(),
            LoadError::Source(_) => 2,
        }
    }
}

/// Fills [`Args`] from `argv`, the `RINGWSGI_*` variables of `env` and the configuration file.
pub fn load(argv: &[OsString], env: &[(String, String)]) -> Result<Invocation, LoadError> {
    let full = command();
    // Positionals may come from the file or the environment: not required on the command line.
    let relaxed = full.clone().mut_args(|a| {
        if a.is_positional() {
            a.required(false)
        } else {
            a
        }
    });
    let cli = match relaxed.clone().try_get_matches_from(argv) {
        Ok(cli) => cli,
        // The full command's message (and --help's usage line) shows what is required.
        Err(_) => full.clone().try_get_matches_from(argv)?,
    };
    let argv = sources::layered_argv(argv, &cli, &relaxed, env)?;
    if cli.get_flag("print_config") {
        let matches = relaxed.clone().try_get_matches_from(&argv)?;
        return Ok(Invocation::PrintConfig(print::render(&relaxed, &matches)));
    }
    let matches = full.try_get_matches_from(&argv)?;
    Ok(Invocation::Serve(Box::new(Args::from_arg_matches(
        &matches,
    )?)))
}

/// The `RINGWSGI_*` variables of this process's environment.
pub fn ringwsgi_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .filter(|(k, _)| k.starts_with(sources::ENV_PREFIX))
        .collect()
}

impl Args {
    /// The logging settings, with a relative log file made absolute (the worker process may
    /// run in another directory after --chdir).
    pub fn log_config(&self) -> Result<LogConfig, ConfigError> {
        let file = match self.error_logfile.as_str() {
            "-" => None,
            path => {
                Some(std::path::absolute(path).map_err(|e| ConfigError::Path(path.to_owned(), e))?)
            }
        };
        Ok(LogConfig {
            level: self.log_level.clone(),
            format: self.log_format,
            file,
        })
    }
}

/// Errors in the configuration, reported as one line before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid app '{0}': expected MODULE:APP or MODULE:FACTORY()")]
    AppSpec(String),
    #[error(
        "invalid --bind '{0}': expected HOST:PORT with an IP address or localhost \
         (e.g. 127.0.0.1:8000), [IPv6]:PORT, unix:PATH or fd://N"
    )]
    Bind(String),
    #[error("--workers must be at least 1")]
    Workers,
    #[error("--threads must be at least 1")]
    Threads,
    #[error("{0} must be a positive number of seconds")]
    Seconds(&'static str),
    #[error("--worker-connections must be at least 1")]
    WorkerConnections,
    #[error("cannot change to directory {0}: {1}")]
    Chdir(PathBuf, std::io::Error),
    #[error("cannot resolve {0}: {1}")]
    Path(String, std::io::Error),
    #[error(transparent)]
    AccessLogFormat(#[from] crate::worker::access_log::FormatError),
    #[error("cannot open --access-logfile {0}: {1}")]
    AccessLogFile(PathBuf, std::io::Error),
}

/// What a worker process needs, resolved by the master (paths absolute, CPUs chosen).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// MODULE:APP as given.
    pub app: String,
    /// Entries to put at the front of each interpreter's sys.path, in order.
    pub sys_path: Vec<String>,
    /// One entry per worker thread: the CPU it is pinned to.
    pub cpus: Vec<usize>,
    /// SERVER_NAME/SERVER_PORT without a Host header: the first TCP bind (127.0.0.1:80 with
    /// unix sockets only).
    pub bound: SocketAddr,
    /// SCRIPT_NAME for every request (from the SCRIPT_NAME environment variable, as gunicorn).
    pub script_name: String,
    /// Logging of the worker process, as the master's.
    pub log: LogConfig,
    /// Python threads per worker (1: inline).
    pub threads: usize,
    /// Largest request body (0: no limit).
    pub limit_request_body: u64,
    pub spool_threshold: usize,
    pub spool_dir: Option<PathBuf>,
    pub limit_request_line: usize,
    pub limit_request_fields: usize,
    pub limit_request_field_size: usize,
    pub worker_connections: usize,
    pub header_timeout: f64,
    pub keep_alive: f64,
    pub body_timeout: f64,
    pub write_timeout: f64,
    pub graceful_timeout: f64,
    /// `--timeout` (0: off).
    pub timeout: f64,
    /// `--max-requests` (0: off) and `--max-requests-jitter`.
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// `--stats`.
    pub stats: bool,
    /// `--access-logfile` (absolute, or `-`) and `--access-logformat`.
    #[serde(default)]
    pub access_logfile: Option<PathBuf>,
    #[serde(default)]
    pub access_logformat: String,
    /// Where the app runs in this worker process.
    pub interpreters: Interpreters,
    /// Worker threads of all worker processes together (wsgi.multiprocess).
    pub total_workers: usize,
    /// The number of this process's first worker among all (process mode: its slot).
    pub first_worker: usize,
    pub forwarded_allow_ips: AllowList,
    pub proxy_protocol: ProxyProtocol,
    pub proxy_allow_from: AllowList,
    /// `--io`.
    pub io: IoMode,
}

/// `--proxy-protocol` modes (gunicorn's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum ProxyProtocol {
    Off,
    V1,
    V2,
    Auto,
}

impl ProxyProtocol {
    /// The header versions accepted (`None`: no header expected).
    pub fn versions(self) -> Option<Versions> {
        match self {
            ProxyProtocol::Off => None,
            ProxyProtocol::V1 => Some(Versions::V1),
            ProxyProtocol::V2 => Some(Versions::V2),
            ProxyProtocol::Auto => Some(Versions::Any),
        }
    }
}

/// `--forwarded-allow-ips`, `--proxy-allow-from`.
fn parse_allow_list(s: &str) -> Result<AllowList, String> {
    AllowList::parse(s).map_err(|e| e.to_string())
}

impl WorkerConfig {
    /// wsgi.multiprocess: true when requests of this app may be served by more than one worker.
    pub fn multiprocess(&self) -> bool {
        self.total_workers > 1
    }
}

/// `--limit-request-fields`: 1 to 128 (the parser's header slots).
fn parse_fields_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=crate::http::MAX_HEADERS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number from 1 to {}",
            crate::http::MAX_HEADERS
        )),
    }
}

/// A duration flag in seconds (positive, finite).
pub fn seconds(flag: &'static str, value: f64) -> Result<std::time::Duration, ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(std::time::Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::Seconds(flag))
    }
}

/// Checks `--access-logformat` and that `--access-logfile` can be opened for appending (it is
/// created if missing); returns the file's absolute path (or `-`).
pub fn access_logfile(
    path: Option<&std::path::Path>,
    format: &str,
) -> Result<Option<PathBuf>, ConfigError> {
    crate::worker::access_log::Format::parse(format)?;
    let Some(path) = path else { return Ok(None) };
    if path.as_os_str() == "-" {
        return Ok(Some(path.to_owned()));
    }
    let fail = |e| ConfigError::AccessLogFile(path.to_owned(), e);
    let abs = std::path::absolute(path).map_err(fail)?;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&abs)
        .map_err(fail)?;
    Ok(Some(abs))
}

/// Checks the MODULE:APP syntax (the import itself happens in the workers).
pub fn check_app_spec(spec: &str) -> Result<(), ConfigError> {
    let (module, attr) = spec
        .split_once(':')
        .ok_or_else(|| ConfigError::AppSpec(spec.to_owned()))?;
    let is_dotted_name = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|part| !part.is_empty() && is_identifier(part))
    };
    let attr_name = attr.split_once('(').map_or(attr, |(name, _)| name);
    if !is_dotted_name(module) || !is_dotted_name(attr_name) {
        return Err(ConfigError::AppSpec(spec.to_owned()));
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// One `--bind`: where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindSpec {
    /// `HOST:PORT`: one SO_REUSEPORT socket per worker thread.
    Tcp(SocketAddr),
    /// `unix:PATH`: one socket, shared by the worker threads.
    Unix(PathBuf),
    /// `fd://N`: an inherited listening socket, shared by the worker threads.
    Fd(i32),
}

/// Parses one `--bind`: `unix:PATH`, `fd://N`, or `HOST:PORT` (`[v6]:PORT` for IPv6;
/// `localhost` means 127.0.0.1).
pub fn parse_bind(bind: &str) -> Result<BindSpec, ConfigError> {
    let err = || ConfigError::Bind(bind.to_owned());
    if let Some(path) = bind.strip_prefix("unix:") {
        return match path {
            "" => Err(err()),
            path => Ok(BindSpec::Unix(PathBuf::from(path))),
        };
    }
    if let Some(fd) = bind.strip_prefix("fd://") {
        return fd.parse().map(BindSpec::Fd).map_err(|_| err());
    }
    parse_host_port(bind).map(BindSpec::Tcp).ok_or_else(err)
}

fn parse_host_port(bind: &str) -> Option<SocketAddr> {
    if let Ok(addr) = bind.parse::<SocketAddr>() {
        return Some(addr);
    }
    let (host, port) = bind.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = match host {
        "localhost" | "" => "127.0.0.1",
        h => h,
    };
    format!("{host}:{port}").parse().ok()
}

/// `--umask` as gunicorn reads it: `0o22`/`022` octal, `0x12` hex, else decimal.
fn parse_umask(s: &str) -> Result<u32, String> {
    let parsed = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16)
    } else if let Some(oct) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        u32::from_str_radix(oct, 8)
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8)
    } else {
        s.parse()
    };
    match parsed {
        Ok(mask) if mask <= 0o777 => Ok(mask),
        _ => Err("expected a mode mask from 0 to 0o777 (e.g. 0o007 or 007)".into()),
    }
}

/// Picks the CPU of each worker. Default: one per CPU of the affinity mask, cut to the cgroup's
/// CPU quota; an explicit count wraps around the affinity mask when larger.
pub fn worker_cpus(workers: Option<usize>) -> Result<Vec<usize>, ConfigError> {
    let cpus = match workers {
        Some(_) => crate::cpus::affinity(),
        None => {
            let (cpus, quota) = crate::cpus::usable();
            if let Some(quota) = quota {
                tracing::info!(
                    "{} workers: the cgroup CPU quota is {quota} CPUs (of {} in the affinity mask)",
                    cpus.len(),
                    crate::cpus::affinity().len()
                );
            }
            cpus
        }
    };
    let n = workers.unwrap_or(cpus.len());
    if n == 0 {
        return Err(ConfigError::Workers);
    }
    Ok((0..n).map(|i| cpus[i % cpus.len()]).collect())
}

/// The sys.path entries for the app: --pythonpath entries, then the current directory.
pub fn app_sys_path(pythonpath: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let mut entries = Vec::new();
    for dir in pythonpath.into_iter().flat_map(|p| p.split(',')) {
        let dir = dir.trim();
        if dir.is_empty() {
            continue;
        }
        let abs = std::path::absolute(dir).map_err(|e| ConfigError::Path(dir.to_owned(), e))?;
        entries.push(abs.to_string_lossy().into_owned());
    }
    let cwd = std::env::current_dir().map_err(|e| ConfigError::Path(".".into(), e))?;
    entries.push(cwd.to_string_lossy().into_owned());
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_specs() {
        assert!(check_app_spec("app:app").is_ok());
        assert!(check_app_spec("pkg.mod:create_app()").is_ok());
        assert!(check_app_spec("pkg.mod:create_app('x')").is_ok());
        assert!(check_app_spec("app").is_err());
        assert!(check_app_spec("app:").is_err());
        assert!(check_app_spec(":app").is_err());
        assert!(check_app_spec("a-b:app").is_err());
        assert!(check_app_spec("a..b:app").is_err());
    }

    #[test]
    fn binds() {
        let tcp = |s: &str| match parse_bind(s).unwrap() {
            BindSpec::Tcp(addr) => addr.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(tcp("127.0.0.1:8000"), "127.0.0.1:8000");
        assert_eq!(tcp("localhost:9"), "127.0.0.1:9");
        assert_eq!(tcp("[::1]:80"), "[::1]:80");
        assert_eq!(tcp(":80"), "127.0.0.1:80");
        assert_eq!(
            parse_bind("unix:/run/app.sock").unwrap(),
            BindSpec::Unix("/run/app.sock".into())
        );
        assert_eq!(parse_bind("fd://3").unwrap(), BindSpec::Fd(3));
        for bad in [
            "nonsense",
            "127.0.0.1:99999",
            "unix:",
            "fd://",
            "fd://x",
            "no.such.host:80",
        ] {
            assert!(parse_bind(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn umasks() {
        assert_eq!(parse_umask("0"), Ok(0));
        assert_eq!(parse_umask("007"), Ok(0o7));
        assert_eq!(parse_umask("0o077"), Ok(0o77));
        assert_eq!(parse_umask("0x12"), Ok(0x12));
        assert_eq!(parse_umask("18"), Ok(18));
        assert!(parse_umask("0o1000").is_err());
        assert!(parse_umask("abc").is_err());
    }

    #[test]
    fn command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn gunicorn_letters_go_to_the_flags_that_exist_when_free() {
        use clap::Arg;
        let cmd = clap::Command::new("t")
            .arg(Arg::new("timeout").long("timeout"))
            .arg(Arg::new("mode").long("mode").short('m'))
            .arg(Arg::new("umask").long("umask"));
        let cmd = with_gunicorn_shorts(cmd);
        let short = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_short())
        };
        assert_eq!(short("timeout"), Some('t'));
        assert_eq!(short("umask"), None, "-m was taken");
        cmd.debug_assert();
    }

    #[test]
    fn cpus_wrap_around() {
        let n = crate::cpus::affinity().len();
        assert_eq!(worker_cpus(Some(n * 2 + 1)).unwrap().len(), n * 2 + 1);
        assert!(worker_cpus(Some(0)).is_err());
        assert_eq!(
            worker_cpus(None).unwrap().len(),
            crate::cpus::usable().0.len()
        );
    }
}
