//! The change-sync thread: waits for the store to signal a change (PostgreSQL LISTEN/NOTIFY) or
//! for `POLL` to pass, then applies every change after the last one it applied. The poll is the
//! reconciliation: a lost notification or a dropped connection delays a change by at most `POLL`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use permgate_core::service::Services;

/// The longest a change made on another node can wait before this node applies it.
pub const POLL: Duration = Duration::from_millis(400);

/// Starts the thread; it stops when `stop` is set. `since` is the change-feed position the
/// snapshot was built at (read before the apps were loaded).
pub fn spawn_change_sync(
    services: Services,
    since: i64,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("permgate-sync".into()).spawn(move || {
        let mut seq = since;
        let mut failing = false;
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = services.store.wait_for_change(POLL) {
                if !failing {
                    tracing::warn!("change notifications unavailable, polling instead: {e}");
                }
                std::thread::sleep(POLL);
            }
            match services.apply_changes(seq) {
                Ok(newest) => {
                    if failing {
                        tracing::info!("change sync recovered");
                        failing = false;
                    }
                    seq = newest;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("change sync failed; retrying: {e}");
                        failing = true;
                    }
                    std::thread::sleep(POLL);
                }
            }
        }
    })
}
