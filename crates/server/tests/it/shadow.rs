//! Shadow mode: a check in shadow mode is computed and reported as `would_deny`, the call is
//! allowed; metrics, the shadow report and explain say what enforcing it would change, and
//! switching to enforcement is an audited catalog change.

use permgate_core::catalog::{Catalog, DEFAULT_CATALOG};
use permgate_testkit::{TestApp, key_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MOMENT: &str = "/openapi/v4/adAccounts/pages";
const LOCAL: &str = "/v2/local/search/keyword.json?query=coffee";

fn shadow_moment(text: &str) -> String {
    text.replacen(
        "[[permissions]]\nid = \"kakao_moment\"\n",
        "[[permissions]]\nid = \"kakao_moment\"\nshadow = true\n",
        1,
    )
}

fn spawn_catalog(text: &str) -> Catalog {
    Catalog::parse("t.toml", text).unwrap_or_else(|e| unreachable!("{e}"))
}

async fn metrics(t: &TestApp) -> String {
    let r = t.client.get(format!("{}/metrics", t.base)).send().await.unwrap_or_else(|e| unreachable!("{e}"));
    r.text().await.unwrap_or_default()
}

#[tokio::test]
async fn a_permission_in_shadow_mode_allows_and_reports_what_it_would_deny_until_enforced() {
    let text = shadow_moment(DEFAULT_CATALOG);
    assert_ne!(text, DEFAULT_CATALOG);
    let t = TestApp::spawn_with(spawn_catalog(&text)).await;
    let (_, dev) = t.account("dev", "developer").await;
    let app = t.app(&dev, "Ads").await;
    let id = app["id"].as_i64().unwrap_or_default();
    let user = format!("Bearer {}", t.user_token(id, "u1", ""));

    let d = t.check("GET", MOMENT, &user).await;
    assert_eq!((d["allow"].as_bool(), d["code"].as_i64()), (Some(true), Some(0)), "{d}");
    assert_eq!(
        d["would_deny"],
        json!({"status": 403, "code": -5, "msg": "permission denied", "permission": "kakao_moment", "shadow": "permission:kakao_moment"}),
        "{d}"
    );
    t.check("GET", MOMENT, &user).await;

    // Through forward-auth, the upstream learns it too.
    let r = t
        .client
        .get(format!("{}/v1/authz", t.base))
        .header("x-original-method", "GET")
        .header("x-original-uri", MOMENT)
        .header("authorization", &user)
        .send()
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(r.status(), StatusCode::OK);
    let header = r.headers().get("x-permgate-would-deny").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header.as_deref(), Some("-5 permission:kakao_moment"));

    let page = metrics(&t).await;
    assert!(
        page.contains("permgate_shadow_would_deny_total{code=\"-5\",shadow=\"permission:kakao_moment\"} 3"),
        "{page}"
    );

    // The report: what enforcing it would change.
    let (status, report) = t.get("/v1/shadow-report", &t.admin).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["subjects"],
        json!([{"shadow": "permission:kakao_moment", "codes": [-5], "apps": [id], "calls": 3}]),
        "{report}"
    );
    assert_eq!(t.get("/v1/shadow-report", &dev).await.0, StatusCode::FORBIDDEN);

    // Explain says so.
    let (_, e) = t.get(&format!("/v1/apps/{id}/explain?method=GET&path={MOMENT}"), &dev).await;
    let permission: Vec<&Value> =
        e["checks"].as_array().map(|c| c.iter().filter(|c| c["check"] == "permission").collect()).unwrap_or_default();
    assert_eq!(permission[0]["result"], "shadow", "{e}");
    assert_eq!(e["verdict"]["allow"], true, "{e}");

    // Enforcing it is a catalog change like any other, audited with its diff.
    std::fs::write(t.catalog_file(), DEFAULT_CATALOG).unwrap_or_else(|e| unreachable!("{e}"));
    let (status, reloaded) = t.post("/v1/catalog/reload", &t.admin, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reloaded}");
    assert_eq!(reloaded["changes"], json!(["~ permission kakao_moment: shadow true -> false"]), "{reloaded}");
    let d = t.check("GET", MOMENT, &user).await;
    assert_eq!(d["code"], -5, "{d}");
    assert!(d["would_deny"].is_null());
}

#[tokio::test]
async fn an_api_or_quota_rule_in_shadow_mode_reports_its_would_be_denies() {
    let text = DEFAULT_CATALOG
        .replacen("id = \"local_search_keyword\"\n", "id = \"local_search_keyword\"\nstatus = \"maintenance\"\nshadow = true\n", 1)
        .replacen(
            "id = \"local_address_search_daily\"\nname = \"Local: address to coordinates, daily per app\"\nperiod = \"day\"\nscope = \"app\"\nlimit = 100000",
            "id = \"local_address_search_daily\"\nname = \"Local: address to coordinates, daily per app\"\nperiod = \"day\"\nscope = \"app\"\nlimit = 1\nshadow = true",
            1,
        );
    let t = TestApp::spawn_with(spawn_catalog(&text)).await;
    let (_, dev) = t.account("dev", "developer").await;
    let app = t.app(&dev, "Maps").await;
    let key = format!("KakaoAK {}", key_of(&app, "rest_api"));

    let d = t.check("GET", LOCAL, &key).await;
    assert_eq!(d["allow"], true, "{d}");
    assert_eq!(
        (d["would_deny"]["code"].as_i64(), d["would_deny"]["shadow"].as_str()),
        (Some(-7), Some("api:local_search_keyword")),
        "{d}"
    );

    let address = "/v2/local/search/address.json?query=Pangyo";
    assert!(t.check("GET", address, &key).await["would_deny"].is_null(), "within the limit");
    let d = t.check("GET", address, &key).await;
    assert_eq!(d["allow"], true, "{d}");
    assert_eq!(
        (d["would_deny"]["code"].as_i64(), d["would_deny"]["rule"].as_str(), d["would_deny"]["shadow"].as_str()),
        (Some(-10), Some("local_address_search_daily"), Some("quota_rule:local_address_search_daily")),
        "{d}"
    );
    // The other rules still count it.
    let (_, usage) = t.get(&format!("/v1/apps/{}/usage", app["id"]), &dev).await;
    let monthly = usage["rules"].as_array().and_then(|r| r.iter().find(|r| r["rule"] == "api_monthly_total")).cloned();
    assert_eq!(monthly.map(|m| m["used"].clone()), Some(json!(3)), "{usage}");
}
