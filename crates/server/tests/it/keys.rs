use permgate_testkit::{both_backends, key_of};
use reqwest::StatusCode;
use serde_json::json;

const LOCAL: &str = "/v2/local/search/keyword.json?query=coffee";

both_backends! {
    async fn up_to_five_keys_of_a_kind_and_each_one_works(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        for n in 2..=5 {
            let (status, key) = t.post(&format!("/v1/apps/{id}/keys"), &dev, json!({"kind": "rest_api"})).await;
            assert_eq!(status, StatusCode::CREATED, "key {n}: {key}");
            let value = key["key"].as_str().unwrap_or_default();
            assert_eq!(t.check("GET", LOCAL, &format!("KakaoAK {value}")).await["allow"], true);
        }
        let (status, body) = t.post(&format!("/v1/apps/{id}/keys"), &dev, json!({"kind": "rest_api"})).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{body}");
        let (status, _) = t.post(&format!("/v1/apps/{id}/keys"), &dev, json!({"kind": "user_token"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

both_backends! {
    async fn a_rotated_key_stops_working_and_its_replacement_works_at_once(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let old = key_of(&app, "rest_api");
        let key_id = app["keys"]["rest_api"][0]["id"].as_i64().unwrap_or_default();
        let (status, rotated) = t.post(&format!("/v1/apps/{id}/keys/{key_id}/rotate"), &dev, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        let new = rotated["key"].as_str().unwrap_or_default();
        assert_ne!(new, old);
        assert_eq!(t.check("GET", LOCAL, &format!("KakaoAK {old}")).await["code"], -401);
        assert_eq!(t.check("GET", LOCAL, &format!("KakaoAK {new}")).await["allow"], true);
    }
}

both_backends! {
    async fn a_deleted_key_stops_working_and_only_the_owner_deletes(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let (_, other) = t.account("other", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let key = key_of(&app, "rest_api");
        let key_id = app["keys"]["rest_api"][0]["id"].as_i64().unwrap_or_default();
        let (status, _) = t.delete(&format!("/v1/apps/{id}/keys/{key_id}"), &other, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = t.delete(&format!("/v1/apps/{id}/keys/{key_id}"), &dev, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(t.check("GET", LOCAL, &format!("KakaoAK {key}")).await["code"], -401);
        let (status, _) = t.delete(&format!("/v1/apps/{id}/keys/{key_id}"), &dev, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

both_backends! {
    async fn javascript_origins_are_enforced_once_registered(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let js = key_of(&app, "javascript");
        let js_id = app["keys"]["javascript"][0]["id"].as_i64().unwrap_or_default();
        let check = |origin: &'static str| {
            let body = json!({"method": "POST", "path": "/v1/app/validate/sdk",
                "headers": {"Authorization": format!("KakaoAK {js}"), "Origin": origin}});
            let t = &t;
            async move { t.call(reqwest::Method::POST, "/v1/check", None, Some(body)).await.1 }
        };
        assert_eq!(check("https://shop.example").await["code"], -401, "no origin registered yet");
        let path = format!("/v1/apps/{id}/keys/{js_id}/platforms");
        let (status, key) = t.put(&path, &dev, json!({"origins": ["https://shop.example/"]})).await;
        assert_eq!(status, StatusCode::OK, "{key}");
        assert_eq!(key["platforms"]["origins"], json!(["https://shop.example"]));
        assert_eq!(check("https://shop.example").await["allow"], true);
        let denied = check("https://evil.example").await;
        assert_eq!(denied["msg"], "domain mismatched! caller=https://evil.example");
        let (status, body) = t.put(&path, &dev, json!({"android_packages": ["com.example.app"]})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = t.put(&path, &dev, json!({"origins": ["shop.example"]})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}

both_backends! {
    async fn an_admin_key_narrowed_to_some_categories_is_minus_3_elsewhere(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        t.put(&format!("/v1/apps/{id}/products/kakao_login"), &dev, json!({"activated": true})).await;
        let admin = format!("KakaoAK {}", key_of(&app, "admin"));
        let admin_id = app["keys"]["admin"][0]["id"].as_i64().unwrap_or_default();
        assert_eq!(t.check("GET", "/v1/user/ids", &admin).await["allow"], true);
        let path = format!("/v1/apps/{id}/keys/{admin_id}/platforms");
        let (status, _) = t.put(&path, &dev, json!({"api_categories": ["user_management"]})).await;
        assert_eq!(status, StatusCode::OK);
        let d = t.check("GET", "/v1/user/ids", &admin).await;
        assert_eq!((d["code"].as_i64(), d["status"].as_i64()), (Some(-3), Some(403)), "{d}");
        assert_eq!(t.check("POST", "/v1/user/logout", &admin).await["allow"], true);
        t.put(&path, &dev, json!({"api_categories": ["*"]})).await;
        assert_eq!(t.check("GET", "/v1/user/ids", &admin).await["allow"], true);
    }
}

both_backends! {
    async fn a_second_package_on_one_native_key_needs_multi_app_bound_to_it(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let native = app["keys"]["native_app"][0]["id"].as_i64().unwrap_or_default();
        let path = format!("/v1/apps/{id}/keys/{native}/platforms");
        let (status, _) = t.put(&path, &dev, json!({"android_packages": ["com.example.a"], "ios_bundle_ids": ["com.example.ios"]})).await;
        assert_eq!(status, StatusCode::OK, "one of each is fine");
        let two = json!({"android_packages": ["com.example.a", "com.example.b"]});
        let (status, body) = t.put(&path, &dev, two.clone()).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::FORBIDDEN, Some(-5)), "{body}");
        assert!(body["msg"].as_str().is_some_and(|m| m.contains("multi_app")), "{body}");
        // Multi-app is retired: no new grants; an existing grant bound to this key still works.
        let (status, _) = t.post(&format!("/v1/apps/{id}/permissions"), &t.admin, json!({"permission": "multi_app", "reason": "r", "key_id": native})).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let legacy = permgate_core::ports::NewGrant {
            app_id: permgate_core::model::AppId(id),
            permission: "multi_app".into(),
            key_id: Some(permgate_core::model::KeyId(native)),
            source: permgate_core::model::GrantSource::Operator,
            granted_by: None,
            expires_at: None,
            params: json!({}),
            reason: "granted before Multi-app was retired".into(),
        };
        let now = t.clock_now();
        t.store(move |s| {
            let audit = permgate_core::audit::NewAuditEvent::new(now, None, "grant.create", "legacy".into()).app(legacy.app_id);
            s.store.insert_grant(&legacy, now, &audit)?;
            s.apply_changes(0)
        })
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
        let (status, body) = t.put(&path, &dev, two).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["platforms"]["android_packages"], json!(["com.example.a", "com.example.b"]));
    }
}

// Adding, rotating and setting a key's platforms answer the key as written, without reading it
// back after the commit: the answers must match what the app shows afterwards.
both_backends! {
    async fn a_key_written_is_answered_as_the_app_then_shows_it(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let shown = |kind: &'static str, key_id: i64| {
            let t = &t;
            let dev = dev.clone();
            async move {
                let (_, app) = t.get(&format!("/v1/apps/{id}"), &dev).await;
                let keys = app["keys"][kind].as_array().cloned().unwrap_or_default();
                keys.into_iter().find(|k| k["id"] == key_id).unwrap_or_default()
            }
        };
        let (status, added) = t.post(&format!("/v1/apps/{id}/keys"), &dev, json!({"kind": "admin"})).await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
        let admin_id = added["id"].as_i64().unwrap_or_default();
        let mut stored = shown("admin", admin_id).await;
        assert!(stored.get("key").is_none(), "an admin key is shown once: {stored}");
        stored["key"] = added["key"].clone();
        assert_eq!(added, stored);

        let (status, rotated) = t.post(&format!("/v1/apps/{id}/keys/{admin_id}/rotate"), &dev, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        assert_ne!(rotated["key"], added["key"]);
        let mut stored = shown("admin", admin_id).await;
        stored["key"] = rotated["key"].clone();
        assert_eq!(rotated, stored);
        assert_eq!(rotated["created_at"], added["created_at"], "rotating keeps the key's id and age");

        let js_id = app["keys"]["javascript"][0]["id"].as_i64().unwrap_or_default();
        let path = format!("/v1/apps/{id}/keys/{js_id}/platforms");
        let (status, set) = t.put(&path, &dev, json!({"origins": ["https://shop.example/"]})).await;
        assert_eq!(status, StatusCode::OK, "{set}");
        assert_eq!(set, shown("javascript", js_id).await);
    }
}
