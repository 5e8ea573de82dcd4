//! The benches' model: the built-in catalog and `n` apps with one REST API key and 10 grants each,
//! and the mixed calls they make.

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

/// Allowed (Local keyword search), denied (-401: a REST key on a user-token API), and allowed
/// again (a second Local API).
pub const PATHS: [&str; 3] =
    ["/v2/local/search/keyword.json?query=coffee", "/v1/api/talk/profile", "/v2/local/search/address.json"];

pub fn records(n: i64) -> Vec<AppRecord> {
    (1..=n)
        .map(|id| {
            let mut record = AppRecord::active(AppId(id), NOW);
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
