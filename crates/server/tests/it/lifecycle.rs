//! Grants over time: auto-approval by the catalog's rule, a default lifetime, renewal with
//! reminders at 30 and 7 days, time-limited quota boosts, and reaping unused grants.

use permgate_core::catalog::{Catalog, DEFAULT_CATALOG};
use permgate_core::service::ReapPolicy;
use permgate_testkit::{TINY_PNG, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DAY: i64 = 86_400;
const CALENDARS: &str = "/v2/api/calendar/calendars";

/// The default catalog with `extra` lines added to the `talk_calendar` permission.
fn calendar_with(extra: &str) -> Catalog {
    let text = DEFAULT_CATALOG.replacen(
        "[[permissions]]\nid = \"talk_calendar\"\n",
        &format!("[[permissions]]\nid = \"talk_calendar\"\n{extra}\n"),
        1,
    );
    assert_ne!(text, DEFAULT_CATALOG);
    Catalog::parse("t.toml", &text).unwrap_or_else(|e| unreachable!("{e}"))
}

/// A developer's app with the calendar consent item set and the eligibility terms agreed.
async fn ready_app(t: &TestApp, name: &str) -> (i64, String) {
    let (_, dev) = t.account(name, "developer").await;
    let id = t.app(&dev, "Cal").await["id"].as_i64().unwrap_or_default();
    t.consent(id, &dev, &["talk_calendar"]).await;
    assert_eq!(t.post(&format!("/v1/apps/{id}/eligibility"), &dev, json!({})).await.0, StatusCode::OK);
    (id, dev)
}

async fn apply(t: &TestApp, app: i64, dev: &str) -> (StatusCode, Value) {
    let form = [
        ("permission", "talk_calendar"),
        ("service_url", "https://calendar.example.com"),
        ("reason", "Users add our events to their Talk Calendar"),
    ];
    t.apply(app, dev, &form, Some(("screen.png", TINY_PNG.to_vec()))).await
}

async fn held(t: &TestApp, app: i64, token: &str) -> Vec<Value> {
    let (_, body) = t.get(&format!("/v1/apps/{app}/permissions"), token).await;
    body["permissions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["permission"] == "talk_calendar")
        .collect()
}

async fn lifecycle(t: &TestApp, reap: Option<ReapPolicy>) -> permgate_core::service::LifecycleRun {
    t.store(move |s| s.run_lifecycle(reap).unwrap_or_else(|e| unreachable!("{e}"))).await
}

async fn audit_actions(t: &TestApp) -> Vec<String> {
    let (_, audit) = t.get("/v1/audit", &t.admin).await;
    audit["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["action"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_request_meeting_the_catalogs_rule_is_approved_at_once_and_others_wait_for_review() {
    let t = TestApp::spawn_with(calendar_with(
        "auto_approve = { biz = true, no_rejection_days = 30 }\ndefault_duration_days = 90",
    ))
    .await;
    let (_, reviewer) = t.account("rita", "reviewer").await;

    // Not a Biz app: a reviewer decides.
    let (plain, dev) = ready_app(&t, "plain").await;
    let (status, request) = apply(&t, plain, &dev).await;
    assert_eq!((status, request["state"].as_str()), (StatusCode::CREATED, Some("submitted")), "{request}");

    // A Biz app: approved by the rule, by permgate, saying why; the grant lasts 90 days.
    let (biz, owner) = ready_app(&t, "biz").await;
    let body = json!({"business_registration_number": "120-81-47521", "company_name": "Example Co"});
    assert_eq!(t.put(&format!("/v1/apps/{biz}/business"), &owner, body).await.0, StatusCode::OK);
    let (status, request) = apply(&t, biz, &owner).await;
    assert_eq!((status, request["state"].as_str()), (StatusCode::CREATED, Some("approved")), "{request}");
    // Through the review, as every request goes: started and decided by permgate.
    let steps: Vec<(&str, &str, bool)> = request["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| (h["action"].as_str().unwrap_or(""), h["to"].as_str().unwrap_or(""), h["actor"].is_null()))
        .collect();
    assert_eq!(steps[1..], [("start_review", "in_review", true), ("approve", "approved", true)], "{request}");
    let approval = &request["history"][2];
    assert!(approval["comment"].as_str().is_some_and(|c| c.starts_with("auto-approved by the catalog's rule for `talk_calendar`: a Biz app verified 0 days ago, no request rejected in 30 days")), "{request}");
    let grant = held(&t, biz, &owner).await;
    let expires = t.clock_now().plus_seconds(90 * DAY).to_rfc3339();
    assert_eq!(grant[0]["expires_at"].as_str(), Some(expires.as_str()), "{grant:?}");
    assert!(audit_actions(&t).await.contains(&"request.auto_approve".to_owned()));
    // Reviewable afterwards: a reviewer may still revoke it.
    let (status, _) = t
        .delete(
            &format!("/v1/apps/{biz}/permissions/talk_calendar"),
            &reviewer,
            Some(json!({"reason": "checked after the fact: not a calendar service"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // A rejection in the last 30 days sends the next request to a reviewer, Biz or not.
    let open = request_of(&t, plain, &reviewer).await;
    t.act(open, &reviewer, json!({"action": "start_review"})).await;
    let reject =
        json!({"action": "reject", "reason_code": "personal_data_not_masked", "comment": "Mask the e-mail addresses"});
    let (status, rejected) = t.act(open, &reviewer, reject).await;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    let body = json!({"business_registration_number": "120-81-47521", "company_name": "Example Co"});
    assert_eq!(t.put(&format!("/v1/apps/{plain}/business"), &dev, body).await.0, StatusCode::OK);
    let (_, after_rejection) = apply(&t, plain, &dev).await;
    assert_eq!(after_rejection["state"], "submitted", "rejected today: {after_rejection}");
}

async fn request_of(t: &TestApp, app: i64, reviewer: &str) -> i64 {
    let (_, list) = t.get(&format!("/v1/permission-requests?app_id={app}&state=submitted"), reviewer).await;
    list["requests"][0]["id"].as_i64().unwrap_or_default()
}

#[tokio::test]
async fn reminders_come_at_30_and_7_days_and_a_renewal_continues_from_the_end() {
    let t = TestApp::spawn_with(calendar_with("default_duration_days = 90")).await;
    let (_, reviewer) = t.account("rita", "reviewer").await;
    let (app, dev) = ready_app(&t, "dev").await;
    let (_, request) = apply(&t, app, &dev).await;
    let id = request["id"].as_i64().unwrap_or_default();
    t.act(id, &reviewer, json!({"action": "start_review"})).await;
    let (status, approved) = t.act(id, &reviewer, json!({"action": "approve"})).await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    let end = t.clock_now().plus_seconds(90 * DAY);
    assert_eq!(held(&t, app, &dev).await[0]["expires_at"].as_str(), Some(end.to_rfc3339().as_str()));

    // Too early to renew.
    let (status, early) = apply(&t, app, &dev).await;
    assert_eq!(status, StatusCode::CONFLICT, "{early}");
    assert!(early["msg"].as_str().is_some_and(|m| m.contains("it can be renewed from 30 days before then")), "{early}");

    assert!(lifecycle(&t, None).await.notified.is_empty());
    t.clock.advance(61 * DAY); // 29 days left
    let run = lifecycle(&t, None).await;
    assert_eq!(
        run.notified,
        vec![(permgate_core::model::AppId(app), "talk_calendar".to_owned(), "expiry_30".to_owned())]
    );
    assert!(lifecycle(&t, None).await.notified.is_empty(), "once");
    t.clock.advance(23 * DAY); // 6 days left
    assert_eq!(lifecycle(&t, None).await.notified.len(), 1);
    assert!(lifecycle(&t, None).await.notified.is_empty());
    let reminders = audit_actions(&t).await.iter().filter(|a| *a == "grant.expiry_reminder").count();
    assert_eq!(reminders, 2);

    // Renewal: the new grant starts where the old one ends.
    let (status, renewal) = apply(&t, app, &dev).await;
    assert_eq!((status, renewal["state"].as_str()), (StatusCode::CREATED, Some("submitted")), "{renewal}");
    let rid = renewal["id"].as_i64().unwrap_or_default();
    t.act(rid, &reviewer, json!({"action": "start_review"})).await;
    let (status, body) = t.act(rid, &reviewer, json!({"action": "approve"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ends: Vec<String> =
        held(&t, app, &dev).await.iter().filter_map(|g| g["expires_at"].as_str().map(str::to_owned)).collect();
    assert!(ends.contains(&end.plus_seconds(90 * DAY).to_rfc3339()), "{ends:?}");

    // Past the first end, the renewal holds it.
    t.clock.advance(7 * DAY);
    let user = format!("Bearer {}", t.user_token(app, "u1", "talk_calendar"));
    let d = t.check("GET", CALENDARS, &user).await;
    assert!(d["allow"] == true && d["restriction"].is_null(), "{d}");
}

/// Applies for the calendar permission and has the reviewer approve it.
async fn approved(t: &TestApp, app: i64, dev: &str, reviewer: &str) {
    let (status, request) = apply(t, app, dev).await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    let id = request["id"].as_i64().unwrap_or_default();
    t.act(id, reviewer, json!({"action": "start_review"})).await;
    let (status, body) = t.act(id, reviewer, json!({"action": "approve"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Renewed before its end, a grant is held on by the renewal: its end brings no reminder, and its
/// disuse no warning (reaping it revoked the renewal with it).
#[tokio::test]
async fn a_renewed_grant_gets_no_reminder_and_no_unused_warning_of_its_own() {
    let t = TestApp::spawn_with(calendar_with("default_duration_days = 90")).await;
    let (_, reviewer) = t.account("rita", "reviewer").await;
    let (app, dev) = ready_app(&t, "dev").await;
    approved(&t, app, &dev, &reviewer).await;
    t.clock.advance(61 * DAY); // 29 days left
    assert_eq!(lifecycle(&t, None).await.notified.len(), 1, "the 30-day reminder");
    approved(&t, app, &dev, &reviewer).await; // the renewal, from the first grant's end
    assert_eq!(held(&t, app, &dev).await.len(), 2);

    t.clock.advance(23 * DAY); // 6 days left on the first grant, 96 on the renewal
    let policy = Some(ReapPolicy { unused_days: 30, warning_days: 14 });
    let run = lifecycle(&t, policy).await;
    assert!(run.notified.is_empty() && run.reaped.is_empty(), "{run:?}");
    assert_eq!(held(&t, app, &dev).await.len(), 2);
}

#[tokio::test]
async fn a_time_limited_quota_boost_reverts_by_itself() {
    let t = TestApp::spawn().await;
    let (_, dev) = t.account("dev", "developer").await;
    let app = t.app(&dev, "Maps").await;
    let id = app["id"].as_i64().unwrap_or_default();
    let until = t.clock_now().plus_seconds(DAY / 2);
    let boost = json!({"permission": "increased_quota", "reason": "campaign week", "expires_at": until, "params": {"rule": "local_keyword_search_daily", "limit": 250000}});
    let (status, body) = t.post(&format!("/v1/apps/{id}/permissions"), &t.admin, boost).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let limit = |usage: &Value| {
        usage["rules"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["rule"] == "local_keyword_search_daily"))
            .map(|r| r["limit"].clone())
    };
    let (_, usage) = t.get(&format!("/v1/apps/{id}/usage"), &dev).await;
    assert_eq!(limit(&usage), Some(json!(250000)));
    t.clock.advance(DAY / 2 + 1);
    let (_, usage) = t.get(&format!("/v1/apps/{id}/usage"), &dev).await;
    assert_eq!(limit(&usage), Some(json!(100000)), "back to the catalog's limit");
}

#[tokio::test]
async fn an_unused_grant_is_warned_about_then_revoked_and_can_be_applied_for_again() {
    let t = TestApp::spawn().await;
    let (app, dev) = ready_app(&t, "dev").await;
    let grant = json!({"permission": "talk_calendar", "reason": "pilot"});
    assert_eq!(t.post(&format!("/v1/apps/{app}/permissions"), &t.admin, grant).await.0, StatusCode::CREATED);
    // User tokens live an hour: one is signed at each call's time.
    let user = |t: &TestApp| format!("Bearer {}", t.user_token(app, "u1", "talk_calendar"));
    let policy = Some(ReapPolicy { unused_days: 30, warning_days: 14 });

    // Used on day 10, so the stretch of disuse starts then.
    t.clock.advance(10 * DAY);
    let d = t.check("GET", CALENDARS, &user(&t)).await;
    assert!(d["allow"] == true && d["restriction"].is_null(), "{d}");
    let saved = t.store(|s| s.save_grant_usage().unwrap_or_else(|e| unreachable!("{e}"))).await;
    assert_eq!(saved, 1, "the call's use of talk_calendar is saved");
    t.clock.advance(29 * DAY);
    let early = lifecycle(&t, policy).await;
    assert!(early.notified.is_empty(), "29 days unused: {early:?}");
    t.clock.advance(DAY);
    let warned = lifecycle(&t, policy).await;
    assert_eq!(warned.notified.len(), 1, "{warned:?}");
    assert_eq!(warned.notified[0].2, "unused");

    // Used during the warning: no revocation; a new stretch of disuse starts.
    t.clock.advance(3 * DAY);
    t.check("GET", CALENDARS, &user(&t)).await;
    t.store(|s| s.save_grant_usage().unwrap_or_else(|e| unreachable!("{e}"))).await;
    t.clock.advance(14 * DAY);
    let run1 = lifecycle(&t, policy).await;
    assert!(run1.reaped.is_empty() && run1.notified.is_empty(), "{run1:?}");

    // Unused again for 30 days: a new warning, then, 14 days on, the revocation.
    t.clock.advance(16 * DAY);
    assert_eq!(lifecycle(&t, policy).await.notified.len(), 1);
    t.clock.advance(13 * DAY);
    assert!(lifecycle(&t, policy).await.reaped.is_empty(), "13 days into the warning");
    t.clock.advance(DAY);
    let reaped = lifecycle(&t, policy).await;
    assert_eq!(reaped.reaped, vec![(permgate_core::model::AppId(app), "talk_calendar".to_owned())]);
    assert_eq!(
        t.check("GET", CALENDARS, &user(&t)).await["restriction"],
        "members_only",
        "revoked: members only again"
    );
    assert!(held(&t, app, &dev).await.is_empty());
    let actions = audit_actions(&t).await;
    assert_eq!(actions.iter().filter(|a| *a == "grant.unused_warning").count(), 2);
    assert_eq!(actions.iter().filter(|a| *a == "grant.reap").count(), 1);
    assert!(lifecycle(&t, policy).await.reaped.is_empty(), "once");

    // Restorable by applying again.
    let (status, request) = apply(&t, app, &dev).await;
    assert_eq!((status, request["state"].as_str()), (StatusCode::CREATED, Some("submitted")), "{request}");
}

#[tokio::test]
async fn the_lifecycle_runs_on_request_for_admins() {
    let t = TestApp::spawn().await;
    let (app, dev) = ready_app(&t, "dev").await;
    let grant =
        json!({"permission": "talk_calendar", "reason": "pilot", "expires_at": t.clock_now().plus_seconds(20 * DAY)});
    assert_eq!(t.post(&format!("/v1/apps/{app}/permissions"), &t.admin, grant).await.0, StatusCode::CREATED);
    assert_eq!(t.post("/v1/grants/lifecycle", &dev, json!({})).await.0, StatusCode::FORBIDDEN);
    let (status, body) = t.post("/v1/grants/lifecycle", &t.admin, json!({"reap_unused_days": "x"})).await;
    assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{body}");
    let (status, run) = t.post("/v1/grants/lifecycle", &t.admin, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run, json!({"notified": [[app, "talk_calendar", "expiry_30"]], "reaped": [], "lapsed": []}));
    t.clock.advance(31 * DAY);
    let (_, run) = t.post("/v1/grants/lifecycle", &t.admin, json!({"reap_unused_days": 30})).await;
    assert_eq!(run["notified"], json!([]), "expired grants are not live: {run}");
}

/// A permission that raises one quota rule is one holding, whether its grant names the rule (a
/// reviewed request's does) or not (an operator's, as the README writes it): renewed, the
/// operator's grant gets no reminder of its own.
#[tokio::test]
async fn an_operator_quota_grant_renewed_by_a_request_is_one_holding() {
    let t = TestApp::spawn().await;
    let (_, reviewer) = t.account("rita", "reviewer").await;
    let (app, dev) = ready_app(&t, "dev").await;
    let until = t.clock_now().plus_seconds(20 * DAY);
    let grant =
        json!({"permission": "talk_share_quota", "reason": "launch", "expires_at": until, "params": {"limit": 50000}});
    let (status, body) = t.post(&format!("/v1/apps/{app}/permissions"), &t.admin, grant).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let form = [
        ("permission", "talk_share_quota"),
        ("service_url", "https://share.example.com"),
        ("reason", "More shares after launch"),
        ("requested_limit", "60000"),
    ];
    let (status, request) = t.apply(app, &dev, &form, Some(("screen.png", TINY_PNG.to_vec()))).await;
    assert_eq!(status, StatusCode::CREATED, "a renewal within 30 days of the end: {request}");
    let id = request["id"].as_i64().unwrap_or_default();
    t.act(id, &reviewer, json!({"action": "start_review"})).await;
    let (status, body) = t.act(id, &reviewer, json!({"action": "approve"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    t.clock.advance(14 * DAY); // 6 days left on the operator's grant
    let run = lifecycle(&t, None).await;
    assert!(run.notified.is_empty(), "the renewal holds on: {run:?}");
}

/// `increased_quota` is held once per quota rule: its reminders are per rule's grant, and say
/// which rule to apply for again.
#[tokio::test]
async fn a_quota_boost_per_rule_is_reminded_of_by_its_rule() {
    let t = TestApp::spawn().await;
    let (app, _) = ready_app(&t, "dev").await;
    let until = t.clock_now().plus_seconds(20 * DAY);
    for rule in ["local_keyword_search_daily", "local_category_search_daily"] {
        let grant = json!({"permission": "increased_quota", "reason": "campaign", "expires_at": until,
            "params": {"rule": rule, "limit": 200000}});
        let (status, body) = t.post(&format!("/v1/apps/{app}/permissions"), &t.admin, grant).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(lifecycle(&t, None).await.notified.len(), 2, "one reminder per rule's grant");
    let (_, audit) = t.get("/v1/audit", &t.admin).await;
    let mut rules: Vec<String> = audit["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["action"] == "grant.expiry_reminder")
        .filter_map(|e| e["after"]["rule"].as_str().map(str::to_owned))
        .collect();
    rules.sort();
    assert_eq!(rules, ["local_category_search_daily", "local_keyword_search_daily"]);
}

/// What an app holds by operators' grants, as `permission rule` (`-` for none), sorted.
async fn operator_holdings(t: &TestApp, app: i64, token: &str) -> Vec<String> {
    let (_, body) = t.get(&format!("/v1/apps/{app}/permissions"), token).await;
    let mut held: Vec<String> = body["permissions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["source"] == "operator")
        .map(|g| format!("{} {}", g["permission"].as_str().unwrap_or(""), g["params"]["rule"].as_str().unwrap_or("-")))
        .collect();
    held.sort();
    held
}

// Reaping revokes the unused grant and what needed it: a permission whose prerequisite it was
// goes along, audited (it stayed, held without its prerequisite).
permgate_testkit::both_backends! {
    async fn reaping_revokes_what_needed_the_reaped_permission(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Ads").await["id"].as_i64().unwrap_or_default();
        let path = format!("/v1/apps/{app}/permissions");
        let grant = |permission: &str| json!({"permission": permission, "reason": "pilot"});
        assert_eq!(t.post(&path, &t.admin, grant("kakao_moment")).await.0, StatusCode::CREATED);
        t.clock.advance(20 * DAY);
        assert_eq!(t.post(&path, &t.admin, grant("moment_message_ad_partner")).await.0, StatusCode::CREATED);
        assert_eq!(t.post(&path, &t.admin, grant("talk_calendar")).await.0, StatusCode::CREATED);
        let policy = Some(ReapPolicy { unused_days: 30, warning_days: 14 });

        // Day 30: kakao_moment is warned; day 44: it is revoked, and the partner permission,
        // which needs it, with it; talk_calendar, granted with the partner one, stays.
        t.clock.advance(10 * DAY);
        let run = lifecycle(&t, policy).await;
        assert_eq!(run.notified.len(), 1, "{run:?}");
        t.clock.advance(14 * DAY);
        let run = lifecycle(&t, policy).await;
        assert_eq!(run.reaped, vec![(permgate_core::model::AppId(app), "kakao_moment".to_owned())], "{run:?}");
        assert_eq!(operator_holdings(&t, app, &dev).await, vec!["talk_calendar -"]);
        let (_, audit) = t.get(&format!("/v1/audit?app_id={app}"), &t.admin).await;
        let reap = audit["events"].as_array().into_iter().flatten().find(|e| e["action"] == "grant.reap");
        assert_eq!(reap.map(|e| &e["after"]["also_revoked"]), Some(&json!(["moment_message_ad_partner"])), "{audit}");
    }
}

// A grant that runs out takes along what needed it, as a revocation does: once, audited; a
// grant nothing needs ends alone.
permgate_testkit::both_backends! {
    async fn the_end_of_a_grant_takes_what_needed_it(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Ads").await["id"].as_i64().unwrap_or_default();
        let path = format!("/v1/apps/{app}/permissions");
        let until = |days: i64| t.clock_now().plus_seconds(days * DAY);
        let grants = [
            json!({"permission": "kakao_moment", "reason": "trial", "expires_at": until(10)}),
            json!({"permission": "moment_message_ad_partner", "reason": "partner"}),
            json!({"permission": "talk_calendar", "reason": "pilot", "expires_at": until(5)}),
        ];
        for body in grants {
            let (status, made) = t.post(&path, &t.admin, body).await;
            assert_eq!(status, StatusCode::CREATED, "{made}");
        }
        // Day 6: talk_calendar has ended; nothing needs it.
        t.clock.advance(6 * DAY);
        let run = lifecycle(&t, None).await;
        assert!(run.lapsed.is_empty(), "{run:?}");
        assert!(operator_holdings(&t, app, &dev).await.contains(&"moment_message_ad_partner -".to_owned()));
        // Day 11: kakao_moment has ended: the partner permission goes, audited, once.
        t.clock.advance(5 * DAY);
        let run = lifecycle(&t, None).await;
        assert_eq!(run.lapsed, vec![(permgate_core::model::AppId(app), "kakao_moment".to_owned())], "{run:?}");
        assert!(operator_holdings(&t, app, &dev).await.is_empty());
        let (_, audit) = t.get(&format!("/v1/audit?app_id={app}"), &t.admin).await;
        let lapses: Vec<&Value> =
            audit["events"].as_array().into_iter().flatten().filter(|e| e["action"] == "grant.lapse").collect();
        assert_eq!(lapses.len(), 1, "{audit}");
        assert_eq!(lapses[0]["after"]["also_revoked"], json!(["moment_message_ad_partner"]), "{audit}");
        assert!(lifecycle(&t, None).await.lapsed.is_empty(), "once");
    }
}
