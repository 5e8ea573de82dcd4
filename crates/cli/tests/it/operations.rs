//! What an operator does day to day: the configuration file, the CLI over accounts, apps,
//! grants, requests and usage, catalog reloads.

use permgate_testkit::scratch_dir;
use serde_json::Value;

use crate::permgate;

fn run(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = permgate(dir).args(args).output().unwrap_or_else(|e| unreachable!("{e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

const ADMIN: &str = "pgt_operations_admin_token_0123456789abcdef";
const SECRET: &str = "operations-jwt-secret";
const MOMENT: &str = "/openapi/v4/adAccounts/pages";
const LOCAL: &str = "/v2/local/search/keyword.json?query=coffee";

async fn decide(base: &str, authorization: &str, path: &str) -> Value {
    let body = serde_json::json!({"method": "GET", "path": path, "headers": {"authorization": authorization}});
    let (status, d) = crate::call(reqwest::Method::POST, format!("{base}/v1/check"), None, Some(body)).await;
    assert_eq!(status, 200, "{d}");
    d
}

/// Polls until the node decides `path` with `code` (changes from the CLI arrive through the
/// change feed).
async fn until_code(base: &str, authorization: &str, path: &str, code: i64) {
    for _ in 0..50 {
        if decide(base, authorization, path).await["code"] == code {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    unreachable!("{path} never got code {code}: {}", decide(base, authorization, path).await)
}

fn cli(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = permgate(dir)
        .args(args)
        .env("PERMGATE_CATALOG", "catalog.toml")
        .output()
        .unwrap_or_else(|e| unreachable!("{e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &std::path::Path, args: &[&str]) -> String {
    let (code, out, err) = cli(dir, args);
    assert_eq!(code, Some(0), "permgate {}: {err}{out}", args.join(" "));
    out
}

#[tokio::test]
async fn an_operator_runs_a_node_from_the_command_line() {
    let dir = scratch_dir("operator");
    let catalog = dir.0.join("catalog.toml");
    std::fs::write(&catalog, permgate_core::catalog::DEFAULT_CATALOG).unwrap_or_else(|e| unreachable!("{e}"));
    let mut node = crate::start(
        &dir.0,
        &[
            ("PERMGATE_ADMIN_TOKEN", ADMIN),
            ("PERMGATE_JWT_SECRET", SECRET),
            ("PERMGATE_CATALOG", "catalog.toml"),
            ("PERMGATE_CATALOG_WATCH", "1"),
        ],
    );
    let base = node.base.clone();
    let (dev, app, user) = crate::developer_app(&base, ADMIN, SECRET, "u1", &[]).await;
    let user = format!("Bearer {user}");
    let app_arg = app.to_string();
    assert_eq!(decide(&base, &user, MOMENT).await["code"], -5);

    // Grants: the CLI writes, the running node enforces it within a second.
    ok(&dir.0, &["grants", "add", &app_arg, "kakao_moment", "--reason", "contract 2026-117 signed"]);
    until_code(&base, &user, MOMENT, 0).await;
    let grants: Value = serde_json::from_str(&ok(&dir.0, &["grants", "list", &app_arg, "--json"])).unwrap_or_default();
    assert_eq!(grants[0]["permission"], "kakao_moment", "{grants}");
    assert_eq!(grants[0]["source"], "operator", "{grants}");
    let table = ok(&dir.0, &["apps", "show", &app_arg]);
    assert!(table.contains("kakao_moment  operator"), "{table}");
    let list = ok(&dir.0, &["apps", "list"]);
    assert!(list.lines().next().is_some_and(|h| h.starts_with("ID  NAME")), "{list}");
    assert!(list.lines().any(|l| l.starts_with(&format!("{app}   App"))), "{list}");

    // Blocking and unblocking.
    ok(&dir.0, &["apps", "block", &app_arg, "--reason", "spam reports"]);
    until_code(&base, &user, MOMENT, -12).await;
    ok(&dir.0, &["apps", "unblock", &app_arg, "--reason", "appeal granted"]);
    until_code(&base, &user, MOMENT, 0).await;
    ok(&dir.0, &["grants", "revoke", &app_arg, "kakao_moment", "--reason", "contract ended"]);
    until_code(&base, &user, MOMENT, -5).await;
    let (code, _, err) = cli(&dir.0, &["grants", "revoke", &app_arg, "kakao_moment", "--reason", "again"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("code -"), "errors name their code: {err}");

    // Requests: a developer applies over HTTP; the operator reviews from the command line.
    let purpose = serde_json::json!({"consent_type": "optional", "purpose": "show the user's calendar"});
    let url = format!("{base}/v1/apps/{app}/consent-items/talk_calendar");
    assert_eq!(crate::call(reqwest::Method::PUT, url, Some(&dev), Some(purpose)).await.0, 200);
    let url = format!("{base}/v1/apps/{app}/eligibility");
    assert_eq!(crate::call(reqwest::Method::POST, url, Some(&dev), Some(serde_json::json!({}))).await.0, 200);
    let form = reqwest::multipart::Form::new()
        .text("permission", "talk_calendar")
        .text("service_url", "https://calendar.example.com")
        .text("reason", "Users add our events to their Talk Calendar")
        .text("usage_scenario", "Pick an event, tap 'add to calendar'")
        .part("file", reqwest::multipart::Part::bytes(permgate_testkit::TINY_PNG.to_vec()).file_name("screen.png"));
    let applied = reqwest::Client::new()
        .post(format!("{base}/v1/apps/{app}/permission-requests"))
        .bearer_auth(&dev)
        .multipart(form)
        .send()
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(applied.status().as_u16(), 201);
    let request: Value = applied.json().await.unwrap_or_default();
    let id = request["id"].as_i64().unwrap_or_default().to_string();
    let pending = ok(&dir.0, &["requests", "list", "--state", "submitted"]);
    assert!(
        pending.lines().any(|l| l.starts_with(&id) && l.contains("talk_calendar") && l.contains("submitted")),
        "{pending}"
    );
    ok(&dir.0, &["requests", "decide", &id, "start_review"]);
    let approved = ok(&dir.0, &["requests", "decide", &id, "approve", "--comment", "looks right"]);
    assert_eq!(approved.trim(), format!("request {id} is now approved"));
    let shown = ok(&dir.0, &["requests", "show", &id]);
    assert!(shown.contains("evidence: screen.png (image/png") && shown.contains("looks right"), "{shown}");

    // Usage, once the node has saved its counters (about every second).
    let body = serde_json::json!({"name": "Maps", "company_name": "C", "category": "x"});
    let (_, maps) = crate::call(reqwest::Method::POST, format!("{base}/v1/apps"), Some(&dev), Some(body)).await;
    let rest = format!("KakaoAK {}", maps["keys"]["rest_api"][0]["key"].as_str().unwrap_or_default());
    let maps = maps["id"].as_i64().unwrap_or_default().to_string();
    for _ in 0..2 {
        assert_eq!(decide(&base, &rest, LOCAL).await["allow"], true);
    }
    let mut used = String::new();
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        used = ok(&dir.0, &["usage", &maps]);
        if used.contains("local_keyword_search_daily  2 ") {
            break;
        }
    }
    assert!(used.contains("local_keyword_search_daily  2     100000   0%"), "{used}");

    // Importing grants from a file: checked first, then written; a second run skips them.
    std::fs::write(
        dir.0.join("grants.csv"),
        format!("app_id,permission,reason,expires_at\n{maps},kakao_moment,\"contract 12, signed\",\n{maps},kakao_momnet,typo,\n"),
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    let (code, _, err) = cli(&dir.0, &["grants", "import", "grants.csv"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("nothing imported") && err.contains("line 3: the catalog has no permission `kakao_momnet`"),
        "{err}"
    );
    assert_eq!(ok(&dir.0, &["grants", "list", &maps, "--json"]).trim(), "[]");
    std::fs::write(
        dir.0.join("grants.csv"),
        format!("app_id,permission,reason,expires_at\n{maps},kakao_moment,\"contract 12, signed\",2030-01-01T00:00:00+09:00\n"),
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    let imported = ok(&dir.0, &["grants", "import", "grants.csv"]);
    assert_eq!(imported.trim(), "granted 1; skipped 0 the apps held already");
    let again = ok(&dir.0, &["grants", "import", "grants.csv"]);
    assert_eq!(again.trim(), "granted 0; skipped 1 the apps held already");
    let grants: Value = serde_json::from_str(&ok(&dir.0, &["grants", "list", &maps, "--json"])).unwrap_or_default();
    assert_eq!(
        (grants[0]["reason"].as_str(), grants[0]["expires_at"].as_str()),
        (Some("contract 12, signed"), Some("2029-12-31T15:00:00Z")),
        "{grants}"
    );

    // Catalog: diff, preview against the decision log, then a reload by editing the file.
    let changed = permgate_core::catalog::DEFAULT_CATALOG.replacen(
        "id = \"moment_ad_accounts_pages\"\n",
        "id = \"moment_ad_accounts_pages\"\nstatus = \"maintenance\"\n",
        1,
    );
    assert_ne!(changed, permgate_core::catalog::DEFAULT_CATALOG, "the Moment API id changed; update this test");
    std::fs::write(dir.0.join("next.toml"), &changed).unwrap_or_else(|e| unreachable!("{e}"));
    let (code, out, _) = cli(&dir.0, &["catalog", "diff", "catalog.toml", "next.toml"]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out.trim(), "~ api moment_ad_accounts_pages: status \"active\" -> \"maintenance\"");
    let (code, _, _) = cli(&dir.0, &["catalog", "diff", "builtin", "catalog.toml"]);
    assert_eq!(code, Some(0));
    let preview = ok(&dir.0, &["catalog", "preview", "next.toml"]);
    assert!(preview.contains("would be decided differently, for 1 app(s) and 1 API(s)"), "{preview}");
    assert!(
        preview.lines().any(|l| l.starts_with(&app_arg) && l.contains("moment_ad_accounts_pages") && l.contains("-5")),
        "{preview}"
    );

    std::fs::write(&catalog, "this is not a catalog").unwrap_or_else(|e| unreachable!("{e}"));
    node.wait_for("the catalog in force stays");
    std::fs::write(&catalog, &changed).unwrap_or_else(|e| unreachable!("{e}"));
    node.wait_for("catalog reloaded (the file changed)");
    node.signal("HUP");
    node.wait_for("catalog unchanged (SIGHUP)");

    // A clean stop saves and flushes before it ends.
    node.signal("TERM");
    node.wait_for("notification outbox flushed");
    node.wait_for("stopped");
    let status = node.child.wait().unwrap_or_else(|e| unreachable!("{e}"));
    assert!(status.success());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = scratch_dir("json-logs");
    let mut node = crate::start_listening(&dir.0, &[("PERMGATE_LOG_FORMAT", "json")]);
    let line = node.wait_for("ready on http://");
    let doc: Value = serde_json::from_str(&line).unwrap_or_else(|e| unreachable!("{e}: {line}"));
    assert_eq!(doc["level"], "INFO", "{doc}");
    assert!(doc["fields"]["message"].as_str().is_some_and(|m| m.starts_with("ready on http://")), "{doc}");
    assert!(doc["timestamp"].is_string(), "{doc}");
}

#[tokio::test]
async fn secrets_never_reach_the_logs_even_at_debug_level() {
    let dir = scratch_dir("secret-logs");
    let smtp_password = "smtp-hunter2-password";
    let mut node = crate::start(
        &dir.0,
        &[
            ("PERMGATE_ADMIN_TOKEN", ADMIN),
            ("PERMGATE_JWT_SECRET", SECRET),
            ("PERMGATE_LOG", "debug"),
            ("PERMGATE_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("PERMGATE_WEBHOOK_SECRET", "webhook-signing-secret-value"),
            ("PERMGATE_SMTP_URL", &format!("smtp://mailer:{smtp_password}@127.0.0.1:9")),
        ],
    );
    let base = node.base.clone();
    let (dev, app, user) = crate::developer_app(&base, ADMIN, SECRET, "u1", &[]).await;
    let body = serde_json::json!({"name": "Maps", "company_name": "C", "category": "x"});
    let (_, maps) = crate::call(reqwest::Method::POST, format!("{base}/v1/apps"), Some(&dev), Some(body)).await;
    let keys: Vec<String> = ["rest_api", "javascript", "native_app", "admin"]
        .iter()
        .map(|k| maps["keys"][k][0]["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    // Good and bad credentials of every kind, through every surface that reads them.
    for auth in
        keys.iter().map(|k| format!("KakaoAK {k}")).chain([format!("Bearer {user}"), "KakaoAK wrong-key-0123".into()])
    {
        decide(&base, &auth, LOCAL).await;
        let _ = reqwest::Client::new()
            .get(format!("{base}/v1/authz"))
            .header("x-original-uri", LOCAL)
            .header("authorization", &auth)
            .send()
            .await;
    }
    let _ = crate::call(
        reqwest::Method::GET,
        format!("{base}/v1/apps/{app}"),
        Some("pgt_not_a_real_token_000000000000"),
        None,
    )
    .await;
    let _ = crate::call(reqwest::Method::GET, format!("{base}/v1/apps/{app}"), Some(&dev), None).await;
    node.signal("TERM");
    let lines = node.drain(std::time::Duration::from_secs(3));
    assert!(lines.iter().any(|l| l.contains("stopped")), "the log was read to its end: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("refused:")), "the refusals were logged: {lines:?}");
    let secrets: Vec<&str> = [
        ADMIN,
        SECRET,
        dev.as_str(),
        user.as_str(),
        smtp_password,
        "webhook-signing-secret-value",
        "pgt_not_a_real_token",
    ]
    .into_iter()
    .chain(keys.iter().map(String::as_str))
    .collect();
    for line in &lines {
        for secret in &secrets {
            assert!(!line.contains(secret), "a secret reached the log: {line}");
        }
    }
}
