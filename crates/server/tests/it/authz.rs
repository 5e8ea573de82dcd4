use permgate_testkit::{TestApp, both_backends, key_of};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const LOCAL: &str = "/v2/local/search/keyword.json?query=coffee";

async fn authz(
    t: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = t.client.request(method, format!("{}{path}", t.base));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap_or_else(|e| unreachable!("{e}"));
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.unwrap_or_default();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn h<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

both_backends! {
    async fn nginx_traefik_and_envoy_styles_are_all_understood(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let key = format!("KakaoAK {}", key_of(&app, "rest_api"));

        let nginx = [("x-original-method", "GET".to_owned()), ("x-original-uri", LOCAL.to_owned()), ("authorization", key.clone())];
        let (status, headers, _) = authz(&t, Method::GET, "/v1/authz", &nginx).await;
        assert_eq!((status, h(&headers, "x-permgate-app-id")), (StatusCode::OK, Some(id.to_string().as_str())));

        let traefik = [("x-forwarded-method", "GET".to_owned()), ("x-forwarded-uri", LOCAL.to_owned()), ("authorization", key.clone())];
        assert_eq!(authz(&t, Method::GET, "/v1/authz", &traefik).await.0, StatusCode::OK);

        let envoy = [("authorization", key.clone())];
        assert_eq!(authz(&t, Method::GET, &format!("/v1/authz{LOCAL}"), &envoy).await.0, StatusCode::OK);
        // Envoy keeps the original method: a DELETE of a GET-only API is no API at all.
        let (status, headers, _) = authz(&t, Method::DELETE, &format!("/v1/authz{LOCAL}"), &envoy).await;
        assert_eq!((status, h(&headers, "x-permgate-code")), (StatusCode::NOT_FOUND, Some("-404")));
    }
}

both_backends! {
    async fn a_call_named_twice_or_a_credential_sent_twice_is_refused(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let key = format!("KakaoAK {}", key_of(&app, "rest_api"));
        // Behind Traefik (which passes the caller's headers on), a caller adding nginx's headers
        // would have another call decided than the one Traefik forwards.
        let both = [
            ("x-forwarded-method", "POST".to_owned()),
            ("x-forwarded-uri", "/v1/api/talk/friends/message/default/send".to_owned()),
            ("x-original-method", "GET".to_owned()),
            ("x-original-uri", LOCAL.to_owned()),
            ("authorization", key.clone()),
        ];
        let (status, _, body) = authz(&t, Method::GET, "/v1/authz", &both).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{body}");
        assert!(body["msg"].as_str().is_some_and(|m| m.contains("named twice")), "{body}");

        let mut req = t.client.get(format!("{}/v1/authz", t.base))
            .header("x-original-method", "GET")
            .header("x-original-uri", LOCAL);
        req = req.header("authorization", key.clone()).header("authorization", "Bearer another-apps-user-token");
        let resp = req.send().await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body: Value = resp.json().await.unwrap_or_default();
        assert!(body["msg"].as_str().is_some_and(|m| m.contains("authorization header is sent more than once")), "{body}");

        // Allowed: every header permgate passes upstream is there, empty when it does not apply.
        let nginx = [("x-original-method", "GET".to_owned()), ("x-original-uri", LOCAL.to_owned()), ("authorization", key)];
        let (status, headers, _) = authz(&t, Method::GET, "/v1/authz", &nginx).await;
        assert_eq!(status, StatusCode::OK);
        for name in ["x-permgate-user", "x-permgate-restriction", "x-permgate-would-deny"] {
            assert_eq!(h(&headers, name), Some(""), "{name}");
        }
    }
}

both_backends! {
    async fn denials_carry_the_kakao_status_body_and_headers(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Ads").await;
        let id = app["id"].as_i64().unwrap_or_default();
        t.consent(id, &dev, &["friends"]).await;
        let user = format!("Bearer {}", t.user_token(id, "u1", "friends"));
        let call = |uri: &str, auth: &str| [("x-original-method", "GET".to_owned()), ("x-original-uri", uri.to_owned()), ("authorization", auth.to_owned())];

        let (status, headers, body) = authz(&t, Method::GET, "/v1/authz", &call("/openapi/v4/adAccounts/pages", &user)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!((body["msg"].as_str(), body["code"].as_i64()), (Some("permission denied"), Some(-5)));
        assert_eq!((h(&headers, "x-permgate-code"), h(&headers, "x-permgate-status")), (Some("-5"), Some("403")));
        assert_eq!(h(&headers, "x-permgate-msg"), Some("permission denied"));

        let (status, headers, body) = authz(&t, Method::GET, "/v1/authz", &call(LOCAL, "KakaoAK nope")).await;
        assert_eq!((status, body["code"].as_i64(), h(&headers, "x-permgate-code")), (StatusCode::UNAUTHORIZED, Some(-401), Some("-401")));

        let (status, headers, _) = authz(&t, Method::GET, "/v1/authz", &call("/v1/api/talk/friends", &user)).await;
        assert_eq!((status, h(&headers, "x-permgate-restriction"), h(&headers, "x-permgate-user")), (StatusCode::OK, Some("members_only"), Some("u1")));

        let (status, body) = t.call(Method::GET, "/v1/authz", None, None).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{body}");
    }
}

both_backends! {
    async fn a_quota_deny_through_authz_says_when_to_retry(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Ads").await;
        let id = app["id"].as_i64().unwrap_or_default();
        t.post(&format!("/v1/apps/{id}/permissions"), &t.admin, serde_json::json!({"permission": "kakao_moment", "reason": "agency"})).await;
        let user = format!("Bearer {}", t.user_token(id, "u1", ""));
        let call = [("x-original-method", "POST".to_owned()), ("x-original-uri", "/openapi/v4/adAccounts".to_owned()), ("authorization", user)];
        assert_eq!(authz(&t, Method::GET, "/v1/authz", &call).await.0, StatusCode::OK);
        let (status, headers, body) = authz(&t, Method::GET, "/v1/authz", &call).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-10)), "{body}");
        assert_eq!((h(&headers, "retry-after"), h(&headers, "x-permgate-code")), (Some("1"), Some("-10")));
        assert_eq!(body["rule"], "moment_ad_account_create_per_second");
    }
}
