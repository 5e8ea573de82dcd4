//! Crash safety: `kill -9` a node while clients create accounts and apps, rotate keys, approve
//! requests and make counted checks; restart it on the same database and check that every
//! acknowledged write is there, nothing is half-written, the audit chain verifies, and quota
//! counts went back by at most the documented second of traffic. On SQLite and PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use permgate_testkit::{TINY_PNG, scratch_dir};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Server, call, permgate, start};

const ADMIN: &str = "crash-admin-token-0123456789abcdef";
const LOCAL: &str = "/v2/local/search/keyword.json?query=coffee";
const CLIENT_APPS: usize = 4;

/// What the node acknowledged before it died.
#[derive(Debug, Default)]
struct Acked {
    accounts: Vec<i64>,
    apps: Vec<i64>,
    /// `(app, key id, new key value, old key value)`.
    rotations: Vec<(i64, i64, String, String)>,
    approvals: Vec<i64>,
    /// When each counted check of the checking app was answered "allowed".
    checks: Vec<Instant>,
}

fn node(dir: &std::path::Path, database: &str) -> Server {
    start(dir, &[("PERMGATE_ADMIN_TOKEN", ADMIN), ("PERMGATE_DATABASE_URL", database)])
}

async fn post(base: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    call(Method::POST, format!("{base}{path}"), Some(token), Some(body)).await
}

/// A developer with `n` apps, each with the calendar consent item, the terms agreed and a
/// submitted request; returns (developer token, [(app, request, rest key id, rest key)]).
async fn setup(base: &str, n: usize) -> (String, Vec<(i64, i64, i64, String)>) {
    let (_, dev) = post(base, "/v1/accounts", ADMIN, json!({"name": "dana", "role": "developer"})).await;
    let dev = dev["token"].as_str().unwrap_or_default().to_owned();
    let mut apps = Vec::new();
    for i in 0..n {
        let (_, app) =
            post(base, "/v1/apps", &dev, json!({"name": format!("app {i}"), "company_name": "C", "category": "x"}))
                .await;
        let id = app["id"].as_i64().unwrap_or_default();
        let key = &app["keys"]["rest_api"][0];
        let body = json!({"consent_type": "optional", "purpose": "calendar"});
        call(Method::PUT, format!("{base}/v1/apps/{id}/consent-items/talk_calendar"), Some(&dev), Some(body)).await;
        post(base, &format!("/v1/apps/{id}/eligibility"), &dev, json!({})).await;
        let form = reqwest::multipart::Form::new()
            .text("permission", "talk_calendar")
            .text("service_url", "https://calendar.example.com")
            .text("reason", "Users add our events to their Talk Calendar")
            .part("file", reqwest::multipart::Part::bytes(TINY_PNG.to_vec()).file_name("s.png"));
        let response = reqwest::Client::new()
            .post(format!("{base}/v1/apps/{id}/permission-requests"))
            .bearer_auth(&dev)
            .multipart(form)
            .send()
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        let request: Value = response.json().await.unwrap_or_default();
        apps.push((
            id,
            request["id"].as_i64().unwrap_or_default(),
            key["id"].as_i64().unwrap_or_default(),
            key["key"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    (dev, apps)
}

/// Runs the clients until the node stops answering; returns what it acknowledged.
async fn clients(base: String, dev: String, apps: Vec<(i64, i64, i64, String)>) -> Acked {
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut tasks = Vec::new();
    // Accounts and apps.
    {
        let (base, dev, acked) = (base.clone(), dev.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let Ok((status, a)) =
                    try_post(&base, "/v1/accounts", ADMIN, json!({"name": format!("acct-{i}"), "role": "developer"}))
                        .await
                else {
                    break;
                };
                if status == 201 {
                    acked.lock().unwrap_or_else(|e| e.into_inner()).accounts.push(a["id"].as_i64().unwrap_or_default());
                }
                let Ok((status, app)) = try_post(
                    &base,
                    "/v1/apps",
                    &dev,
                    json!({"name": format!("more {i}"), "company_name": "C", "category": "x"}),
                )
                .await
                else {
                    break;
                };
                if status == 201 {
                    acked.lock().unwrap_or_else(|e| e.into_inner()).apps.push(app["id"].as_i64().unwrap_or_default());
                }
            }
        }));
    }
    // Key rotations on the first app (its newest key stays the one to use).
    {
        let (base, dev, acked) = (base.clone(), dev.clone(), acked.clone());
        let (app, _, mut key_id, mut value) = apps[0].clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((status, new)) =
                    try_post(&base, &format!("/v1/apps/{app}/keys/{key_id}/rotate"), &dev, json!({})).await
                else {
                    break;
                };
                if status != 200 {
                    continue;
                }
                let (new_id, new_value) =
                    (new["id"].as_i64().unwrap_or_default(), new["key"].as_str().unwrap_or_default().to_owned());
                acked.lock().unwrap_or_else(|e| e.into_inner()).rotations.push((
                    app,
                    new_id,
                    new_value.clone(),
                    value.clone(),
                ));
                key_id = new_id;
                value = new_value;
            }
        }));
    }
    // Approvals of the other apps' requests.
    {
        let (base, acked) = (base.clone(), acked.clone());
        let requests: Vec<i64> = apps.iter().skip(1).map(|a| a.1).collect();
        tasks.push(tokio::spawn(async move {
            let Ok((_, rev)) =
                try_post(&base, "/v1/accounts", ADMIN, json!({"name": "rita", "role": "reviewer"})).await
            else {
                return;
            };
            let rev = rev["token"].as_str().unwrap_or_default().to_owned();
            for r in requests {
                let path = format!("/v1/permission-requests/{r}/actions");
                let Ok(_) = try_post(&base, &path, &rev, json!({"action": "start_review"})).await else { return };
                let Ok((status, _)) = try_post(&base, &path, &rev, json!({"action": "approve"})).await else { return };
                if status == 200 {
                    acked.lock().unwrap_or_else(|e| e.into_inner()).approvals.push(r);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    // Counted checks with the last app's key.
    {
        let (base, acked) = (base.clone(), acked.clone());
        let key = apps[CLIENT_APPS - 1].3.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"method": "GET", "path": LOCAL, "headers": {"authorization": format!("KakaoAK {key}")}});
            loop {
                let Ok((_, d)) = try_post(&base, "/v1/check", "", body.clone()).await else { break };
                if d["allow"] == true {
                    acked.lock().unwrap_or_else(|e| e.into_inner()).checks.push(Instant::now());
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(acked).map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).unwrap_or_default()
}

/// A POST that reports a dead node as an error instead of failing the test.
async fn try_post(base: &str, path: &str, token: &str, body: Value) -> Result<(u16, Value), reqwest::Error> {
    let mut req = reqwest::Client::new().post(format!("{base}{path}")).json(&body).timeout(Duration::from_secs(5));
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

async fn crash_and_check(label: &str, database: Option<String>) {
    let dir = scratch_dir(label);
    let database = database.unwrap_or_else(|| format!("sqlite://{}", dir.0.join("permgate.db").display()));
    let mut first = node(&dir.0, &database);
    let (dev, apps) = setup(&first.base, CLIENT_APPS).await;
    let running = tokio::spawn(clients(first.base.clone(), dev.clone(), apps.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = Instant::now();
    let _ = first.child.kill(); // SIGKILL
    let _ = first.child.wait();
    let acked = running.await.unwrap_or_else(|e| unreachable!("{e}"));
    assert!(
        acked.accounts.len() > 3 && acked.rotations.len() > 3 && !acked.checks.is_empty(),
        "too little traffic to test: {acked:?}"
    );

    let second = node(&dir.0, &database);
    let base = second.base.clone();
    let get = |path: String, token: String| {
        let base = base.clone();
        async move { call(Method::GET, format!("{base}{path}"), Some(&token), None).await.1 }
    };
    // Every acknowledged account and app is there.
    let accounts = get("/v1/accounts".into(), ADMIN.into()).await;
    let ids: Vec<i64> = accounts["accounts"]
        .as_array()
        .map(|a| a.iter().filter_map(|a| a["id"].as_i64()).collect())
        .unwrap_or_default();
    let lost: Vec<&i64> = acked.accounts.iter().filter(|a| !ids.contains(a)).collect();
    assert!(lost.is_empty(), "acknowledged accounts lost: {lost:?}");
    for app in &acked.apps {
        assert_eq!(get(format!("/v1/apps/{app}"), dev.clone()).await["id"], *app, "acknowledged app {app} lost");
    }
    // The last acknowledged key works and every key it replaced is refused.
    let check = |key: &str| {
        let base = base.clone();
        let body = json!({"method": "GET", "path": LOCAL, "headers": {"authorization": format!("KakaoAK {key}")}, "consume": false});
        async move { call(Method::POST, format!("{base}/v1/check"), None, Some(body)).await.1["code"].clone() }
    };
    // A rotation in flight at the kill may have committed without its answer arriving: then the
    // trail has one rotation more than was acknowledged, and it replaced the newest acked key.
    let (rotated_app, ..) = apps[0].clone();
    let audit = get(format!("/v1/audit?app_id={rotated_app}&limit=10000"), ADMIN.into()).await;
    let committed = audit["events"].as_array().map_or(0, |e| e.iter().filter(|e| e["action"] == "key.rotate").count());
    let acknowledged = acked.rotations.len();
    assert!(
        committed == acknowledged || committed == acknowledged + 1,
        "{committed} rotations committed, {acknowledged} acknowledged"
    );
    if let Some((_, _, newest, _)) = acked.rotations.last() {
        let want = if committed == acknowledged { 0 } else { -401 };
        assert_eq!(
            check(newest).await,
            want,
            "the newest acknowledged key, with {committed} rotations committed of {acknowledged} acknowledged"
        );
    }
    for (_, _, _, old) in &acked.rotations {
        assert_eq!(check(old).await, -401, "a rotated-out key must stay refused");
    }
    // Every acknowledged approval holds its grant, and no grant came without its approval.
    for app in apps.iter().skip(1) {
        let request = get(format!("/v1/permission-requests/{}", app.1), dev.clone()).await;
        let held = get(format!("/v1/apps/{}/permissions", app.0), dev.clone()).await;
        let has_grant =
            held["permissions"].as_array().is_some_and(|p| p.iter().any(|p| p["permission"] == "talk_calendar"));
        let approved = request["state"] == "approved";
        assert_eq!(
            approved,
            has_grant,
            "request {} is {} but the grant is {}",
            app.1,
            request["state"],
            if has_grant { "there" } else { "missing" }
        );
        if acked.approvals.contains(&app.1) {
            assert!(approved, "acknowledged approval of request {} lost", app.1);
        }
    }
    // The audit chain verifies.
    let out = permgate(&dir.0)
        .args(["audit", "verify"])
        .env("PERMGATE_DATABASE_URL", &database)
        .output()
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Quota: counts went back by at most the last second of traffic (saved once a second).
    let app = apps[CLIENT_APPS - 1].0;
    let usage = get(format!("/v1/apps/{app}/usage"), dev.clone()).await;
    let used = usage["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["rule"] == "local_keyword_search_daily"))
        .and_then(|r| r["used"].as_u64())
        .unwrap_or(0);
    let bound = Duration::from_millis(1500); // the saver's second, and its own work
    let before_bound = acked.checks.iter().filter(|t| killed_at.duration_since(**t) > bound).count() as u64;
    assert!(
        used >= before_bound,
        "{used} counted after the restart, but {before_bound} calls were answered more than {bound:?} before the kill"
    );
    assert!(used <= acked.checks.len() as u64 + 64, "{used} counted, {} acknowledged", acked.checks.len());
    eprintln!(
        "crash ({label}): {} accounts, {} apps, {} rotations, {} approvals, {} checks acknowledged; {used} counts kept",
        acked.accounts.len(),
        acked.apps.len(),
        acked.rotations.len(),
        acked.approvals.len(),
        acked.checks.len()
    );
}

#[tokio::test]
async fn a_killed_node_on_sqlite_loses_no_acknowledged_write() {
    crash_and_check("crash-sqlite", None).await;
}

#[tokio::test]
async fn a_killed_node_on_postgres_loses_no_acknowledged_write() {
    let Some(schema) = permgate_testkit::pg::fresh_schema("crash") else { return };
    crash_and_check("crash-pg", Some(schema.url.clone())).await;
}
