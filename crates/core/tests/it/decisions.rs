//! Runs `tests/data/decisions.toml` against this world (built-in catalog, except that
//! `local_transcoord` and `moment_companies` are terminated and `local_coord2regioncode` is under
//! maintenance):
//!
//! | app | state | keys | grants / products |
//! |---|---|---|---|
//! | 1 plain | active | rest-plain, js-plain (https://shop.example), native-plain (com.example.app, com.example.ios) | none; Kakao Login off |
//! | 2 granted | active | rest-granted, admin-narrow (user_management only), admin-open | kakao_moment, talk_friends_message, manual_signup (expires in 1000 s), talk_calendar (expired); Kakao Login on |
//! | 3 | blocked | rest-blocked | kakao_moment |
//! | 4 | suspended | rest-suspended | |
//! | 5 | owner blocked | rest-ownerblocked | |
//! | 6 | active | rest-local-off | product `local` switched off |
//! | 8 | test app of app 2 | rest-test | test_app (and app 2's grants, through the original) |
//! | 7 | active | (user tokens only) | talk_friends_message; **no consent items set** (apps 1 to 6 have every item set) |

use std::sync::Arc;

use permgate_core::catalog::{Catalog, DEFAULT_CATALOG};
use permgate_core::credential::{TokenVerifier, mint_user_token};
use permgate_core::decision::{Query, decide};
use permgate_core::model::*;
use permgate_core::secret;
use permgate_core::snapshot::Snapshot;
use permgate_core::time::Timestamp;
use serde::Deserialize;

const NOW: Timestamp = Timestamp(1_795_000_000);
const SECRET: &str = "decision-test-secret";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    app: i64,
    sub: String,
    scope: String,
    exp: i64,
    secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    method: String,
    path: String,
    auth: Option<String>,
    user: Option<User>,
    origin: Option<String>,
    ka: Option<String>,
    allow: bool,
    status: u16,
    code: i32,
    msg: Option<String>,
    permission: Option<String>,
    restriction: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Cases {
    case: Vec<Case>,
}

fn key(id: i64, kind: KeyKind, value: &str, platforms: Platforms) -> Key {
    Key {
        id: KeyId(id),
        kind,
        value: (!kind.is_secret()).then(|| value.to_owned()),
        hash: secret::hash(value),
        hint: secret::hint(value),
        platforms,
        created_at: NOW,
    }
}

fn grant(app: i64, permission: &str, expires_at: Option<Timestamp>) -> Grant {
    Grant {
        id: 0,
        app_id: AppId(app),
        permission: permission.into(),
        key_id: None,
        source: GrantSource::Operator,
        granted_by: Some(AccountId(1)),
        granted_at: NOW,
        expires_at,
        params: serde_json::json!({}),
        reason: "test".into(),
    }
}

fn app(
    id: i64,
    status: AppStatus,
    owner_blocked: bool,
    keys: Vec<Key>,
    grants: Vec<Grant>,
    products: &[(&str, bool)],
) -> AppRecord {
    AppRecord {
        app: App {
            id: AppId(id),
            name: format!("app {id}"),
            company_name: "Example".into(),
            category: "test".into(),
            owner: AccountId(10 + id),
            status,
            created_at: NOW,
            original: None,
            status_before_block: None,
        },
        owner_blocked,
        members: vec![Member { account_id: AccountId(10 + id), role: MemberRole::Owner }],
        keys,
        products: products.iter().map(|(p, on)| ((*p).to_owned(), *on)).collect(),
        grants,
        paid: None,
        business: None,
        consent_items: Vec::new(),
        eligibility: None,
        channels: Vec::new(),
    }
}

fn world() -> Snapshot {
    let text = DEFAULT_CATALOG
        .replacen("id = \"local_transcoord\"", "id = \"local_transcoord\"\nstatus = \"terminated\"", 1)
        .replacen("id = \"moment_companies\"", "id = \"moment_companies\"\nstatus = \"terminated\"", 1)
        .replacen("id = \"local_coord2regioncode\"", "id = \"local_coord2regioncode\"\nstatus = \"maintenance\"", 1);
    let catalog = match Catalog::parse("test catalog", &text) {
        Ok(c) => c,
        Err(e) => unreachable!("{e}"),
    };
    let none = Platforms::default;
    let records: Vec<AppRecord> = vec![
        app(
            1,
            AppStatus::Active,
            false,
            vec![
                key(1, KeyKind::RestApi, "rest-plain", none()),
                key(
                    2,
                    KeyKind::Javascript,
                    "js-plain",
                    Platforms { origins: vec!["https://shop.example".into()], ..none() },
                ),
                key(
                    3,
                    KeyKind::NativeApp,
                    "native-plain",
                    Platforms {
                        android_packages: vec!["com.example.app".into()],
                        ios_bundle_ids: vec!["com.example.ios".into()],
                        ..none()
                    },
                ),
            ],
            vec![],
            &[],
        ),
        app(
            2,
            AppStatus::Active,
            false,
            vec![
                key(4, KeyKind::RestApi, "rest-granted", none()),
                key(
                    5,
                    KeyKind::Admin,
                    "admin-narrow",
                    Platforms { api_categories: Some(vec!["user_management".into()]), ..none() },
                ),
                key(6, KeyKind::Admin, "admin-open", none()),
            ],
            vec![
                grant(2, "kakao_moment", None),
                grant(2, "talk_friends_message", None),
                grant(2, "manual_signup", Some(NOW.plus_seconds(1000))),
                grant(2, "talk_calendar", Some(NOW.plus_seconds(-10))),
            ],
            &[("kakao_login", true)],
        ),
        app(
            3,
            AppStatus::Blocked,
            false,
            vec![key(7, KeyKind::RestApi, "rest-blocked", none())],
            vec![grant(3, "kakao_moment", None)],
            &[],
        ),
        app(4, AppStatus::Suspended, false, vec![key(8, KeyKind::RestApi, "rest-suspended", none())], vec![], &[]),
        app(5, AppStatus::Active, true, vec![key(9, KeyKind::RestApi, "rest-ownerblocked", none())], vec![], &[]),
        app(
            6,
            AppStatus::Active,
            false,
            vec![key(10, KeyKind::RestApi, "rest-local-off", none())],
            vec![],
            &[("local", false)],
        ),
        app(
            7,
            AppStatus::Active,
            false,
            vec![],
            vec![grant(7, "talk_friends_message", None)],
            &[("kakao_login", true)],
        ),
        {
            let mut test = app(
                8,
                AppStatus::Active,
                false,
                vec![key(11, KeyKind::RestApi, "rest-test", none())],
                vec![grant(8, "test_app", None)],
                &[("kakao_login", true)],
            );
            test.app.original = Some(AppId(2));
            test
        },
    ];
    let every_item: Vec<ConsentSetting> =
        catalog.consent_items.iter().map(|c| ConsentSetting::optional(&c.id, "test", NOW)).collect();
    let records = records.into_iter().map(|mut r| {
        if r.app.id != AppId(7) {
            r.consent_items.clone_from(&every_item);
        }
        r
    });
    Snapshot::build(Arc::new(catalog), Arc::new(TokenVerifier::new(Some(SECRET.as_bytes()))), records)
}

#[test]
fn every_case_in_the_decision_file_gets_its_verdict() {
    let cases: Cases = match toml::from_str(include_str!("../data/decisions.toml")) {
        Ok(c) => c,
        Err(e) => unreachable!("{e}"),
    };
    let snapshot = world();
    let mut failures = Vec::new();
    for case in &cases.case {
        let auth = match &case.user {
            Some(u) => {
                let secret = u.secret.as_deref().unwrap_or(SECRET);
                let scopes: Vec<String> = u.scope.split_whitespace().map(str::to_owned).collect();
                match mint_user_token(secret.as_bytes(), AppId(u.app), &u.sub, &scopes, NOW.plus_seconds(u.exp)) {
                    Ok(t) => Some(format!("Bearer {t}")),
                    Err(e) => unreachable!("{e}"),
                }
            }
            None => case.auth.clone(),
        };
        let query = Query {
            method: &case.method,
            path: &case.path,
            authorization: auth.as_deref(),
            origin: case.origin.as_deref(),
            ka: case.ka.as_deref(),
            recipients: &[],
            explain: true,
        };
        let d = decide(&snapshot, &query, NOW);
        let quiet = decide(&snapshot, &Query { explain: false, ..query }, NOW);
        if (quiet.allow, quiet.status, quiet.code, quiet.reasons.len()) != (d.allow, d.status, d.code, 0) {
            failures.push(format!("{}: without explain the verdict differs or reasons are kept: {quiet:?}", case.name));
        }
        let restriction = d.restriction.map(|r| r.as_str().to_owned());
        let mut wrong = Vec::new();
        if d.allow != case.allow {
            wrong.push(format!("allow {} (want {})", d.allow, case.allow));
        }
        if d.status != case.status {
            wrong.push(format!("status {} (want {})", d.status, case.status));
        }
        if d.code != case.code {
            wrong.push(format!("code {} (want {})", d.code, case.code));
        }
        if case.msg.is_some() && d.msg.as_deref() != case.msg.as_deref() {
            wrong.push(format!("msg {:?} (want {:?})", d.msg, case.msg));
        }
        if case.permission.is_some() && d.permission != case.permission.as_deref() {
            wrong.push(format!("permission {:?} (want {:?})", d.permission, case.permission));
        }
        if restriction != case.restriction {
            wrong.push(format!("restriction {restriction:?} (want {:?})", case.restriction));
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {} — reasons: {:?} msg: {:?}", case.name, wrong.join(", "), d.reasons, d.msg));
        }
    }
    assert!(cases.case.len() >= 35, "only {} cases", cases.case.len());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.case.len(), failures.join("\n"));
}

#[test]
fn a_denied_call_explains_itself_and_its_body_is_kakao_shaped() {
    let snapshot = world();
    let token = mint_user_token(SECRET.as_bytes(), AppId(1), "u1", &[], NOW.plus_seconds(60)).unwrap_or_default();
    let auth = format!("Bearer {token}");
    let d = decide(
        &snapshot,
        &Query {
            method: "GET",
            path: "/openapi/v4/campaigns",
            authorization: Some(&auth),
            explain: true,
            ..Query::default()
        },
        NOW,
    );
    assert_eq!(
        d.error_body(),
        serde_json::json!({"msg": "permission denied", "code": -5, "permission": "kakao_moment", "request_url": "/v1/apps/1/permission-requests"})
    );
    assert_eq!(d.app_id, Some(AppId(1)));
    assert_eq!(d.user.as_deref(), Some("u1"));
    assert!(d.reasons.iter().any(|r| r.contains("permission `kakao_moment`: not held")), "{:?}", d.reasons);
}

#[test]
fn patching_an_app_changes_the_next_decision() {
    let mut snapshot = world();
    let q = Query {
        method: "GET",
        path: "/v2/local/search/keyword.json",
        authorization: Some("KakaoAK rest-plain"),
        ..Query::default()
    };
    assert!(decide(&snapshot, &q, NOW).allow);
    let mut blocked = app(
        1,
        AppStatus::Blocked,
        false,
        vec![key(1, KeyKind::RestApi, "rest-plain", Platforms::default())],
        vec![],
        &[],
    );
    snapshot.upsert_app(&blocked);
    assert_eq!(decide(&snapshot, &q, NOW).code, -12);
    blocked.keys = vec![key(1, KeyKind::RestApi, "rest-rotated", Platforms::default())];
    blocked.app.status = AppStatus::Active;
    snapshot.upsert_app(&blocked);
    assert_eq!(decide(&snapshot, &q, NOW).code, -401, "the old key must stop working");
    snapshot.remove_app(AppId(1));
    let rotated = Query { authorization: Some("KakaoAK rest-rotated"), ..q };
    assert_eq!(decide(&snapshot, &rotated, NOW).code, -401);
}

#[test]
fn a_missing_consent_names_the_scopes_to_ask_for() {
    let snapshot = world();
    let token = mint_user_token(SECRET.as_bytes(), AppId(2), "u1", &["talk_message".into()], NOW.plus_seconds(60))
        .unwrap_or_default();
    let auth = format!("Bearer {token}");
    let q = Query {
        method: "POST",
        path: "/v1/api/talk/friends/message/send",
        authorization: Some(&auth),
        ..Query::default()
    };
    let d = decide(&snapshot, &q, NOW);
    assert_eq!(
        d.error_body(),
        serde_json::json!({"msg": "the user has not agreed to a scope this API needs", "code": -402, "required_scopes": ["friends"]})
    );
}

#[test]
fn an_allowed_counted_call_explains_every_check_it_passed() {
    let snapshot = world();
    let counter = permgate_core::quota::MemoryCounter::new();
    let q = Query {
        method: "GET",
        path: "/v2/local/search/keyword.json?query=coffee",
        authorization: Some("KakaoAK rest-plain"),
        explain: true,
        ..Query::default()
    };
    for (consume, counted) in [(false, " (not counted)"), (true, "")] {
        let d = permgate_core::decision::decide_and_count(
            &snapshot,
            &q,
            &counter,
            NOW,
            consume,
            permgate_core::decision::CounterFailure::Closed,
        );
        assert_eq!(
            d.reasons,
            [
                "route: GET /v2/local/search/keyword.json is api `local_search_keyword` of product `local`",
                "credential: rest_api key #1 of app 1",
                "app status: active",
                "product `local`: activated",
                "consent items: none needed",
                &format!("quota: within 2 rule(s){counted}"),
            ]
        );
    }
    let token = mint_user_token(SECRET.as_bytes(), AppId(1), "u1", &[], NOW.plus_seconds(60)).unwrap_or_default();
    let auth = format!("Bearer {token}");
    let d = decide(&snapshot, &Query { authorization: Some(&auth), path: "/v1/api/talk/profile", ..q }, NOW);
    assert_eq!(d.reasons.get(1).map(String::as_str), Some("credential: user token of `u1` for app 1"), "{d:?}");
}
