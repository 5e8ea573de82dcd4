use permgate_testkit::both_backends;
use reqwest::{Method, StatusCode};
use serde_json::json;

both_backends! {
    async fn an_admin_creates_accounts_whose_tokens_sign_in(t) {
        let (status, body) = t.post("/v1/accounts", &t.admin, json!({"name": "dana", "role": "developer"})).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["role"], "developer");
        let token = body["token"].as_str().unwrap_or_default();
        assert!(token.starts_with("pgt_"), "{body}");
        let (status, me) = t.get("/v1/accounts/me", token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["name"], "dana");
        assert!(me.get("token").is_none(), "the token is shown only at creation");
    }
}

both_backends! {
    async fn only_admins_create_or_list_accounts(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let (_, reviewer) = t.account("rev", "reviewer").await;
        for token in [&dev, &reviewer] {
            let (status, body) = t.post("/v1/accounts", token, json!({"name": "x", "role": "admin"})).await;
            assert_eq!((status, body["code"].as_i64()), (StatusCode::FORBIDDEN, Some(-5)), "{body}");
            let (status, _) = t.get("/v1/accounts", token).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
        let (status, list) = t.get("/v1/accounts", &t.admin).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["accounts"].as_array().map(Vec::len), Some(3));
    }
}

both_backends! {
    async fn missing_wrong_and_malformed_tokens_are_401(t) {
        let (status, body) = t.call(Method::GET, "/v1/apps", None, None).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::UNAUTHORIZED, Some(-401)), "{body}");
        let (status, body) = t.get("/v1/apps", "pgt_000000000000").await;
        assert_eq!((status, body["msg"].as_str()), (StatusCode::UNAUTHORIZED, Some("the account token is not valid")));
        let resp = t.client.get(format!("{}/v1/apps", t.base)).header("authorization", "KakaoAK abc").send().await;
        let status = resp.map(|r| r.status()).ok();
        assert_eq!(status, Some(StatusCode::UNAUTHORIZED));
    }
}

both_backends! {
    async fn bad_account_input_is_400_naming_the_problem(t) {
        let cases = [
            (json!({"name": "x", "role": "superuser"}), "superuser"),
            (json!({"name": "x"}), "role"),
            (json!({"name": "", "role": "developer"}), "`name` must not be empty"),
            (json!({"name": "x", "role": "developer", "extra": 1}), "extra"),
            (json!("{not json"), "not valid JSON"),
            (json!(""), "empty"),
        ];
        for (body, needle) in cases {
            let (status, err) = t.post("/v1/accounts", &t.admin, body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {err}");
            assert_eq!(err["code"], -2);
            assert!(err["msg"].as_str().is_some_and(|m| m.contains(needle)), "{body} -> {err}");
        }
    }
}

both_backends! {
    async fn account_names_are_unique(t) {
        t.account("dana", "developer").await;
        let (status, body) = t.post("/v1/accounts", &t.admin, json!({"name": "dana", "role": "reviewer"})).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{body}");
    }
}

both_backends! {
    async fn unknown_endpoints_and_methods_answer_json_errors(t) {
        let (status, body) = t.get("/v1/nothing", &t.admin).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::NOT_FOUND, Some(-404)), "{body}");
        let (status, body) = t.call(Method::PATCH, "/v1/apps", Some(&t.admin), None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body["msg"].is_string(), "{body}");
    }
}

both_backends! {
    async fn health_and_readiness_answer(t) {
        let (status, body) = t.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["store"] == "sqlite" || body["store"] == "postgres", "{body}");
        assert_eq!(body["catalog_version"], "kakao-2026.11");
        let (status, body) = t.call(Method::GET, "/readyz", None, None).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    }
}

both_backends! {
    async fn the_catalog_is_served_to_anyone_signed_in(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let (status, catalog) = t.get("/v1/catalog", &dev).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(catalog["version"], "kakao-2026.11");
        let moment = catalog["permissions"].as_array().into_iter().flatten().find(|p| p["id"] == "kakao_moment");
        assert_eq!(
            moment.map(|p| (p["obtained_by"].clone(), p["retired"].clone())),
            Some((json!("additional_feature"), json!(false)))
        );
        let friends = catalog["apis"].as_array().into_iter().flatten().find(|a| a["id"] == "talk_friends");
        assert_eq!(friends.map(|a| a["without_permission"].clone()), Some(json!("members_only")));
        assert_eq!(friends.map(|a| a["path"].clone()), Some(json!("/v1/api/talk/friends")));
        assert!(
            catalog["review_reasons"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["applies_to"] == json!(["hold", "reject"])))
        );
        let (status, _) = t.call(Method::GET, "/v1/catalog", None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn repeated_wrong_tokens_from_one_address_are_throttled_and_say_nothing_about_the_token() {
    let t = permgate_testkit::TestApp::spawn().await;
    let (_, dev) = t.account("dev", "developer").await;
    let strip = |mut v: serde_json::Value| {
        v.as_object_mut().map(|o| o.remove("trace_id"));
        v
    };
    let (s1, unknown) = t.get("/v1/apps", "pgt_0000000000000000000000000000000000000000000000ff").await;
    let (s2, malformed) = t.get("/v1/apps", "not even a token").await;
    assert_eq!((s1, s2), (reqwest::StatusCode::UNAUTHORIZED, reqwest::StatusCode::UNAUTHORIZED));
    assert_eq!(strip(unknown), strip(malformed), "an unknown and a malformed token fail alike");
    // Asking without a token is not a guess.
    for _ in 0..30 {
        t.call(reqwest::Method::GET, "/v1/apps", None, None).await;
    }
    assert_eq!(t.get("/v1/apps", &dev).await.0, reqwest::StatusCode::OK);
    for i in 2..permgate_server::SIGN_IN_LIMIT {
        let (status, _) = t.get("/v1/apps", &format!("pgt_guess_{i:044}")).await;
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    }
    // The limit reached: this address is refused, even with a good token, and told when to retry.
    let response = t
        .client
        .get(format!("{}/v1/apps", t.base))
        .bearer_auth(&dev)
        .send()
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(response.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{retry:?}");
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    assert!(
        body["msg"].as_str().is_some_and(|m| m.starts_with("too many failed sign-ins from this address")),
        "{body}"
    );
    // The console's sign-in is throttled alike.
    let (status, _) = t.post("/v1/session", "", serde_json::json!({"token": dev})).await;
    assert_eq!(status, reqwest::StatusCode::TOO_MANY_REQUESTS);
    // The decision API is not: a gateway speaks for many clients.
    assert_eq!(t.check("GET", "/v2/local/search/keyword.json", "KakaoAK nope").await["code"], -401);
}
