use permgate_core::audit::verify_chain;
use permgate_testkit::both_backends;
use reqwest::StatusCode;
use serde_json::json;

const MOMENT: &str = "/openapi/v4/adAccounts/pages";

both_backends! {
    async fn an_operator_grant_turns_minus_5_into_allowed_and_a_revocation_turns_it_back(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Ads").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let user = format!("Bearer {}", t.user_token(id, "u1", ""));

        let d = t.check("GET", MOMENT, &user).await;
        assert_eq!((d["allow"].as_bool(), d["status"].as_i64(), d["code"].as_i64()), (Some(false), Some(403), Some(-5)));
        assert_eq!((d["msg"].as_str(), d["permission"].as_str()), (Some("permission denied"), Some("kakao_moment")));

        let grants = format!("/v1/apps/{id}/permissions");
        let (status, grant) =
            t.post(&grants, &t.admin, json!({"permission": "kakao_moment", "reason": "certified agency"})).await;
        assert_eq!(status, StatusCode::CREATED, "{grant}");
        assert_eq!((grant["source"].as_str(), grant["permission"].as_str()), (Some("operator"), Some("kakao_moment")));
        assert_eq!(t.check("GET", MOMENT, &user).await["allow"], true);

        let (status, held) = t.get(&grants, &dev).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(held["permissions"][0]["permission"], "kakao_moment");

        let (_, rev) = t.account("rev", "reviewer").await;
        let (status, body) =
            t.delete(&format!("{grants}/kakao_moment"), &rev, Some(json!({"reason": "contract ended"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(t.check("GET", MOMENT, &user).await["code"], -5);
        let (status, _) = t.delete(&format!("{grants}/kakao_moment"), &rev, Some(json!({"reason": "again"}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

both_backends! {
    async fn the_friends_list_is_members_only_until_the_permission_is_granted(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Social").await;
        let id = app["id"].as_i64().unwrap_or_default();
        t.consent(id, &dev, &["friends"]).await;
        let user = format!("Bearer {}", t.user_token(id, "u1", "friends"));
        let d = t.check("GET", "/v1/api/talk/friends", &user).await;
        assert_eq!((d["allow"].as_bool(), d["restriction"].as_str()), (Some(true), Some("members_only")), "{d}");
        let (status, _) = t
            .post(
                &format!("/v1/apps/{id}/permissions"),
                &t.admin,
                json!({"permission": "talk_friends_message", "reason": "reviewed"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let d = t.check("GET", "/v1/api/talk/friends", &user).await;
        assert_eq!(d["allow"], true);
        assert!(d.get("restriction").is_none(), "{d}");
    }
}

both_backends! {
    async fn a_grant_with_an_expiry_stops_counting_when_the_clock_passes_it(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Ads").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let expires = permgate_core::time::Timestamp(t.clock_now().0 + 60).to_rfc3339();
        let (status, body) = t
            .post(
                &format!("/v1/apps/{id}/permissions"),
                &t.admin,
                json!({"permission": "kakao_moment", "reason": "trial", "expires_at": expires}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let user = format!("Bearer {}", t.user_token(id, "u1", ""));
        assert_eq!(t.check("GET", MOMENT, &user).await["allow"], true);
        t.clock.advance(60);
        assert_eq!(t.check("GET", MOMENT, &user).await["code"], -5);
        let (_, held) = t.get(&format!("/v1/apps/{id}/permissions"), &dev).await;
        assert_eq!(held["permissions"], json!([]));
    }
}

both_backends! {
    async fn grants_are_refused_with_the_reason(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let (_, rev) = t.account("rev", "reviewer").await;
        let app = t.app(&dev, "Ads").await;
        let path = format!("/v1/apps/{}/permissions", app["id"]);
        let past = permgate_core::time::Timestamp(t.clock_now().0 - 1).to_rfc3339();
        let cases = [
            (&dev, json!({"permission": "kakao_moment", "reason": "r"}), StatusCode::FORBIDDEN, "admin"),
            (&rev, json!({"permission": "kakao_moment", "reason": "r"}), StatusCode::FORBIDDEN, "admin"),
            (
                &t.admin,
                json!({"permission": "kakao_momnt", "reason": "r"}),
                StatusCode::BAD_REQUEST,
                "no permission `kakao_momnt`",
            ),
            (&t.admin, json!({"permission": "biz_app", "reason": "r"}), StatusCode::BAD_REQUEST, "app's type"),
            (&t.admin, json!({"permission": "multi_app", "reason": "r"}), StatusCode::CONFLICT, "retired"),
            (&t.admin, json!({"permission": "kakao_moment", "reason": " "}), StatusCode::BAD_REQUEST, "reason"),
            (
                &t.admin,
                json!({"permission": "kakao_moment", "reason": "r", "expires_at": past}),
                StatusCode::BAD_REQUEST,
                "not in the future",
            ),
            (
                &t.admin,
                json!({"permission": "kakao_moment", "reason": "r", "expires_at": "soon"}),
                StatusCode::BAD_REQUEST,
                "RFC 3339",
            ),
            (&t.admin, json!({"permission": "increased_quota", "reason": "r"}), StatusCode::BAD_REQUEST, "params.limit"),
            (&t.admin, json!({"permission": "increased_quota", "reason": "r", "params": {"limit": 9}}), StatusCode::BAD_REQUEST, "params.rule"),
            (&t.admin, json!({"permission": "increased_quota", "reason": "r", "params": {"limit": 9, "rule": "nope"}}), StatusCode::BAD_REQUEST, "no quota rule `nope`"),
            (&t.admin, json!({"permission": "talk_share_quota", "reason": "r", "params": {"limit": 9, "rule": "talk_message_daily"}}), StatusCode::BAD_REQUEST, "raises only talk_share_daily"),
            (&t.admin, json!({"permission": "kakao_moment", "reason": "r", "params": {"rule": "talk_message_daily"}}), StatusCode::BAD_REQUEST, "does not raise a quota"),
            (
                &t.admin,
                json!({"permission": "kakao_moment", "reason": "r", "params": [1]}),
                StatusCode::BAD_REQUEST,
                "JSON object",
            ),
        ];
        for (token, body, want, needle) in cases {
            let (status, err) = t.post(&path, token, body.clone()).await;
            assert_eq!(status, want, "{body} -> {err}");
            assert!(err["msg"].as_str().is_some_and(|m| m.contains(needle)), "{body} -> {err}");
        }
        let (status, _) = t
            .post(
                &path,
                &t.admin,
                json!({"permission": "increased_quota", "reason": "partner", "params": {"rule": "local_keyword_search_daily", "limit": 200000}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, err) = t
            .post(&path, &t.admin, json!({"permission": "increased_quota", "reason": "again", "params": {"rule": "local_keyword_search_daily", "limit": 5}}))
            .await;
        assert_eq!((status, err["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{err}");
    }
}

// `increased_quota` held for two rules and revoked without naming one: both end, and the audit
// event shows both (it showed the newest only).
both_backends! {
    async fn revoking_a_permission_held_per_rule_without_a_rule_audits_every_holding(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let id = t.app(&dev, "Search").await["id"].as_i64().unwrap_or_default();
        for rule in ["local_keyword_search_daily", "local_address_search_daily"] {
            let grant = json!({"permission": "increased_quota", "reason": "partner", "params": {"rule": rule, "limit": 200000}});
            assert_eq!(t.post(&format!("/v1/apps/{id}/permissions"), &t.admin, grant).await.0, StatusCode::CREATED);
        }
        let path = format!("/v1/apps/{id}/permissions/increased_quota");
        let (status, body) = t.delete(&path, &t.admin, Some(json!({"reason": "contract ended"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, held) = t.get(&format!("/v1/apps/{id}/permissions"), &dev).await;
        assert!(held["permissions"].as_array().is_some_and(|p| p.iter().all(|g| g["permission"] != "increased_quota")), "{held}");
        let (_, audit) = t.get(&format!("/v1/audit?app_id={id}"), &t.admin).await;
        let revoke = audit["events"].as_array().into_iter().flatten().find(|e| e["action"] == "grant.revoke").cloned().unwrap_or_default();
        let mut rules: Vec<&str> = revoke["before"].as_array().into_iter().flatten().filter_map(|g| g["params"]["rule"].as_str()).collect();
        rules.sort_unstable();
        assert_eq!(rules, ["local_address_search_daily", "local_keyword_search_daily"], "{revoke}");
    }
}

both_backends! {
    async fn a_grant_made_for_one_key_is_revoked_by_naming_the_key(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Ads").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let key = app["keys"]["rest_api"][0]["id"].as_i64().unwrap_or_default();
        let grant = json!({"permission": "kakao_moment", "reason": "one key", "key_id": key});
        let (status, body) = t.post(&format!("/v1/apps/{id}/permissions"), &t.admin, grant).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let path = format!("/v1/apps/{id}/permissions/kakao_moment");
        let (status, body) = t.delete(&path, &t.admin, Some(json!({"reason": "done"}))).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::NOT_FOUND, Some(-404)), "{body}");
        assert!(body["msg"].as_str().is_some_and(|m| m.contains("app-wide")), "{body}");
        let (status, body) = t.delete(&path, &t.admin, Some(json!({"reason": "done", "key_id": key}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, held) = t.get(&format!("/v1/apps/{id}/permissions"), &dev).await;
        assert!(held["permissions"].as_array().is_some_and(|p| p.iter().all(|g| g["permission"] != "kakao_moment")), "{held}");
    }
}

both_backends! {
    async fn every_change_is_an_audit_event_on_an_intact_chain(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Ads").await;
        let id = app["id"].as_i64().unwrap_or_default();
        t.post(&format!("/v1/apps/{id}/permissions"), &t.admin, json!({"permission": "kakao_moment", "reason": "ok"}))
            .await;
        t.delete(&format!("/v1/apps/{id}/permissions/kakao_moment"), &t.admin, Some(json!({"reason": "done"}))).await;
        let (status, body) = t.get(&format!("/v1/audit?app_id={id}"), &t.admin).await;
        assert_eq!(status, StatusCode::OK);
        let actions: Vec<&str> =
            body["events"].as_array().into_iter().flatten().filter_map(|e| e["action"].as_str()).collect();
        assert_eq!(actions, ["app.create", "grant.create", "grant.revoke"]);
        let (status, _) = t.get("/v1/audit", &dev).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let events = t.store(|s| s.store.audit_events(None, usize::MAX)).await.unwrap_or_default();
        assert!(events.len() >= 5);
        assert_eq!(verify_chain(&events), Ok(()));
    }
}

// Writes to one app from several threads at once: each write re-reads the app and patches it
// into the snapshot. Patches must land in the order of their reads, or an older copy of the app
// replaces a newer one and a revoked permission is enforced as held (or a granted one as not)
// until the app next changes. After every round the snapshot must agree with the store.
both_backends! {
    async fn concurrent_writes_to_one_app_leave_the_snapshot_as_the_store_has_it(t) {
        concurrent_writes(t).await;
    }
}

async fn concurrent_writes(t: permgate_testkit::TestApp) {
    use permgate_core::model::AppId;

    let (_, dev) = t.account("dev", "developer").await;
    let id = AppId(t.app(&dev, "Ads").await["id"].as_i64().unwrap_or_default());
    let (services, token) = (t.services.clone(), t.admin.clone());
    // Store calls block: off the test's runtime (PostgreSQL's client refuses to block on it).
    permgate_testkit::blocking(move || race(services, &token, id)).await;
}

fn race(services: permgate_core::service::Services, token: &str, id: permgate_core::model::AppId) {
    use permgate_core::service::{GrantPermission, RevokePermission};
    let admin = services.authenticate(Some(token)).unwrap_or_else(|e| unreachable!("{e}"));
    const PERMISSIONS: [&str; 8] = [
        "kakao_moment",
        "talk_calendar",
        "manual_signup",
        "service_terms_upgrade",
        "account_id_response",
        "talk_user_id_response",
        "personal_info_consent_items",
        "kakao_map_activation",
    ];
    const ROUNDS: usize = 100;
    let start = std::sync::Arc::new(std::sync::Barrier::new(PERMISSIONS.len() + 1));
    let done = std::sync::Arc::new(std::sync::Barrier::new(PERMISSIONS.len() + 1));
    let writers: Vec<_> = PERMISSIONS
        .iter()
        .map(|&p| {
            let (services, admin, start, done) = (services.clone(), admin.clone(), start.clone(), done.clone());
            std::thread::spawn(move || {
                // A failed write is kept, not panicked on: the others would wait at the barrier.
                let mut failed = Vec::new();
                for round in 0..ROUNDS {
                    start.wait();
                    let written = if round % 2 == 0 {
                        let grant = GrantPermission {
                            permission: p.into(),
                            reason: "test".into(),
                            expires_at: None,
                            params: None,
                            key_id: None,
                        };
                        services.grant_permission(&admin, id, grant).map(|_| ())
                    } else {
                        let revoke = RevokePermission { reason: "test".into(), key_id: None, rule: None };
                        services.revoke_permission(&admin, id, p, revoke).map(|_| ())
                    };
                    if let Err(e) = written {
                        failed.push(format!("round {round}, {p}: {e}"));
                    }
                    done.wait();
                }
                failed
            })
        })
        .collect();
    let mut stale = Vec::new();
    for round in 0..ROUNDS {
        start.wait();
        done.wait();
        let record = services.store.app_record(id).ok().flatten().unwrap_or_else(|| unreachable!("app {id}"));
        let now = services.clock.now();
        let snapshot = services.snapshot.read();
        let entry = snapshot.app(id).unwrap_or_else(|| unreachable!("app {id} in the snapshot"));
        for p in PERMISSIONS {
            let stored = record.grants.iter().any(|g| g.permission == p && g.is_active(now));
            let index = snapshot.catalog().permission_index(p).unwrap_or(usize::MAX);
            if entry.holds(index, None, now) != stored {
                stale.push(format!("round {round}: `{p}` held {} in the store, {} in the snapshot", stored, !stored));
            }
        }
    }
    let failed: Vec<String> =
        writers.into_iter().flat_map(|w| w.join().unwrap_or_else(|_| unreachable!("a writer panicked"))).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(stale.is_empty(), "{} stale patches: {:?}", stale.len(), &stale[..stale.len().min(5)]);
}

both_backends! {
    async fn losing_a_prerequisite_takes_what_needed_it_audited_and_said(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Ads").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let grants = format!("/v1/apps/{id}/permissions");
        // Operator grants skip the prerequisites; the consent items are set after.
        for p in ["kakao_moment", "moment_message_ad_partner", "talk_friends_message"] {
            let (status, body) = t.post(&grants, &t.admin, json!({"permission": p, "reason": "partner"})).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        t.consent(id, &dev, &["friends", "talk_message"]).await;
        let held = |body: &serde_json::Value| -> Vec<String> {
            let list = body["permissions"].as_array().cloned().unwrap_or_default();
            list.iter().filter_map(|g| g["permission"].as_str().map(str::to_owned)).collect()
        };
        // Kakao Moment goes, and the ad partnership that needs it with it.
        let (status, body) = t.delete(&format!("{grants}/kakao_moment"), &t.admin, Some(json!({"reason": "contract ended"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(held(&t.get(&grants, &dev).await.1), ["talk_friends_message"]);
        // The `friends` consent item goes, and the friends' messages that use it with it.
        let (status, body) = t.delete(&format!("/v1/apps/{id}/consent-items/friends"), &dev, None).await;
        assert!(status.is_success(), "{status} {body}");
        assert!(held(&t.get(&grants, &dev).await.1).is_empty());
        let (_, audit) = t.get(&format!("/v1/audit?app_id={id}"), &t.admin).await;
        let events = audit["events"].as_array().cloned().unwrap_or_default();
        let after = |action: &str| events.iter().rev().find(|e| e["action"] == action).map(|e| e["after"].clone());
        assert_eq!(after("grant.revoke").map(|a| a["also_revoked"].clone()), Some(json!(["moment_message_ad_partner"])), "{audit}");
        assert_eq!(after("consent_item.unset").map(|a| a["also_revoked"].clone()), Some(json!(["talk_friends_message"])), "{audit}");
    }
}

both_backends! {
    async fn a_revocation_names_a_rule_only_where_the_permission_is_held_per_rule(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Share").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let grants = format!("/v1/apps/{id}/permissions");
        for grant in [
            json!({"permission": "talk_share_quota", "reason": "launch", "params": {"limit": 50000}}),
            json!({"permission": "kakao_moment", "reason": "agency"}),
        ] {
            let (status, body) = t.post(&grants, &t.admin, grant).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let revoke = |p: &str, rule: &str| (format!("{grants}/{p}"), json!({"reason": "done", "rule": rule}));
        let (path, body) = revoke("kakao_moment", "talk_share_daily");
        let (status, e) = t.delete(&path, &t.admin, Some(body)).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{e}");
        assert!(e["msg"].as_str().is_some_and(|m| m.contains("does not raise a quota")), "{e}");
        let (path, body) = revoke("talk_share_quota", "local_keyword_search_daily");
        let (status, e) = t.delete(&path, &t.admin, Some(body)).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{e}");
        // Its one rule names its one holding, though the operator's grant did not name it.
        let (path, body) = revoke("talk_share_quota", "talk_share_daily");
        let (status, e) = t.delete(&path, &t.admin, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{e}");
    }
}

// A grant bound to one key of a permission that needed what the app lost goes too: the
// prerequisite was the app's, whichever key the dependent grant is for (it stayed, so that key
// kept the partner APIs after Kakao Moment was revoked).
both_backends! {
    async fn a_dependent_grant_bound_to_a_key_goes_with_the_prerequisite(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Ads").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let key = app["keys"]["rest_api"][0]["id"].as_i64().unwrap_or_default();
        let grants = format!("/v1/apps/{id}/permissions");
        for body in [
            json!({"permission": "kakao_moment", "reason": "agency"}),
            json!({"permission": "moment_message_ad_partner", "reason": "one key", "key_id": key}),
        ] {
            let (status, made) = t.post(&grants, &t.admin, body).await;
            assert_eq!(status, StatusCode::CREATED, "{made}");
        }
        let (status, body) =
            t.delete(&format!("{grants}/kakao_moment"), &t.admin, Some(json!({"reason": "contract ended"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, held) = t.get(&grants, &dev).await;
        assert_eq!(held["permissions"], json!([]), "{held}");
        let (_, audit) = t.get(&format!("/v1/audit?app_id={id}"), &t.admin).await;
        let revoke = audit["events"].as_array().into_iter().flatten().rev().find(|e| e["action"] == "grant.revoke");
        assert_eq!(revoke.map(|e| &e["after"]["also_revoked"]), Some(&json!(["moment_message_ad_partner"])), "{audit}");
    }
}
