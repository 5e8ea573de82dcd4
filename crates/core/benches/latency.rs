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
use permgate_core::snapshot::AppEntry;

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
        for (layout, name) in [
            (PRESENT, "the lane's present layout: a key slot, three lines of the app's entry"),
            (ONE_LINE, "a key slot, the entry's first line"),
            (DENSE, "a key slot, one line an app in an array of its own"),
            (DENSE2, "a key slot, two lines an app in an array of its own"),
        ] {
            let samples = find_and_count_floor(apps, calls, layout);
            report(apps, &format!("floor of decide + count, {name}"), samples, overhead);
        }
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
const PER_APP: usize = std::mem::size_of::<AppEntry>() + 2 * 64;

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

/// How a floor's state is laid out behind a key table of a line a slot: the bytes of an app's
/// entry (a multiple of a line), and where the lines a call reads of the entry start (read side
/// by side: their addresses come from the key's slot alone).
#[derive(Clone, Copy)]
struct Layout {
    entry: usize,
    lines: &'static [usize],
}

/// One cache line, aligned as one.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Line([u64; 8]);

/// What the quick lane reads today: a line of the key table (a slot a line), then three lines of
/// the app's entry: the first, the rule counters' line after it and the overrides' line, which
/// the bench's apps all have.
const PRESENT: Layout =
    Layout { entry: std::mem::size_of::<AppEntry>(), lines: &[0, 64, std::mem::offset_of!(AppEntry, quota_overrides)] };
/// Everything a call reads of its app on the entry's first line.
const ONE_LINE: Layout = Layout { lines: &[0], ..PRESENT };
/// That line in an array of its own, one line an app: the least state a decision can read.
const DENSE: Layout = Layout { entry: 64, lines: &[0] };
/// Two lines an app in such an array: what counts is the bytes the lines are spread over.
const DENSE2: Layout = Layout { entry: 128, lines: &[0, 64] };

/// The least any decide + count must do, timed per call as the cases above are: find the app of
/// a key (already a number: no parsing) in an open-addressing table of a line a slot, as large
/// as the snapshot's, then add one to a counter on each line `layout` reads of that app's
/// entry. The entry's address comes from the slot, so their misses cannot overlap. No route, no
/// check, no window, no lock: a floor no implementation of the whole decision in that layout can
/// go below on this machine.
fn find_and_count_floor(apps: i64, calls: usize, layout: Layout) -> Vec<u128> {
    let per_app = layout.entry / 64; // lines
    let n = usize::try_from(apps).unwrap_or(1);
    let mask = (2 * n).next_power_of_two() - 1;
    let home = |key: u64| (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & mask;
    // Keys as random as issued ones (xorshift; never 0, a free slot), each pointing at its app.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let keys: Vec<u64> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x | 1
        })
        .collect();
    let mut table = vec![Line([0; 8]); mask + 1];
    for (app, &key) in keys.iter().enumerate() {
        let mut i = home(key);
        while table[i].0[0] != 0 {
            i = (i + 1) & mask;
        }
        (table[i].0[0], table[i].0[1]) = (key, app as u64);
    }
    // Written, not zeroed by the allocator: every page is mapped before the clock starts.
    let mut entries = vec![Line([1; 8]); n * per_app];
    let mut samples = Vec::with_capacity(calls);
    for c in 0..calls {
        let key = black_box(keys[c.wrapping_mul(7919) % n]);
        let t = Instant::now();
        let mut i = home(key);
        while table[i].0[0] != key {
            i = (i + 1) & mask;
        }
        let at = table[i].0[1] as usize * per_app;
        for &line in layout.lines {
            entries[at + line / 64].0[0] += 1;
        }
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
