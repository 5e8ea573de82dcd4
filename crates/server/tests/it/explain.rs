//! `GET /v1/apps/{id}/explain`: every check, what to do about each failure, and a verdict that is
//! the engine's own.

use permgate_core::catalog::{Catalog, DEFAULT_CATALOG};
use permgate_testkit::{TestApp, both_backends, key_of};
use reqwest::StatusCode;
use serde_json::Value;

const CALENDARS: &str = "/v2/api/calendar/calendars";
const LOCAL: &str = "/v2/local/search/keyword.json?query=coffee";

async fn explain(t: &TestApp, app: i64, token: &str, method: &str, path: &str) -> (StatusCode, Value) {
    let url = format!("/v1/apps/{app}/explain?method={method}&path={}", path.replace('?', "%3F").replace('=', "%3D"));
    t.get(&url, token).await
}

/// The checks of one kind as `(result, detail, fix)`.
fn checks<'a>(e: &'a Value, kind: &str) -> Vec<(&'a str, &'a str, &'a str)> {
    e["checks"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter(|c| c["check"] == kind)
                .map(|c| {
                    (
                        c["result"].as_str().unwrap_or(""),
                        c["detail"].as_str().unwrap_or(""),
                        c["fix"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

both_backends! {
    async fn explain_lists_every_failure_with_its_fix_and_agrees_with_the_engine(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let (_, stranger) = t.account("stranger", "developer").await;
        let app = t.app(&dev, "Cal").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let user = format!("Bearer {}", t.user_token(id, "u1", "talk_calendar"));

        // The permission missing and the consent item unset: both listed (a decision stops at
        // the first).
        let (status, e) = explain(&t, id, &dev, "GET", CALENDARS).await;
        assert_eq!(status, StatusCode::OK, "{e}");
        assert_eq!(e["api"], "calendar_list");
        let permission = checks(&e, "permission");
        assert_eq!(permission[0].0, "restricted", "{e}");
        assert_eq!(permission[0].1, "the app lacks `talk_calendar`: calls work for the app's members only");
        assert_eq!(permission[0].2, format!("apply for `talk_calendar` with POST /v1/apps/{id}/permission-requests"));
        let consent = checks(&e, "consent_item");
        assert_eq!((consent[0].0, consent[0].1), ("fail", "consent item `talk_calendar` is not set (-3)"), "{e}");
        assert_eq!(checks(&e, "user_consent")[0].0, "info");
        let decided = t.check("GET", CALENDARS, &user).await;
        assert_eq!(e["verdict"]["code"], decided["code"], "explain: {e}\ncheck: {decided}");
        assert_eq!(e["verdict"]["credential"], "user_token");

        // Kakao Login is activated by hand: the fix says how.
        let (_, me) = explain(&t, id, &dev, "GET", "/v2/user/me").await;
        let product = checks(&me, "product");
        assert_eq!((product[0].0, product[0].1), ("fail", "product `kakao_login` is not activated (-3)"), "{me}");
        assert_eq!(product[0].2, format!("PUT /v1/apps/{id}/products/kakao_login {{\"activated\": true}}"));
        assert_eq!(me["verdict"]["code"], t.check("GET", "/v2/user/me", &user).await["code"], "{me}");

        // Fixed as told: everything passes but the permission, which restricts.
        t.consent(id, &dev, &["talk_calendar"]).await;
        let (_, e) = explain(&t, id, &dev, "GET", CALENDARS).await;
        let failed: Vec<&Value> = e["checks"].as_array().map(|c| c.iter().filter(|c| c["result"] == "fail").collect()).unwrap_or_default();
        assert!(failed.is_empty(), "{e}");
        assert_eq!(e["verdict"]["allow"], true, "{e}");
        assert_eq!(t.check("GET", CALENDARS, &user).await["restriction"], "members_only");

        // A permission that denies: -5 with the permission to apply for.
        let (_, e) = explain(&t, id, &dev, "GET", "/openapi/v4/adAccounts/pages").await;
        let permission = checks(&e, "permission");
        assert_eq!((permission[0].0, permission[0].1), ("fail", "the app lacks `kakao_moment` (-5)"), "{e}");
        assert_eq!(e["verdict"]["code"], -5);

        // Readable by members and staff only; bad input is -2; an unknown path says so.
        assert_eq!(explain(&t, id, &stranger, "GET", CALENDARS).await.0, StatusCode::FORBIDDEN);
        assert_eq!(explain(&t, id, &t.admin, "GET", CALENDARS).await.0, StatusCode::OK);
        let (status, body) = t.get(&format!("/v1/apps/{id}/explain?method=GET"), &dev).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{body}");
        let (status, body) = explain(&t, id, &dev, "BREW", CALENDARS).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{body}");
        let (_, e) = explain(&t, id, &dev, "GET", "/v2/nowhere").await;
        assert_eq!(checks(&e, "route")[0].0, "fail", "{e}");
        assert!(e["verdict"].is_null(), "{e}");
    }
}

#[tokio::test]
async fn an_exhausted_quota_is_explained_with_its_reset_time() {
    let text = DEFAULT_CATALOG.replacen(
        "id = \"local_keyword_search_daily\"\nname = \"Local: keyword search, daily per app\"\nperiod = \"day\"\nscope = \"app\"\nlimit = 100000",
        "id = \"local_keyword_search_daily\"\nname = \"Local: keyword search, daily per app\"\nperiod = \"day\"\nscope = \"app\"\nlimit = 1",
        1,
    );
    let t = TestApp::spawn_with(Catalog::parse("t.toml", &text).unwrap_or_else(|e| unreachable!("{e}"))).await;
    let (_, dev) = t.account("dev", "developer").await;
    let app = t.app(&dev, "Maps").await;
    let id = app["id"].as_i64().unwrap_or_default();
    let key = format!("KakaoAK {}", key_of(&app, "rest_api"));
    let (_, before) = explain(&t, id, &dev, "GET", LOCAL).await;
    assert!(checks(&before, "quota").iter().all(|(r, _, _)| *r == "pass"), "{before}");
    assert_eq!(before["verdict"]["allow"], true);
    assert_eq!(t.check("GET", LOCAL, &key).await["allow"], true);
    let (_, after) = explain(&t, id, &dev, "GET", LOCAL).await;
    let quota = checks(&after, "quota");
    let exhausted: Vec<_> = quota.iter().filter(|(r, _, _)| *r == "fail").collect();
    assert_eq!(exhausted.len(), 1, "{after}");
    assert_eq!(exhausted[0].1, "`local_keyword_search_daily`: 1 of 1 used (-10 until it resets)");
    assert!(
        exhausted[0].2.starts_with("wait until 20") && exhausted[0].2.ends_with("or apply for more quota"),
        "{after}"
    );
    let denied = t.check("GET", LOCAL, &key).await;
    assert_eq!(
        (after["verdict"]["code"].as_i64(), denied["code"].as_i64()),
        (Some(-10), Some(-10)),
        "{after}\n{denied}"
    );
}
