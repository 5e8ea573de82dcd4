//! The hot path in process: `decide` and `decide_and_count` over the built-in catalog with
//! 10,000 apps of 10 grants each, on a mix of allowed, denied and members-only calls; and
//! building that snapshot. Results and the machine go in BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use permgate_core::catalog::Catalog;
use permgate_core::credential::TokenVerifier;
use permgate_core::decision::{CounterFailure, Query, decide, decide_and_count};
use permgate_core::model::*;
use permgate_core::quota::MemoryCounter;
use permgate_core::snapshot::Snapshot;
use permgate_core::time::Timestamp;

const APPS: i64 = 10_000;
const NOW: Timestamp = Timestamp(1_795_824_000);
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

fn records() -> Vec<AppRecord> {
    (1..=APPS)
        .map(|id| {
            let mut record = AppRecord::active(AppId(id), NOW);
            record.keys.push(Key::issued(
                KeyId(id),
                KeyKind::RestApi,
                &format!("{id:032x}"),
                Platforms::default(),
                NOW,
            ));
            let params = serde_json::json!({"limit": 1_000_000, "rule": "local_keyword_search_daily"});
            record.grants = GRANTS.iter().map(|p| Grant::operator(AppId(id), p, params.clone(), NOW)).collect();
            record
        })
        .collect()
}

fn snapshot(records: Vec<AppRecord>) -> Snapshot {
    let catalog = Catalog::builtin().unwrap_or_else(|e| unreachable!("{e}"));
    Snapshot::build(Arc::new(catalog), Arc::new(TokenVerifier::new(None)), records)
}

fn bench(c: &mut Criterion) {
    let records = records();
    // The records are the store's output: copied outside the timed part (as the store reads them
    // before a build starts). Freeing them is the build's, on a thread of its own once it is done.
    c.bench_function("snapshot build, 10k apps / 100k grants", |b| {
        b.iter_batched(|| records.clone(), |r| snapshot(black_box(r)), BatchSize::LargeInput)
    });

    let s = snapshot(records);
    let auths: Vec<String> = (1..=APPS).map(|id| format!("KakaoAK {id:032x}")).collect();
    // allowed (Local search), denied (-401: a REST key on a user-token API), not found.
    let paths = ["/v2/local/search/keyword.json?query=coffee", "/v1/api/talk/profile", "/v2/local/search/address.json"];
    let mut i = 0usize;
    c.bench_function("decide, mixed calls", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let q = Query {
                method: "GET",
                path: paths[i % paths.len()],
                authorization: Some(&auths[i % auths.len()]),
                ..Query::default()
            };
            black_box(decide(&s, &q, NOW))
        })
    });
    let hot = Query { method: "GET", path: paths[0], authorization: Some(&auths[0]), ..Query::default() };
    c.bench_function("decide, one app again and again (cache-hot)", |b| {
        b.iter(|| black_box(decide(&s, black_box(&hot), NOW)))
    });
    // In a server the header was just read off the socket: in cache, unlike `auths[i]` above, a
    // cold line among 10,000. The copy is made outside the timed routine.
    c.bench_function("decide, mixed calls, header in cache", |b| {
        b.iter_batched_ref(
            || {
                i = i.wrapping_add(7919);
                (paths[i % paths.len()], auths[i % auths.len()].clone())
            },
            |(path, auth)| {
                let q = Query { method: "GET", path, authorization: Some(auth), ..Query::default() };
                black_box(decide(&s, &q, NOW))
            },
            BatchSize::SmallInput,
        )
    });
    let counter = MemoryCounter::new();
    c.bench_function("decide + count (in memory), allowed Local search", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let q = Query {
                method: "GET",
                path: paths[0],
                authorization: Some(&auths[i % auths.len()]),
                ..Query::default()
            };
            black_box(decide_and_count(&s, &q, &counter, NOW, true, CounterFailure::Closed))
        })
    });
    c.bench_function("decide + count (in memory), allowed Local search, header in cache", |b| {
        b.iter_batched_ref(
            || {
                i = i.wrapping_add(7919);
                auths[i % auths.len()].clone()
            },
            |auth| {
                let q = Query { method: "GET", path: paths[0], authorization: Some(auth), ..Query::default() };
                black_box(decide_and_count(&s, &q, &counter, NOW, true, CounterFailure::Closed))
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
