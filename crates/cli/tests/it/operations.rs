//! What an operator does day to day: the configuration file, the CLI over accounts, apps,
//! grants, requests and usage, catalog reloads.

use permgate_testkit::scratch_dir;
use serde_json::Value;

use crate::permgate;

fn run(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = permgate(dir).args(args).output().unwrap_or_else(|e| unreachable!("{e}"));
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_configuration_file_sets_what_the_environment_does_and_show_redacts_secrets() {
    let dir = scratch_dir("config-file");
    std::fs::write(
        dir.0.join("permgate.toml"),
        "listen = \"127.0.0.1:9999\"\nPERMGATE_DATABASE_URL = \"postgres://app:s3cret@db/permgate\"\njwt_secret = \"hush-hush\"\n",
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    let (code, out, err) = run(&dir.0, &["--config", "permgate.toml", "config", "show", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("s3cret") && !out.contains("hush-hush"), "secrets leaked: {out}");
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| unreachable!("{e}: {out}"));
    let setting = |name: &str| {
        doc["settings"].as_array().and_then(|s| s.iter().find(|s| s["name"] == name)).cloned().unwrap_or_default()
    };
    assert_eq!(setting("PERMGATE_LISTEN")["value"], "127.0.0.1:9999");
    assert_eq!(setting("PERMGATE_LISTEN")["source"], "file");
    assert_eq!(setting("PERMGATE_DATABASE_URL")["value"], "postgres://app:***@db/permgate");
    assert_eq!(setting("PERMGATE_JWT_SECRET")["value"], "***");
    assert_eq!(setting("PERMGATE_LOG")["source"], "default");

    // The environment wins over the file, and the table names where each value came from.
    let out = permgate(&dir.0)
        .args(["config", "show"])
        .env("PERMGATE_CONFIG", "permgate.toml")
        .env("PERMGATE_LISTEN", "127.0.0.1:7777")
        .output()
        .unwrap_or_else(|e| unreachable!("{e}"));
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table.lines().find(|l| l.starts_with("PERMGATE_LISTEN")).unwrap_or_default();
    assert!(line.contains("127.0.0.1:7777") && line.ends_with("environment"), "{table}");

    // Other commands read it too: `migrate` goes to the file's database (which does not exist).
    std::fs::write(dir.0.join("sqlite.toml"), "database_url = \"sqlite://from-file.db\"\n").unwrap_or_default();
    let (code, out, err) = run(&dir.0, &["--config", "sqlite.toml", "migrate"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("sqlite://from-file.db:") && dir.0.join("from-file.db").exists(), "{out}");
}

#[test]
fn unknown_keys_in_the_configuration_file_stop_every_command() {
    let dir = scratch_dir("config-unknown");
    std::fs::write(dir.0.join("p.toml"), "lisen = \"127.0.0.1:1\"\nredis_prefix = \"x:\"\n").unwrap_or_default();
    let (code, _, err) = run(&dir.0, &["--config", "p.toml", "migrate"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown setting(s) `lisen`") && !err.contains("redis_prefix"), "{err}");
    let (code, _, err) = run(&dir.0, &["--config", "missing.toml", "config", "show"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("reading configuration file missing.toml"), "{err}");
}
