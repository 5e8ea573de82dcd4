//! Two nodes writing at once: one audit chain, one change order.

use permgate_core::audit::verify_chain;
use permgate_core::ports::{AppStore, AuditStore, ChangeFeed, StoreError};
use permgate_testkit::pg;

use crate::{migrated, new_app, owner, pg_err, sql};

const PER_NODE: usize = 20;

#[test]
fn two_nodes_writing_at_once_keep_one_chain_and_one_change_order() -> Result<(), StoreError> {
    let Some(schema) = pg::fresh_schema("concurrent") else { return Ok(()) };
    let a = migrated(&schema.url)?;
    let b = migrated(&schema.url)?;
    let dana = owner(&a, "dana")?;
    std::thread::scope(|s| {
        let writers: Vec<_> = [&a, &b]
            .into_iter()
            .map(|node| s.spawn(move || (0..PER_NODE).try_for_each(|_| new_app(node, dana).map(drop))))
            .collect();
        writers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|_| Err(StoreError::Backend("a writer died".into()))))
    })?;

    let events = b.audit_events(None, usize::MAX)?;
    assert_eq!(events.len(), 1 + 2 * PER_NODE);
    assert_eq!(verify_chain(&events), Ok(()));
    assert!(events.iter().zip(1..).all(|(e, seq)| e.seq == seq), "audit seqs are 1, 2, 3, …");

    let (newest, apps) = a.changes_since(0)?;
    assert_eq!(apps.len(), 2 * PER_NODE);
    assert_eq!(newest, b.latest_change()?);
    assert_eq!(a.app_ids()?, apps, "the feed lists apps in the order they were created");
    let (rows, seqs): (i64, i64) = sql(&schema.url)?
        .query_one("SELECT count(*), count(DISTINCT seq) FROM change_log", &[])
        .and_then(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .map_err(pg_err)?;
    assert_eq!((rows, seqs), (40, 40));
    Ok(())
}
