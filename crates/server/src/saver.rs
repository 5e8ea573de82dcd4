//! The saver thread: about once a second it saves the in-memory quota counters that changed, the
//! apps' last calls and the recent decision log, and records waiting quota alerts, and nothing
//! else. A crash (even `kill -9`) therefore loses at most `EVERY` of counts (and the time one save
//! takes); a clean stop saves once more before the process exits. The upkeep thread beside it
//! looks for idle apps every [`IDLE_CHECK`] when apps are suspended for inactivity, and every
//! [`LIFECYCLE_CHECK`] sends due grant-expiry reminders and, when configured, warns about and
//! reaps unused grants.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use permgate_core::service::{ReapPolicy, Services};

/// How often counters are saved: the most counting a crash can lose.
pub const EVERY: Duration = Duration::from_secs(1);

/// How often idle apps are looked for.
pub const IDLE_CHECK: Duration = Duration::from_secs(60);

/// How often due expiry reminders are sent and unused grants looked for.
pub const LIFECYCLE_CHECK: Duration = Duration::from_secs(300);

/// Starts the saver; when `stop` is set it saves one last time and ends. It does nothing else,
/// so that no other work delays a save (the upkeep runs on a thread of its own:
/// [`spawn_upkeep`]).
pub fn spawn_saver(services: Services, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("permgate-saver".into()).spawn(move || {
        let mut failing = false;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            // A counter save records the waiting alerts first; the flush after it records those
            // queued meanwhile, and all of them when the counts are in Redis (nothing to save).
            let saved = services
                .save_counters()
                .and_then(|_| services.save_activity())
                .and_then(|_| services.flush_alerts())
                .and_then(|_| services.save_decisions())
                .and_then(|_| services.save_grant_usage());
            match saved {
                Ok(_) if failing => {
                    tracing::info!("saving quota counters works again");
                    failing = false;
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    tracing::warn!("cannot save quota counters; retrying: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
            if stopping {
                return;
            }
            std::thread::park_timeout(EVERY);
        }
    })
}

/// Starts the upkeep: every [`LIFECYCLE_CHECK`] the grant lifecycle (expiry reminders, with
/// `reap` unused grants, and what ended grants took along), and with `suspend_after` every
/// [`IDLE_CHECK`] the suspension of apps not called for that long. A round may take a while over
/// many grants or apps; on the saver's thread it held up the counter saves, so that a `kill -9`
/// then lost more than [`EVERY`] of counts. Ends when `stop` is set.
pub fn spawn_upkeep(
    services: Services,
    stop: Arc<AtomicBool>,
    suspend_after: Option<Duration>,
    reap: Option<ReapPolicy>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("permgate-upkeep".into()).spawn(move || {
        let mut last_idle_check: Option<std::time::Instant> = None;
        let mut last_lifecycle: Option<std::time::Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            if last_lifecycle.is_none_or(|t| t.elapsed() >= LIFECYCLE_CHECK) {
                last_lifecycle = Some(std::time::Instant::now());
                match services.run_lifecycle(reap) {
                    Ok(run) if !run.notified.is_empty() || !run.reaped.is_empty() || !run.lapsed.is_empty() => {
                        tracing::info!(notified = ?run.notified, reaped = ?run.reaped, lapsed = ?run.lapsed, "grant lifecycle");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("cannot run the grant lifecycle: {e}"),
                }
            }
            if let Some(idle) = suspend_after
                && last_idle_check.is_none_or(|t| t.elapsed() >= IDLE_CHECK)
            {
                last_idle_check = Some(std::time::Instant::now());
                match services.suspend_idle(i64::try_from(idle.as_secs()).unwrap_or(i64::MAX)) {
                    Ok(apps) if !apps.is_empty() => tracing::info!(?apps, "suspended apps for inactivity"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("cannot look for idle apps: {e}"),
                }
            }
            std::thread::park_timeout(EVERY);
        }
    })
}
