//! One run, the same questions to every engine: `cargo bench --manifest-path bench/peers/Cargo.toml`.
//! Before timing, every answer of every engine is checked against the ground truth; a wrong one
//! stops the run. Ratios against permgate go in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use permgate_core::snapshot::Snapshot;
use permgate_peers::*;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

// Counts live heap bytes for the memory figure; every engine runs under it alike.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const APPS: usize = 10_000;
const MILLION: usize = 1_000_000;

fn bench(c: &mut Criterion) {
    let model = Model::new(APPS);
    let cases = model.cases(4096, 7);
    let (wrong, allowed) = disagreements(&model, &cases);
    println!(
        "{} questions over {APPS} apps and {} APIs, {allowed} allowed; wrong answers (permgate, Cedar, Rego, casbin): {wrong:?}",
        cases.len(),
        model.apis.len()
    );
    assert_eq!(wrong, [0; 4], "an engine answered differently from the ground truth");

    let snapshot = model.snapshot();
    let cedar = Cedar::new(&model);
    let mut rego = Rego::new(&model);
    let casbin = Casbin::new(&model);
    let mut group = c.benchmark_group("peers, 10,000 apps");
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % cases.len();
        i
    };
    group.bench_function("permgate decide (from key and path)", |b| {
        b.iter(|| black_box(permgate(&snapshot, &model, &cases[next()])))
    });
    group.bench_function("cedar-policy is_authorized", |b| b.iter(|| black_box(cedar.allowed(&cases[next()]))));
    group.bench_function("regorus eval_rule", |b| b.iter(|| black_box(rego.allowed(&model, &cases[next()]))));
    group.bench_function("casbin enforce", |b| b.iter(|| black_box(casbin.allowed(&model, &cases[next()]))));
    group.finish();

    // permgate alone at a million apps (building the peers' models at that size takes minutes),
    // and what its snapshot holds per app. Only under `cargo bench`, not `cargo test`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mut model = Model::new(MILLION);
    let cases = model.cases(4096, 13);
    // Live heap = allocated - freed (+ grown in place), over the records handed in and the build
    // that consumes them.
    let live =
        |s: stats_alloc::Stats| s.bytes_allocated as i128 - s.bytes_deallocated as i128 + s.bytes_reallocated as i128;
    let region = Region::new(GLOBAL);
    let records = model.records.clone();
    let before = live(region.change());
    model.records = Vec::new();
    let region = Region::new(GLOBAL);
    let verifier = std::sync::Arc::new(permgate_core::credential::TokenVerifier::new(None));
    let snapshot = Snapshot::build(model.catalog.clone(), verifier, records);
    let held = before + live(region.change());
    println!("permgate snapshot of {MILLION} apps with {GRANTS} grants each: {} bytes per app", held / MILLION as i128);
    let wrong = cases.iter().filter(|c| permgate(&snapshot, &model, c) != model.truth(c)).count();
    assert_eq!(wrong, 0, "permgate answered {wrong} questions wrongly at a million apps");
    let mut group = c.benchmark_group("permgate, 1,000,000 apps");
    group.bench_function("permgate decide (from key and path)", |b| {
        b.iter(|| black_box(permgate(&snapshot, &model, &cases[next()])))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
