//! The decision's quick lane (the usual call: a REST API key of an app that holds what the API
//! needs, counted per app) must answer and count exactly as the general path does. Every API of
//! the built-in catalog is called by apps in every state the lane must hand over (blocked,
//! suspended, an owner blocked, a test app, paid usage, grants that expire or are bound to a key,
//! products or consent items missing, quotas raised or raised until a time past) and with headers, methods and paths in every form the lane
//! must not misread; each call is made in two snapshots of the same apps, once as a gateway makes
//! it (the lane takes what it can) and once explained (which only the general path does). The
//! verdicts, less the explanation, and the apps' meters must agree.

use std::sync::Arc;

use permgate_core::catalog::Catalog;
use permgate_core::credential::TokenVerifier;
use permgate_core::decision::{CounterFailure, Query, decide_and_count};
use permgate_core::model::*;
use permgate_core::quota::MemoryCounter;
use permgate_core::snapshot::Snapshot;
use permgate_core::time::Timestamp;

/// 2026-11-28 12:00 in Seoul.
const NOW: Timestamp = Timestamp(1_795_834_800);

/// The states an app is tried in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Holds every permission app-wide without expiry, every product on, every consent item set.
    Ready,
    Expiring,
    KeyBound,
    Blocked,
    Suspended,
    OwnerBlocked,
    Test,
    Paid,
    NoProducts,
    NoConsentItems,
    NoGrants,
    /// Ready, with every quota it may raise raised (the lane then reads the overrides).
    Raised,
    /// Ready, with raised quotas that have expired.
    RaisedExpired,
}

const STATES: [State; 13] = [
    State::Ready,
    State::Expiring,
    State::KeyBound,
    State::Blocked,
    State::Suspended,
    State::OwnerBlocked,
    State::Test,
    State::Paid,
    State::NoProducts,
    State::NoConsentItems,
    State::NoGrants,
    State::Raised,
    State::RaisedExpired,
];

/// App `id`'s key of kind number `n` (32 hex digits, as Kakao issues them).
fn key(id: i64, n: i64) -> String {
    format!("{id:016x}{n:016x}")
}

fn record(catalog: &Catalog, id: i64, state: State) -> AppRecord {
    let mut r = AppRecord::active(AppId(id), NOW);
    r.app.status = match state {
        State::Blocked => AppStatus::Blocked,
        State::Suspended => AppStatus::Suspended,
        _ => AppStatus::Active,
    };
    r.owner_blocked = state == State::OwnerBlocked;
    if state == State::Test {
        r.app.original = Some(AppId(1));
    }
    for (n, kind) in [KeyKind::RestApi, KeyKind::Javascript, KeyKind::Admin, KeyKind::NativeApp].into_iter().enumerate()
    {
        let n = i64::try_from(n).unwrap_or(0);
        r.keys.push(Key::issued(KeyId(id * 10 + n), kind, &key(id, n), Platforms::default(), NOW));
    }
    r.products = catalog.products.iter().map(|p| (p.id.clone(), state != State::NoProducts)).collect();
    if state != State::NoConsentItems {
        r.consent_items = catalog.consent_items.iter().map(|c| ConsentSetting::optional(&c.id, "test", NOW)).collect();
    }
    if state != State::NoGrants {
        for p in catalog.permissions.iter().filter(|p| !p.grants_quota) {
            let mut g = Grant::operator(AppId(id), &p.id, serde_json::json!({}), NOW);
            match state {
                State::Expiring => g.expires_at = Some(Timestamp(NOW.0 + 3_600)),
                State::KeyBound => g.key_id = Some(KeyId(id * 10)),
                _ => {}
            }
            r.grants.push(g);
        }
    }
    if matches!(state, State::Raised | State::RaisedExpired) {
        for p in catalog.permissions.iter().filter(|p| p.grants_quota) {
            for rule in catalog.quota_rules.iter().filter(|q| p.may_raise(q)) {
                let params = serde_json::json!({"rule": rule.id, "limit": rule.limit + 5});
                let mut g = Grant::operator(AppId(id), &p.id, params, NOW);
                if state == State::RaisedExpired {
                    g.expires_at = Some(Timestamp(NOW.0 - 1));
                }
                r.grants.push(g);
            }
        }
    }
    if state == State::Paid {
        let rules = catalog.quota_rules.iter().map(|q| q.id.clone()).collect();
        r.paid = Some(PaidUsage { rules, daily_cap: 1_000, monthly_cap: 10_000 });
    }
    r
}

/// A concrete path for an API's pattern (each parameter `7`).
fn concrete(pattern: &str) -> String {
    pattern.split('/').map(|s| if s.starts_with('{') { "7" } else { s }).collect::<Vec<_>>().join("/")
}

/// A catalog of its own for what the built-in one lacks: an API taking REST keys that needs a
/// consent item, an API in shadow mode and one under maintenance, and limits small enough to
/// run out within the test (the lane hands a used-up rule to the general path).
const SMALL: &str = r#"
version = "quick-test"
time_zone = "Asia/Seoul"

[[products]]
id = "p"
name = "P"
activation = "manual"

[[permissions]]
id = "sync"
name = "Sync"
obtained_by = "operator"

[[permissions]]
id = "more"
name = "More syncs"
obtained_by = "operator"
grants_quota = true
raises_quota_rules = ["daily"]

[[consent_items]]
id = "contacts"
name = "Contacts"
type = "privacy"

[[quota_rules]]
id = "daily"
name = "Syncs a day"
period = "day"
scope = "app"
limit = 40

[[quota_rules]]
id = "monthly"
name = "Everything a month"
period = "month"
scope = "app"
limit = 60
all_apis = true

[[apis]]
id = "sync"
name = "Sync"
product = "p"
category = "x"
method = "POST"
path = "/sync/{id}"
key_kinds = ["rest_api", "admin"]
permissions = ["sync"]
consent_items = ["contacts"]
quota_rules = ["daily"]

[[apis]]
id = "open"
name = "Open"
product = "p"
category = "x"
method = "GET"
path = "/open"
key_kinds = ["rest_api"]

[[apis]]
id = "trial"
name = "Trial"
product = "p"
category = "x"
method = "GET"
path = "/trial"
key_kinds = ["rest_api"]
permissions = ["sync"]
shadow = true

[[apis]]
id = "old"
name = "Old"
product = "p"
category = "x"
method = "GET"
path = "/old"
key_kinds = ["rest_api"]
status = "maintenance"
"#;

#[test]
fn the_quick_lane_answers_and_counts_as_the_general_path() {
    let builtin = Catalog::builtin().unwrap_or_else(|e| unreachable!("{e}"));
    let (quick_like, _, compared) = compare(Arc::new(builtin), 1);
    // The comparison means something only if the lane took calls and handed others over.
    assert!(quick_like > 100 && quick_like < compared / 2, "{quick_like} allowed REST calls of {compared}");
}

#[test]
fn the_quick_lane_hands_over_consent_shadow_closed_and_used_up_calls_alike() {
    let small = Catalog::parse("quick.toml", SMALL).unwrap_or_else(|e| unreachable!("{e}"));
    let (quick_like, used_up, compared) = compare(Arc::new(small), 6);
    assert!(quick_like > 10 && quick_like < compared / 2, "{quick_like} allowed REST calls of {compared}");
    assert!(used_up > 10, "the limits ran out: {used_up} calls refused with -10");
}

/// Makes every call of the catalog's APIs `rounds` times, by every app, both ways; returns how
/// many calls were allowed to a REST API key without restriction (what the lane can take), how
/// many were refused for a used-up quota, and how many were compared.
fn compare(catalog: Arc<Catalog>, rounds: usize) -> (usize, usize, usize) {
    let records: Vec<AppRecord> = STATES.iter().zip(1..).map(|(&state, id)| record(&catalog, id, state)).collect();
    let worlds = [0, 1]
        .map(|_| Snapshot::build(Arc::clone(&catalog), Arc::new(TokenVerifier::new(Some(b"quick"))), records.clone()));
    let counters = [MemoryCounter::new(), MemoryCounter::new()];
    let mut calls = Vec::new();
    for api in &catalog.apis {
        let path = concrete(&api.path);
        let methods: &[&str] = if api.method == "GET" { &["GET", "get", "HEAD"] } else { &[api.method.as_str()] };
        for &method in methods {
            calls.push((method.to_owned(), path.clone()));
        }
        calls.push((api.method.clone(), format!("{path}?query=coffee&page=2")));
        calls.push((api.method.clone(), format!("{path}#top")));
    }
    calls.push(("TRACE".into(), "/v2/local/search/keyword.json".into()));
    calls.push(("GET".into(), "v2/local/search/keyword.json".into()));
    calls.push(("GET".into(), "/v2/nowhere".into()));
    let (mut quick_like, mut used_up, mut compared) = (0, 0, 0);
    // Allowed calls that report a raised limit, by state: only `Raised` may.
    let mut raised = std::collections::BTreeMap::new();
    let raised_limit = |rule: &str| catalog.quota_rules.iter().find(|q| q.id == rule).map(|q| q.limit + 5);
    for (&state, id) in STATES.iter().zip(1i64..).cycle().take(STATES.len() * rounds) {
        let rest = key(id, 0);
        let headers = [
            Some(format!("KakaoAK {rest}")),
            Some(format!(" KakaoAK {rest}")),
            Some(format!("KakaoAK {rest} ")),
            Some(format!("KakaoAK  {rest}")),
            Some(format!("kakaoak {rest}")),
            Some(format!("KakaoAK {}", rest.to_uppercase())),
            Some(format!("KakaoAK {}", key(id, 1))),
            Some(format!("KakaoAK {}", key(id, 2))),
            Some(format!("KakaoAK {}", key(id, 3))),
            Some(format!("KakaoAK {}", key(id + 100, 0))),
            Some(format!("Bearer {rest}")),
            None,
        ];
        for header in &headers {
            for (method, path) in &calls {
                let [fast, explained] = [false, true].map(|explain| {
                    let q = Query { method, path, authorization: header.as_deref(), explain, ..Query::default() };
                    let i = usize::from(explain);
                    decide_and_count(&worlds[i], &q, &counters[i], NOW, true, CounterFailure::Closed)
                });
                let mut explained = explained;
                explained.reasons.clear();
                assert_eq!(fast, explained, "{method} {path} with {header:?} by app {id} ({state:?})");
                compared += 1;
                used_up += usize::from(fast.code == -10);
                if fast.allow && fast.quota.as_ref().is_some_and(|q| raised_limit(q.rule) == Some(q.limit)) {
                    *raised.entry(format!("{state:?}")).or_insert(0) += 1;
                }
                quick_like +=
                    usize::from(fast.allow && fast.restriction.is_none() && fast.key_kind == Some(KeyKind::RestApi));
            }
        }
    }
    let meters = worlds.each_ref().map(|s| {
        (1..=STATES.len() as i64)
            .map(|id| {
                let m = s.app(AppId(id)).map(|a| a.meter.lock().clone()).unwrap_or_default();
                (m.rules().to_vec(), m.calls, m.last_call, m.used.to_vec())
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(meters[0], meters[1], "the same counts and activity in both snapshots");
    assert_eq!(
        raised.keys().collect::<Vec<_>>(),
        ["Raised"],
        "raised limits apply, and only while they last: {raised:?}"
    );
    (quick_like, used_up, compared)
}
