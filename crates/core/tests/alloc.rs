//! The hot path allocates nothing: once an app's counters exist, deciding and counting an allowed
//! call with an app key makes no heap allocation, and neither does denying one for a missing
//! permission (-5), for a missing, unknown or wrong kind of credential (-401), for an API under
//! maintenance or terminated (-7, -9) or for a used-up quota (-10). A test binary of its own, because it counts the process's allocations
//! (stats_alloc) and must run alone.

use std::sync::Arc;

use permgate_core::catalog::{Catalog, DEFAULT_CATALOG};
use permgate_core::credential::TokenVerifier;
use permgate_core::decision::{CounterFailure, Query, decide, decide_and_count};
use permgate_core::model::*;
use permgate_core::quota::MemoryCounter;
use permgate_core::snapshot::Snapshot;
use permgate_core::time::Timestamp;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const NOW: Timestamp = Timestamp(1_795_824_000);
const KEY: &str = "0123456789abcdef0123456789abcdef";

/// The built-in catalog with one API terminated and one under maintenance (-9, -7).
fn snapshot() -> Snapshot {
    let text = DEFAULT_CATALOG
        .replacen("id = \"local_transcoord\"", "id = \"local_transcoord\"\nstatus = \"terminated\"", 1)
        .replacen("id = \"local_coord2regioncode\"", "id = \"local_coord2regioncode\"\nstatus = \"maintenance\"", 1);
    let catalog = Catalog::parse("alloc test", &text).unwrap_or_else(|e| unreachable!("{e}"));
    let mut record = AppRecord::active(AppId(1), NOW);
    record.keys.push(Key::issued(KeyId(1), KeyKind::RestApi, KEY, Platforms::default(), NOW));
    let params = serde_json::json!({"limit": 1_000_000, "rule": "local_keyword_search_daily"});
    record.grants = ["increased_quota", "talk_calendar", "account_id_response"]
        .iter()
        .map(|p| Grant::operator(AppId(1), p, params.clone(), NOW))
        .collect();
    Snapshot::build(Arc::new(catalog), Arc::new(TokenVerifier::new(None)), vec![record])
}

#[test]
fn allowed_calls_are_decided_and_counted_and_denied_calls_refused_without_allocating() {
    let s = snapshot();
    let counter = MemoryCounter::new();
    let authorization = format!("KakaoAK {KEY}");
    let search = Query {
        method: "GET",
        path: "/v2/local/search/keyword.json?query=coffee",
        authorization: Some(&authorization),
        ..Query::default()
    };
    let query = search;
    // The first call creates the app's counters and activity tallies.
    let first = decide_and_count(&s, &query, &counter, NOW, true, CounterFailure::Closed);
    assert!(first.allow, "{first:?}");
    assert!(first.quota.is_some(), "the call is counted: {first:?}");

    let region = Region::new(GLOBAL);
    let mut remaining = 0;
    for _ in 0..1000 {
        let d = decide_and_count(&s, &query, &counter, NOW, true, CounterFailure::Closed);
        remaining = d.quota.map_or(0, |q| q.remaining);
    }
    let counted = region.change();
    let region = Region::new(GLOBAL);
    for _ in 0..1000 {
        std::hint::black_box(decide(&s, &query, NOW));
    }
    let decided = region.change();
    assert!(remaining > 0 && remaining < 1_000_000, "1001 calls were counted: {remaining} left");
    assert_eq!(counted.allocations, 0, "decide_and_count allocated: {counted:?}");
    assert_eq!(decided.allocations, 0, "decide allocated: {decided:?}");

    // One test, not two: the counts are the whole process's, so nothing may run beside them.
    // A REST-key API that needs `biz_app`, which the app does not hold.
    let query = Query { path: "/v1/talkchannel/target_user_file", ..search };
    let first = decide(&s, &query, NOW);
    assert_eq!((first.code, first.permission), (-5, Some("biz_app")), "{first:?}");
    assert_eq!(first.error_body()["request_url"], "/v1/apps/1/permission-requests");
    let region = Region::new(GLOBAL);
    for _ in 0..1000 {
        std::hint::black_box(decide(&s, &query, NOW));
    }
    let denied = region.change();
    assert_eq!(denied.allocations, 0, "a -5 deny allocated: {denied:?}");

    // A REST API key on an API that takes only user tokens: -401.
    let query = Query { method: "GET", path: "/v1/api/talk/profile", ..query };
    let first = decide(&s, &query, NOW);
    assert_eq!(first.code, -401, "{first:?}");
    assert_eq!(
        first.msg.as_deref(),
        Some("API `talk_profile` does not accept a rest_api credential; it accepts: user_token")
    );
    let region = Region::new(GLOBAL);
    for _ in 0..1000 {
        std::hint::black_box(decide(&s, &query, NOW));
    }
    let refused = region.change();
    assert_eq!(refused.allocations, 0, "a -401 for the wrong kind of credential allocated: {refused:?}");

    // No credential at all, a scheme permgate does not know, and keys no app has (one shaped like
    // an app key, one not; both are hashed to look for an admin key): -401 with a fixed text.
    let region = Region::new(GLOBAL);
    for authorization in
        [None, Some("Basic dXNlcg=="), Some("KakaoAK 0123456789abcdef0123456789abcdef"), Some("KakaoAK not-a-key")]
    {
        let query = Query { authorization, ..query };
        for _ in 0..250 {
            let d = decide(&s, &query, NOW);
            assert_eq!(d.code, -401, "{authorization:?}");
        }
    }
    let refused = region.change();
    assert_eq!(refused.allocations, 0, "a -401 for a missing or unknown credential allocated: {refused:?}");

    // An API under maintenance (-7) and a terminated one (-9): their messages were written with
    // the catalog.
    let closed = [
        ("/v2/local/geo/coord2regioncode.json", -7, "API `local_coord2regioncode` is under maintenance"),
        ("/v2/local/geo/transcoord.json", -9, "API `local_transcoord` is terminated"),
    ];
    for (path, _, msg) in closed {
        assert_eq!(decide(&s, &Query { path, ..search }, NOW).msg.as_deref(), Some(msg));
    }
    let region = Region::new(GLOBAL);
    for (path, code, _) in closed {
        let query = Query { path, ..search };
        for _ in 0..500 {
            let d = decide(&s, &query, NOW);
            assert_eq!(d.code, code, "{d:?}");
        }
    }
    let closed = region.change();
    assert_eq!(closed.allocations, 0, "a -7 or -9 allocated: {closed:?}");

    // The day's keyword searches used up (the app's raised limit of 1,000,000 reached): -10.
    let catalog = s.catalog().clone();
    let rule = catalog.quota_rule_index("local_keyword_search_daily").unwrap_or(usize::MAX);
    let day = permgate_core::quota::window(permgate_core::catalog::QuotaPeriod::Day, NOW, catalog.utc_offset);
    if let Some(app) = s.app(AppId(1)) {
        app.meter.lock().restore(u32::try_from(rule).unwrap_or(u32::MAX), day.start, 1_000_000);
    }
    let query = search;
    let first = decide_and_count(&s, &query, &counter, NOW, true, CounterFailure::Closed);
    assert_eq!(
        (first.code, first.quota.as_ref().map(|q| q.rule)),
        (-10, Some("local_keyword_search_daily")),
        "{first:?}"
    );
    let region = Region::new(GLOBAL);
    for _ in 0..1000 {
        std::hint::black_box(decide_and_count(&s, &query, &counter, NOW, true, CounterFailure::Closed));
    }
    let exhausted = region.change();
    assert_eq!(exhausted.allocations, 0, "a quota deny allocated: {exhausted:?}");
}
