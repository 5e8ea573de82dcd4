//! The access-control matrix: every endpoint of the router against every kind of caller, from
//! one table. A route the table does not list fails the test, so a new endpoint cannot skip it.
//!
//! "Allowed" means the caller gets past access control: any answer but 401 and 403 (a body the
//! endpoint then finds wrong, or a state that forbids the change, is still allowed). "Refused"
//! means 401 for an anonymous caller and 403 for a signed-in one.

use permgate_testkit::{TINY_PNG, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// A developer who is not a member of the app.
    Other,
    Reader,
    Editor,
    Owner,
    Reviewer,
    /// A reviewer who is also a member (reader) of the app.
    ReviewerMember,
    Admin,
}

use Who::*;

const EVERYONE: &[Who] = &[Anonymous, Other, Reader, Editor, Owner, Reviewer, ReviewerMember, Admin];
const SIGNED_IN: &[Who] = &[Other, Reader, Editor, Owner, Reviewer, ReviewerMember, Admin];
const MEMBERS_AND_STAFF: &[Who] = &[Reader, Editor, Owner, Reviewer, ReviewerMember, Admin];
const EDITORS: &[Who] = &[Editor, Owner];
const OWNER: &[Who] = &[Owner];
const STAFF: &[Who] = &[Reviewer, ReviewerMember, Admin];
const ADMIN: &[Who] = &[Admin];
/// Deciding a request: staff who are not members of the app.
const DECIDERS: &[Who] = &[Reviewer, Admin];
const DEVELOPERS_AND_ADMIN: &[Who] = &[Other, Reader, Editor, Owner, Admin];
const OWNER_AND_ADMIN: &[Who] = &[Owner, Admin];
/// Endpoints that decide a forwarded call: the caller's account means nothing to them, so every
/// caller gets the same answer (here -401: an account token is no app credential).
const DECIDES: &[Who] = &[];

/// One endpoint: method, path as routed, the path called (placeholders filled from the world),
/// the body, and who may call it.
struct Row {
    method: &'static str,
    route: &'static str,
    call: &'static str,
    body: Option<fn(&World) -> Value>,
    allowed: &'static [Who],
}

const fn row(method: &'static str, route: &'static str, call: &'static str, allowed: &'static [Who]) -> Row {
    Row { method, route, call, body: None, allowed }
}

const fn with(
    method: &'static str,
    route: &'static str,
    call: &'static str,
    body: fn(&World) -> Value,
    allowed: &'static [Who],
) -> Row {
    Row { method, route, call, body: Some(body), allowed }
}

fn reason(_: &World) -> Value {
    json!({"reason": "access matrix"})
}

const TABLE: &[Row] = &[
    row("GET", "/", "/", EVERYONE),
    row("GET", "/console/app.js", "/console/app.js", EVERYONE),
    row("GET", "/console/app.css", "/console/app.css", EVERYONE),
    row("GET", "/v1/session", "/v1/session", EVERYONE),
    with("POST", "/v1/session", "/v1/session", |w| json!({"token": w.owner}), EVERYONE),
    row("DELETE", "/v1/session", "/v1/session", EVERYONE),
    row("GET", "/healthz", "/healthz", EVERYONE),
    row("GET", "/readyz", "/readyz", EVERYONE),
    row("GET", "/metrics", "/metrics", EVERYONE),
    row("GET", "/openapi.json", "/openapi.json", EVERYONE),
    with(
        "POST",
        "/v1/check",
        "/v1/check",
        |_| json!({"method": "GET", "path": "/v2/user/me", "headers": {}}),
        EVERYONE,
    ),
    row("GET", "/v1/authz", "/v1/authz", DECIDES),
    row("GET", "/v1/authz/{*original}", "/v1/authz/v2/user/me", DECIDES),
    row("GET", "/v1/catalog", "/v1/catalog", SIGNED_IN),
    with("POST", "/v1/catalog/reload", "/v1/catalog/reload", |_| json!({}), ADMIN),
    with("POST", "/v1/catalog/preview", "/v1/catalog/preview", |_| Value::String("x".into()), ADMIN),
    row("GET", "/v1/shadow-report", "/v1/shadow-report", STAFF),
    with("POST", "/v1/grants/lifecycle", "/v1/grants/lifecycle", |_| json!({}), ADMIN),
    with("POST", "/v1/accounts", "/v1/accounts", |_| json!({"name": "new", "role": "developer"}), ADMIN),
    row("GET", "/v1/accounts", "/v1/accounts", ADMIN),
    row("GET", "/v1/accounts/me", "/v1/accounts/me", SIGNED_IN),
    with("POST", "/v1/accounts/{id}/block", "/v1/accounts/{other_id}/block", reason, ADMIN),
    with("POST", "/v1/accounts/{id}/unblock", "/v1/accounts/{other_id}/unblock", reason, ADMIN),
    with(
        "POST",
        "/v1/apps",
        "/v1/apps",
        |_| json!({"name": "N", "company_name": "C", "category": "x"}),
        DEVELOPERS_AND_ADMIN,
    ),
    row("GET", "/v1/apps", "/v1/apps", SIGNED_IN),
    row("GET", "/v1/apps/{id}", "/v1/apps/{app}", MEMBERS_AND_STAFF),
    with("POST", "/v1/apps/{id}/keys", "/v1/apps/{app}/keys", |_| json!({"kind": "javascript"}), OWNER),
    row("DELETE", "/v1/apps/{id}/keys/{key_id}", "/v1/apps/{app}/keys/{js_key}", OWNER),
    row("POST", "/v1/apps/{id}/keys/{key_id}/rotate", "/v1/apps/{app}/keys/{rest_key}/rotate", OWNER),
    with(
        "PUT",
        "/v1/apps/{id}/keys/{key_id}/platforms",
        "/v1/apps/{app}/keys/{js_key}/platforms",
        |_| json!({"origins": ["https://a.example"]}),
        EDITORS,
    ),
    with(
        "POST",
        "/v1/apps/{id}/members",
        "/v1/apps/{app}/members",
        |w| json!({"account_id": w.other_id, "role": "reader"}),
        OWNER,
    ),
    row("DELETE", "/v1/apps/{id}/members/{account_id}", "/v1/apps/{app}/members/{reader_id}", OWNER),
    with(
        "PUT",
        "/v1/apps/{id}/products/{product}",
        "/v1/apps/{app}/products/kakao_login",
        |_| json!({"activated": true}),
        EDITORS,
    ),
    row("GET", "/v1/apps/{id}/permissions", "/v1/apps/{app}/permissions", MEMBERS_AND_STAFF),
    with(
        "POST",
        "/v1/apps/{id}/permissions",
        "/v1/apps/{app}/permissions",
        |_| json!({"permission": "kakao_moment", "reason": "contract"}),
        ADMIN,
    ),
    with("DELETE", "/v1/apps/{id}/permissions/{permission}", "/v1/apps/{app}/permissions/talk_calendar", reason, STAFF),
    row("GET", "/v1/apps/{id}/usage", "/v1/apps/{app}/usage", MEMBERS_AND_STAFF),
    row("GET", "/v1/apps/{id}/explain", "/v1/apps/{app}/explain?method=GET&path=/v2/user/me", MEMBERS_AND_STAFF),
    with("POST", "/v1/apps/{id}/block", "/v1/apps/{app}/block", reason, ADMIN),
    with("POST", "/v1/apps/{id}/unblock", "/v1/apps/{app}/unblock", reason, ADMIN),
    with(
        "PUT",
        "/v1/apps/{id}/paid-usage",
        "/v1/apps/{app}/paid-usage",
        |_| json!({"rules": ["local_keyword_search_daily"], "daily_cap": 10, "monthly_cap": 100}),
        OWNER,
    ),
    row("DELETE", "/v1/apps/{id}/paid-usage", "/v1/apps/{app}/paid-usage", OWNER),
    row("GET", "/v1/apps/{id}/eligibility", "/v1/apps/{app}/eligibility", MEMBERS_AND_STAFF),
    with("POST", "/v1/apps/{id}/eligibility", "/v1/apps/{app}/eligibility", |_| json!({}), EDITORS),
    with(
        "PUT",
        "/v1/apps/{id}/business",
        "/v1/apps/{app}/business",
        |_| json!({"business_registration_number": "120-81-47521", "company_name": "C"}),
        OWNER,
    ),
    with("DELETE", "/v1/apps/{id}/business", "/v1/apps/{app}/business", reason, ADMIN),
    row("POST", "/v1/apps/{id}/test-apps", "/v1/apps/{app}/test-apps", OWNER),
    row("POST", "/v1/apps/{id}/reactivate", "/v1/apps/{app}/reactivate", OWNER_AND_ADMIN),
    with("POST", "/v1/apps/{id}/channels", "/v1/apps/{app}/channels", |_| json!({"channel_id": "_nochannel"}), EDITORS),
    row("DELETE", "/v1/apps/{id}/channels/{channel_id}", "/v1/apps/{app}/channels/_nochannel", EDITORS),
    row("GET", "/v1/channels", "/v1/channels", SIGNED_IN),
    with(
        "POST",
        "/v1/channels",
        "/v1/channels",
        |_| json!({"id": "_ch", "name": "Ch", "business_registration_number": "120-81-47521", "business_channel": true}),
        ADMIN,
    ),
    with(
        "PUT",
        "/v1/apps/{id}/consent-items/{scope}",
        "/v1/apps/{app}/consent-items/friends",
        |_| json!({"consent_type": "optional", "purpose": "friends"}),
        EDITORS,
    ),
    row("DELETE", "/v1/apps/{id}/consent-items/{scope}", "/v1/apps/{app}/consent-items/talk_calendar", EDITORS),
    with(
        "POST",
        "/v1/apps/{id}/permission-requests",
        "/v1/apps/{app}/permission-requests",
        |_| json!({"permission": "talk_calendar", "service_url": "https://a.example", "reason": "again"}),
        EDITORS,
    ),
    row("GET", "/v1/apps/{id}/permission-requests", "/v1/apps/{app}/permission-requests", MEMBERS_AND_STAFF),
    row("GET", "/v1/permission-requests", "/v1/permission-requests", SIGNED_IN),
    row("GET", "/v1/permission-requests/{id}", "/v1/permission-requests/{request}", MEMBERS_AND_STAFF),
    with(
        "POST",
        "/v1/permission-requests/{id}/actions",
        "/v1/permission-requests/{request}/actions",
        |_| json!({"action": "start_review"}),
        DECIDERS,
    ),
    row(
        "GET",
        "/v1/permission-requests/{id}/evidence",
        "/v1/permission-requests/{request}/evidence",
        MEMBERS_AND_STAFF,
    ),
    row("GET", "/v1/notifications", "/v1/notifications", STAFF),
    row("GET", "/v1/audit", "/v1/audit", STAFF),
];

/// The accounts and ids every row's call is made against.
struct World {
    t: TestApp,
    owner: String,
    editor: String,
    reader: String,
    other: String,
    reviewer: String,
    reviewer_member: String,
    other_id: i64,
    reader_id: i64,
    app: i64,
    rest_key: i64,
    js_key: i64,
    request: i64,
}

impl World {
    async fn new() -> World {
        let t = TestApp::spawn().await;
        let (_, owner) = t.account("owner", "developer").await;
        let (editor_id, editor) = t.account("editor", "developer").await;
        let (reader_id, reader) = t.account("reader", "developer").await;
        let (other_id, other) = t.account("other", "developer").await;
        let (_, reviewer) = t.account("reviewer", "reviewer").await;
        let (rm_id, reviewer_member) = t.account("reviewer-member", "reviewer").await;
        let app = t.app(&owner, "Matrix").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let key = |kind: &str| app["keys"][kind][0]["id"].as_i64().unwrap_or_default();
        for (account, role) in [(editor_id, "editor"), (reader_id, "reader"), (rm_id, "reader")] {
            let (status, body) =
                t.post(&format!("/v1/apps/{id}/members"), &owner, json!({"account_id": account, "role": role})).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        t.consent(id, &owner, &["talk_calendar"]).await;
        assert_eq!(t.post(&format!("/v1/apps/{id}/eligibility"), &owner, json!({})).await.0, StatusCode::OK);
        let form = [
            ("permission", "talk_calendar"),
            ("service_url", "https://calendar.example.com"),
            ("reason", "Users add our events to their Talk Calendar"),
        ];
        let (status, request) = t.apply(id, &owner, &form, Some(("screen.png", TINY_PNG.to_vec()))).await;
        assert_eq!(status, StatusCode::CREATED, "{request}");
        World {
            owner,
            editor,
            reader,
            other,
            reviewer,
            reviewer_member,
            other_id,
            reader_id,
            app: id,
            rest_key: key("rest_api"),
            js_key: key("javascript"),
            request: request["id"].as_i64().unwrap_or_default(),
            t,
        }
    }

    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Anonymous => None,
            Other => Some(&self.other),
            Reader => Some(&self.reader),
            Editor => Some(&self.editor),
            Owner => Some(&self.owner),
            Reviewer => Some(&self.reviewer),
            ReviewerMember => Some(&self.reviewer_member),
            Admin => Some(&self.t.admin),
        }
    }

    fn path(&self, call: &str) -> String {
        call.replace("{app}", &self.app.to_string())
            .replace("{other_id}", &self.other_id.to_string())
            .replace("{reader_id}", &self.reader_id.to_string())
            .replace("{rest_key}", &self.rest_key.to_string())
            .replace("{js_key}", &self.js_key.to_string())
            .replace("{request}", &self.request.to_string())
    }
}

/// The router's routes as `(method, path)`, read from the source that builds it.
pub(crate) fn routes() -> Vec<(String, String)> {
    let source = include_str!("../../src/lib.rs");
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let Some(open) = rest.find('"') else { break };
        let Some(len) = rest[open + 1..].find('"') else { break };
        let path = rest[open + 1..open + 1 + len].to_owned();
        // The route's own arguments: up to its closing parenthesis.
        let mut depth = 1;
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &rest[..end];
        for (method, token) in
            [("GET", "get("), ("POST", "post("), ("PUT", "put("), ("DELETE", "delete("), ("GET", "any(")]
        {
            let mut from = 0;
            while let Some(i) = args[from..].find(token) {
                let before = args[..from + i].chars().last();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    out.push((method.to_owned(), path.clone()));
                }
                from += i + token.len();
            }
        }
    }
    out
}

#[test]
fn every_route_is_in_the_table_and_every_row_is_a_route() {
    let routes = routes();
    assert!(routes.len() > 40, "the route reader found only {routes:?}");
    let missing: Vec<&(String, String)> =
        routes.iter().filter(|(m, p)| !TABLE.iter().any(|r| r.method == m && r.route == p)).collect();
    assert!(missing.is_empty(), "routes without a row in the access matrix: {missing:?}");
    let stale: Vec<(&str, &str)> = TABLE
        .iter()
        .filter(|r| !routes.iter().any(|(m, p)| m == r.method && p == r.route))
        .map(|r| (r.method, r.route))
        .collect();
    assert!(stale.is_empty(), "rows for routes the router does not have: {stale:?}");
}

#[tokio::test]
async fn every_endpoint_refuses_exactly_the_callers_it_should() {
    let mut wrong = Vec::new();
    for row in TABLE {
        // A fresh world per endpoint; the refused callers go first, so that an allowed change
        // (a block, a removal) cannot change what a later caller sees.
        let w = World::new().await;
        let decides = std::ptr::eq(row.allowed, DECIDES);
        let mut answers = Vec::new();
        let (refused, allowed): (Vec<Who>, Vec<Who>) =
            EVERYONE.iter().partition(|who| !decides && !row.allowed.contains(who));
        for who in refused.into_iter().chain(allowed) {
            let method = Method::from_bytes(row.method.as_bytes()).unwrap_or(Method::GET);
            let body = row.body.map(|b| b(&w));
            let (status, answer) = w.t.call(method, &w.path(row.call), w.token(who), body).await;
            let expected_refusal = if who == Anonymous { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
            answers.push(status);
            let ok = if decides {
                answers.iter().all(|s| *s == answers[0])
            } else if row.allowed.contains(&who) {
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN
            } else {
                status == expected_refusal
            };
            if !ok {
                wrong.push(format!(
                    "{} {} as {who:?}: {status} {answer} (expected {})",
                    row.method,
                    row.call,
                    if row.allowed.contains(&who) { "allowed".to_owned() } else { expected_refusal.to_string() }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{} wrong outcomes:\n{}", wrong.len(), wrong.join("\n"));
}
