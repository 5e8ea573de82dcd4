//! Per-call latency of the hot path, for the tail that criterion's means do not show: every call
//! is timed on its own (`Instant` around it; the timer's own median cost is measured and taken
//! off), over the built-in catalog with 10,000 apps, and 1,000,000 under `cargo bench` (that
//! build takes seconds and a few GB). Prints the mean, p50, p99 and p99.9 of each case. The
//! authorization header is copied into a buffer before each timed call, as a server has just
//! read it off the socket. Results go in BENCHMARKS.md; nothing here asserts a duration.
//!
//! `cargo bench -p permgate-core --bench latency`

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{NOW, PATHS, records, snapshot};
use permgate_core::decision::{CounterFailure, Query, decide, decide_and_count};
use permgate_core::quota::MemoryCounter;

fn main() {
    // `cargo test --all-targets` runs this once, small, to see that it works.
    let full = std::env::args().any(|a| a == "--bench");
    let (calls, sizes): (usize, &[i64]) = if full { (2_000_000, &[10_000, 1_000_000]) } else { (20_000, &[1_000]) };
    let overhead = timer_overhead();
    println!("timer overhead {overhead} ns (taken off each call); {calls} calls per case");
    for &apps in sizes {
        let records = records(apps);
        let built = Instant::now();
        let s = snapshot(records);
        println!("{apps} apps: snapshot built in {:.0?}", built.elapsed());
        let auths = common::authorizations(apps);
        common::check_mix(&s, &auths);
        let samples = time_each(
            calls,
            &auths,
            |i| PATHS[i % PATHS.len()],
            |q| {
                black_box(decide(&s, q, NOW));
                true
            },
        );
        report(apps, "decide, mixed calls", samples, overhead);

        let counter = MemoryCounter::new();
        let samples = time_each(
            calls,
            &auths,
            |_| PATHS[0],
            |q| decide_and_count(&s, q, &counter, NOW, true, CounterFailure::Closed).allow,
        );
        report(apps, "decide + count (in memory), allowed", samples, overhead);
    }
}

/// Times `call` on `calls` queries, each alone: query `i` asks for `path(i)` with one app's header,
/// copied into a buffer before the clock starts (as a server has just read it). `call` says
/// whether the answer was the expected one; a wrong one stops the run.
fn time_each(
    calls: usize,
    auths: &[String],
    path: impl Fn(usize) -> &'static str,
    mut call: impl FnMut(&Query<'_>) -> bool,
) -> Vec<u128> {
    let mut header = String::with_capacity(64);
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls {
        header.clear();
        // A prime stride visits every app, in an order no prefetcher follows.
        header.push_str(&auths[i.wrapping_mul(7919) % auths.len()]);
        let q = Query { method: "GET", path: path(i), authorization: Some(&header), ..Query::default() };
        let t = Instant::now();
        let right = call(&q);
        samples.push(t.elapsed().as_nanos());
        assert!(right, "a wrong answer to {} {}", q.method, q.path);
    }
    samples
}

/// The median cost of timing nothing.
fn timer_overhead() -> u128 {
    let mut samples: Vec<u128> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            t.elapsed().as_nanos()
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn report(apps: i64, case: &str, mut samples: Vec<u128>, overhead: u128) {
    for s in &mut samples {
        *s = s.saturating_sub(overhead);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<u128>() / samples.len() as u128;
    println!("{apps} apps, {case}: mean {mean} ns, p50 {} ns, p99 {} ns, p99.9 {} ns", at(0.50), at(0.99), at(0.999));
}
