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

/// The API server answers `POST /v1/check` before its router (the route gateways call per
/// request skips routing and middleware); the router's own route must give the same answers.
async fn through_the_router(t: &TestApp, body: String) -> (StatusCode, Option<String>, Value) {
    use tower_service::Service;
    let mut router = permgate_server::router(permgate_server::AppState::new(t.services.clone()));
    let request = axum::http::Request::post("/v1/check").body(axum::body::Body::from(body));
    let request = request.unwrap_or_else(|e| unreachable!("{e}"));
    let response = router.call(request).await.unwrap_or_else(|e| match e {});
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::IM_A_TEAPOT);
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
    (status, kind, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

both_backends! {
    async fn the_direct_answer_and_the_routers_agree(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let rest = key_of(&app, "rest_api");
        let call = |path: &str, auth: &str| {
            json!({"method": "GET", "path": path, "headers": {"Authorization": auth}, "consume": false}).to_string()
        };
        let bodies = [
            call("/v2/local/search/keyword.json", &format!("KakaoAK {rest}")),
            call("/v1/api/talk/profile", &format!("KakaoAK {rest}")),
            call("/v1/api/talkchannel/channels", &format!("KakaoAK {rest}")),
            call("/v2/local/search/keyword.json", "KakaoAK nope"),
            r#"{"method":"GET","path":"\/v2\/local\/search\/keyword.json","headers":{"ka":"sdk\u0020"}}"#.to_owned(),
            "{\"method\": \"GET\"".to_owned(),
            String::new(),
            r#"{"method":"GET","path":"/x","headers":{"authorization":5}}"#.to_owned(),
            r#"{"method":"","path":"/x"}"#.to_owned(),
            r#"{"method":"GET","path":"x"}"#.to_owned(),
            r#"{"method":"GET","path":"/x","extra":1}"#.to_owned(),
            format!("{{\"method\":\"GET\",\"path\":\"/{}\"}}", "a".repeat(permgate_server::MAX_JSON_BODY)),
        ];
        for body in bodies {
            let direct = t.client.post(format!("{}/v1/check", t.base)).body(body.clone()).send().await;
            let direct = direct.unwrap_or_else(|e| unreachable!("{e}"));
            let (status, kind) = (direct.status(), direct.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned));
            let mut direct = (status, kind, direct.json::<Value>().await.unwrap_or(Value::Null));
            let mut routed = through_the_router(&t, body.clone()).await;
            // Each error answer has a trace id of its own.
            for answer in [&mut direct, &mut routed] {
                if let Some(o) = answer.2.as_object_mut() {
                    o.remove("trace_id");
                }
            }
            let shown = body.get(..120).unwrap_or(&body);
            let short = |answer: &(StatusCode, Option<String>, Value)| format!("{answer:?}").chars().take(300).collect::<String>();
            assert!(direct.2.is_object(), "{shown}: {}", short(&direct));
            assert!(direct == routed, "{shown}: direct {} but routed {}", short(&direct), short(&routed));
        }
    }
}

both_backends! {
    async fn with_a_decision_secret_only_gateways_holding_it_get_answers(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let rest = format!("KakaoAK {}", key_of(&app, "rest_api"));
        let mut state = permgate_server::AppState::new(t.services.clone());
        state.decision_secret = Some("s3cret-for-gateways".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| unreachable!("{e}"));
        let base = format!("http://{}", listener.local_addr().unwrap_or_else(|e| unreachable!("{e}")));
        let router = permgate_server::router(state.clone());
        tokio::spawn(permgate_server::serve(listener, state, std::future::pending()));

        let body = json!({"method": "GET", "path": "/v2/local/search/keyword.json", "headers": {"authorization": rest}, "consume": false});
        for secret in [None, Some("wrong"), Some("s3cret-for-gateways")] {
            let mut check = t.client.post(format!("{base}/v1/check")).json(&body);
            let mut authz = t.client.get(format!("{base}/v1/authz"))
                .header("x-original-method", "GET").header("x-original-uri", "/v2/local/search/keyword.json")
                .header("authorization", &rest);
            let mut routed = axum::http::Request::post("/v1/check");
            if let Some(s) = secret {
                check = check.header("x-permgate-secret", s);
                authz = authz.header("x-permgate-secret", s);
                routed = routed.header("x-permgate-secret", s);
            }
            let check = check.send().await.unwrap_or_else(|e| unreachable!("{e}"));
            let authz = authz.send().await.unwrap_or_else(|e| unreachable!("{e}"));
            let routed = routed.body(axum::body::Body::from(body.to_string())).unwrap_or_else(|e| unreachable!("{e}"));
            let routed = tower_service::Service::call(&mut router.clone(), routed).await.unwrap_or_else(|e| match e {});
            let statuses = (check.status().as_u16(), authz.status().as_u16(), routed.status().as_u16());
            let answer: Value = check.json().await.unwrap_or_default();
            if secret == Some("s3cret-for-gateways") {
                assert_eq!(statuses, (200, 200, 200), "{answer}");
                assert_eq!(answer["allow"], true, "{answer}");
            } else {
                assert_eq!(statuses, (401, 401, 401), "{secret:?}: {answer}");
                assert_eq!(answer["code"], -401, "{answer}");
                assert!(answer["msg"].as_str().is_some_and(|m| m.contains("X-Permgate-Secret")), "{answer}");
            }
        }
    }
}
