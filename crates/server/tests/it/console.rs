//! The console's files and its session: a cookie in place of the Authorization header, and the
//! header a change made with that cookie must carry.

use permgate_testkit::both_backends;
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends! {
    async fn the_console_signs_in_with_a_cookie_and_refuses_cross_site_changes(t) {
        let page = t.client.get(format!("{}/", t.base)).send().await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(page.status(), StatusCode::OK);
        let csp = page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let header = |name: &str| page.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "for browsers before frame-ancestors");
        assert_eq!(header("referrer-policy").as_deref(), Some("same-origin"));
        assert!(page.text().await.unwrap_or_default().contains("/console/app.js"));
        for asset in ["/console/app.js", "/console/app.css"] {
            let r = t.client.get(format!("{}{asset}", t.base)).send().await.unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!(r.status(), StatusCode::OK, "{asset}");
        }

        let (_, dev) = t.account("dev", "developer").await;
        // A cookie whose token is refused (reset, or its account gone) is cleared by the page's
        // first question, so that it stops counting as a failed sign-in on every load.
        let stale = t.client.get(format!("{}/v1/session", t.base)).header("cookie", "permgate_session=pgt_stale").send().await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(stale.status(), StatusCode::OK);
        let cleared = stale.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(cleared.starts_with("permgate_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
        let anonymous = t.client.get(format!("{}/v1/session", t.base)).send().await.unwrap_or_else(|e| unreachable!("{e}"));
        assert!(anonymous.headers().get("set-cookie").is_none(), "no cookie, nothing to clear");
        let (status, e) = t.call(reqwest::Method::POST, "/v1/session", None, Some(json!({"token": "pgt_wrong"}))).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::UNAUTHORIZED, Some(-401)), "{e}");
        let r = t.client.post(format!("{}/v1/session", t.base)).json(&json!({"token": dev})).send().await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(r.status(), StatusCode::OK);
        let set = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(set.starts_with("permgate_session=") && set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
        let cookie = set.split(';').next().unwrap_or_default().to_owned();

        let with_cookie = |method: reqwest::Method, path: &str| t.client.request(method, format!("{}{path}", t.base)).header("cookie", &cookie);
        let who: Value = with_cookie(reqwest::Method::GET, "/v1/session").send().await.and_then(|r| r.error_for_status()).unwrap_or_else(|e| unreachable!("{e}")).json().await.unwrap_or_default();
        assert_eq!((who["name"].as_str(), who["role"].as_str()), (Some("dev"), Some("developer")));

        let body = json!({"name": "Shop", "company_name": "C", "category": "x"});
        let refused = with_cookie(reqwest::Method::POST, "/v1/apps").json(&body).send().await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let msg: Value = refused.json().await.unwrap_or_default();
        assert!(msg["msg"].as_str().unwrap_or_default().contains("X-Permgate-Console"), "{msg}");
        let made = with_cookie(reqwest::Method::POST, "/v1/apps").header("x-permgate-console", "1").json(&body).send().await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(made.status(), StatusCode::CREATED);

        let out = with_cookie(reqwest::Method::DELETE, "/v1/session").send().await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(out.status(), StatusCode::NO_CONTENT);
        let cleared = out.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
    }
}
