//! The saver thread: about once a second it saves the in-memory quota counters that changed and
//! records waiting quota alerts. A crash (even `kill -9`) therefore loses at most `EVERY` of
//! counts; a clean stop saves once more before the process exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use permgate_core::service::Services;

/// How often counters are saved: the most counting a crash can lose.
pub const EVERY: Duration = Duration::from_secs(1);

/// Starts the thread; when `stop` is set it saves one last time and ends.
pub fn spawn_saver(services: Services, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("permgate-saver".into()).spawn(move || {
        let mut failing = false;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let saved = services.save_counters().and_then(|_| services.flush_alerts());
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
