//! Where settings come from besides the command line: a TOML file (`--config`) and `RINGWSGI_*`
//! environment variables. Precedence, per setting: command line > environment > file > default.
//!
//! Nothing here names a flag: the settings are read off the clap command, so every flag of
//! [`Args`](super::Args) (a positional is keyed by its name, e.g. `app`) can be set from a file
//! or the environment. Each value is checked by clap's own parser on its own, so that an error
//! names the file and key (or variable) it came from; then the chosen values of every source are
//! laid out as one command line (a setting given by several sources appears once, from the
//! highest, so a repeatable flag is taken whole from one source) and parsed as usual.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::builder::ArgAction;
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

/// Prefix of the environment variables that set flags (`RINGWSGI_WORKERS=2`).
pub const ENV_PREFIX: &str = "RINGWSGI_";
/// The environment variable naming the configuration file when `--config` is not given.
pub const CONFIG_ENV: &str = "RINGWSGI_CONFIG";
/// Variables of the prefix that are no setting yet not an error: the master's hand-over to its
/// worker process, and the development scripts' and tests' own.
const NOT_SETTINGS_ENV: &[&str] = &[
    "RINGWSGI_WORKER_CONFIG",
    "RINGWSGI_WORKER_FDS",
    "RINGWSGI_STATUS_FD",
    "RINGWSGI_PYTHON",
    "RINGWSGI_VENV",
];
/// Likewise, every variable of this prefix.
const NOT_SETTINGS_ENV_PREFIX: &str = "RINGWSGI_TEST_";
/// Arguments that steer the command itself and cannot be set from a file or the environment.
const NOT_SETTINGS: &[&str] = &["help", "version", "config", "print_config"];

/// Where one value came from, as error messages name it.
#[derive(Debug, Clone)]
pub enum Origin {
    File { path: String, key: String },
    Env { var: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, key } => write!(f, "{path}: key \"{key}\""),
            Origin::Env { var } => f.write_str(var),
        }
    }
}

/// A setting from the file or the environment the server cannot use; it does not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}: cannot read: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: {1}")]
    Toml(String, toml::de::Error),
    #[error("{origin}: unknown setting{}", did_you_mean(.suggestion))]
    Unknown {
        origin: Origin,
        suggestion: Option<String>,
    },
    #[error("{origin}: invalid value \"{value}\": {reason}")]
    Value {
        origin: Origin,
        value: String,
        reason: String,
    },
    #[error("{0}: {1}")]
    Shape(Origin, &'static str),
}

fn did_you_mean(name: &Option<String>) -> String {
    name.as_ref()
        .map(|n| format!(" (did you mean \"{n}\"?)"))
        .unwrap_or_default()
}

/// How a setting takes its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A flag without a value: `true`/`false`.
    Switch,
    /// One value.
    One,
    /// A repeatable flag: a list.
    Many,
    /// The positional argument.
    Positional,
}

/// One setting of the command, as files and the environment name it.
#[derive(Debug, Clone)]
pub struct Setting {
    /// clap's id (the `Args` field).
    pub id: String,
    /// The key printed by `--print-config`: the long flag, or the positional's name.
    pub key: String,
    /// Every key that names it, normalized (see [`normalize`]).
    names: Vec<String>,
    pub kind: Kind,
}

impl Setting {
    fn of(arg: &Arg) -> Self {
        let id = arg.get_id().as_str().to_owned();
        let key = arg.get_long().map_or_else(|| normalize(&id), str::to_owned);
        let mut names = vec![normalize(&key)];
        names.extend(arg.get_all_aliases().into_iter().flatten().map(normalize));
        let kind = if arg.is_positional() {
            Kind::Positional
        } else {
            match arg.get_action() {
                ArgAction::SetTrue => Kind::Switch,
                ArgAction::Append => Kind::Many,
                _ => Kind::One,
            }
        };
        Setting {
            id,
            key,
            names,
            kind,
        }
    }

    /// The environment variable that sets it.
    pub fn env_var(&self) -> String {
        format!("{ENV_PREFIX}{}", self.key.to_uppercase().replace('-', "_"))
    }

    /// The command-line words that give it `value`.
    fn to_args(&self, value: &Value) -> Vec<OsString> {
        match value {
            Value::Switch(true) => vec![format!("--{}", self.key).into()],
            Value::Switch(false) => Vec::new(),
            Value::Strings(values) if self.kind == Kind::Positional => {
                values.iter().map(OsString::from).collect()
            }
            Value::Strings(values) => values
                .iter()
                .map(|v| format!("--{}={v}", self.key).into())
                .collect(),
        }
    }
}

/// The settings of `cmd` that a file or the environment may set, in the command's order.
pub fn settings(cmd: &Command) -> Vec<Setting> {
    cmd.get_arguments()
        .filter(|arg| !NOT_SETTINGS.contains(&arg.get_id().as_str()))
        .map(Setting::of)
        .collect()
}

/// Keys compare with dashes and underscores alike, case-insensitively.
fn normalize(key: &str) -> String {
    key.to_lowercase().replace('_', "-")
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Switch(bool),
    Strings(Vec<String>),
}

/// The settings one source gives, each checked.
struct Layer {
    entries: Vec<(usize, Value)>,
}

impl Layer {
    fn sets(&self, index: usize) -> bool {
        self.entries.iter().any(|(i, _)| *i == index)
    }
}

/// The settings found in `path`, a TOML table of `key = value`.
fn file_layer(path: &Path, settings: &[Setting], check: &Command) -> Result<Layer, SourceError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SourceError::Read(shown.clone(), e))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| SourceError::Toml(shown.clone(), e))?;
    let mut entries = Vec::new();
    for (key, value) in table {
        let origin = Origin::File {
            path: shown.clone(),
            key: key.clone(),
        };
        let index = find(settings, &key).ok_or_else(|| SourceError::Unknown {
            suggestion: closest(settings, &key).map(|s| s.key.clone()),
            origin: origin.clone(),
        })?;
        let value = from_toml(settings[index].kind, value, &origin)?;
        check_value(check, &settings[index], &value, origin)?;
        entries.push((index, value));
    }
    Ok(Layer { entries })
}

/// The settings given by `RINGWSGI_*` variables in `vars`.
fn env_layer(
    vars: &[(String, String)],
    settings: &[Setting],
    check: &Command,
) -> Result<Layer, SourceError> {
    let mut entries = Vec::new();
    for (var, text) in vars {
        let Some(key) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let origin = Origin::Env { var: var.clone() };
        let Some(index) = find(settings, key) else {
            if var == CONFIG_ENV
                || NOT_SETTINGS_ENV.contains(&var.as_str())
                || var.starts_with(NOT_SETTINGS_ENV_PREFIX)
            {
                continue;
            }
            return Err(SourceError::Unknown {
                suggestion: closest(settings, key).map(Setting::env_var),
                origin,
            });
        };
        let value = from_env(settings[index].kind, text, &origin)?;
        check_value(check, &settings[index], &value, origin)?;
        entries.push((index, value));
    }
    Ok(Layer { entries })
}

fn find(settings: &[Setting], key: &str) -> Option<usize> {
    let key = normalize(key);
    settings.iter().position(|s| s.names.contains(&key))
}

/// The setting whose name is nearest to a misspelt `key`, if any is near.
fn closest<'a>(settings: &'a [Setting], key: &str) -> Option<&'a Setting> {
    let key = normalize(key);
    settings
        .iter()
        .map(|s| (strsim::jaro_winkler(&key, &normalize(&s.key)), s))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, s)| s)
}

fn from_toml(kind: Kind, value: toml::Value, origin: &Origin) -> Result<Value, SourceError> {
    match (kind, value) {
        (Kind::Switch, toml::Value::Boolean(b)) => Ok(Value::Switch(b)),
        (Kind::Switch, _) => Err(SourceError::Shape(origin.clone(), "expected true or false")),
        (Kind::Many, toml::Value::Array(items)) => items
            .into_iter()
            .map(|item| toml_scalar(item, origin))
            .collect::<Result<_, _>>()
            .map(Value::Strings),
        (_, toml::Value::Array(_)) => Err(SourceError::Shape(
            origin.clone(),
            "expected one value, not a list",
        )),
        (_, value) => Ok(Value::Strings(vec![toml_scalar(value, origin)?])),
    }
}

fn toml_scalar(value: toml::Value, origin: &Origin) -> Result<String, SourceError> {
    match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => Err(SourceError::Shape(
            origin.clone(),
            "expected a string, number or boolean",
        )),
    }
}

fn from_env(kind: Kind, text: &str, origin: &Origin) -> Result<Value, SourceError> {
    match kind {
        Kind::Switch => match text.to_lowercase().as_str() {
            "1" | "true" => Ok(Value::Switch(true)),
            "0" | "false" | "" => Ok(Value::Switch(false)),
            _ => Err(SourceError::Value {
                origin: origin.clone(),
                value: text.to_owned(),
                reason: "expected 1, 0, true or false".into(),
            }),
        },
        Kind::Many => Ok(Value::Strings(
            text.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
        Kind::One | Kind::Positional => Ok(Value::Strings(vec![text.to_owned()])),
    }
}

/// Runs clap's parser over this one setting, so that a bad value is blamed on its source.
fn check_value(
    check: &Command,
    setting: &Setting,
    value: &Value,
    origin: Origin,
) -> Result<(), SourceError> {
    let mut argv = vec![OsString::from(check.get_name())];
    argv.extend(setting.to_args(value));
    check
        .clone()
        .try_get_matches_from(argv)
        .map(drop)
        .map_err(|err| SourceError::Value {
            origin,
            value: match value {
                Value::Switch(b) => b.to_string(),
                Value::Strings(values) => values.join(","),
            },
            reason: reason(&err),
        })
}

/// What clap found wrong with a value, without its usage footer.
fn reason(err: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(err) {
        return source.to_string();
    }
    let rendered = err.render().to_string();
    rendered
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The command line to parse: the settings from the file and the environment that the command
/// line (already parsed as `cli`) does not give, then the command line itself.
pub fn layered_argv(
    argv: &[OsString],
    cli: &ArgMatches,
    check: &Command,
    env: &[(String, String)],
) -> Result<Vec<OsString>, SourceError> {
    let settings = settings(check);
    let on_cli = |s: &Setting| cli.value_source(&s.id) == Some(ValueSource::CommandLine);
    let env_layer = env_layer(env, &settings, check)?;
    let config_path = cli.get_one::<PathBuf>("config").cloned().or_else(|| {
        env.iter()
            .find(|(var, _)| var == CONFIG_ENV)
            .map(|(_, path)| PathBuf::from(path))
    });
    let file_layer = match config_path {
        Some(path) => file_layer(&path, &settings, check)?,
        None => Layer {
            entries: Vec::new(),
        },
    };
    let from_file = file_layer
        .entries
        .iter()
        .filter(|(index, _)| !env_layer.sets(*index));
    let chosen = from_file
        .chain(&env_layer.entries)
        .filter(|(index, _)| !on_cli(&settings[*index]));
    let (positional, flags): (Vec<_>, Vec<_>) =
        chosen.partition(|(index, _)| settings[*index].kind == Kind::Positional);
    let mut layered = vec![argv[0].clone()];
    for (index, value) in flags {
        layered.extend(settings[*index].to_args(value));
    }
    layered.extend(argv[1..].iter().cloned());
    // Positionals last, after `--`, so that no flag of the command line takes them as values.
    if !positional.is_empty() && !argv[1..].iter().any(|a| a == "--") {
        layered.push("--".into());
    }
    for (index, value) in positional {
        layered.extend(settings[*index].to_args(value));
    }
    Ok(layered)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::{Arg, ArgAction, Command};

    use super::*;

    /// A command with each kind of setting, none of them `Args`'s: nothing here is per flag.
    fn command() -> Command {
        Command::new("t")
            .arg(Arg::new("app"))
            .arg(Arg::new("bind").long("bind").action(ArgAction::Append))
            .arg(
                Arg::new("workers")
                    .long("workers")
                    .value_parser(clap::value_parser!(usize)),
            )
            .arg(Arg::new("reload").long("reload").action(ArgAction::SetTrue))
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_parser(clap::value_parser!(PathBuf)),
            )
    }

    fn layered(cli: &[&str], env: &[(&str, &str)], file: &str) -> Result<ArgMatches, SourceError> {
        let mut config = tempfile::NamedTempFile::new().unwrap();
        config.write_all(file.as_bytes()).unwrap();
        let mut argv: Vec<OsString> = vec!["t".into(), "--config".into(), config.path().into()];
        argv.extend(cli.iter().map(OsString::from));
        let env: Vec<_> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cmd = command();
        let cli = cmd.clone().try_get_matches_from(&argv).unwrap();
        let argv = layered_argv(&argv, &cli, &cmd, &env)?;
        Ok(cmd.try_get_matches_from(argv).unwrap())
    }

    fn binds(m: &ArgMatches) -> Vec<&str> {
        m.get_many::<String>("bind")
            .unwrap()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn a_list_is_taken_whole_from_the_highest_source() {
        let file = "bind = [\"f1\", \"f2\"]\napp = \"m:a\"\n";
        assert_eq!(binds(&layered(&[], &[], file).unwrap()), ["f1", "f2"]);
        let env = [("RINGWSGI_BIND", "e1, e2 e3")];
        assert_eq!(
            binds(&layered(&[], &env, file).unwrap()),
            ["e1", "e2", "e3"]
        );
        let m = layered(&["--bind", "c1"], &env, file).unwrap();
        assert_eq!(binds(&m), ["c1"]);
        assert_eq!(m.get_one::<String>("app").unwrap(), "m:a");
    }

    #[test]
    fn scalars_and_switches_by_precedence() {
        let file = "workers = 1\nreload = true\n";
        let m = layered(&[], &[("RINGWSGI_WORKERS", "2")], file).unwrap();
        assert_eq!(m.get_one::<usize>("workers"), Some(&2));
        assert!(m.get_flag("reload"));
        let m = layered(&["--workers", "3"], &[("RINGWSGI_RELOAD", "0")], file).unwrap();
        assert_eq!(m.get_one::<usize>("workers"), Some(&3));
        assert!(!m.get_flag("reload"));
        let m = layered(&["x:y"], &[("RINGWSGI_APP", "m:a")], "").unwrap();
        assert_eq!(m.get_one::<String>("app").unwrap(), "x:y");
    }

    #[test]
    fn errors_name_their_source() {
        let err = layered(&[], &[], "wrokers = 1\n").unwrap_err().to_string();
        assert!(
            err.ends_with("key \"wrokers\": unknown setting (did you mean \"workers\"?)"),
            "{err}"
        );
        let err = layered(&[], &[("RINGWSGI_WORKERS", "-1")], "")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("RINGWSGI_WORKERS: invalid value \"-1\": "),
            "{err}"
        );
        let err = layered(&[], &[("RINGWSGI_NOPE", "1")], "")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "RINGWSGI_NOPE: unknown setting");
        // The master's hand-over variables are not settings, and do not hide one.
        assert!(layered(&[], &[("RINGWSGI_WORKER_FDS", "3")], "").is_ok());
        let m = layered(&[], &[("RINGWSGI_WORKERS", "4")], "").unwrap();
        assert_eq!(m.get_one::<usize>("workers"), Some(&4));
    }
}
