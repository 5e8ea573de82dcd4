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
        // The machine's floor for this size: a decision reads at least one line of state of the
        // app it is about (its key's entry), which, over this many apps, is seldom in cache.
        let bytes = usize::try_from(apps).unwrap_or(0) * PER_APP;
        println!(
            "{apps} apps: one dependent read at random in {} MiB (the decision state's size): {:.1} ns",
            bytes >> 20,
            dependent_read_ns(bytes)
        );
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
        let samples = find_and_count_floor(apps, calls);
        report(apps, "floor of decide + count: find the key's app, add one to its counter", samples, overhead);
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

/// Bytes of state a decision may read per app: its entry in the snapshot and its key's two slots
/// in the half-full key table.
const PER_APP: usize = std::mem::size_of::<permgate_core::snapshot::AppEntry>() + 2 * 64;

/// The mean time of one read whose address depends on the read before, over `bytes` of memory
/// visited one cache line at a time in a random cycle (what no prefetcher can guess): the cost of
/// a cache miss at that working-set size on this machine.
fn dependent_read_ns(bytes: usize) -> f64 {
    const LINE: usize = 8; // u64s per 64-byte line
    let lines = (bytes / 64).max(2);
    // A random cyclic order of the lines (Sattolo's shuffle), from a fixed xorshift seed.
    let mut order: Vec<usize> = (0..lines).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % i as u64) as usize);
    }
    let mut next = vec![0u64; lines * LINE];
    for (i, &line) in order.iter().enumerate() {
        next[line * LINE] = (order[(i + 1) % lines] * LINE) as u64;
    }
    drop(order);
    let mut at = 0usize;
    for _ in 0..lines.min(1 << 20) {
        at = next[at] as usize; // warm the page tables as a running server's would be
    }
    let reads = 4_000_000;
    let t = Instant::now();
    for _ in 0..reads {
        at = next[at] as usize;
    }
    black_box(at);
    t.elapsed().as_nanos() as f64 / f64::from(reads)
}

/// The least any decide + count must do, timed per call as the cases above are: find the
/// app of a key (already a number: no parsing) in an open-addressing table as large as the
/// snapshot's, then add one to a counter in that app's entry (an array of entries the size of
/// [`permgate_core::snapshot::AppEntry`]). The second read's address comes from the first, so
/// their misses cannot overlap. No route, no check, no window, no lock: a floor no implementation
/// of the whole decision can go below on this machine.
fn find_and_count_floor(apps: i64, calls: usize) -> Vec<u128> {
    #[derive(Clone, Copy, Default)]
    #[repr(C, align(32))]
    struct Slot {
        key: u128,
        app: u32,
        used: bool,
    }
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct App {
        count: u64,
        window: i64,
        _rest: [u8; std::mem::size_of::<permgate_core::snapshot::AppEntry>() - 16],
    }
    let n = usize::try_from(apps).unwrap_or(1);
    let mask = (2 * n).next_power_of_two() - 1;
    let home = |key: u128| {
        let mixed = ((key as u64) ^ ((key >> 64) as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> 32) as usize & mask
    };
    // Keys as random as issued ones (xorshift), each pointing at its app.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let keys: Vec<u128> = (0..n).map(|_| (u128::from(next()) << 64) | u128::from(next())).collect();
    let mut table = vec![Slot::default(); mask + 1];
    for (app, &key) in keys.iter().enumerate() {
        let mut i = home(key);
        while table[i].used {
            i = (i + 1) & mask;
        }
        table[i] = Slot { key, app: app as u32, used: true };
    }
    let mut entries = vec![App { count: 0, window: 0, _rest: [0; _] }; n];
    let mut samples = Vec::with_capacity(calls);
    for c in 0..calls {
        let key = black_box(keys[c.wrapping_mul(7919) % n]);
        let t = Instant::now();
        let mut i = home(key);
        while table[i].key != key {
            i = (i + 1) & mask;
        }
        let e = &mut entries[table[i].app as usize];
        if e.window != NOW.0 {
            (e.window, e.count) = (NOW.0, 0);
        }
        e.count += 1;
        samples.push(t.elapsed().as_nanos());
    }
    black_box(&entries);
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
