//! Keeping this node's snapshot current with writes made by other nodes (or other processes)
//! on the same database, through the store's change feed.

use super::Services;
use crate::error::ServiceResult;

impl Services {
    /// Reloads every app changed after `since` into the snapshot (forgetting apps that are gone)
    /// and returns the newest change applied. Reapplying a change is harmless: the snapshot then
    /// holds the app as the store has it.
    pub fn apply_changes(&self, since: i64) -> ServiceResult<i64> {
        let _in_order = self.patching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (newest, apps) = self.store.changes_since(since)?;
        for id in apps {
            match self.store.app_record(id)? {
                Some(record) => self.snapshot.patch(|s| s.upsert_app(&record)),
                None => self.snapshot.patch(|s| s.remove_app(id)),
            }
        }
        Ok(newest)
    }
}
