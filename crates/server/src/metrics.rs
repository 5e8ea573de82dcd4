//! `/metrics` in Prometheus' text format. Decisions are counted as they are made (an atomic add
//! for the common case, a short lock for denies and quota); everything read from the store or
//! Redis is read when scraped.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use permgate_core::Decision;

use crate::AppState;

/// Upper bounds of the decision-latency buckets, in seconds.
const BUCKETS: [f64; 12] = [5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1, 1.0];

/// What this node counted since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Allowed calls without a restriction: the bulk, counted without a lock.
    allowed: AtomicU64,
    /// Every other decision by code and the permission it names.
    decisions: Mutex<HashMap<(i32, Option<&'static str>), u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_nanos: AtomicU64,
    /// By quota rule: calls counted against it, calls it denied.
    quota: Mutex<HashMap<&'static str, [u64; 2]>>,
    quota_alerts: Mutex<HashMap<(String, u8), u64>>,
    /// Calls shadow mode allowed, by the code enforcement would have given and what is in shadow.
    would_deny: Mutex<HashMap<(i32, String), u64>>,
    counter_errors: AtomicU64,
    /// Catalog reloads that were applied, and that failed (the old catalog stayed).
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

impl Metrics {
    /// Counts one decision that took `took`.
    pub fn record(&self, d: &Decision, took: Duration, consume: bool) {
        let seconds = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        if d.allow && d.permission.is_none() {
            self.allowed.fetch_add(1, Ordering::Relaxed);
        } else {
            let mut map = self.decisions.lock().unwrap_or_else(PoisonError::into_inner);
            *map.entry((d.code, d.permission)).or_default() += 1;
        }
        if d.counter_error.is_some() {
            self.counter_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(q) = &d.quota
            && (consume && d.allow || d.retry_after.is_some())
        {
            let mut map = self.quota.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = usize::from(!d.allow);
            map.entry(q.rule).or_default()[slot] += 1;
        }
        if let Some(w) = &d.would_deny {
            let mut map = self.would_deny.lock().unwrap_or_else(PoisonError::into_inner);
            *map.entry((w.code, w.shadow.clone())).or_default() += 1;
        }
        if !d.alerts.is_empty() {
            let mut map = self.quota_alerts.lock().unwrap_or_else(PoisonError::into_inner);
            for a in &d.alerts {
                *map.entry((a.rule.clone(), a.percent)).or_default() += 1;
            }
        }
    }
}

/// Escapes a label value.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let m = &state.metrics;
    let mut out = String::with_capacity(4096);
    header(&mut out, "permgate_build_info", "gauge", "The running version.");
    let _ = writeln!(out, "permgate_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    header(&mut out, "permgate_ready", "gauge", "1 when the node answers decisions.");
    let _ = writeln!(out, "permgate_ready {}", u8::from(state.is_ready()));

    header(&mut out, "permgate_decisions_total", "counter", "Decisions by code (0 allowed) and the permission named.");
    let _ =
        writeln!(out, "permgate_decisions_total{{code=\"0\",permission=\"\"}} {}", m.allowed.load(Ordering::Relaxed));
    let mut decisions: Vec<((i32, Option<&'static str>), u64)> =
        m.decisions.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(k, v)| (*k, *v)).collect();
    decisions.sort();
    for ((code, permission), n) in decisions {
        let _ = writeln!(
            out,
            "permgate_decisions_total{{code=\"{code}\",permission=\"{}\"}} {n}",
            label(permission.unwrap_or(""))
        );
    }

    header(&mut out, "permgate_decision_duration_seconds", "histogram", "Time to decide (and count) one call.");
    let mut cumulative = 0;
    for (bound, n) in BUCKETS.iter().zip(&m.latency_buckets) {
        cumulative += n.load(Ordering::Relaxed);
        let _ = writeln!(out, "permgate_decision_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let count = m.latency_count.load(Ordering::Relaxed);
    let _ = writeln!(out, "permgate_decision_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
    #[expect(clippy::cast_precision_loss, reason = "a sum of nanoseconds shown in seconds")]
    let sum = m.latency_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    let _ = writeln!(out, "permgate_decision_duration_seconds_sum {sum}");
    let _ = writeln!(out, "permgate_decision_duration_seconds_count {count}");

    header(
        &mut out,
        "permgate_quota_calls_total",
        "counter",
        "Calls by the quota rule with the least left: counted, or denied.",
    );
    let mut quota: Vec<(&str, [u64; 2])> =
        m.quota.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(k, v)| (*k, *v)).collect();
    quota.sort();
    for (rule, [counted, denied]) in quota {
        let rule = label(rule);
        let _ = writeln!(out, "permgate_quota_calls_total{{rule=\"{rule}\",result=\"counted\"}} {counted}");
        let _ = writeln!(out, "permgate_quota_calls_total{{rule=\"{rule}\",result=\"denied\"}} {denied}");
    }
    header(&mut out, "permgate_quota_alerts_total", "counter", "Apps passing 80 % or 100 % of a quota rule.");
    let mut alerts: Vec<((String, u8), u64)> =
        m.quota_alerts.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(k, v)| (k.clone(), *v)).collect();
    alerts.sort();
    for ((rule, percent), n) in alerts {
        let _ = writeln!(out, "permgate_quota_alerts_total{{rule=\"{}\",percent=\"{percent}\"}} {n}", label(&rule));
    }
    header(
        &mut out,
        "permgate_shadow_would_deny_total",
        "counter",
        "Calls allowed by shadow mode, by the code enforcement would have given and what is in shadow mode.",
    );
    let mut woulds: Vec<((i32, String), u64)> =
        m.would_deny.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(k, v)| (k.clone(), *v)).collect();
    woulds.sort();
    for ((code, shadow), n) in woulds {
        let _ = writeln!(out, "permgate_shadow_would_deny_total{{code=\"{code}\",shadow=\"{}\"}} {n}", label(&shadow));
    }
    header(
        &mut out,
        "permgate_quota_counter_errors_total",
        "counter",
        "Decisions the quota counter (Redis) could not answer.",
    );
    let _ = writeln!(out, "permgate_quota_counter_errors_total {}", m.counter_errors.load(Ordering::Relaxed));
    header(
        &mut out,
        "permgate_catalog_reloads_total",
        "counter",
        "Catalog reloads: applied, or failed (the old catalog stayed).",
    );
    let _ =
        writeln!(out, "permgate_catalog_reloads_total{{result=\"applied\"}} {}", m.reloads_ok.load(Ordering::Relaxed));
    let _ = writeln!(
        out,
        "permgate_catalog_reloads_total{{result=\"failed\"}} {}",
        m.reloads_failed.load(Ordering::Relaxed)
    );

    if let Ok(services) = state.services() {
        let (version, apps, catalog, age) = {
            let s = services.snapshot.read();
            (s.version, s.app_count(), s.catalog().version.clone(), services.snapshot.age())
        };
        header(&mut out, "permgate_snapshot_version", "gauge", "Changes applied to this node's decision snapshot.");
        let _ = writeln!(out, "permgate_snapshot_version {version}");
        header(&mut out, "permgate_snapshot_age_seconds", "gauge", "Seconds since the snapshot last changed.");
        let _ = writeln!(out, "permgate_snapshot_age_seconds {:.3}", age.as_secs_f64());
        header(&mut out, "permgate_apps", "gauge", "Apps in the snapshot.");
        let _ = writeln!(out, "permgate_apps {apps}");
        header(&mut out, "permgate_catalog_info", "gauge", "The catalog in force.");
        let _ = writeln!(out, "permgate_catalog_info{{version=\"{}\"}} 1", label(&catalog));

        let store = services.store.clone();
        let counted = tokio::task::spawn_blocking(move || store.ping().and_then(|()| store.state_counts())).await;
        header(&mut out, "permgate_store_up", "gauge", "1 when the store answered this scrape.");
        match counted {
            Ok(Ok(counts)) => {
                let _ = writeln!(out, "permgate_store_up{{backend=\"{}\"}} 1", services.store.backend());
                header(&mut out, "permgate_permission_requests", "gauge", "Permission requests by state.");
                for (s, n) in &counts.requests {
                    let _ = writeln!(out, "permgate_permission_requests{{state=\"{}\"}} {n}", label(s));
                }
                header(
                    &mut out,
                    "permgate_outbox_messages",
                    "gauge",
                    "Notification outbox messages by state (pending is the backlog).",
                );
                for (s, n) in &counts.outbox {
                    let _ = writeln!(out, "permgate_outbox_messages{{state=\"{}\"}} {n}", label(s));
                }
            }
            _ => {
                let _ = writeln!(out, "permgate_store_up{{backend=\"{}\"}} 0", services.store.backend());
            }
        }
    }
    if let Some(url) = &state.redis_url {
        let up = crate::redis_ping::ping(url).await.is_ok();
        header(&mut out, "permgate_redis_up", "gauge", "1 when Redis answered this scrape.");
        let _ = writeln!(out, "permgate_redis_up {}", u8::from(up));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}
