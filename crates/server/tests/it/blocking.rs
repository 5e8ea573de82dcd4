use permgate_testkit::{both_backends, key_of};
use reqwest::StatusCode;
use serde_json::json;

const LOCAL: &str = "/v2/local/search/keyword.json?query=coffee";

both_backends! {
    async fn a_blocked_app_answers_minus_12_but_its_members_still_manage_it(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let key = format!("KakaoAK {}", key_of(&app, "rest_api"));
        let (status, _) = t.post(&format!("/v1/apps/{id}/block"), &dev, json!({"reason": "spam"})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "only admins block");
        let (status, body) = t.post(&format!("/v1/apps/{id}/block"), &t.admin, json!({"reason": "spam reports"})).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("blocked")), "{body}");
        let d = t.check("GET", LOCAL, &key).await;
        assert_eq!((d["code"].as_i64(), d["status"].as_i64()), (Some(-12), Some(403)), "{d}");
        assert_eq!(t.get(&format!("/v1/apps/{id}"), &dev).await.0, StatusCode::OK, "members still read it");
        let (status, _) = t.put(&format!("/v1/apps/{id}/products/kakao_login"), &dev, json!({"activated": true})).await;
        assert_eq!(status, StatusCode::OK, "and manage it");
        let (status, body) = t.post(&format!("/v1/apps/{id}/block"), &t.admin, json!({"reason": "again"})).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)));
        let (status, _) = t.post(&format!("/v1/apps/{id}/unblock"), &t.admin, json!({"reason": ""})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "a reason is required");
        let (status, _) = t.post(&format!("/v1/apps/{id}/unblock"), &t.admin, json!({"reason": "appeal granted"})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(t.check("GET", LOCAL, &key).await["allow"], true);
        let (status, _) = t.post(&format!("/v1/apps/{id}/unblock"), &t.admin, json!({"reason": "again"})).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
}

both_backends! {
    async fn blocking_an_owner_blocks_every_app_it_owns_and_unblocking_restores_them(t) {
        let (owner_id, owner) = t.account("owner", "developer").await;
        let (_, other) = t.account("other", "developer").await;
        let a = t.app(&owner, "A").await;
        let b = t.app(&owner, "B").await;
        let c = t.app(&other, "C").await;
        let (a_id, b_id) = (a["id"].as_i64().unwrap_or_default(), b["id"].as_i64().unwrap_or_default());
        // B was blocked on its own before: unblocking the owner must leave it blocked.
        t.post(&format!("/v1/apps/{b_id}/block"), &t.admin, json!({"reason": "own violation"})).await;
        let keys: Vec<String> = [&a, &b, &c].iter().map(|app| format!("KakaoAK {}", key_of(app, "rest_api"))).collect();

        let (status, body) = t.post(&format!("/v1/accounts/{owner_id}/block"), &t.admin, json!({"reason": "fraud"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["owned_apps"], json!([a_id, b_id]));
        let codes: Vec<i64> = codes_of(&t, &keys).await;
        assert_eq!(codes, vec![-12, -12, 0], "the owner's apps are blocked, others are not");
        assert_eq!(t.get("/v1/apps", &owner).await.0, StatusCode::FORBIDDEN, "a blocked account cannot sign in");

        let (status, _) = t.post(&format!("/v1/accounts/{owner_id}/unblock"), &t.admin, json!({"reason": "cleared"})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(codes_of(&t, &keys).await, vec![0, -12, 0], "exactly what was there before");
        let (status, _) = t.post(&format!("/v1/accounts/{owner_id}/unblock"), &t.admin, json!({"reason": "again"})).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) = t.post("/v1/accounts/9999/block", &t.admin, json!({"reason": "x"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

async fn codes_of(t: &permgate_testkit::TestApp, keys: &[String]) -> Vec<i64> {
    let mut out = Vec::new();
    for k in keys {
        out.push(t.check("GET", LOCAL, k).await["code"].as_i64().unwrap_or(99));
    }
    out
}
