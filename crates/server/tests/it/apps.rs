use permgate_testkit::{both_backends, key_of};
use reqwest::StatusCode;
use serde_json::json;

both_backends! {
    async fn a_developer_creates_an_app_and_becomes_its_owner_with_one_key_of_each_kind(t) {
        let (dev_id, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        assert_eq!(app["classification"], "basic");
        assert_eq!(app["status"], "active");
        assert_eq!(app["members"], json!([{"account_id": dev_id, "role": "owner"}]));
        for kind in ["rest_api", "javascript", "native_app", "admin"] {
            assert_eq!(app["keys"][kind].as_array().map(Vec::len), Some(1), "{kind}");
            assert_eq!(key_of(&app, kind).len(), 32, "{kind} key shown at creation");
        }
        // The admin key is a secret: shown once, afterwards only its hint.
        let id = app["id"].as_i64().unwrap_or_default();
        let (status, again) = t.get(&format!("/v1/apps/{id}"), &dev).await;
        assert_eq!(status, StatusCode::OK);
        assert!(again["keys"]["admin"][0].get("key").is_none(), "{again}");
        assert_eq!(again["keys"]["admin"][0]["hint"], app["keys"]["admin"][0]["hint"]);
        assert_eq!(key_of(&again, "rest_api"), key_of(&app, "rest_api"));
    }
}

both_backends! {
    async fn reviewers_see_every_app_and_developers_only_their_own(t) {
        let (_, a) = t.account("a", "developer").await;
        let (_, b) = t.account("b", "developer").await;
        let (_, rev) = t.account("rev", "reviewer").await;
        let app_a = t.app(&a, "A").await;
        t.app(&b, "B").await;
        let count = |v: &serde_json::Value| v["apps"].as_array().map(Vec::len);
        assert_eq!(count(&t.get("/v1/apps", &a).await.1), Some(1));
        assert_eq!(count(&t.get("/v1/apps", &rev).await.1), Some(2));
        let id = app_a["id"].as_i64().unwrap_or_default();
        let (status, body) = t.get(&format!("/v1/apps/{id}"), &b).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::FORBIDDEN, Some(-5)), "{body}");
        let (status, _) = t.get(&format!("/v1/apps/{id}"), &rev).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = t.post("/v1/apps", &rev, json!({"name": "R", "company_name": "C", "category": "x"})).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::FORBIDDEN, Some(-5)));
    }
}

both_backends! {
    async fn unknown_and_malformed_app_ids(t) {
        let (status, body) = t.get("/v1/apps/999", &t.admin).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::NOT_FOUND, Some(-404)), "{body}");
        let (status, body) = t.get("/v1/apps/abc", &t.admin).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{body}");
    }
}

both_backends! {
    async fn app_fields_are_validated(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let (status, body) = t.post("/v1/apps", &dev, json!({"name": " ", "company_name": "C", "category": "x"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["msg"].as_str().is_some_and(|m| m.contains("name")), "{body}");
        let (status, _) = t.post("/v1/apps", &dev, json!({"name": "A", "category": "x"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

both_backends! {
    async fn the_owner_manages_members_and_roles_limit_what_members_do(t) {
        let (_, owner) = t.account("owner", "developer").await;
        let (editor_id, editor) = t.account("editor", "developer").await;
        let (reader_id, reader) = t.account("reader", "developer").await;
        let app = t.app(&owner, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let members = format!("/v1/apps/{id}/members");
        let (status, _) = t.post(&members, &owner, json!({"account_id": editor_id, "role": "editor"})).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = t.post(&members, &owner, json!({"account_id": reader_id, "role": "reader"})).await;
        assert_eq!(status, StatusCode::CREATED);
        // Only the owner manages members.
        let (status, _) = t.post(&members, &editor, json!({"account_id": reader_id, "role": "editor"})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = t.post(&members, &owner, json!({"account_id": reader_id, "role": "owner"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, _) = t.post(&members, &owner, json!({"account_id": 9999, "role": "reader"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Readers read; editors change settings; neither touches keys.
        let (status, _) = t.get(&format!("/v1/apps/{id}"), &reader).await;
        assert_eq!(status, StatusCode::OK);
        let product = format!("/v1/apps/{id}/products/kakao_login");
        let (status, _) = t.put(&product, &reader, json!({"activated": true})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = t.put(&product, &editor, json!({"activated": true})).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"product": "kakao_login", "activated": true})));
        let (status, _) = t.post(&format!("/v1/apps/{id}/keys"), &editor, json!({"kind": "rest_api"})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // A role change answers 200; removal takes the member out.
        let (status, _) = t.post(&members, &owner, json!({"account_id": reader_id, "role": "editor"})).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = t.delete(&format!("{members}/{reader_id}"), &owner, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = t.get(&format!("/v1/apps/{id}"), &reader).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}

both_backends! {
    async fn activating_kakao_login_turns_minus_3_into_allowed(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let user = format!("Bearer {}", t.user_token(id, "u1", "profile_nickname"));
        let d = t.check("GET", "/v2/user/me", &user).await;
        assert_eq!(
            (d["allow"].as_bool(), d["code"].as_i64(), d["status"].as_i64()),
            (Some(false), Some(-3), Some(403)),
            "{d}"
        );
        assert!(d["msg"].as_str().is_some_and(|m| m.contains("kakao_login")), "{d}");
        let (status, _) = t.put(&format!("/v1/apps/{id}/products/kakao_login"), &dev, json!({"activated": true})).await;
        assert_eq!(status, StatusCode::OK);
        let d = t.check("GET", "/v2/user/me", &user).await;
        assert_eq!(d["allow"], true, "{d}");
        let (status, body) = t.put(&format!("/v1/apps/{id}/products/kakao_lgin"), &dev, json!({"activated": true})).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::NOT_FOUND, Some(-404)));
        let (status, _) = t.put(&format!("/v1/apps/{id}/products/local"), &dev, json!({"activated": "yes"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

both_backends! {
    async fn kakao_map_on_a_further_app_of_the_same_owner_needs_its_permission(t) {
        let (_, owner) = t.account("owner", "developer").await;
        let (_, other) = t.account("other", "developer").await;
        let first = t.app(&owner, "First").await["id"].as_i64().unwrap_or_default();
        let second = t.app(&owner, "Second").await["id"].as_i64().unwrap_or_default();
        let elsewhere = t.app(&other, "Elsewhere").await["id"].as_i64().unwrap_or_default();
        let on = json!({"activated": true});
        assert_eq!(t.put(&format!("/v1/apps/{first}/products/kakao_map"), &owner, on.clone()).await.0, StatusCode::OK);
        let (status, body) = t.put(&format!("/v1/apps/{second}/products/kakao_map"), &owner, on.clone()).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::FORBIDDEN, Some(-5)), "{body}");
        assert!(body["msg"].as_str().is_some_and(|m| m.contains("kakao_map_activation")), "{body}");
        assert_eq!(t.put(&format!("/v1/apps/{elsewhere}/products/kakao_map"), &other, on.clone()).await.0, StatusCode::OK, "another developer's first app");
        assert_eq!(t.put(&format!("/v1/apps/{second}/products/local"), &owner, on.clone()).await.0, StatusCode::OK, "other products need nothing");
        t.post(&format!("/v1/apps/{second}/permissions"), &t.admin, json!({"permission": "kakao_map_activation", "reason": "unrelated service"})).await;
        assert_eq!(t.put(&format!("/v1/apps/{second}/products/kakao_map"), &owner, on).await.0, StatusCode::OK);
        assert_eq!(t.put(&format!("/v1/apps/{second}/products/kakao_map"), &owner, json!({"activated": false})).await.0, StatusCode::OK, "switching off needs nothing");
    }
}
