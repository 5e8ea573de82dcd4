//! The configuration file: a TOML table whose keys are the environment's names
//! (`PERMGATE_LISTEN = "0.0.0.0:8080"`, or `listen = ...`, the name without `PERMGATE_` in lower
//! case). Every setting resolves in this order: the command-line flag, the environment, the
//! file, the built-in default. `permgate config show` prints where each value came from.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Command;

/// The settings read from a configuration file, by environment name.
#[derive(Debug, Default, Clone)]
pub struct FileSettings {
    pub path: Option<PathBuf>,
    pub values: BTreeMap<String, String>,
}

/// The `--config FILE` (or `--config=FILE`) argument, else `PERMGATE_CONFIG`. Read before clap
/// parses, because the file supplies defaults to clap.
pub fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("PERMGATE_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Every environment name a command (or one of its subcommands) reads.
pub fn known_names(cmd: &Command) -> Vec<String> {
    let mut names = Vec::new();
    collect_names(cmd, &mut names);
    names.sort();
    names.dedup();
    names
}

fn collect_names(cmd: &Command, names: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        if let Some(env) = arg.get_env() {
            names.push(env.to_string_lossy().into_owned());
        }
    }
    for sub in cmd.get_subcommands() {
        collect_names(sub, names);
    }
}

/// Reads and checks a configuration file: every key must name a setting of `cmd`.
pub fn load(path: &Path, cmd: &Command) -> anyhow::Result<FileSettings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading configuration file {}", path.display()))?;
    parse(path, &text, cmd)
}

fn parse(path: &Path, text: &str, cmd: &Command) -> anyhow::Result<FileSettings> {
    let table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let known = known_names(cmd);
    let mut values = BTreeMap::new();
    let mut unknown = Vec::new();
    for (key, value) in table {
        let name = if key.starts_with("PERMGATE_") { key.clone() } else { format!("PERMGATE_{}", key.to_uppercase()) };
        if name == "PERMGATE_CONFIG" || !known.contains(&name) {
            unknown.push(key);
            continue;
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => bail!("{}: `{key}` must be a string, number or boolean, not {}", path.display(), other.type_str()),
        };
        values.insert(name, value);
    }
    if !unknown.is_empty() {
        bail!(
            "{}: unknown setting(s) {}; the known ones are listed by `permgate config show` (write them as `listen` or `PERMGATE_LISTEN`)",
            path.display(),
            unknown.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(FileSettings { path: Some(path.to_owned()), values })
}

/// Makes the file's values the defaults of every argument that reads the same environment name,
/// so that flags and the environment still override them.
pub fn apply(cmd: Command, file: &FileSettings) -> Command {
    if file.values.is_empty() {
        return cmd;
    }
    let ids: Vec<(clap::Id, String)> = cmd
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            file.values.get(&env).map(|v| (a.get_id().clone(), v.clone()))
        })
        .collect();
    let mut cmd = ids.into_iter().fold(cmd, |cmd, (id, value)| {
        // clap keeps defaults as `&'static str`; a handful of strings, once per process.
        let value: &'static str = Box::leak(value.into_boxed_str());
        cmd.mut_arg(id, |a| a.default_value(value).required(false))
    });
    let subs: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in subs {
        cmd = cmd.mut_subcommand(name, |sub| apply(sub, file));
    }
    cmd
}

/// One setting as `permgate serve` would see it.
#[derive(Debug, serde::Serialize)]
pub struct Shown {
    pub name: String,
    /// The value, redacted when secret; `None` when unset.
    pub value: Option<String>,
    /// `flag`, `environment`, `file`, `default` or `unset`.
    pub source: &'static str,
}

/// The settings of `permgate serve`, resolved as it would resolve them.
pub fn resolve(command: &Command, file: &FileSettings) -> anyhow::Result<Vec<Shown>> {
    let matches = command
        .clone()
        .try_get_matches_from(["permgate", "serve"])
        .map_err(|e| anyhow::anyhow!("resolving the settings: {e}"))?;
    let serve_matches = matches.subcommand_matches("serve").context("no serve command")?;
    let serve = command.find_subcommand("serve").context("no serve command")?;
    let mut shown = Vec::new();
    for arg in serve.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let name = env.to_string_lossy().into_owned();
        let id = arg.get_id().as_str();
        let raw: Option<String> = serve_matches
            .get_raw(id)
            .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(","));
        let source = match serve_matches.value_source(id) {
            None => "unset",
            Some(clap::parser::ValueSource::CommandLine) => "flag",
            Some(clap::parser::ValueSource::EnvVariable) => "environment",
            Some(_) if file.values.contains_key(&name) => "file",
            Some(_) => "default",
        };
        let value = raw.map(|v| {
            if arg.is_hide_env_values_set() {
                "***".to_owned()
            } else if name.ends_with("_URL") {
                permgate_core::secret::redact_url(&v)
            } else {
                v
            }
        });
        shown.push(Shown { name, value, source });
    }
    shown.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(shown)
}

/// `permgate config show`.
pub fn show(command: &Command, file: &FileSettings, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let shown = resolve(command, file)?;
    if json {
        let doc = serde_json::json!({
            "file": file.path.as_ref().map(|p| p.display().to_string()),
            "settings": shown,
        });
        println!("{}", serde_json::to_string_pretty(&doc).context("printing")?);
    } else {
        match &file.path {
            Some(path) => println!("configuration file: {}", path.display()),
            None => println!("configuration file: none (--config FILE or PERMGATE_CONFIG)"),
        }
        println!();
        let rows: Vec<Vec<String>> = shown
            .iter()
            .map(|s| vec![s.name.clone(), s.value.clone().unwrap_or_else(|| "-".into()), s.source.to_owned()])
            .collect();
        print!("{}", crate::table::render(&["SETTING", "VALUE", "FROM"], &rows));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn command() -> Command {
        Command::new("t").subcommand(
            Command::new("serve")
                .arg(Arg::new("listen").long("listen").env("PERMGATE_LISTEN").default_value("127.0.0.1:8080"))
                .arg(Arg::new("days").long("days").env("PERMGATE_SUSPEND_AFTER_DAYS")),
        )
    }

    #[test]
    fn keys_may_be_written_either_way_and_values_become_strings() {
        let text = "listen = \"0.0.0.0:9\"\nPERMGATE_SUSPEND_AFTER_DAYS = 30\n";
        let file = parse(Path::new("p.toml"), text, &command()).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(file.values.get("PERMGATE_LISTEN").map(String::as_str), Some("0.0.0.0:9"));
        assert_eq!(file.values.get("PERMGATE_SUSPEND_AFTER_DAYS").map(String::as_str), Some("30"));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = parse(Path::new("p.toml"), "lisen = \"x\"\nlisten = \"y\"", &command()).err();
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("unknown setting(s) `lisen`;"), "{err}");
        let nested = parse(Path::new("p.toml"), "listen = [1]", &command()).err().map(|e| e.to_string());
        assert!(nested.is_some_and(|e| e.contains("must be a string")));
    }

    #[test]
    fn the_file_is_a_default_that_the_flag_overrides() {
        let file =
            parse(Path::new("p.toml"), "listen = \"0.0.0.0:9\"", &command()).unwrap_or_else(|e| unreachable!("{e}"));
        let from_file = apply(command(), &file).get_matches_from(["t", "serve"]);
        let listen = |m: &clap::ArgMatches| {
            m.subcommand_matches("serve").and_then(|s| s.get_one::<String>("listen").cloned()).unwrap_or_default()
        };
        assert_eq!(listen(&from_file), "0.0.0.0:9");
        let from_flag = apply(command(), &file).get_matches_from(["t", "serve", "--listen", "1.2.3.4:5"]);
        assert_eq!(listen(&from_flag), "1.2.3.4:5");
    }
}
