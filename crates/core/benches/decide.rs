//! The hot path in process: `decide` and `decide_and_count` over the built-in catalog with
//! 10,000 apps of 10 grants each, on a mix of allowed, denied and members-only calls; and
//! building that snapshot. Results and the machine go in BENCHMARKS.md.

mod common;

use std::hint::black_box;

use common::{NOW, PATHS, records, snapshot};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use permgate_core::decision::{CounterFailure, Query, decide, decide_and_count};
use permgate_core::quota::MemoryCounter;
use permgate_core::time::Timestamp;

const APPS: i64 = 10_000;

fn bench(c: &mut Criterion) {
    let records = records(APPS);
    // The records are the store's output: copied outside the timed part (as the store reads them
    // before a build starts). Freeing them is the build's, on a thread of its own once it is done.
    c.bench_function("snapshot build, 10k apps / 100k grants", |b| {
        b.iter_batched(|| records.clone(), |r| snapshot(black_box(r)), BatchSize::LargeInput)
    });

    let s = snapshot(records);
    let auths = common::authorizations(APPS);
    common::check_mix(&s, &auths);
    let paths = PATHS;
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
    // The same calls, made as a platform's traffic is: a few busy apps, a long tail. The order is
    // read one after another (no miss of its own). The clock moves on a month every 2^19 calls,
    // so that the busiest app (a tenth of the calls) stays within its monthly and daily limits:
    // these are allowed calls, as above.
    let order = zipf_order(auths.len(), 1 << 20);
    let mut next = 0usize;
    const MONTH: i64 = 32 * 86_400;
    c.bench_function("decide + count (in memory), allowed Local search, apps Zipf-skewed", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            let q = Query {
                method: "GET",
                path: paths[0],
                authorization: Some(&auths[order[next % order.len()] as usize]),
                ..Query::default()
            };
            let now = Timestamp(NOW.0 + (next >> 19) as i64 * MONTH);
            black_box(decide_and_count(&s, &q, &counter, now, true, CounterFailure::Closed))
        })
    });
    // And with the header in cache, as a server has it: what skew gains beyond the busy apps'
    // headers staying cached.
    c.bench_function("decide + count (in memory), allowed Local search, apps Zipf-skewed, header in cache", |b| {
        b.iter_batched_ref(
            || {
                next = next.wrapping_add(1);
                (auths[order[next % order.len()] as usize].clone(), Timestamp(NOW.0 + (next >> 19) as i64 * MONTH))
            },
            |(auth, now)| {
                let q = Query { method: "GET", path: paths[0], authorization: Some(auth), ..Query::default() };
                black_box(decide_and_count(&s, &q, &counter, *now, true, CounterFailure::Closed))
            },
            BatchSize::SmallInput,
        )
    });
}

/// App indexes below `n` as calls to an API platform spread over its apps: Zipf-distributed with
/// exponent 1 (the k-th busiest app makes 1/k of the busiest one's calls; at 10,000 apps the
/// busiest hundred make about half of them), ranks scattered over the ids so that busy apps are
/// not neighbours in memory. Drawn from a fixed seed, before the clock starts.
fn zipf_order(n: usize, len: usize) -> Vec<u32> {
    let mut cdf: Vec<f64> = Vec::with_capacity(n);
    let mut total = 0.0;
    for rank in 1..=n {
        total += 1.0 / rank as f64;
        cdf.push(total);
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64 * total;
            let rank = cdf.partition_point(|&c| c < u).min(n - 1);
            ((rank * 7919) % n) as u32
        })
        .collect()
}

criterion_group!(benches, bench);
criterion_main!(benches);
