//! The review workflow end to end over HTTP: eligibility, applications with evidence, reviewer
//! decisions, the grant an approval creates, and the errors of every wrong move.

use permgate_testkit::{TINY_PNG, TestApp, both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CALENDARS: &str = "/v2/api/calendar/calendars";
const MOMENT: &str = "/openapi/v4/adAccounts/pages";

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_default()
}

/// An app owned by a new developer, with `consent` set and the eligibility terms agreed.
async fn ready_app(t: &TestApp, consent: &[&str]) -> (i64, String) {
    let (_, dev) = t.account("dev", "developer").await;
    let app = id_of(&t.app(&dev, "Calendar app").await);
    for scope in consent {
        let body = json!({"consent_type": "optional", "purpose": "show the user's calendar"});
        let (status, set) = t.put(&format!("/v1/apps/{app}/consent-items/{scope}"), &dev, body).await;
        assert_eq!(status, StatusCode::OK, "{set}");
    }
    let (status, agreed) = t.post(&format!("/v1/apps/{app}/eligibility"), &dev, json!({})).await;
    assert_eq!((status, agreed["agreed"].as_bool()), (StatusCode::OK, Some(true)), "{agreed}");
    (app, dev)
}

fn calendar_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("permission", "talk_calendar"),
        ("service_url", "https://calendar.example.com"),
        ("reason", "Users add our events to their Talk Calendar"),
        ("usage_scenario", "Log in, pick an event, tap 'add to calendar'"),
    ]
}

both_backends! {
    async fn a_talk_calendar_request_goes_through_hold_and_supplement_to_approval(t) {
        let (app, dev) = ready_app(&t, &["talk_calendar"]).await;
        let (_, rev) = t.account("rev", "reviewer").await;
        let user = format!("Bearer {}", t.user_token(app, "u1", "talk_calendar"));
        let before = t.check("GET", CALENDARS, &user).await;
        assert_eq!((before["allow"].as_bool(), before["restriction"].as_str()), (Some(true), Some("members_only")), "{before}");

        let (status, req) = t.apply(app, &dev, &calendar_form(), Some(("screen.png", TINY_PNG.to_vec()))).await;
        assert_eq!(status, StatusCode::CREATED, "{req}");
        assert_eq!((req["state"].as_str(), req["evidence"]["content_type"].as_str()), (Some("submitted"), Some("image/png")));
        let id = id_of(&req);

        let (status, r) = t.act(id, &rev, json!({"action": "start_review"})).await;
        assert_eq!((status, r["state"].as_str()), (StatusCode::OK, Some("in_review")), "{r}");
        let hold = json!({"action": "hold", "reason_code": "insufficient_usage_scenario", "comment": "Show the screen where events are added"});
        let (status, r) = t.act(id, &rev, hold).await;
        assert_eq!((status, r["state"].as_str()), (StatusCode::OK, Some("on_hold")), "{r}");
        let (status, r) = t.act(id, &dev, json!({"action": "supplement", "comment": "Added the flow in the scenario"})).await;
        assert_eq!((status, r["state"].as_str()), (StatusCode::OK, Some("submitted")), "{r}");
        t.act(id, &rev, json!({"action": "start_review"})).await;
        let (status, r) = t.act(id, &rev, json!({"action": "approve", "comment": "OK"})).await;
        assert_eq!((status, r["state"].as_str()), (StatusCode::OK, Some("approved")), "{r}");
        assert!(r["grant_id"].as_i64().is_some(), "{r}");

        let after = t.check("GET", CALENDARS, &user).await;
        assert_eq!(after["allow"], true);
        assert!(after.get("restriction").is_none(), "{after}");

        // The applicant reads the history, with the hold's reason as the catalog words it.
        let (status, full) = t.get(&format!("/v1/permission-requests/{id}"), &dev).await;
        assert_eq!(status, StatusCode::OK);
        let steps: Vec<&str> = full["history"].as_array().map(|h| h.iter().filter_map(|e| e["to"].as_str()).collect()).unwrap_or_default();
        assert_eq!(steps, ["submitted", "in_review", "on_hold", "submitted", "in_review", "approved"]);
        assert_eq!(full["history"][2]["reason"], "the reason and usage scenario are insufficient");
        let (_, held) = t.get(&format!("/v1/apps/{app}/permissions"), &dev).await;
        assert_eq!((held["permissions"][0]["permission"].as_str(), held["permissions"][0]["source"].as_str()), (Some("talk_calendar"), Some("review")));

        // The evidence comes back byte for byte to a reviewer.
        let resp = t.client.get(format!("{}/v1/permission-requests/{id}/evidence", t.base)).bearer_auth(&rev).send().await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("image/png"));
        assert_eq!(resp.headers().get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"));
        let csp = resp.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(csp.starts_with("sandbox;") && csp.contains("default-src 'none'"), "uploaded content runs nothing: {csp}");
        assert_eq!(resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default(), TINY_PNG);

        // Every transition is in the audit trail, which verifies.
        let (_, audit) = t.get(&format!("/v1/audit?app_id={app}"), &rev).await;
        let actions: Vec<&str> = audit["events"].as_array().map(|e| e.iter().filter_map(|e| e["action"].as_str()).filter(|a| a.starts_with("request.")).collect()).unwrap_or_default();
        assert_eq!(actions, ["request.submit", "request.start_review", "request.hold", "request.supplement", "request.start_review", "request.approve"]);
        let events = t.store(|s| s.store.audit_events(None, usize::MAX)).await.unwrap_or_default();
        let head = t.store(|s| s.store.audit_head()).await.ok().flatten();
        assert_eq!(permgate_core::audit::verify_trail(&events, head.as_ref()), Ok(()));
    }
}

both_backends! {
    async fn a_kakao_moment_approval_turns_minus_5_into_allowed_and_a_rejection_can_be_reapplied(t) {
        let (app, dev) = ready_app(&t, &[]).await;
        let (_, rev) = t.account("rev", "reviewer").await;
        let user = format!("Bearer {}", t.user_token(app, "u1", ""));
        assert_eq!(t.check("GET", MOMENT, &user).await["code"], -5);
        let form = [("permission", "kakao_moment"), ("service_url", "https://ads.example.com"), ("reason", "We are a certified agency")];
        let pdf = b"%PDF-1.7\n%agency certificate\n".to_vec();

        // Kakao Moment needs a Biz app first: -5 naming it.
        let (status, e) = t.apply(app, &dev, &form, Some(("cert.pdf", pdf.clone()))).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::FORBIDDEN, Some(-5)), "{e}");
        assert!(e["msg"].as_str().unwrap_or_default().contains("Biz app"), "{e}");
        let (status, e) = t.put(&format!("/v1/apps/{app}/business"), &dev, json!({"business_registration_number": "120-81-47522", "company_name": "Ads Co"})).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{e}");
        let (status, biz) = t.put(&format!("/v1/apps/{app}/business"), &dev, json!({"business_registration_number": "1208147521", "company_name": "Ads Co"})).await;
        assert_eq!((status, biz["classification"].as_str()), (StatusCode::OK, Some("biz")), "{biz}");

        let (status, req) = t.apply(app, &dev, &form, Some(("cert.pdf", pdf.clone()))).await;
        assert_eq!(status, StatusCode::CREATED, "{req}");
        let first = id_of(&req);
        // One open request per app and permission.
        let (status, e) = t.apply(app, &dev, &form, Some(("cert.pdf", pdf.clone()))).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{e}");

        t.act(first, &rev, json!({"action": "start_review"})).await;
        let (status, e) = t.act(first, &rev, json!({"action": "reject", "reason_code": "mockup_not_accepted", "comment": "x"})).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "mockup_not_accepted is a hold reason: {e}");
        let (status, e) = t.act(first, &rev, json!({"action": "reject", "reason_code": "service_not_verifiable"})).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{e}");
        let reject = json!({"action": "reject", "reason_code": "personal_data_not_masked", "comment": "Mask the phone numbers"});
        let (status, r) = t.act(first, &rev, reject).await;
        assert_eq!((status, r["state"].as_str()), (StatusCode::OK, Some("rejected")), "{r}");
        assert_eq!(t.check("GET", MOMENT, &user).await["code"], -5);

        // A closed request takes no more actions; a new application is the way.
        let (status, e) = t.act(first, &dev, json!({"action": "supplement", "comment": "masked"})).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{e}");
        let (status, again) = t.apply(app, &dev, &form, Some(("cert.pdf", pdf))).await;
        assert_eq!(status, StatusCode::CREATED, "{again}");
        let second = id_of(&again);
        t.act(second, &rev, json!({"action": "start_review"})).await;
        let (status, r) = t.act(second, &rev, json!({"action": "approve"})).await;
        assert_eq!((status, r["state"].as_str()), (StatusCode::OK, Some("approved")), "{r}");
        assert_eq!(t.check("GET", MOMENT, &user).await["allow"], true);

        // Already held: a third application is refused.
        let (status, e) = t.apply(app, &dev, &form, Some(("cert.pdf", b"%PDF-1.4".to_vec()))).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{e}");
        let (_, list) = t.get(&format!("/v1/permission-requests?app_id={app}&state=rejected"), &rev).await;
        assert_eq!(list["requests"].as_array().map(|r| r.iter().map(id_of).collect::<Vec<_>>()), Some(vec![first]));
    }
}

both_backends! {
    async fn bad_files_missing_prerequisites_and_illegal_moves_get_clear_errors(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let app = id_of(&t.app(&dev, "Calendar app").await);
        let (reader_id, reader) = t.account("reader", "developer").await;
        t.post(&format!("/v1/apps/{app}/members"), &dev, json!({"account_id": reader_id, "role": "reader"})).await;
        let (_, rev) = t.account("rev", "reviewer").await;
        let (_, stranger) = t.account("stranger", "developer").await;
        let png = || Some(("screen.png", TINY_PNG.to_vec()));
        let expect = |got: (StatusCode, Value), status: StatusCode, code: i64, needle: &str| {
            assert_eq!((got.0, got.1["code"].as_i64()), (status, Some(code)), "{}", got.1);
            let msg = got.1["msg"].as_str().unwrap_or_default().to_owned();
            assert!(msg.contains(needle), "`{msg}` should mention `{needle}`");
        };

        // Roles first: a reader sees but cannot apply; a stranger cannot even see.
        expect(t.apply(app, &reader, &calendar_form(), png()).await, StatusCode::FORBIDDEN, -5, "owner or an editor");
        expect(t.apply(app, &stranger, &calendar_form(), png()).await, StatusCode::FORBIDDEN, -5, "not a member");
        // The consent item the feature uses must be set: -3 naming it.
        expect(t.apply(app, &dev, &calendar_form(), png()).await, StatusCode::FORBIDDEN, -3, "`talk_calendar`");
        let body = json!({"consent_type": "optional", "purpose": "calendar"});
        t.put(&format!("/v1/apps/{app}/consent-items/talk_calendar"), &dev, body).await;
        // The eligibility terms come first.
        expect(t.apply(app, &dev, &calendar_form(), png()).await, StatusCode::CONFLICT, -409, "eligibility");
        t.post(&format!("/v1/apps/{app}/eligibility"), &dev, json!({})).await;

        // Files: judged by content, at most 20 MB, required for an additional feature.
        let script = Some(("screen.png", b"#!/bin/sh\nrm -rf /\n".to_vec()));
        expect(t.apply(app, &dev, &calendar_form(), script).await, StatusCode::BAD_REQUEST, -2, "not a JPG, PNG or PDF");
        let mut big = b"%PDF-1.7\n".to_vec();
        big.resize(20 * 1024 * 1024 + 1, b' ');
        expect(t.apply(app, &dev, &calendar_form(), Some(("big.pdf", big))).await, StatusCode::BAD_REQUEST, -2, "20 MB");
        expect(t.apply(app, &dev, &calendar_form(), None).await, StatusCode::BAD_REQUEST, -2, "evidence file");
        let no_url: Vec<_> = calendar_form().into_iter().filter(|(k, _)| *k != "service_url").collect();
        expect(t.apply(app, &dev, &no_url, png()).await, StatusCode::BAD_REQUEST, -2, "service_url");
        let mut odd = calendar_form();
        odd.push(("colour", "blue"));
        expect(t.apply(app, &dev, &odd, png()).await, StatusCode::BAD_REQUEST, -2, "colour");
        let retired = [("permission", "multi_app"), ("service_url", "https://x.example.com"), ("reason", "two packages")];
        expect(t.apply(app, &dev, &retired, png()).await, StatusCode::CONFLICT, -409, "retired");
        let app_type = [("permission", "biz_app"), ("service_url", "https://x.example.com"), ("reason", "r")];
        expect(t.apply(app, &dev, &app_type, png()).await, StatusCode::BAD_REQUEST, -2, "app's type");
        // A quota request names its limit; JSON works for a general request without a file.
        let requests = format!("/v1/apps/{app}/permission-requests");
        let quota = json!({"permission": "increased_quota", "service_url": "https://x.example.com", "reason": "growth"});
        expect(t.post(&requests, &dev, quota).await, StatusCode::BAD_REQUEST, -2, "requested_limit");
        let quota = json!({"permission": "increased_quota", "service_url": "https://x.example.com", "reason": "growth",
            "requested_limit": 200000, "requested_rule": "local_keyword_search_daily"});
        expect(t.post(&requests, &dev, quota).await, StatusCode::FORBIDDEN, -5, "Biz app");

        let (status, req) = t.apply(app, &dev, &calendar_form(), png()).await;
        assert_eq!(status, StatusCode::CREATED, "{req}");
        let id = id_of(&req);
        // Every illegal transition is 409 and says what to do.
        expect(t.act(id, &rev, json!({"action": "approve"})).await, StatusCode::CONFLICT, -409, "start the review first");
        expect(t.act(id, &dev, json!({"action": "supplement", "comment": "more"})).await, StatusCode::CONFLICT, -409, "submitted");
        // Reviewer actions belong to reviewers who are not members of the app.
        expect(t.act(id, &dev, json!({"action": "start_review"})).await, StatusCode::FORBIDDEN, -5, "reviewer");
        let (rev2_id, rev2) = t.account("rev2", "reviewer").await;
        t.post(&format!("/v1/apps/{app}/members"), &dev, json!({"account_id": rev2_id, "role": "editor"})).await;
        expect(t.act(id, &rev2, json!({"action": "start_review"})).await, StatusCode::FORBIDDEN, -5, "their own apps");
        expect(t.act(id, &reader, json!({"action": "withdraw"})).await, StatusCode::FORBIDDEN, -5, "owner or an editor");
        expect(t.act(id, &rev, json!({"action": "dance"})).await, StatusCode::BAD_REQUEST, -2, "action");
        expect(t.act(9999, &rev, json!({"action": "start_review"})).await, StatusCode::NOT_FOUND, -404, "9999");
        // Visibility: members and reviewers read a request; a stranger does not, and lists only their apps'.
        assert_eq!(t.get(&format!("/v1/permission-requests/{id}"), &reader).await.0, StatusCode::OK);
        assert_eq!(t.get(&format!("/v1/permission-requests/{id}"), &stranger).await.0, StatusCode::FORBIDDEN);
        let (_, mine) = t.get("/v1/permission-requests", &stranger).await;
        assert_eq!(mine["requests"].as_array().map(Vec::len), Some(0), "{mine}");
        let (_, all) = t.get("/v1/permission-requests?state=submitted", &rev).await;
        assert_eq!(all["requests"].as_array().map(Vec::len), Some(1), "{all}");
        expect(t.get("/v1/permission-requests?state=pending", &rev).await, StatusCode::BAD_REQUEST, -2, "state");

        let (status, r) = t.act(id, &dev, json!({"action": "withdraw"})).await;
        assert_eq!((status, r["state"].as_str()), (StatusCode::OK, Some("withdrawn")), "{r}");
        expect(t.act(id, &rev, json!({"action": "start_review"})).await, StatusCode::CONFLICT, -409, "closed");
    }
}

both_backends! {
    async fn an_approval_with_an_expiry_and_a_revocation_take_effect_on_the_next_decision(t) {
        let (app, dev) = ready_app(&t, &["talk_calendar"]).await;
        let (_, rev) = t.account("rev", "reviewer").await;
        let user = format!("Bearer {}", t.user_token(app, "u1", "talk_calendar"));
        let (_, req) = t.apply(app, &dev, &calendar_form(), Some(("s.png", TINY_PNG.to_vec()))).await;
        let id = id_of(&req);
        t.act(id, &rev, json!({"action": "start_review"})).await;
        let expires = permgate_core::time::Timestamp(t.clock_now().0 + 3600).to_rfc3339();
        let (status, r) = t.act(id, &rev, json!({"action": "approve", "expires_at": expires})).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert!(t.check("GET", CALENDARS, &user).await.get("restriction").is_none());
        t.clock.advance(3600);
        assert_eq!(t.check("GET", CALENDARS, &user).await["restriction"], "members_only");

        // Expired: the app may apply again; this time the grant is revoked by a reviewer.
        let (status, again) = t.apply(app, &dev, &calendar_form(), Some(("s.png", TINY_PNG.to_vec()))).await;
        assert_eq!(status, StatusCode::CREATED, "{again}");
        t.act(id_of(&again), &rev, json!({"action": "start_review"})).await;
        t.act(id_of(&again), &rev, json!({"action": "approve"})).await;
        assert!(t.check("GET", CALENDARS, &user).await.get("restriction").is_none());
        let (status, _) = t.delete(&format!("/v1/apps/{app}/permissions/talk_calendar"), &rev, Some(json!({"reason": "abuse"}))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(t.check("GET", CALENDARS, &user).await["restriction"], "members_only");
    }
}

both_backends! {
    async fn a_request_for_a_permission_retired_while_in_review_cannot_be_approved(t) {
        let (app, dev) = ready_app(&t, &["talk_calendar"]).await;
        let (_, rev) = t.account("rev", "reviewer").await;
        // A reason typed into the console's text area, with its line breaks.
        let mut form = calendar_form();
        form[2] = ("reason", "Users add our events\r\nto their Talk Calendar");
        let (status, req) = t.apply(app, &dev, &form, Some(("screen.png", TINY_PNG.to_vec()))).await;
        assert_eq!(status, StatusCode::CREATED, "{req}");
        let id = id_of(&req);
        t.act(id, &rev, json!({"action": "start_review"})).await;

        let retired = permgate_core::catalog::DEFAULT_CATALOG
            .replacen("[[permissions]]\nid = \"talk_calendar\"\n", "[[permissions]]\nid = \"talk_calendar\"\nretired = true\n", 1);
        std::fs::write(t.catalog_file(), retired).unwrap_or_else(|e| unreachable!("{e}"));
        let (status, body) = t.post("/v1/catalog/reload", &t.admin, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let (status, r) = t.act(id, &rev, json!({"action": "approve", "comment": "OK"})).await;
        assert_eq!((status, r["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{r}");
        assert!(r["msg"].as_str().is_some_and(|m| m.contains("retired")), "{r}");
        let (_, held) = t.get(&format!("/v1/apps/{app}/permissions"), &dev).await;
        assert_eq!(held["permissions"].as_array().map(Vec::len), Some(0), "{held}");
        let (status, r) = t.act(id, &rev, json!({"action": "reject", "reason_code": "policy_violation", "comment": "The permission is retired.\nApply for its successor."})).await;
        assert_eq!((status, r["state"].as_str()), (StatusCode::OK, Some("rejected")), "{r}");
    }
}

both_backends! {
    async fn increased_quota_raises_several_rules_one_request_and_grant_each(t) {
        let (app, dev) = ready_app(&t, &[]).await;
        let (_, rev) = t.account("rev", "reviewer").await;
        let (status, biz) = t.put(&format!("/v1/apps/{app}/business"), &dev, json!({"business_registration_number": "1208147521", "company_name": "Ads Co"})).await;
        assert_eq!(status, StatusCode::OK, "{biz}");
        let requests = format!("/v1/apps/{app}/permission-requests");
        let ask = |rule: &str, limit: u64| json!({"permission": "increased_quota", "service_url": "https://x.example.com",
            "reason": "growth", "requested_limit": limit, "requested_rule": rule});
        let (status, keyword) = t.post(&requests, &dev, ask("local_keyword_search_daily", 200_000)).await;
        assert_eq!(status, StatusCode::CREATED, "{keyword}");
        // One open request per rule: the same rule again is refused, another rule is a request of its own.
        let (status, e) = t.post(&requests, &dev, ask("local_keyword_search_daily", 300_000)).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{e}");
        assert!(e["msg"].as_str().is_some_and(|m| m.contains("`increased_quota` for `local_keyword_search_daily`")), "{e}");
        let (status, category) = t.post(&requests, &dev, ask("local_category_search_daily", 150_000)).await;
        assert_eq!(status, StatusCode::CREATED, "{category}");
        for id in [id_of(&keyword), id_of(&category)] {
            assert_eq!(t.act(id, &rev, json!({"action": "start_review"})).await.0, StatusCode::OK);
            let (status, r) = t.act(id, &rev, json!({"action": "approve"})).await;
            assert_eq!((status, r["state"].as_str()), (StatusCode::OK, Some("approved")), "{r}");
        }
        // Each rule is raised to its own limit, from the next call.
        let (_, record) = t.get(&format!("/v1/apps/{app}"), &dev).await;
        let key = format!("KakaoAK {}", permgate_testkit::key_of(&record, "rest_api"));
        let keyword_call = t.check("GET", "/v2/local/search/keyword.json", &key).await;
        assert_eq!(keyword_call["quota"]["limit"], 200_000, "{keyword_call}");
        let category_call = t.check("GET", "/v2/local/search/category.json", &key).await;
        assert_eq!(category_call["quota"]["limit"], 150_000, "{category_call}");
        // Held for a rule, it is not asked for again (until renewal opens); an operator cannot grant it twice either.
        let (status, e) = t.post(&requests, &dev, ask("local_category_search_daily", 300_000)).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{e}");
        assert!(e["msg"].as_str().is_some_and(|m| m.contains("already holds `increased_quota` for `local_category_search_daily`")), "{e}");
        let grant = json!({"permission": "increased_quota", "reason": "again", "params": {"rule": "local_keyword_search_daily", "limit": 5}});
        let (status, e) = t.post(&format!("/v1/apps/{app}/permissions"), &t.admin, grant).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{e}");
        let grant = json!({"permission": "increased_quota", "reason": "third rule", "params": {"rule": "local_transcoord_daily", "limit": 7}});
        let (status, e) = t.post(&format!("/v1/apps/{app}/permissions"), &t.admin, grant).await;
        assert_eq!(status, StatusCode::CREATED, "{e}");
        let (_, held) = t.get(&format!("/v1/apps/{app}/permissions"), &dev).await;
        let raised = held["permissions"].as_array().map_or(0, |p| p.iter().filter(|g| g["permission"] == "increased_quota").count());
        assert_eq!(raised, 3, "{held}");
        // A revocation naming a rule takes back that rule's raise alone.
        let revoke = format!("/v1/apps/{app}/permissions/increased_quota");
        let (status, e) = t.delete(&revoke, &t.admin, Some(json!({"reason": "campaign over", "rule": "local_talk_nope"}))).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::NOT_FOUND, Some(-404)), "{e}");
        let (status, gone) = t.delete(&revoke, &t.admin, Some(json!({"reason": "campaign over", "rule": "local_keyword_search_daily"}))).await;
        assert_eq!(status, StatusCode::OK, "{gone}");
        assert_eq!(t.check("GET", "/v2/local/search/keyword.json", &key).await["quota"]["limit"], 100_000);
        assert_eq!(t.check("GET", "/v2/local/search/category.json", &key).await["quota"]["limit"], 150_000);
    }
}

// A move the state forbids is answered as such first: approving a request not under review says
// to start the review (the grant's checks, run first, advised holding or rejecting it, itself
// refused from `submitted`), and approving it again says it is closed.
both_backends! {
    async fn an_approval_out_of_turn_is_refused_for_its_state(t) {
        let (app, dev) = ready_app(&t, &["talk_calendar"]).await;
        let (_, rev) = t.account("rev", "reviewer").await;
        let (status, req) = t.apply(app, &dev, &calendar_form(), Some(("s.png", TINY_PNG.to_vec()))).await;
        assert_eq!(status, StatusCode::CREATED, "{req}");
        let id = id_of(&req);
        // The consent item the permission needs goes: the grant's check would fail, but the
        // state is what is wrong.
        let (status, e) = t.delete(&format!("/v1/apps/{app}/consent-items/talk_calendar"), &dev, None).await;
        assert!(status.is_success(), "{e}");
        let (status, e) = t.act(id, &rev, json!({"action": "approve"})).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{e}");
        assert!(e["msg"].as_str().is_some_and(|m| m.contains("start the review first")), "{e}");
        t.consent(app, &dev, &["talk_calendar"]).await;
        assert_eq!(t.act(id, &rev, json!({"action": "start_review"})).await.0, StatusCode::OK);
        assert_eq!(t.act(id, &rev, json!({"action": "approve"})).await.0, StatusCode::OK);
        let (status, e) = t.act(id, &rev, json!({"action": "approve"})).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{e}");
        assert!(e["msg"].as_str().is_some_and(|m| m.contains("closed")), "{e}");
    }
}

// A grant that has ended is held no more: revoking it is refused as for one never made (it
// answered 200 and audited a revocation of nothing in force).
both_backends! {
    async fn an_ended_grant_cannot_be_revoked(t) {
        let (app, _) = ready_app(&t, &[]).await;
        let grants = format!("/v1/apps/{app}/permissions");
        let until = t.clock_now().plus_seconds(86_400);
        let body = json!({"permission": "kakao_moment", "reason": "trial", "expires_at": until});
        assert_eq!(t.post(&grants, &t.admin, body).await.0, StatusCode::CREATED);
        t.clock.advance(2 * 86_400);
        let (status, e) = t.delete(&format!("{grants}/kakao_moment"), &t.admin, Some(json!({"reason": "done"}))).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::NOT_FOUND, Some(-404)), "{e}");
        let (_, audit) = t.get(&format!("/v1/audit?app_id={app}"), &t.admin).await;
        assert!(!audit.to_string().contains("grant.revoke"), "{audit}");
    }
}

// A request whose permission the catalog dropped can still be closed by either side: rejected by
// a reviewer (only a withdrawal was possible, so it sat in the queue) and told to the members.
#[tokio::test]
async fn a_request_for_a_dropped_permission_can_be_rejected_and_is_told() {
    for postgres in [false, true] {
        let notify = permgate_core::notify::NotifySettings { email: true, webhook_url: None, public_url: None };
        let Some(t) = TestApp::spawn_notifying(notify, postgres).await else { continue };
        let (_, dev) = t.account_with_email("dev", "developer", "dev@example.com").await;
        let app = id_of(&t.app(&dev, "Ads").await);
        assert_eq!(t.post(&format!("/v1/apps/{app}/eligibility"), &dev, json!({})).await.0, StatusCode::OK);
        let (_, rev) = t.account("rev", "reviewer").await;
        let body = json!({"business_registration_number": "1208147521", "company_name": "Ads Co"});
        assert_eq!(t.put(&format!("/v1/apps/{app}/business"), &dev, body).await.0, StatusCode::OK);
        let ask = json!({"permission": "increased_quota", "service_url": "https://x.example.com", "reason": "growth",
            "requested_limit": 200000, "requested_rule": "local_keyword_search_daily"});
        let (status, req) = t.post(&format!("/v1/apps/{app}/permission-requests"), &dev, ask).await;
        assert_eq!(status, StatusCode::CREATED, "{req}");
        let id = id_of(&req);

        // The catalog drops increased_quota.
        let catalog = permgate_core::catalog::DEFAULT_CATALOG;
        let start = catalog.find("[[permissions]]\nid = \"increased_quota\"").unwrap_or_default();
        let end = start + catalog[start + 1..].find("\n[[").unwrap_or_default() + 1;
        assert!(end > start, "the default catalog declares increased_quota");
        let dropped = format!("{}{}", &catalog[..start], &catalog[end + 1..]);
        std::fs::write(t.catalog_file(), dropped).unwrap_or_else(|e| unreachable!("{e}"));
        let (status, body) = t.post("/v1/catalog/reload", &t.admin, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        assert_eq!(t.act(id, &rev, json!({"action": "start_review"})).await.0, StatusCode::OK);
        for refused in [
            json!({"action": "approve"}),
            json!({"action": "hold", "reason_code": "mockup_not_accepted", "comment": "x"}),
        ] {
            let (status, e) = t.act(id, &rev, refused).await;
            assert_eq!((status, e["code"].as_i64()), (StatusCode::CONFLICT, Some(-409)), "{e}");
            assert!(e["msg"].as_str().is_some_and(|m| m.contains("withdrawn or rejected")), "{e}");
        }
        let reject =
            json!({"action": "reject", "reason_code": "policy_violation", "comment": "the feature is retired"});
        let (status, done) = t.act(id, &rev, reject).await;
        assert_eq!((status, done["state"].as_str()), (StatusCode::OK, Some("rejected")), "{done}");
        let subjects: Vec<String> = t
            .store(move |s| s.store.messages(Some(permgate_core::model::AppId(app)), 50).unwrap_or_default())
            .await
            .into_iter()
            .map(|m| m.subject)
            .collect();
        assert!(subjects.iter().any(|s| s.contains("is rejected")), "the members are told: {subjects:?}");
    }
}

// The queue is read a page at a time, newest first, to its oldest request (it stopped at the
// newest 1,000, so the requests that had waited longest were the ones not shown).
both_backends! {
    async fn the_request_queue_is_read_page_by_page_to_its_oldest(t) {
        let (_, dev) = t.account("dev", "developer").await;
        let (_, rev) = t.account("rev", "reviewer").await;
        let mut made = Vec::new();
        for n in 0..5 {
            let app = id_of(&t.app(&dev, &format!("Calendar {n}")).await);
            t.consent(app, &dev, &["talk_calendar"]).await;
            assert_eq!(t.post(&format!("/v1/apps/{app}/eligibility"), &dev, json!({})).await.0, StatusCode::OK);
            let (status, req) = t.apply(app, &dev, &calendar_form(), Some(("s.png", TINY_PNG.to_vec()))).await;
            assert_eq!(status, StatusCode::CREATED, "{req}");
            made.push(id_of(&req));
        }
        made.reverse();
        let mut seen = Vec::new();
        let mut path = "/v1/permission-requests?state=submitted&limit=2".to_owned();
        loop {
            let (status, page) = t.get(&path, &rev).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let ids: Vec<i64> = page["requests"].as_array().into_iter().flatten().map(id_of).collect();
            assert!(ids.len() <= 2, "{page}");
            seen.extend(ids);
            match page["next_before"].as_i64() {
                Some(before) => path = format!("/v1/permission-requests?state=submitted&limit=2&before={before}"),
                None => break,
            }
        }
        assert_eq!(seen, made, "every request once, newest first");
        let (_, all) = t.get("/v1/permission-requests", &rev).await;
        assert!(all.get("next_before").is_none() && all["requests"].as_array().map(Vec::len) == Some(5), "{all}");
        for bad in ["limit=0", "limit=1001", "limit=x", "before=x"] {
            let (status, e) = t.get(&format!("/v1/permission-requests?{bad}"), &rev).await;
            assert_eq!((status, e["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{bad}: {e}");
        }
    }
}

// `increased_quota` raises whichever rule a request names, but only an app's own quota of some
// APIs: not the message API's (Kakao: it cannot be raised), not the per-sender, per-recipient or
// per-pair anti-spam limits, not the monthly total of all APIs. Operators are held to it too.
both_backends! {
    async fn increased_quota_cannot_raise_the_message_or_anti_spam_limits(t) {
        let (app, dev) = ready_app(&t, &[]).await;
        let body = json!({"business_registration_number": "1208147521", "company_name": "Ads Co"});
        assert_eq!(t.put(&format!("/v1/apps/{app}/business"), &dev, body).await.0, StatusCode::OK);
        let requests = format!("/v1/apps/{app}/permission-requests");
        let ask = |rule: &str| json!({"permission": "increased_quota", "service_url": "https://x.example.com",
            "reason": "growth", "requested_limit": 500_000, "requested_rule": rule});
        for rule in ["talk_message_daily", "talk_message_sender_daily", "talk_message_pair_daily", "api_monthly_total"] {
            let (status, e) = t.post(&requests, &dev, ask(rule)).await;
            assert_eq!((status, e["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{rule}: {e}");
            assert!(e["msg"].as_str().is_some_and(|m| m.contains("cannot be raised")), "{rule}: {e}");
        }
        let grant = json!({"permission": "increased_quota", "reason": "r", "params": {"rule": "talk_message_daily", "limit": 500_000}});
        let (status, e) = t.post(&format!("/v1/apps/{app}/permissions"), &t.admin, grant).await;
        assert_eq!((status, e["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{e}");
        let (status, made) = t.post(&requests, &dev, ask("local_keyword_search_daily")).await;
        assert_eq!(status, StatusCode::CREATED, "an app's own quota of some APIs can: {made}");
    }
}
