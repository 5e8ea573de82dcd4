use permgate_testkit::scratch_dir;
use serde_json::json;

use crate::{call, start};

#[tokio::test]
async fn the_first_start_prints_an_admin_token_once_and_a_restart_keeps_every_grant() {
    let dir = scratch_dir("serve");
    let server = start(&dir.0, &[]);
    let token = server
        .banner
        .split_whitespace()
        .find(|w| w.starts_with("pgt_"))
        .map(str::to_owned)
        .unwrap_or_else(|| unreachable!("no token in the banner: {:?}", server.banner));
    assert!(dir.0.join("permgate.db").exists(), "the SQLite file is created in the working directory");
    let base = server.base.clone();

    let (dev, app) = developer_app(&base, &token).await;
    let id = app["id"].as_i64().unwrap_or_default();
    let admin_key = app["keys"]["admin"][0]["key"].as_str().unwrap_or_default().to_owned();
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{base}/v1/apps/{id}/permissions"),
        Some(&token),
        Some(json!({"permission": "connect_talk_channel", "reason": "same business"})),
    )
    .await;
    assert_eq!(status, 201);
    let consent = json!({"consent_type": "optional", "purpose": "channel status"});
    let url = format!("{base}/v1/apps/{id}/consent-items/plusfriends");
    let (status, set) = call(reqwest::Method::PUT, url, Some(&dev), Some(consent)).await;
    assert_eq!(status, 200, "{set}");
    let channels = json!({"method": "GET", "path": "/v2/api/talk/channels/multi", "headers": {"authorization": format!("KakaoAK {admin_key}")}});
    let (_, d) = call(reqwest::Method::POST, format!("{base}/v1/check"), None, Some(channels.clone())).await;
    assert_eq!(d["allow"], true, "{d}");
    drop(server);

    let server = start(&dir.0, &[]);
    assert!(!server.banner.contains("pgt_"), "the token is printed only on the first start: {}", server.banner);
    let (_, d) = call(reqwest::Method::POST, format!("{}/v1/check", server.base), None, Some(channels)).await;
    assert_eq!(d["allow"], true, "the grant and the hashed admin key survive the restart: {d}");
    let (status, _) = call(reqwest::Method::GET, format!("{}/v1/apps", server.base), Some(&token), None).await;
    assert_eq!(status, 200, "the admin token still signs in");
}

#[tokio::test]
async fn a_configured_admin_token_signs_in_and_nothing_is_printed() {
    let dir = scratch_dir("serve-token");
    let server = start(&dir.0, &[("PERMGATE_ADMIN_TOKEN", "a-long-enough-admin-token")]);
    assert!(!server.banner.contains("pgt_"), "{}", server.banner);
    let (status, _) =
        call(reqwest::Method::GET, format!("{}/v1/accounts", server.base), Some("a-long-enough-admin-token"), None)
            .await;
    assert_eq!(status, 200);
}

#[test]
fn a_broken_catalog_stops_the_start_with_its_errors() {
    let dir = scratch_dir("serve-bad-catalog");
    std::fs::write(dir.0.join("bad.toml"), "version = \"x\"\n[[apis]]\nid = 1\n").unwrap_or_default();
    let out = crate::permgate(&dir.0).args(["serve", "--catalog", "bad.toml", "--listen", "127.0.0.1:0"]).output();
    let out = out.unwrap_or_else(|e| unreachable!("{e}"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:3:"), "{err}");
}

#[tokio::test]
async fn user_tokens_signed_with_a_configured_public_key_are_accepted() {
    let dir = scratch_dir("serve-jwks");
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/tests/data/keys");
    let node = start(
        &dir.0,
        &[
            ("PERMGATE_ADMIN_TOKEN", "a-long-enough-admin-token"),
            ("PERMGATE_JWT_PUBLIC_KEYS", &format!("{keys}/jwks.json")),
        ],
    );
    let (_, id, _) =
        crate::developer_app(&node.base, "a-long-enough-admin-token", "unused-secret", "u1", &["profile_nickname"])
            .await;
    let private = std::fs::read(format!("{keys}/rsa-private.pem")).unwrap_or_default();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-2026".into());
    let exp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + 600;
    let claims = json!({"app_id": id, "sub": "u1", "scope": "profile_nickname", "exp": exp});
    let token = jsonwebtoken::EncodingKey::from_rsa_pem(&private)
        .and_then(|k| jsonwebtoken::encode(&header, &claims, &k))
        .unwrap_or_default();
    let check = json!({"method": "GET", "path": "/v1/api/talk/profile", "headers": {"authorization": format!("Bearer {token}")}});
    let (_, d) = call(reqwest::Method::POST, format!("{}/v1/check", node.base), None, Some(check)).await;
    assert_eq!(d["allow"], true, "{d}");
}

#[test]
fn a_public_key_file_without_keys_stops_the_start() {
    let dir = scratch_dir("serve-bad-keys");
    std::fs::write(dir.0.join("keys.pem"), "not a key").unwrap_or_default();
    let out =
        crate::permgate(&dir.0).args(["serve", "--jwt-public-keys", "keys.pem", "--listen", "127.0.0.1:0"]).output();
    let out = out.unwrap_or_else(|e| unreachable!("{e}"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PERMGATE_JWT_PUBLIC_KEYS keys.pem: no public key found"), "{err}");
}

#[tokio::test]
async fn the_gateway_runs_beside_the_api_when_configured() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| unreachable!("{e}"));
    let upstream_addr = upstream.local_addr().unwrap_or_else(|e| unreachable!("{e}"));
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
            let app = headers.get("x-permgate-app-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            axum::Json(json!({"from": "upstream", "app_id": app}))
        });
        let _ = axum::serve(upstream, app).await;
    });
    let gw_port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0);
    let dir = scratch_dir("serve-gateway");
    let node = start(
        &dir.0,
        &[
            ("PERMGATE_ADMIN_TOKEN", "a-long-enough-admin-token"),
            ("PERMGATE_GATEWAY_LISTEN", &format!("127.0.0.1:{gw_port}")),
            ("PERMGATE_UPSTREAM", &format!("http://{upstream_addr}")),
        ],
    );
    let (status, dev) = call(
        reqwest::Method::POST,
        format!("{}/v1/accounts", node.base),
        Some("a-long-enough-admin-token"),
        Some(json!({"name": "d", "role": "developer"})),
    )
    .await;
    assert_eq!(status, 201, "{dev}");
    let dev = dev["token"].as_str().unwrap_or_default().to_owned();
    let (status, app) = call(
        reqwest::Method::POST,
        format!("{}/v1/apps", node.base),
        Some(&dev),
        Some(json!({"name": "A", "company_name": "C", "category": "x"})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let key = app["keys"]["rest_api"][0]["key"].as_str().unwrap_or_default().to_owned();
    let resp = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{gw_port}/v2/local/search/keyword.json?query=x"))
        .header("authorization", format!("KakaoAK {key}"))
        .send()
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    assert_eq!(
        (body["from"].as_str(), body["app_id"].clone()),
        (Some("upstream"), json!(app["id"].to_string())),
        "{body}"
    );
}

#[test]
fn a_gateway_without_an_upstream_is_refused_at_start() {
    let dir = scratch_dir("serve-gateway-half");
    let out =
        crate::permgate(&dir.0).args(["serve", "--gateway-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"]).output();
    let out = out.unwrap_or_else(|e| unreachable!("{e}"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs both PERMGATE_GATEWAY_LISTEN and PERMGATE_UPSTREAM"));
}

#[tokio::test]
async fn demo_seeds_an_empty_database_once() {
    let dir = scratch_dir("serve-demo");
    let env = [("PERMGATE_ADMIN_TOKEN", "a-long-enough-admin-token"), ("PERMGATE_DEMO", "true")];
    let node = start(&dir.0, &env);
    let token = |who: &str| {
        node.banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(who).map(|t| t.trim().to_owned()))
            .unwrap_or_else(|| unreachable!("no {who} token in the banner: {}", node.banner))
    };
    let (developer, reviewer) = (token("developer"), token("reviewer"));
    let (status, requests) =
        call(reqwest::Method::GET, format!("{}/v1/permission-requests", node.base), Some(&reviewer), None).await;
    assert_eq!(status, 200, "{requests}");
    let mut states: Vec<&str> = requests["requests"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["state"].as_str()).collect())
        .unwrap_or_default();
    states.sort_unstable();
    assert_eq!(states, ["approved", "on_hold", "submitted"]);
    let (_, apps) = call(reqwest::Method::GET, format!("{}/v1/apps", node.base), Some(&developer), None).await;
    let app = apps["apps"][0]["id"].as_i64().unwrap_or_default();
    let (_, usage) =
        call(reqwest::Method::GET, format!("{}/v1/apps/{app}/usage", node.base), Some(&developer), None).await;
    let used: u64 =
        usage["rules"].as_array().map(|r| r.iter().filter_map(|r| r["used"].as_u64()).max().unwrap_or(0)).unwrap_or(0);
    assert!(used >= 42, "{usage}");
    drop(node);
    let again = start(&dir.0, &env);
    assert!(!again.banner.contains("Demo data seeded"), "{}", again.banner);
}

/// With `PERMGATE_QUOTA_FAILURE=open` a node starts while Redis is down and admits calls
/// uncounted, saying so, as it does when Redis goes down later (it stayed not ready, retrying);
/// failing closed, it still waits for Redis.
#[tokio::test]
async fn failing_open_a_node_starts_while_redis_is_down() {
    let dir = scratch_dir("serve-redis-down");
    let token = "a-long-enough-admin-token";
    let down = [("PERMGATE_REDIS_URL", "redis://127.0.0.1:1"), ("PERMGATE_ADMIN_TOKEN", token)];
    let server = start(&dir.0, &[down[0], down[1], ("PERMGATE_QUOTA_FAILURE", "open")]);
    let base = server.base.clone();
    let (_, app) = developer_app(&base, token).await;
    let key = app["keys"]["rest_api"][0]["key"].as_str().unwrap_or_default();
    let search = json!({"method": "GET", "path": "/v2/local/search/keyword.json?query=a",
        "headers": {"authorization": format!("KakaoAK {key}")}});
    let (_, d) = call(reqwest::Method::POST, format!("{base}/v1/check"), None, Some(search)).await;
    assert_eq!(d["allow"], true, "{d}");
    assert!(d["reasons"].to_string().contains("admitted uncounted (fail open)"), "{d}");
    drop(server);

    let closed = crate::start_listening(&dir.0, &down);
    let (status, ready) = call(reqwest::Method::GET, format!("{}/readyz", closed.base), None, None).await;
    assert_eq!(status, 503, "failing closed, the node waits for Redis: {ready}");
}

/// A new developer's token, and an app of theirs as the API shows it (made with the admin's
/// `token` on the node at `base`).
async fn developer_app(base: &str, token: &str) -> (String, serde_json::Value) {
    let body = json!({"name": "dev", "role": "developer"});
    let (status, dev) = call(reqwest::Method::POST, format!("{base}/v1/accounts"), Some(token), Some(body)).await;
    assert_eq!(status, 201, "{dev}");
    let dev = dev["token"].as_str().unwrap_or_default().to_owned();
    let body = json!({"name": "Shop", "company_name": "C", "category": "x"});
    let (status, app) = call(reqwest::Method::POST, format!("{base}/v1/apps"), Some(&dev), Some(body)).await;
    assert_eq!(status, 201, "{app}");
    (dev, app)
}
