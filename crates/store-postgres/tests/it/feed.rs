//! Waiting for changes: a write on another connection ends the wait at once.

use std::time::{Duration, Instant};

use permgate_core::ports::{ChangeFeed, StoreError};
use permgate_testkit::pg;

use crate::{migrated, new_app, owner};

#[test]
fn a_write_by_another_node_ends_the_wait_early() -> Result<(), StoreError> {
    let Some(schema) = pg::fresh_schema("wake") else { return Ok(()) };
    let a = migrated(&schema.url)?;
    let b = migrated(&schema.url)?;
    let dana = owner(&b, "dana")?;
    a.wait_for_change(Duration::ZERO)?; // listening from here on

    let quiet = Instant::now();
    a.wait_for_change(Duration::from_millis(200))?;
    assert!(quiet.elapsed() >= Duration::from_millis(190), "a write that touches no app wakes nobody");

    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let start = Instant::now();
            a.wait_for_change(Duration::from_secs(5)).map(|()| start.elapsed())
        });
        let written = new_app(&b, dana);
        let took = waiter.join().unwrap_or_else(|_| Err(StoreError::Backend("the waiter died".into())))?;
        written?;
        assert!(took < Duration::from_millis(500), "woke after {took:?}");
        Ok(())
    })
}
