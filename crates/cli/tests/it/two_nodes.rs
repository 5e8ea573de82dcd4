//! Two `permgate serve` processes on one PostgreSQL schema (and one Redis): a change made on one
//! node is enforced by the other within a second, also after their database connections are cut.
//! Skipped with a notice when `PERMGATE_TEST_DATABASE_URL` is not set.

use std::time::{Duration, Instant};

use permgate_testkit::{pg, scratch_dir};
use serde_json::{Value, json};

use crate::{Server, call, start, start_listening};

const ADMIN: &str = "two-nodes-admin-token-0123456789";
const SECRET: &str = "two-nodes-jwt-secret";

async fn decide(node: &Server, check: &Value) -> Value {
    let (status, d) = call(reqwest::Method::POST, format!("{}/v1/check", node.base), None, Some(check.clone())).await;
    assert_eq!(status, 200, "{d}");
    d
}

/// Asks `node` until the decision's code is `code`; returns how long that took. Propagation is
/// what is measured here, so this polls (every 10 ms) up to a deadline instead of sleeping.
async fn until_code(node: &Server, check: &Value, code: i64, deadline: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let d = decide(node, check).await;
        if d["code"] == code {
            return start.elapsed();
        }
        assert!(start.elapsed() < deadline, "code still {} after {deadline:?}: {d}", d["code"]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn node_env(url: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PERMGATE_DATABASE_URL", url.to_owned()),
        ("PERMGATE_ADMIN_TOKEN", ADMIN.to_owned()),
        ("PERMGATE_JWT_SECRET", SECRET.to_owned()),
    ];
    if let Ok(redis) = std::env::var("PERMGATE_TEST_REDIS_URL") {
        env.push(("PERMGATE_REDIS_URL", redis));
    }
    env
}

fn start_node(dir: &std::path::Path, env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start(dir, &env)
}

#[tokio::test]
async fn a_grant_on_one_node_is_enforced_on_the_other_within_a_second() {
    let Some(schema) = pg::fresh_schema("two-nodes") else { return };
    let url = format!("{}&application_name={}", schema.url, schema.name);
    let dir = scratch_dir("two-nodes");
    let env = node_env(&url);
    let a = start_node(&dir.0, &env);
    let b = start_node(&dir.0, &env);
    for node in [&a, &b] {
        let (status, body) = call(reqwest::Method::GET, format!("{}/readyz", node.base), None, None).await;
        assert_eq!(status, 200, "{body}");
    }

    let (_dev, id, token) = crate::developer_app(&a.base, ADMIN, SECRET, "u1", &[]).await;
    let moment = json!({"method": "GET", "path": "/openapi/v4/adAccounts/pages", "headers": {"authorization": format!("Bearer {token}")}});

    // The app created on A is known to B (its user token no longer fails with -401).
    until_code(&b, &moment, -5, Duration::from_secs(1)).await;

    let grant = json!({"permission": "kakao_moment", "reason": "certified agency"});
    let (status, body) =
        call(reqwest::Method::POST, format!("{}/v1/apps/{id}/permissions", a.base), Some(ADMIN), Some(grant.clone()))
            .await;
    assert_eq!(status, 201, "{body}");
    let took = until_code(&b, &moment, 0, Duration::from_secs(1)).await;
    eprintln!("grant on A enforced on B after {took:?}");

    let revoke = json!({"reason": "contract ended"});
    let (status, body) = call(
        reqwest::Method::DELETE,
        format!("{}/v1/apps/{id}/permissions/kakao_moment", b.base),
        Some(ADMIN),
        Some(revoke.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let took = until_code(&a, &moment, -5, Duration::from_secs(1)).await;
    eprintln!("revocation on B enforced on A after {took:?}");

    // Cut every database connection of both nodes: notifications are lost with them, yet the
    // next change still reaches the other node within a second.
    let killed = pg::terminate_connections(&schema.name);
    assert!(killed >= 2, "expected to cut both nodes' connections, cut {killed}");
    let mut status = 0;
    for _ in 0..3 {
        let (s, body) = call(
            reqwest::Method::POST,
            format!("{}/v1/apps/{id}/permissions", a.base),
            Some(ADMIN),
            Some(grant.clone()),
        )
        .await;
        status = s;
        if s == 201 {
            break;
        }
        eprintln!("write right after the cut answered {s}: {body}");
    }
    assert_eq!(status, 201);
    let took = until_code(&b, &moment, 0, Duration::from_secs(1)).await;
    eprintln!("after the cut, grant on A enforced on B after {took:?}");
}

#[tokio::test]
async fn a_node_reports_not_ready_until_the_store_is_migrated_and_redis_answers() {
    let Some(schema) = pg::fresh_schema("readiness") else { return };
    let dir = scratch_dir("readiness");
    let mut env = node_env(&schema.url);
    env.push(("PERMGATE_AUTO_MIGRATE", "false".into()));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut node = start_listening(&dir.0, &env_ref);
    let (status, body) = call(reqwest::Method::GET, format!("{}/readyz", node.base), None, None).await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{}/v1/check", node.base),
        None,
        Some(json!({"method": "GET", "path": "/v1/user/me"})),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (503, Some(-1)), "{body}");
    // Wait until the node has tried once, so the reason names the migrations.
    let mut reason = String::new();
    for _ in 0..100 {
        let (_, body) = call(reqwest::Method::GET, format!("{}/readyz", node.base), None, None).await;
        reason = body["reason"].as_str().unwrap_or_default().to_owned();
        if reason.contains("permgate migrate") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reason.contains("run `permgate migrate`"), "{reason}");

    let out = crate::permgate(&dir.0).arg("migrate").env("PERMGATE_DATABASE_URL", &schema.url).output();
    let out = out.unwrap_or_else(|e| unreachable!("{e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    node.wait_ready();
    let (status, body) = call(reqwest::Method::GET, format!("{}/readyz", node.base), None, None).await;
    assert_eq!(status, 200, "{body}");

    // A node whose Redis does not answer is not ready, though its store is.
    let mut env = node_env(&schema.url);
    env.retain(|(k, _)| *k != "PERMGATE_REDIS_URL");
    env.push(("PERMGATE_REDIS_URL", "redis://127.0.0.1:1".into()));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let no_redis = start_listening(&dir.0, &env_ref);
    let mut reason = String::new();
    for _ in 0..100 {
        let (status, body) = call(reqwest::Method::GET, format!("{}/readyz", no_redis.base), None, None).await;
        assert_eq!(status, 503, "{body}");
        reason = body["reason"].as_str().unwrap_or_default().to_owned();
        if reason.contains("Redis") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reason.contains("cannot connect to Redis"), "{reason}");
}

#[tokio::test]
async fn a_node_started_before_its_database_is_reachable_waits_and_says_why() {
    let dir = scratch_dir("no-db");
    let node = start_listening(&dir.0, &[("PERMGATE_DATABASE_URL", "postgres://postgres@127.0.0.1:1/test")]);
    let mut reason = String::new();
    for _ in 0..100 {
        let (status, body) = call(reqwest::Method::GET, format!("{}/readyz", node.base), None, None).await;
        assert_eq!(status, 503, "{body}");
        reason = body["reason"].as_str().unwrap_or_default().to_owned();
        if reason.contains("cannot connect") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reason.contains("cannot connect to PostgreSQL"), "{reason}");
    let (status, _) = call(reqwest::Method::GET, format!("{}/healthz", node.base), None, None).await;
    assert_eq!(status, 200, "the process is alive while not ready");
}

#[tokio::test]
async fn a_quota_shared_in_redis_admits_exactly_its_limit_across_both_nodes() {
    let Some(schema) = pg::fresh_schema("two-nodes-quota") else { return };
    if std::env::var("PERMGATE_TEST_REDIS_URL").is_err() {
        eprintln!("skipping: PERMGATE_TEST_REDIS_URL is not set");
        return;
    }
    let dir = scratch_dir("two-nodes-quota");
    let mut env = node_env(&schema.url);
    env.push(("PERMGATE_REDIS_PREFIX", format!("{}:", schema.name)));
    let a = start_node(&dir.0, &env);
    let b = start_node(&dir.0, &env);

    let (_dev, _id, token) = crate::developer_app(&a.base, ADMIN, SECRET, "sender", &["friends", "talk_message"]).await;
    // The per-pair limit is 20 messages a day: one sender, one recipient.
    let send = json!({"method": "POST", "path": "/v1/api/talk/friends/message/default/send",
        "headers": {"authorization": format!("Bearer {token}")}, "recipients": ["recipient-1"]});
    until_code(&b, &send, 0, Duration::from_secs(1)).await; // B knows the app; this is message 1
    let mut admitted = 1;

    let mut tasks = Vec::new();
    for n in 0..60 {
        let base = if n % 2 == 0 { a.base.clone() } else { b.base.clone() };
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            call(reqwest::Method::POST, format!("{base}/v1/check"), None, Some(send)).await.1
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        let d = t.await.unwrap_or_default();
        codes.push(d["code"].as_i64().unwrap_or(99));
    }
    admitted += codes.iter().filter(|c| **c == 0).count();
    assert!(codes.iter().all(|c| *c == 0 || *c == -536), "{codes:?}");
    assert!(admitted <= 20, "admitted {admitted} > the limit of 20");
    // Units a node leased but did not use are used by its next calls: afterwards the total is exact.
    for node in [&a, &b, &a, &b] {
        if decide(node, &send).await["code"] == 0 {
            admitted += 1;
        }
    }
    drop((a, b));
    permgate_testkit::redis_keys::delete_prefix(&format!("{}:", schema.name));
    assert_eq!(admitted, 20, "exactly the limit is admitted across both nodes");
}
