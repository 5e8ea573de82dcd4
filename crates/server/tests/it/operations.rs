//! What an operator watches and changes on a running node: `/metrics`, trace ids on errors, and
//! catalog changes (preview, then reload) without a restart.

use permgate_core::catalog::{Catalog, DEFAULT_CATALOG};
use permgate_testkit::{TestApp, both_backends, key_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LOCAL: &str = "/v2/local/search/keyword.json?query=coffee";

/// The value of one sample line of a Prometheus text page (`name{labels}`), if present.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn metrics(t: &TestApp) -> String {
    let response = t.client.get(format!("{}/metrics", t.base)).send().await.unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    response.text().await.unwrap_or_default()
}

/// The default catalog with the keyword search's daily limit set to `limit`.
fn keyword_limit(text: &str, limit: u64) -> String {
    text.replacen(
        "id = \"local_keyword_search_daily\"\nname = \"Local: keyword search, daily per app\"\nperiod = \"day\"\nscope = \"app\"\nlimit = 100000",
        &format!("id = \"local_keyword_search_daily\"\nname = \"Local: keyword search, daily per app\"\nperiod = \"day\"\nscope = \"app\"\nlimit = {limit}"),
        1,
    )
}

/// The default catalog with the keyword search under maintenance.
fn keyword_in_maintenance() -> String {
    DEFAULT_CATALOG.replacen(
        "id = \"local_search_keyword\"\n",
        "id = \"local_search_keyword\"\nstatus = \"maintenance\"\n",
        1,
    )
}

both_backends! {
    async fn metrics_count_decisions_by_code_and_permission_and_read_the_store(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let key = format!("KakaoAK {}", key_of(&app, "rest_api"));
        let before = metrics(&t).await;
        assert_eq!(sample(&before, "permgate_ready"), Some(1.0), "{before}");
        for _ in 0..3 {
            assert_eq!(t.check("GET", LOCAL, &key).await["allow"], true);
        }
        // Kakao Moment needs a permission a new app lacks: -5 naming it.
        let id = app["id"].as_i64().unwrap_or_default();
        let user = format!("Bearer {}", t.user_token(id, "u1", ""));
        let denied = t.check("GET", "/openapi/v4/adAccounts/pages", &user).await;
        assert_eq!(denied["code"], -5, "{denied}");
        let permission = denied["permission"].as_str().unwrap_or_default().to_owned();
        t.check("GET", LOCAL, "KakaoAK not-a-key").await;

        let page = metrics(&t).await;
        assert_eq!(sample(&page, "permgate_decisions_total{code=\"0\",permission=\"\"}"), Some(3.0), "{page}");
        let series = format!("permgate_decisions_total{{code=\"-5\",permission=\"{permission}\"}}");
        assert_eq!(sample(&page, &series), Some(1.0), "{page}");
        assert_eq!(sample(&page, "permgate_decisions_total{code=\"-401\",permission=\"\"}"), Some(1.0), "{page}");
        assert_eq!(sample(&page, "permgate_decision_duration_seconds_count"), Some(5.0), "{page}");
        assert_eq!(sample(&page, "permgate_decision_duration_seconds_bucket{le=\"+Inf\"}"), Some(5.0), "{page}");
        // Counted against the rule with the least left.
        let counted = "permgate_quota_calls_total{rule=\"local_keyword_search_daily\",result=\"counted\"}";
        assert_eq!(sample(&page, counted), Some(3.0), "{page}");
        assert_eq!(sample(&page, "permgate_apps"), Some(1.0), "{page}");
        assert!(sample(&page, "permgate_snapshot_version").is_some_and(|v| v >= 1.0), "{page}");
        assert!(sample(&page, "permgate_snapshot_age_seconds").is_some(), "{page}");
        let backend = t.services.store.backend();
        assert_eq!(sample(&page, &format!("permgate_store_up{{backend=\"{backend}\"}}")), Some(1.0), "{page}");
        assert!(page.contains("# TYPE permgate_decision_duration_seconds histogram"), "{page}");

        // Request states come from the store.
        let purpose = json!({"consent_type": "optional", "purpose": "show the user's calendar"});
        assert_eq!(t.put(&format!("/v1/apps/{id}/consent-items/talk_calendar"), &dev, purpose).await.0, StatusCode::OK);
        assert_eq!(t.post(&format!("/v1/apps/{id}/eligibility"), &dev, json!({})).await.0, StatusCode::OK);
        let form = [
            ("permission", "talk_calendar"),
            ("service_url", "https://calendar.example.com"),
            ("reason", "Users add our events to their Talk Calendar"),
            ("usage_scenario", "Log in, pick an event, tap 'add to calendar'"),
        ];
        let (status, body) = t.apply(id, &dev, &form, Some(("screen.png", permgate_testkit::TINY_PNG.to_vec()))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let page = metrics(&t).await;
        assert_eq!(sample(&page, "permgate_permission_requests{state=\"submitted\"}"), Some(1.0), "{page}");
    }

    async fn every_error_response_carries_a_trace_id_in_its_body_and_a_header(t) {
        let response = t
            .client
            .get(format!("{}/v1/apps/4242", t.base))
            .bearer_auth(&t.admin)
            .send()
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let header = response.headers().get("x-permgate-trace-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body: Value = response.json().await.unwrap_or_default();
        let id = body["trace_id"].as_str().unwrap_or_default();
        assert_eq!(id.len(), 16, "{body}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{body}");
        assert_eq!(header.as_deref(), Some(id));
        assert_eq!((body["code"].as_i64(), body["msg"].is_string()), (Some(-404), true), "{body}");
        let (_, other) = t.post("/v1/apps", "not-a-token", json!({})).await;
        assert!(other["trace_id"].is_string() && other["trace_id"] != body["trace_id"], "{other}");
    }

    async fn a_catalog_change_is_previewed_against_real_traffic_then_reloaded_without_a_restart(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let key = format!("KakaoAK {}", key_of(&app, "rest_api"));
        for _ in 0..2 {
            assert_eq!(t.check("GET", LOCAL, &key).await["allow"], true);
        }

        // Preview: the keyword search would go under maintenance for this app.
        let (status, preview) = t.post("/v1/catalog/preview", &t.admin, Value::String(keyword_in_maintenance())).await;
        assert_eq!(status, StatusCode::OK, "{preview}");
        assert!(preview["changes"].as_array().is_some_and(|c| c.iter().any(|l| l == "~ api local_search_keyword: status \"active\" -> \"maintenance\"")), "{preview}");
        let changed = &preview["preview"]["changed"];
        assert_eq!(changed.as_array().map(Vec::len), Some(1), "{preview}");
        assert_eq!(changed[0]["app_id"], id);
        assert_eq!(changed[0]["api"], "local_search_keyword");
        assert_eq!(changed[0]["calls"], 2);
        assert_eq!((changed[0]["before"]["code"].as_i64(), changed[0]["after"]["code"].as_i64()), (Some(0), Some(-7)));
        assert_eq!(preview["preview"]["apps"], json!([id]));
        // Nothing was applied by previewing.
        assert_eq!(t.check("GET", LOCAL, &key).await["allow"], true);

        // A broken catalog is refused with its errors, for preview and reload alike.
        let broken = DEFAULT_CATALOG.replacen("product = \"local\"", "product = \"locl\"", 1);
        let (status, body) = t.post("/v1/catalog/preview", &t.admin, Value::String(broken.clone())).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{body}");
        assert!(body["msg"].as_str().is_some_and(|m| m.contains("unknown product `locl`")), "{body}");
        let file = t.catalog_file();
        std::fs::write(&file, &broken).unwrap_or_else(|e| unreachable!("{e}"));
        let (status, body) = t.post("/v1/catalog/reload", &t.admin, json!({})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(t.check("GET", LOCAL, &key).await["allow"], true, "the catalog in force stays");

        // Only admins change the catalog.
        let (status, _) = t.post("/v1/catalog/reload", &dev, json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = t.post("/v1/catalog/preview", &dev, Value::String(keyword_in_maintenance())).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        std::fs::write(&file, keyword_in_maintenance()).unwrap_or_else(|e| unreachable!("{e}"));
        let (status, body) = t.post("/v1/catalog/reload", &t.admin, json!({})).await;
        assert_eq!((status, body["changed"].as_bool()), (StatusCode::OK, Some(true)), "{body}");
        let d = t.check("GET", LOCAL, &key).await;
        assert_eq!((d["code"].as_i64(), d["status"].as_i64()), (Some(-7), Some(400)), "{d}");
        let (_, again) = t.post("/v1/catalog/reload", &t.admin, json!({})).await;
        assert_eq!(again["changed"], false, "reloading the same file changes nothing: {again}");

        // The reload is in the audit trail, with its diff.
        let (_, audit) = t.get("/v1/audit", &t.admin).await;
        let reloads: Vec<&Value> = audit["events"].as_array().map(|e| e.iter().filter(|e| e["action"] == "catalog.reload").collect()).unwrap_or_default();
        assert_eq!(reloads.len(), 1, "{audit}");
        let section = &reloads[0]["after"]["diff"]["sections"][0];
        assert_eq!((section["section"].as_str(), section["changed"][0]["id"].as_str()), (Some("apis"), Some("local_search_keyword")), "{}", reloads[0]);
        let page = metrics(&t).await;
        assert_eq!(sample(&page, "permgate_catalog_reloads_total{result=\"applied\"}"), Some(1.0), "{page}");
        assert_eq!(sample(&page, "permgate_catalog_reloads_total{result=\"failed\"}"), Some(1.0), "{page}");
    }
}

/// A node whose catalog limits Local keyword search to 3 calls a day, and the REST key of an app
/// that has made 2 of them.
async fn two_calls_of_a_limit_of_three() -> (TestApp, String) {
    let catalog = Catalog::parse("t.toml", &keyword_limit(DEFAULT_CATALOG, 3)).unwrap_or_else(|e| unreachable!("{e}"));
    let t = TestApp::spawn_with(catalog).await;
    let (_, dev) = t.account("dev", "developer").await;
    let app = t.app(&dev, "Shop").await;
    let key = format!("KakaoAK {}", key_of(&app, "rest_api"));
    for _ in 0..2 {
        assert_eq!(t.check("GET", LOCAL, &key).await["allow"], true);
    }
    (t, key)
}

/// That catalog with a new quota rule first: every other rule's index moves by one.
fn a_rule_first() -> String {
    keyword_limit(DEFAULT_CATALOG, 3).replacen(
        "[[quota_rules]]\nid = \"api_monthly_total\"",
        "[[quota_rules]]\nid = \"a_new_rule\"\nname = \"A new rule\"\nperiod = \"day\"\nscope = \"app\"\nlimit = 5\n\n[[quota_rules]]\nid = \"api_monthly_total\"",
        1,
    )
}

#[tokio::test]
async fn a_reload_that_renumbers_quota_rules_keeps_every_count() {
    let (t, key) = two_calls_of_a_limit_of_three().await;
    let text = a_rule_first();
    std::fs::write(t.catalog_file(), text).unwrap_or_else(|e| unreachable!("{e}"));
    let (status, body) = t.post("/v1/catalog/reload", &t.admin, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["changes"].as_array().is_some_and(|c| c.iter().any(|l| l == "+ quota rule a_new_rule")), "{body}");
    let third = t.check("GET", LOCAL, &key).await;
    assert_eq!((third["allow"].as_bool(), third["quota"]["remaining"].as_u64()), (Some(true), Some(0)), "{third}");
    let fourth = t.check("GET", LOCAL, &key).await;
    assert_eq!(fourth["code"], -10, "the two calls before the reload still count: {fourth}");
}

/// The file watcher and `POST /v1/catalog/reload` may put the same new catalog in force at once:
/// one of them changes it, the other finds it in force already, and the counts are renumbered
/// once (twice, each count moved one rule further and a spent quota was handed out again).
#[tokio::test]
async fn two_reloads_at_once_change_the_catalog_once_and_keep_every_count() {
    let (t, key) = two_calls_of_a_limit_of_three().await;
    let text = a_rule_first();
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let reloads: Vec<_> = (0..2)
        .map(|_| {
            let (services, text, start) = (t.services.clone(), text.clone(), start.clone());
            std::thread::spawn(move || {
                let new = Catalog::parse("t.toml", &text).unwrap_or_else(|e| unreachable!("{e}"));
                start.wait();
                services.reload_catalog(new, "test", None).map(|r| r.changed)
            })
        })
        .collect();
    let changed: Vec<bool> = reloads
        .into_iter()
        .map(|r| r.join().unwrap_or_else(|_| unreachable!("a reload panicked")).unwrap_or_else(|e| unreachable!("{e}")))
        .collect();
    assert_eq!(changed.iter().filter(|c| **c).count(), 1, "{changed:?}");
    let third = t.check("GET", LOCAL, &key).await;
    assert_eq!((third["allow"].as_bool(), third["quota"]["remaining"].as_u64()), (Some(true), Some(0)), "{third}");
    assert_eq!(t.check("GET", LOCAL, &key).await["code"], -10);
}
