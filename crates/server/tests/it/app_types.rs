//! App types over HTTP: Biz apps (business information, the individual-developer path, removal
//! by an operator), test apps, consent-item settings, and connecting Kakao Talk Channels.

use permgate_testkit::{TestApp, both_backends, key_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MOMENT: &str = "/openapi/v4/adAccounts/pages";

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_default()
}

fn expect(got: (StatusCode, Value), status: StatusCode, code: i64, needle: &str) {
    assert_eq!((got.0, got.1["code"].as_i64()), (status, Some(code)), "{}", got.1);
    let msg = got.1["msg"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains(needle), "`{msg}` should mention `{needle}`");
}

async fn biz(t: &TestApp, app: i64, token: &str, number: &str) -> (StatusCode, Value) {
    t.put(
        &format!("/v1/apps/{app}/business"),
        token,
        json!({"business_registration_number": number, "company_name": "Example Co"}),
    )
    .await
}

both_backends! {
    async fn the_individual_path_names_each_missing_condition_and_removal_stops_what_biz_unlocked(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = id_of(&t.app(&dev, "Shop").await);
        let url = format!("/v1/apps/{app}/business");
        let individual = |verified: bool, agreed: bool, icon: &str| json!({"individual": {"identity_verified": verified, "terms_agreed": agreed, "icon_url": icon}});
        expect(t.put(&url, &dev, individual(false, true, "https://x.example/icon.png")).await, StatusCode::BAD_REQUEST, -2, "identity");
        expect(t.put(&url, &dev, individual(true, false, "https://x.example/icon.png")).await, StatusCode::BAD_REQUEST, -2, "terms");
        expect(t.put(&url, &dev, individual(true, true, "")).await, StatusCode::BAD_REQUEST, -2, "icon_url");
        expect(t.put(&url, &dev, json!({})).await, StatusCode::BAD_REQUEST, -2, "individual");
        expect(biz(&t, app, &dev, "123-45-6789").await, StatusCode::BAD_REQUEST, -2, "10 digits");
        expect(biz(&t, app, &dev, "120-81-47522").await, StatusCode::BAD_REQUEST, -2, "check digit");
        let (status, view) = t.put(&url, &dev, individual(true, true, "https://x.example/icon.png")).await;
        assert_eq!((status, view["classification"].as_str(), view["business"]["kind"].as_str()), (StatusCode::OK, Some("biz"), Some("individual")), "{view}");

        // What Biz unlocked: a personal-information consent item and a Moment grant.
        let (_, _) = t.post(&format!("/v1/apps/{app}/permissions"), &t.admin, json!({"permission": "kakao_moment", "reason": "agency"})).await;
        t.consent(app, &dev, &["gender"]).await;
        let user = format!("Bearer {}", t.user_token(app, "u1", ""));
        assert_eq!(t.check("GET", MOMENT, &user).await["allow"], true);

        expect(t.delete(&url, &dev, Some(json!({"reason": "x"}))).await, StatusCode::FORBIDDEN, -5, "admin");
        let (status, removed) = t.delete(&url, &t.admin, Some(json!({"reason": "identity check failed"}))).await;
        assert_eq!(status, StatusCode::OK, "{removed}");
        let mut revoked: Vec<&str> = removed["revoked"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        revoked.sort_unstable();
        assert_eq!(revoked, ["biz_app", "kakao_moment"]);
        assert_eq!(removed["app"]["classification"], "basic");
        assert_eq!(removed["app"]["consent_items"], json!([]), "gender needs Biz and is unset");
        assert_eq!(t.check("GET", MOMENT, &user).await["code"], -5);
        expect(t.delete(&url, &t.admin, Some(json!({"reason": "again"}))).await, StatusCode::CONFLICT, -409, "not a Biz app");
        // Without Biz, the item cannot be set again.
        let body = json!({"consent_type": "optional", "purpose": "p"});
        expect(t.put(&format!("/v1/apps/{app}/consent-items/gender"), &dev, body).await, StatusCode::FORBIDDEN, -5, "Biz app");
    }
}

both_backends! {
    async fn consent_items_need_their_permission_or_biz_except_those_of_members_only_features(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = id_of(&t.app(&dev, "Shop").await);
        let set = |scope: &str| format!("/v1/apps/{app}/consent-items/{scope}");
        let body = || json!({"consent_type": "required", "purpose": "sign-up"});
        expect(t.put(&set("phone_number"), &dev, body()).await, StatusCode::FORBIDDEN, -5, "Biz app");
        biz(&t, app, &dev, "120-81-47521").await;
        expect(t.put(&set("phone_number"), &dev, body()).await, StatusCode::FORBIDDEN, -5, "personal_info_consent_items");
        expect(t.put(&set("nonexistent"), &dev, body()).await, StatusCode::NOT_FOUND, -404, "nonexistent");
        expect(t.put(&set("friends"), &dev, json!({"consent_type": "sometimes", "purpose": "x"})).await, StatusCode::BAD_REQUEST, -2, "consent_type");
        // Members-only features: settable before the permission, so members can build them.
        let (status, item) = t.put(&set("friends"), &dev, body()).await;
        assert_eq!((status, item["consent_type"].as_str()), (StatusCode::OK, Some("required")), "{item}");
        t.post(&format!("/v1/apps/{app}/permissions"), &t.admin, json!({"permission": "personal_info_consent_items", "reason": "reviewed"})).await;
        assert_eq!(t.put(&set("phone_number"), &dev, body()).await.0, StatusCode::OK);
        assert_eq!(t.delete(&set("friends"), &dev, None).await.0, StatusCode::NO_CONTENT);
        let user = format!("Bearer {}", t.user_token(app, "u1", "friends"));
        assert_eq!(t.check("GET", "/v1/api/talk/friends", &user).await["code"], -3);
    }
}

both_backends! {
    async fn a_request_whose_prerequisite_went_away_is_not_approved(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let (_, rev) = t.account("rev", "reviewer").await;
        let app = id_of(&t.app(&dev, "Ads").await);
        t.post(&format!("/v1/apps/{app}/eligibility"), &dev, json!({})).await;
        assert_eq!(biz(&t, app, &dev, "120-81-47521").await.0, StatusCode::OK);
        let form = [("permission", "kakao_moment"), ("service_url", "https://x.example.com"), ("reason", "an ad agency")];
        let (status, request) = t.apply(app, &dev, &form, Some(("c.pdf", b"%PDF-1.4".to_vec()))).await;
        assert_eq!(status, StatusCode::CREATED, "{request}");
        let id = id_of(&request);
        // Biz is removed while the request waits: Moment needs it.
        let (status, removed) = t.delete(&format!("/v1/apps/{app}/business"), &t.admin, Some(json!({"reason": "identity check failed"}))).await;
        assert_eq!(status, StatusCode::OK, "{removed}");
        t.act(id, &rev, json!({"action": "start_review"})).await;
        expect(t.act(id, &rev, json!({"action": "approve"})).await, StatusCode::CONFLICT, -409, "needs a Biz app");
        let user = format!("Bearer {}", t.user_token(app, "u1", ""));
        assert_eq!(t.check("GET", MOMENT, &user).await["code"], -5, "nothing was granted");
        let (_, r) = t.get(&format!("/v1/permission-requests/{id}"), &rev).await;
        assert_eq!(r["state"], "in_review", "still the reviewer's to hold or reject: {r}");
    }
}

both_backends! {
    async fn a_test_app_holds_what_its_original_holds_for_members_only(t) {
        let (reader_id, reader) = t.account("reader", "developer").await;
        let (_, dev) = t.account("dev", "developer").await;
        let original = t.app(&dev, "Ads").await;
        let app = id_of(&original);
        t.post(&format!("/v1/apps/{app}/members"), &dev, json!({"account_id": reader_id, "role": "reader"})).await;
        let grants = format!("/v1/apps/{app}/permissions");
        t.post(&grants, &t.admin, json!({"permission": "kakao_moment", "reason": "agency"})).await;

        expect(t.post(&format!("/v1/apps/{app}/test-apps"), &reader, json!({})).await, StatusCode::FORBIDDEN, -5, "owner");
        let (status, test) = t.post(&format!("/v1/apps/{app}/test-apps"), &dev, json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{test}");
        let test_id = id_of(&test);
        assert_eq!((test["classification"].as_str(), test["original_app_id"].as_i64()), (Some("test"), Some(app)));
        assert_ne!(key_of(&test, "rest_api"), key_of(&original, "rest_api"), "a test app has its own keys");
        assert_eq!(t.get(&format!("/v1/apps/{test_id}"), &reader).await.0, StatusCode::OK, "the original's members are the test app's");

        let user = format!("Bearer {}", t.user_token(test_id, "u1", ""));
        let d = t.check("GET", MOMENT, &user).await;
        assert_eq!((d["allow"].as_bool(), d["restriction"].as_str()), (Some(true), Some("members_only")), "{d}");
        let rest = format!("KakaoAK {}", key_of(&test, "rest_api"));
        let local = t.check("GET", "/v2/local/search/keyword.json?query=a", &rest).await;
        assert_eq!((local["allow"].as_bool(), local["restriction"].as_str()), (Some(true), Some("members_only")), "{local}");
        // The original's change is the test app's change.
        t.delete(&format!("{grants}/kakao_moment"), &t.admin, Some(json!({"reason": "ended"}))).await;
        assert_eq!(t.check("GET", MOMENT, &user).await["code"], -5);
        let (_, held) = t.get(&format!("/v1/apps/{test_id}/permissions"), &dev).await;
        assert_eq!(held["permissions"][0]["permission"], "test_app");

        // A test app does not apply, take Biz, or have test apps of its own.
        t.post(&format!("/v1/apps/{test_id}/eligibility"), &dev, json!({})).await;
        let form = [("permission", "kakao_moment"), ("service_url", "https://x.example.com"), ("reason", "r")];
        expect(t.apply(test_id, &dev, &form, Some(("c.pdf", b"%PDF-1.4".to_vec()))).await, StatusCode::CONFLICT, -409, "test app");
        expect(biz(&t, test_id, &dev, "120-81-47521").await, StatusCode::CONFLICT, -409, "test app");
        expect(t.post(&format!("/v1/apps/{test_id}/test-apps"), &dev, json!({})).await, StatusCode::CONFLICT, -409, "itself a test app");
    }
}

both_backends! {
    async fn a_channel_connects_at_once_only_for_a_biz_app_of_the_same_business(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = id_of(&t.app(&dev, "Shop").await);
        let channels = [
            json!({"id": "_same", "name": "Shop news", "business_registration_number": "120-81-47521", "business_channel": true}),
            json!({"id": "_other", "name": "Other", "business_registration_number": "220-81-62517", "business_channel": true}),
            json!({"id": "_plain", "name": "Unreviewed", "business_registration_number": "120-81-47521", "business_channel": false}),
        ];
        expect(t.post("/v1/channels", &dev, channels[0].clone()).await, StatusCode::FORBIDDEN, -5, "admin");
        for c in &channels {
            let (status, body) = t.post("/v1/channels", &t.admin, c.clone()).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let (_, listed) = t.get("/v1/channels", &dev).await;
        assert_eq!(listed["channels"].as_array().map(Vec::len), Some(3));

        let connect = |id: &str| json!({"channel_id": id});
        let url = format!("/v1/apps/{app}/channels");
        expect(t.post(&url, &dev, connect("_same")).await, StatusCode::FORBIDDEN, -5, "Biz app");
        let individual = json!({"individual": {"identity_verified": true, "terms_agreed": true, "icon_url": "https://x.example/i.png"}});
        t.put(&format!("/v1/apps/{app}/business"), &dev, individual).await;
        expect(t.post(&url, &dev, connect("_same")).await, StatusCode::FORBIDDEN, -5, "individual developer");
        biz(&t, app, &dev, "120-81-47521").await;
        expect(t.post(&url, &dev, connect("_other")).await, StatusCode::FORBIDDEN, -5, "same business");
        expect(t.post(&url, &dev, connect("_plain")).await, StatusCode::FORBIDDEN, -5, "not a business channel");
        expect(t.post(&url, &dev, connect("_nope")).await, StatusCode::NOT_FOUND, -404, "_nope");
        let form = [("permission", "connect_talk_channel"), ("service_url", "https://x.example.com"), ("reason", "r")];
        expect(t.apply(app, &dev, &form, None).await, StatusCode::BAD_REQUEST, -2, "/channels");

        let (status, view) = t.post(&url, &dev, connect("_same")).await;
        assert_eq!((status, view["channels"][0]["channel_id"].as_str()), (StatusCode::OK, Some("_same")), "{view}");
        expect(t.post(&url, &dev, connect("_same")).await, StatusCode::CONFLICT, -409, "already");
        let (_, held) = t.get(&format!("/v1/apps/{app}/permissions"), &dev).await;
        assert!(held["permissions"].as_array().is_some_and(|p| p.iter().any(|g| g["permission"] == "connect_talk_channel")), "{held}");
        // With the channel connected, its consent item can be set and the channel APIs answer.
        t.consent(app, &dev, &["plusfriends"]).await;
        let user = format!("Bearer {}", t.user_token(app, "u1", "plusfriends"));
        assert_eq!(t.check("GET", "/v2/api/talk/channels", &user).await["allow"], true);

        let (status, view) = t.delete(&format!("{url}/_same"), &dev, None).await;
        assert_eq!((status, view["channels"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{view}");
        assert_eq!(t.check("GET", "/v2/api/talk/channels", &user).await["code"], -5);
        expect(t.delete(&format!("{url}/_same"), &dev, None).await, StatusCode::NOT_FOUND, -404, "not connected");
    }
}

both_backends! {
    async fn an_app_not_called_for_the_idle_time_is_suspended_until_its_owner_reactivates_it(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let idle = t.app(&dev, "Idle").await;
        let busy = t.app(&dev, "Busy").await;
        let (idle_key, busy_key) = (format!("KakaoAK {}", key_of(&idle, "rest_api")), format!("KakaoAK {}", key_of(&busy, "rest_api")));
        let local = "/v2/local/search/keyword.json?query=a";
        assert_eq!(t.check("GET", local, &idle_key).await["allow"], true);
        const DAY: i64 = 86_400;
        t.clock.advance(20 * DAY);
        assert_eq!(t.check("GET", local, &busy_key).await["allow"], true);
        t.clock.advance(11 * DAY);
        // 31 days after the idle app's last call, 11 after the busy one's.
        let suspended = t.store(|s| s.suspend_idle(30 * DAY)).await.unwrap_or_default();
        assert_eq!(suspended, vec![permgate_core::model::AppId(id_of(&idle))]);
        let d = t.check("GET", local, &idle_key).await;
        assert_eq!((d["status"].as_i64(), d["code"].as_i64()), (Some(403), Some(-13)), "{d}");
        assert_eq!(t.check("GET", local, &busy_key).await["allow"], true);
        assert_eq!(t.store(|s| s.suspend_idle(30 * DAY)).await.unwrap_or_default(), vec![], "nothing twice");
        let (_, audit) = t.get(&format!("/v1/audit?app_id={}", id_of(&idle)), &t.admin).await;
        assert!(audit["events"].as_array().is_some_and(|e| e.iter().any(|e| e["action"] == "app.suspend" && e["actor"].is_null())), "{audit}");

        // Blocking a suspended app and unblocking it restores the suspension, not "active".
        let block = format!("/v1/apps/{}/block", id_of(&idle));
        let unblock = format!("/v1/apps/{}/unblock", id_of(&idle));
        assert_eq!(t.post(&block, &t.admin, json!({"reason": "abuse report"})).await.0, StatusCode::OK);
        assert_eq!(t.check("GET", local, &idle_key).await["code"], -12);
        let (status, view) = t.post(&unblock, &t.admin, json!({"reason": "report unfounded"})).await;
        assert_eq!((status, view["status"].as_str()), (StatusCode::OK, Some("suspended")), "{view}");
        assert_eq!(t.check("GET", local, &idle_key).await["code"], -13);

        let (_, stranger) = t.account("stranger", "developer").await;
        let url = format!("/v1/apps/{}/reactivate", id_of(&idle));
        expect(t.post(&url, &stranger, json!({})).await, StatusCode::FORBIDDEN, -5, "not a member");
        let (status, view) = t.post(&url, &dev, json!({})).await;
        assert_eq!((status, view["status"].as_str()), (StatusCode::OK, Some("active")), "{view}");
        assert_eq!(t.check("GET", local, &idle_key).await["allow"], true);
        expect(t.post(&url, &dev, json!({})).await, StatusCode::CONFLICT, -409, "not suspended");
        // Reactivation counts as activity: not suspended again at once.
        assert_eq!(t.store(|s| s.suspend_idle(30 * DAY)).await.unwrap_or_default(), vec![]);
    }
}
