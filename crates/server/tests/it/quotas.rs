use permgate_testkit::{TestApp, both_backends};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CREATE_AD_ACCOUNT: &str = "/openapi/v4/adAccounts";

/// An app holding `kakao_moment`, and a user token for it.
async fn moment_app(t: &TestApp) -> (i64, String, String) {
    let (_, dev) = t.account("dev", "developer").await;
    let app = t.app(&dev, "Ads").await;
    let id = app["id"].as_i64().unwrap_or_default();
    let (status, _) = t
        .post(
            &format!("/v1/apps/{id}/permissions"),
            &t.admin,
            json!({"permission": "kakao_moment", "reason": "agency"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    (id, dev, format!("Bearer {}", t.user_token(id, "u1", "")))
}

async fn check(t: &TestApp, body: Value) -> (StatusCode, Option<String>, Value) {
    let resp = t.client.post(format!("{}/v1/check", t.base)).json(&body).send().await;
    let resp = resp.unwrap_or_else(|e| unreachable!("{e}"));
    let status = resp.status();
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, retry, resp.json().await.unwrap_or_default())
}

both_backends! {
    async fn a_per_second_quota_denies_the_second_call_with_retry_after(t) {
        let (_, _, user) = moment_app(&t).await;
        let call = json!({"method": "POST", "path": CREATE_AD_ACCOUNT, "headers": {"authorization": user}});
        let (_, retry, d) = check(&t, call.clone()).await;
        assert_eq!((d["allow"].as_bool(), retry), (Some(true), None), "{d}");
        assert_eq!(d["quota"]["rule"], "moment_ad_account_create_per_second");
        assert_eq!(d["quota"]["remaining"], 0);
        let (http, retry, d) = check(&t, call.clone()).await;
        assert_eq!(http, StatusCode::OK);
        assert_eq!((d["allow"].as_bool(), d["code"].as_i64(), d["status"].as_i64()), (Some(false), Some(-10), Some(400)), "{d}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(d["retry_after"], 1);
        t.clock.advance(1);
        assert_eq!(check(&t, call).await.2["allow"], true, "the next second");
    }
}

both_backends! {
    async fn a_dry_run_reports_quota_without_counting(t) {
        let (_, _, user) = moment_app(&t).await;
        let dry = json!({"method": "POST", "path": CREATE_AD_ACCOUNT, "headers": {"authorization": user}, "consume": false});
        for _ in 0..3 {
            let (_, _, d) = check(&t, dry.clone()).await;
            assert_eq!((d["allow"].as_bool(), d["quota"]["remaining"].as_u64()), (Some(true), Some(0)), "{d}");
        }
    }
}

both_backends! {
    async fn message_quotas_use_the_recipients_of_the_check(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Chat").await;
        let id = app["id"].as_i64().unwrap_or_default();
        t.consent(id, &dev, &["friends", "talk_message"]).await;
        let user = format!("Bearer {}", t.user_token(id, "sender-1", "friends talk_message"));
        let send = json!({"method": "POST", "path": "/v1/api/talk/friends/message/default/send",
            "headers": {"authorization": user}, "recipients": ["uuid-1"]});
        for n in 0..20 {
            let (_, _, d) = check(&t, send.clone()).await;
            assert_eq!(d["allow"], true, "message {n}: {d}");
        }
        let (_, retry, d) = check(&t, send.clone()).await;
        assert_eq!((d["code"].as_i64(), d["status"].as_i64()), (Some(-536), Some(400)), "{d}");
        assert!(retry.is_some());
        let other = json!({"method": "POST", "path": "/v1/api/talk/friends/message/default/send",
            "headers": {"authorization": user}, "recipients": ["uuid-2"]});
        assert_eq!(check(&t, other).await.2["allow"], true, "another recipient");
    }
}

both_backends! {
    async fn usage_shows_app_wide_rules_and_paid_usage_continues_to_its_cap(t) {
        let (id, dev, user) = moment_app(&t).await;
        let call = json!({"method": "POST", "path": CREATE_AD_ACCOUNT, "headers": {"authorization": user}});
        check(&t, call.clone()).await;
        let paid = format!("/v1/apps/{id}/paid-usage");
        for (body, needle) in [
            (json!({"rules": ["nope"], "daily_cap": 1, "monthly_cap": 5}), "no quota rule"),
            (json!({"rules": [], "daily_cap": 1, "monthly_cap": 5}), "at least one"),
            (json!({"rules": ["moment_ad_account_create_per_second"], "daily_cap": 9, "monthly_cap": 5}), "daily cap"),
            (json!({"rules": ["talk_message_pair_daily"], "daily_cap": 1, "monthly_cap": 5}), "cannot continue as paid"),
            (json!({"rules": ["api_monthly_total"], "daily_cap": 1, "monthly_cap": 5}), "cannot continue as paid"),
        ] {
            let (status, err) = t.put(&paid, &dev, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
            assert!(err["msg"].as_str().is_some_and(|m| m.contains(needle)), "{err}");
        }
        let setting = json!({"rules": ["moment_ad_account_create_per_second"], "daily_cap": 1, "monthly_cap": 5});
        let (status, body) = t.put(&paid, &dev, setting.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, again) = t.put(&paid, &dev, setting).await;
        assert_eq!((status, &again), (StatusCode::OK, &body), "the same setting again");
        let (_, audit) = t.call(Method::GET, &format!("/v1/audit?app_id={id}"), Some(&t.admin), None).await;
        let sets = audit["events"].as_array().into_iter().flatten().filter(|e| e["action"] == "paid_usage.set").count();
        assert_eq!(sets, 1, "is recorded once");
        let huge = json!({"rules": ["moment_ad_account_create_per_second"], "daily_cap": 1, "monthly_cap": u64::MAX});
        assert_eq!(t.put(&paid, &dev, huge).await.0, StatusCode::BAD_REQUEST);
        let (_, _, d) = check(&t, call.clone()).await;
        assert_eq!((d["allow"].as_bool(), d["quota"]["paid"].as_bool()), (Some(true), Some(true)), "{d}");
        let (_, _, d) = check(&t, call.clone()).await;
        assert_eq!((d["code"].as_i64(), d["status"].as_i64()), (Some(-11), Some(400)), "{d}");

        let (status, usage) = t.get(&format!("/v1/apps/{id}/usage"), &dev).await;
        assert_eq!(status, StatusCode::OK, "{usage}");
        assert_eq!(usage["time_zone"], "Asia/Seoul");
        let rule = |id: &str| usage["rules"].as_array().into_iter().flatten().find(|r| r["rule"] == id).cloned().unwrap_or_default();
        assert_eq!(rule("api_monthly_total")["limit"], 3_000_000);
        assert_eq!(rule("api_monthly_total")["used"], 0, "Moment APIs are outside the monthly total (KAKAO.md 3.4)");
        assert_eq!(rule("moment_ad_account_create_per_second")["used"], 1);
        assert_eq!((usage["paid"]["used_today"].as_u64(), usage["paid"]["daily_cap"].as_u64()), (Some(1), Some(1)));
        let (status, _) = t.delete(&paid, &dev, None).await;
        assert_eq!(status, StatusCode::OK);
        let (_, usage) = t.get(&format!("/v1/apps/{id}/usage"), &dev).await;
        assert!(usage.get("paid").is_none(), "{usage}");
        let (_, other) = t.account("other", "developer").await;
        assert_eq!(t.get(&format!("/v1/apps/{id}/usage"), &other).await.0, StatusCode::FORBIDDEN);
    }
}

both_backends! {
    async fn crossing_a_quota_threshold_is_recorded_as_an_alert(t) {
        let (id, _, user) = moment_app(&t).await;
        let call = json!({"method": "POST", "path": CREATE_AD_ACCOUNT, "headers": {"authorization": user}});
        check(&t, call).await;
        let recorded = t.store(|s| s.flush_alerts()).await;
        assert_eq!(recorded.ok(), Some(1));
        let (_, audit) = t.call(Method::GET, &format!("/v1/audit?app_id={id}"), Some(&t.admin), None).await;
        let alert = audit["events"].as_array().into_iter().flatten().find(|e| e["action"] == "quota.alert").cloned();
        let alert = alert.unwrap_or_default();
        assert_eq!((alert["after"]["rule"].as_str(), alert["after"]["percent"].as_u64()), (Some("moment_ad_account_create_per_second"), Some(100)), "{audit}");
    }
}

/// A new node over `s`'s store (a restart): a fresh snapshot and counters restored from what
/// was saved. Decides `calls` POST calls of the Moment API with `user`'s token, queues their
/// alerts and records them; returns the codes and how many alerts were recorded.
fn restarted_calls(s: &permgate_core::service::Services, user: &str, calls: usize) -> (Vec<i32>, usize) {
    use permgate_core::decision::{CounterFailure, Query, decide_and_count};
    let records = s.store.app_records().unwrap_or_else(|e| unreachable!("{e}"));
    let catalog = s.snapshot.read().catalog().clone();
    let verifier = permgate_core::credential::TokenVerifier::new(Some(permgate_testkit::JWT_SECRET.as_bytes()));
    let snapshot = permgate_core::snapshot::Snapshot::build(catalog, std::sync::Arc::new(verifier), records);
    let shared = std::sync::Arc::new(permgate_core::snapshot::SharedSnapshot::new(snapshot));
    let again = permgate_core::service::Services::new(s.store.clone(), shared, s.clock.clone());
    again.restore_counters().unwrap_or_else(|e| unreachable!("{e}"));
    let query = Query { method: "POST", path: CREATE_AD_ACCOUNT, authorization: Some(user), ..Query::default() };
    let codes = (0..calls)
        .map(|_| {
            let d = decide_and_count(
                &again.snapshot.read(),
                &query,
                again.counter.as_ref(),
                again.clock.now(),
                true,
                CounterFailure::Closed,
            );
            again.alerts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(d.alerts.iter().cloned());
            d.code
        })
        .collect();
    (codes, again.flush_alerts().unwrap_or_else(|e| unreachable!("{e}")))
}

/// The app's `quota.alert` events: (rule, percent).
async fn alerts_of(t: &TestApp, app: i64) -> Vec<(String, u64)> {
    let (_, audit) = t.call(Method::GET, &format!("/v1/audit?app_id={app}"), Some(&t.admin), None).await;
    let events = audit["events"].as_array().cloned().unwrap_or_default();
    events
        .iter()
        .filter(|e| e["action"] == "quota.alert")
        .map(|e| {
            (
                e["after"]["rule"].as_str().unwrap_or_default().to_owned(),
                e["after"]["percent"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

// The node records the alert (and its message), then dies before it saves its counters: a new
// node over the same store neither hands out the counted call again nor alerts twice.
both_backends! {
    async fn an_alert_saved_before_its_count_is_not_raised_again_after_a_restart(t) {
        let (id, _, user) = moment_app(&t).await;
        let call = json!({"method": "POST", "path": CREATE_AD_ACCOUNT, "headers": {"authorization": user.clone()}});
        assert_eq!(check(&t, call).await.2["allow"], true);
        assert_eq!(t.store(|s| s.flush_alerts()).await.ok(), Some(1));
        let again = t.store(move |s| restarted_calls(s, &user, 1)).await;
        assert_eq!(again, (vec![-10], 0), "the same second's call after the restart: denied, no second alert");
        assert_eq!(alerts_of(&t, id).await, [("moment_ad_account_create_per_second".to_owned(), 100)]);
    }
}

// A counter save records the waiting alerts first: a crash after the save kept the count that
// passed the threshold cannot lose the alert, which the restarted node would not raise again.
both_backends! {
    async fn a_counter_save_records_the_waiting_alerts_first(t) {
        let (id, _, user) = moment_app(&t).await;
        let call = json!({"method": "POST", "path": CREATE_AD_ACCOUNT, "headers": {"authorization": user}});
        assert_eq!(check(&t, call).await.2["allow"], true);
        assert!(alerts_of(&t, id).await.is_empty(), "queued, not recorded yet");
        assert!(t.store(|s| s.save_counters()).await.is_ok());
        assert_eq!(alerts_of(&t, id).await, [("moment_ad_account_create_per_second".to_owned(), 100)]);
        assert_eq!(t.store(|s| s.flush_alerts()).await.ok(), Some(0), "recorded once");
    }
}

/// The same at 80 %, where calls go on: with a limit of 5, the fourth call's alert is recorded
/// and the node dies; after the restart the fifth call is allowed and alerts at 100 %, the 80 %
/// alert is not raised again, and the sixth is denied.
#[tokio::test]
async fn an_80_percent_alert_is_not_raised_again_after_a_restart() {
    let rule = "id = \"moment_ad_account_create_per_second\"\nname = \"Kakao Moment: create ad account, 1 per second\"\nperiod = \"second\"\nscope = \"app\"\nlimit = 1\n";
    assert!(permgate_core::catalog::DEFAULT_CATALOG.contains(rule));
    let text = permgate_core::catalog::DEFAULT_CATALOG.replacen(rule, &rule.replace("limit = 1", "limit = 5"), 1);
    let catalog = permgate_core::catalog::Catalog::parse("five.toml", &text).unwrap_or_else(|e| unreachable!("{e}"));
    let t = TestApp::spawn_with(catalog).await;
    let (id, _, user) = moment_app(&t).await;
    let call = json!({"method": "POST", "path": CREATE_AD_ACCOUNT, "headers": {"authorization": user.clone()}});
    for _ in 0..4 {
        assert_eq!(check(&t, call.clone()).await.2["allow"], true);
    }
    assert_eq!(t.store(|s| s.flush_alerts()).await.ok(), Some(1));
    let again = t.store(move |s| restarted_calls(s, &user, 2)).await;
    assert_eq!(again, (vec![0, -10], 1), "one call left after the restart, and only its 100 % alert");
    let rule = "moment_ad_account_create_per_second".to_owned();
    assert_eq!(alerts_of(&t, id).await, [(rule.clone(), 80), (rule, 100)]);
}

both_backends! {
    async fn usage_shows_the_calls_of_each_of_the_last_30_days(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Counted").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let key = format!("KakaoAK {}", permgate_testkit::key_of(&app, "rest_api"));
        let local = "/v2/local/search/keyword.json?query=a";
        for _ in 0..3 {
            assert_eq!(t.check("GET", local, &key).await["allow"], true);
        }
        assert_eq!(t.store(|s| s.save_activity()).await.ok(), Some(1));
        t.clock.advance(86_400);
        for _ in 0..2 {
            t.check("GET", local, &key).await;
        }
        // A denied call is not an admitted one.
        t.check("GET", "/openapi/v4/adAccounts/pages", &key).await;
        t.store(|s| s.save_activity()).await.unwrap_or_default();
        let (status, usage) = t.get(&format!("/v1/apps/{id}/usage"), &dev).await;
        assert_eq!(status, StatusCode::OK, "{usage}");
        let calls: Vec<u64> = usage["daily"].as_array().map(|d| d.iter().filter_map(|x| x["calls"].as_u64()).collect()).unwrap_or_default();
        assert_eq!(calls.len(), 30);
        assert_eq!(calls[28..], [3, 2], "{usage}");
        assert_eq!(calls[..28].iter().sum::<u64>(), 0);
        // Per quota rule too: the keyword search's daily rule and the all-API monthly total.
        let by_rule = |rule: &str| -> Vec<u64> {
            usage["daily_by_rule"][rule].as_array().map(|d| d.iter().filter_map(|x| x["calls"].as_u64()).collect()).unwrap_or_default()
        };
        assert_eq!(by_rule("local_keyword_search_daily")[28..], [3, 2], "{usage}");
        assert_eq!(by_rule("api_monthly_total")[28..], [3, 2], "{usage}");
        assert!(usage["daily_by_rule"].get("talk_message_daily").is_none(), "only rules the app was counted against");
    }
}

/// An alert reaches the app's members and the webhook through the notification outbox, in the
/// transaction that records it (it was an audit event only: nobody was told).
#[tokio::test]
async fn a_quota_alert_is_told_to_the_members_and_the_webhook() {
    for postgres in [false, true] {
        let notify = permgate_core::notify::NotifySettings {
            email: true,
            webhook_url: Some("http://127.0.0.1:9/hooks".into()),
            public_url: None,
        };
        let Some(t) = TestApp::spawn_notifying(notify, postgres).await else { continue };
        let (_, dev) = t.account_with_email("dev", "developer", "dev@example.com").await;
        let id = t.app(&dev, "Ads").await["id"].as_i64().unwrap_or_default();
        let grant = json!({"permission": "kakao_moment", "reason": "agency"});
        assert_eq!(t.post(&format!("/v1/apps/{id}/permissions"), &t.admin, grant).await.0, StatusCode::CREATED);
        let user = format!("Bearer {}", t.user_token(id, "u1", ""));
        check(&t, json!({"method": "POST", "path": CREATE_AD_ACCOUNT, "headers": {"authorization": user}})).await;
        let before = t
            .store(move |s| s.store.messages(Some(permgate_core::model::AppId(id)), 100).unwrap_or_default())
            .await
            .len();
        assert_eq!(t.store(|s| s.flush_alerts()).await.ok(), Some(1));
        let messages =
            t.store(move |s| s.store.messages(Some(permgate_core::model::AppId(id)), 100).unwrap_or_default()).await;
        let new: Vec<_> = messages.iter().take(messages.len() - before).collect();
        let subjects: Vec<&str> = new.iter().map(|m| m.subject.as_str()).collect();
        assert_eq!(new.len(), 2, "an e-mail and the webhook: {subjects:?}");
        assert!(
            new.iter().any(|m| m.recipient == "dev@example.com"
                && m.subject.contains("`moment_ad_account_create_per_second` is 100 % used")),
            "{subjects:?}"
        );
        assert!(new.iter().any(|m| m.subject == "quota.alert"), "{subjects:?}");
    }
}
