use permgate_testkit::{TestApp, both_backends, key_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn raw_check(t: &TestApp, body: Value) -> (StatusCode, Value) {
    t.call(Method::POST, "/v1/check", None, Some(body)).await
}

both_backends! {
    async fn malformed_check_bodies_are_400_minus_2(t) {
        let cases = [
            json!("{\"method\": \"GET\""),
            json!(""),
            json!({"method": "GET"}),
            json!({"method": "GET", "path": "no-slash", "headers": {}}),
            json!({"method": "", "path": "/v1/api/talk/friends"}),
            json!({"method": "GET", "path": "/x", "headers": {"authorization": 5}}),
            json!({"method": "GET", "path": "/x", "consume": "yes"}),
            json!([1, 2]),
        ];
        for body in cases {
            let (status, err) = raw_check(&t, body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {err}");
            assert_eq!(err["code"], -2, "{body} -> {err}");
            assert!(err["msg"].as_str().is_some_and(|m| !m.is_empty()), "{body} -> {err}");
        }
    }
}

both_backends! {
    async fn an_oversized_body_is_refused_with_minus_2(t) {
        let huge = format!("{{\"method\":\"GET\",\"path\":\"/{}\"}}", "a".repeat(permgate_server::MAX_JSON_BODY + 10));
        let (status, err) = raw_check(&t, Value::String(huge)).await;
        assert_eq!((status, err["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{err}");
    }
}

both_backends! {
    async fn denials_are_answered_200_with_the_kakao_code_inside(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let rest = key_of(&app, "rest_api");
        let cases = [
            (None, "/v2/local/search/keyword.json", -401, 401),
            (Some("KakaoAK nope".to_owned()), "/v2/local/search/keyword.json", -401, 401),
            (Some(format!("KakaoAK {rest}")), "/v1/api/talk/profile", -401, 401),
            (Some("Bearer not.a.jwt".to_owned()), "/v1/api/talk/profile", -401, 401),
            (Some(format!("KakaoAK {rest}")), "/v9/unknown", -404, 404),
            (Some(format!("KakaoAK {rest}")), "/v2/local/search/keyword.json", 0, 200),
        ];
        for (auth, path, code, status) in cases {
            let mut headers = serde_json::Map::new();
            if let Some(a) = &auth {
                headers.insert("authorization".into(), a.clone().into());
            }
            let (http, d) =
                raw_check(&t, json!({"method": "GET", "path": path, "headers": headers, "consume": false})).await;
            assert_eq!(http, StatusCode::OK);
            assert_eq!((d["code"].as_i64(), d["status"].as_i64()), (Some(code), Some(status)), "{auth:?} {path}: {d}");
            assert!(d["reasons"].is_array());
        }
    }
}

both_backends! {
    async fn a_user_token_signed_with_another_secret_or_expired_is_minus_401(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let forged = permgate_core::credential::mint_user_token(
            b"another-secret",
            permgate_core::model::AppId(id),
            "u1",
            &[],
            permgate_core::time::Timestamp(t.clock_now().0 + 600),
        )
        .unwrap_or_default();
        let d = t.check("GET", "/v1/api/talk/profile", &format!("Bearer {forged}")).await;
        assert_eq!(d["code"], -401, "{d}");
        t.consent(id, &dev, &["profile_nickname"]).await;
        let token = t.user_token(id, "u1", "profile_nickname");
        assert_eq!(t.check("GET", "/v1/api/talk/profile", &format!("Bearer {token}")).await["allow"], true);
        t.clock.advance(3600 + 61);
        let d = t.check("GET", "/v1/api/talk/profile", &format!("Bearer {token}")).await;
        assert_eq!(d["code"], -401, "{d}");
        assert!(d["msg"].as_str().is_some_and(|m| m.contains("expired")), "{d}");
    }
}
