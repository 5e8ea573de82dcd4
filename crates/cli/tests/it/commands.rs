use permgate_testkit::scratch_dir;

use crate::permgate;

#[test]
fn catalog_validate_accepts_the_builtin_catalog() {
    let dir = scratch_dir("validate-ok");
    let path = dir.0.join("kakao.toml");
    std::fs::write(&path, permgate_core::catalog::DEFAULT_CATALOG).unwrap_or_default();
    let out =
        permgate(&dir.0).args(["catalog", "validate", "kakao.toml"]).output().unwrap_or_else(|e| unreachable!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("kakao.toml: ok: catalog kakao-2026.11"), "{text}");
}

#[test]
fn catalog_validate_lists_every_error_with_file_and_line_and_fails() {
    let dir = scratch_dir("validate-bad");
    let text = permgate_core::catalog::DEFAULT_CATALOG
        .replacen("permissions = [\"kakao_moment\"]", "permissions = [\"kakao_momnet\"]", 1)
        .replacen("product = \"local\"", "product = \"locl\"", 1);
    std::fs::write(dir.0.join("c.toml"), &text).unwrap_or_default();
    let out = permgate(&dir.0).args(["catalog", "validate", "c.toml"]).output().unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the catalog has 2 errors"), "{err}");
    let line = text.lines().position(|l| l.contains("kakao_momnet")).map_or(0, |i| i + 1);
    assert!(err.contains(&format!("c.toml:{line}:")), "{err}");
    assert!(err.contains("unknown permission `kakao_momnet`") && err.contains("unknown product `locl`"), "{err}");
}

#[test]
fn check_decides_from_the_command_line_and_exits_by_verdict() {
    let dir = migrated("check");
    let out = permgate(&dir.0)
        .args(["check", "GET", "/v2/local/search/keyword.json", "-a", "KakaoAK unknown"])
        .output()
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(decision["code"], -401, "{decision}");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// In a deployment counting in Redis, the commands that show counts say that they read the
/// database's, not the nodes' (which only a node can tell).
#[test]
fn commands_showing_counts_say_they_do_not_read_redis() {
    let dir = migrated("check-redis");
    let out = permgate(&dir.0)
        .env("PERMGATE_REDIS_URL", "redis://127.0.0.1:1")
        .args(["check", "GET", "/v2/local/search/keyword.json", "-a", "KakaoAK unknown"])
        .output()
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PERMGATE_REDIS_URL is set") && err.contains("GET /v1/apps/{id}/usage"), "{err}");
    std::fs::write(dir.0.join("permgate.toml"), "redis_url = \"redis://127.0.0.1:1\"\n")
        .unwrap_or_else(|e| unreachable!("{e}"));
    let out = permgate(&dir.0)
        .args(["--config", "permgate.toml", "usage", "1"])
        .output()
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PERMGATE_REDIS_URL is set"),
        "also from the configuration file"
    );
}

#[test]
fn token_signs_a_user_token_the_engine_accepts() {
    let dir = scratch_dir("token");
    let out = permgate(&dir.0)
        .args(["token", "--app-id", "7", "--sub", "u1", "--scope", "friends", "--jwt-secret", "s3cret-s3cret"])
        .output()
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let verifier = permgate_core::credential::TokenVerifier::new(Some(b"s3cret-s3cret"));
    let claims = verifier.verify(&token, permgate_core::time::Timestamp(0));
    assert_eq!(
        claims.map(|c| (c.app_id.0, c.sub, c.scopes)).ok(),
        Some((7, "u1".to_owned(), vec!["friends".to_owned()]))
    );
}

#[test]
fn migrate_and_audit_verify_report_what_they_did() {
    let dir = scratch_dir("migrate");
    let out = permgate(&dir.0).arg("migrate").output().unwrap_or_else(|e| unreachable!("{e}"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied migration(s) 1"), "{out:?}");
    let out = permgate(&dir.0).arg("migrate").output().unwrap_or_else(|e| unreachable!("{e}"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to apply"), "{out:?}");
    let out = permgate(&dir.0).args(["audit", "verify"]).output().unwrap_or_else(|e| unreachable!("{e}"));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit chain ok"), "{out:?}");
}

/// A fresh directory with an empty database (`permgate migrate`), for commands that read one.
fn migrated(label: &str) -> permgate_testkit::ScratchDir {
    let dir = scratch_dir(label);
    let out = permgate(&dir.0).arg("migrate").output().unwrap_or_else(|e| unreachable!("{e}"));
    assert!(out.status.success(), "{out:?}");
    dir
}

#[test]
fn a_command_run_where_there_is_no_database_says_so_and_creates_none() {
    let dir = scratch_dir("nodb");
    for args in [&["audit", "verify"][..], &["check", "GET", "/v2/local/search/keyword.json", "-a", "KakaoAK 0123"]] {
        let out = permgate(&dir.0).args(args).output().unwrap_or_else(|e| unreachable!("{e}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(err.contains("no database at permgate.db") && err.contains("PERMGATE_DATABASE_URL"), "{args:?}: {err}");
        assert!(!dir.0.join("permgate.db").exists(), "{args:?} created an empty database");
    }
}

#[test]
fn migrate_works_on_postgres_and_names_an_unreachable_server() {
    let dir = scratch_dir("pg");
    let out = permgate(&dir.0)
        .arg("migrate")
        .env("PERMGATE_DATABASE_URL", "postgres://postgres:hunter2@127.0.0.1:1/db")
        .output()
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to PostgreSQL") && !err.contains("hunter2"), "{err}");

    let Some(schema) = permgate_testkit::pg::fresh_schema("cli-migrate") else { return };
    let run = || {
        let out = permgate(&dir.0).arg("migrate").env("PERMGATE_DATABASE_URL", &schema.url).output();
        let out = out.unwrap_or_else(|e| unreachable!("{e}"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run().contains("applied migration(s) 1, 2, 3, 4, 5, 6, 7, 8;"));
    assert!(run().contains("nothing to apply"));
}

/// Starts and stops a node in a fresh directory, leaving a database with a few audit events.
fn database_with_events(label: &str) -> permgate_testkit::ScratchDir {
    let dir = scratch_dir(label);
    let server = crate::start(&dir.0, &[("PERMGATE_ADMIN_TOKEN", "audit-test-admin-token-0123")]);
    drop(server);
    dir
}

fn verify(dir: &std::path::Path) -> (Option<i32>, String) {
    let out = permgate(dir).args(["audit", "verify"]).output().unwrap_or_else(|e| unreachable!("{e}"));
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn edit(dir: &std::path::Path, sql: &str) {
    let db = rusqlite::Connection::open(dir.join("permgate.db")).unwrap_or_else(|e| unreachable!("{e}"));
    let changed = db.execute(sql, []).unwrap_or_else(|e| unreachable!("{sql}: {e}"));
    assert_eq!(changed, 1, "{sql}");
}

#[test]
fn audit_verify_fails_after_a_row_is_edited_or_the_newest_rows_are_deleted_by_hand() {
    let dir = database_with_events("audit-edit");
    let (code, text) = verify(&dir.0);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("audit chain ok: 2 events verified"), "{text}");
    edit(&dir.0, "UPDATE audit_events SET after = replace(after, 'built-in', 'elsewhere') WHERE seq = 2");
    let (code, text) = verify(&dir.0);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the chain breaks at event 2"), "{text}");

    let dir = database_with_events("audit-delete");
    edit(&dir.0, "DELETE FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events)");
    let (code, text) = verify(&dir.0);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("the newest events were removed: the trail ends at event 1, but event 2 was written"),
        "{text}"
    );
}
