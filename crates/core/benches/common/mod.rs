//! The benches' model: the built-in catalog and `n` apps with one REST API key and 10 grants each
//! (every fifth app a test app of the one before it, whose allowed calls are restricted to its
//! members), and the mixed calls they make.

use std::sync::Arc;

use permgate_core::catalog::Catalog;
use permgate_core::credential::TokenVerifier;
use permgate_core::model::*;
use permgate_core::snapshot::Snapshot;
use permgate_core::time::Timestamp;

pub const NOW: Timestamp = Timestamp(1_795_824_000);
const GRANTS: [&str; 10] = [
    "talk_share_quota",
    "personal_info_consent_items",
    "talk_calendar",
    "kakao_map_activation",
    "connect_talk_channel",
    "increased_quota",
    "manual_signup",
    "service_terms_upgrade",
    "account_id_response",
    "talk_user_id_response",
];

/// Allowed (Local keyword search; restricted to its members for a test app), denied with -401 (a
/// REST key on a user-token API), denied with -5 (a Kakao Talk Channel API needing `biz_app`,
/// which no app holds), and allowed again (a second Local API). Calls cycle through these four
/// while the apps cycle through five, so each kind of app makes each kind of call.
pub const PATHS: [&str; 4] = [
    "/v2/local/search/keyword.json?query=coffee",
    "/v1/api/talk/profile",
    "/v1/talkchannel/target_user_file",
    "/v2/local/search/address.json",
];

pub fn records(n: i64) -> Vec<AppRecord> {
    (1..=n)
        .map(|id| {
            let mut record = AppRecord::active(AppId(id), NOW);
            if id % 5 == 0 {
                record.app.original = Some(AppId(id - 1));
            }
            record.keys.push(Key::issued(KeyId(id), KeyKind::RestApi, &key(id), Platforms::default(), NOW));
            record.grants = GRANTS.iter().map(|p| Grant::operator(AppId(id), p, params(p), NOW)).collect();
            record
        })
        .collect()
}

/// A grant's parameters as the API stores them: a limit (and rule) for the two permissions that
/// raise quotas, `{}` for the others.
fn params(permission: &str) -> serde_json::Value {
    match permission {
        "talk_share_quota" => serde_json::json!({"limit": 1_000_000}),
        "increased_quota" => serde_json::json!({"limit": 1_000_000, "rule": "local_keyword_search_daily"}),
        _ => serde_json::json!({}),
    }
}

/// The `Authorization` header of each of apps 1..=`n`.
pub fn authorizations(n: i64) -> Vec<String> {
    (1..=n).map(|id| format!("KakaoAK {}", key(id))).collect()
}

/// App `id`'s REST API key.
fn key(id: i64) -> String {
    format!("{id:032x}")
}

pub fn snapshot(records: Vec<AppRecord>) -> Snapshot {
    let catalog = Catalog::builtin().unwrap_or_else(|e| unreachable!("{e}"));
    Snapshot::build(Arc::new(catalog), Arc::new(TokenVerifier::new(None)), records)
}

/// Decides every pairing of the first five apps (the fifth a test app) with the four paths, prints
/// what they come to and checks that the mix holds every kind of answer: allowed, restricted to
/// members, -401 and -5.
pub fn check_mix(s: &Snapshot, auths: &[String]) {
    let (mut allowed, mut restricted, mut unauthenticated, mut denied) = (0, 0, 0, 0);
    for path in PATHS {
        for auth in &auths[..5] {
            let q =
                permgate_core::decision::Query { method: "GET", path, authorization: Some(auth), ..Default::default() };
            let d = permgate_core::decision::decide(s, &q, NOW);
            match (d.allow, d.restriction.is_some(), d.code) {
                (true, false, _) => allowed += 1,
                (true, true, _) => restricted += 1,
                (false, _, -401) => unauthenticated += 1,
                (false, _, -5) => denied += 1,
                other => unreachable!("{path}: an answer the mix does not expect: {other:?}"),
            }
        }
    }
    println!("mixed calls: {allowed} allowed, {restricted} restricted, {unauthenticated} -401, {denied} -5 in 20");
    assert!(allowed > 0 && restricted > 0 && unauthenticated > 0 && denied > 0, "the mix lacks a kind of answer");
}
