//! `--print-config`: every setting with the value it has after layering, as TOML that `--config`
//! reads back (settings without a value are listed as comments).

use clap::{ArgMatches, Command};

use super::sources::{settings, Kind};

/// The effective configuration of `matches` (parsed by `cmd`) as a TOML document.
pub fn render(cmd: &Command, matches: &ArgMatches) -> String {
    let mut out = String::from("# ringwsgi's effective configuration (read back by --config)\n");
    for setting in settings(cmd) {
        let key = &setting.key;
        let raw: Option<Vec<String>> = matches
            .get_raw(&setting.id)
            .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect());
        let value = match (setting.kind, raw) {
            (Kind::Switch, _) => toml::Value::Boolean(matches.get_flag(&setting.id)),
            (_, None) => {
                out.push_str(&format!("# {key} is not set\n"));
                continue;
            }
            (Kind::Many, Some(values)) => {
                toml::Value::Array(values.iter().map(|v| scalar(v)).collect())
            }
            (_, Some(values)) => match values.as_slice() {
                [one] => scalar(one),
                many => toml::Value::Array(many.iter().map(|v| scalar(v)).collect()),
            },
        };
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

/// A number where the text is exactly a number's canonical spelling (so `022` stays a string
/// and reads back unchanged), a string otherwise.
fn scalar(text: &str) -> toml::Value {
    if let Ok(i) = text.parse::<i64>() {
        if i.to_string() == text {
            return toml::Value::Integer(i);
        }
    }
    if let Ok(f) = text.parse::<f64>() {
        if f.is_finite() && f.to_string() == text {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::scalar;

    #[test]
    fn numbers_only_when_they_read_back_the_same() {
        assert_eq!(scalar("2"), toml::Value::Integer(2));
        assert_eq!(scalar("0.5"), toml::Value::Float(0.5));
        assert_eq!(scalar("022"), toml::Value::String("022".into()));
        assert_eq!(scalar("1e3"), toml::Value::String("1e3".into()));
        assert_eq!(scalar("info"), toml::Value::String("info".into()));
    }
}
