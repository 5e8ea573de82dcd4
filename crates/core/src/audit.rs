//! Audit events: an append-only, hash-chained record of every change of state. Each event's hash
//! covers the previous event's hash and the event's own content, so editing or deleting a past
//! event breaks every later hash.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{AccountId, AppId};
use crate::time::Timestamp;

/// The hash the first event chains from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event about to be written; the store assigns `seq` and the hashes.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct NewAuditEvent {
    pub at: Timestamp,
    /// The account that acted; `None` for permgate itself (bootstrap, expiry).
    pub actor: Option<AccountId>,
    /// What happened, e.g. `grant.create`, `key.rotate`.
    pub action: String,
    /// What it happened to, e.g. `app:12`, `account:3`.
    pub target: String,
    pub app_id: Option<AppId>,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

impl NewAuditEvent {
    pub fn new(at: Timestamp, actor: Option<AccountId>, action: &str, target: String) -> Self {
        NewAuditEvent {
            at,
            actor,
            action: action.to_owned(),
            target,
            app_id: None,
            before: serde_json::Value::Null,
            after: serde_json::Value::Null,
        }
    }

    pub fn app(mut self, app: AppId) -> Self {
        self.app_id = Some(app);
        self
    }

    pub fn before(mut self, value: impl Serialize) -> Self {
        self.before = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self
    }

    /// A copy whose `after.revoked` names `revoked`: what a store's transaction found to revoke,
    /// which the caller could only guess before it ran.
    pub fn revoking(&self, revoked: &[String]) -> Self {
        self.noting(&[("revoked", revoked.into())])
    }

    /// A copy whose `after` names what went with the change ([`crate::ports::Cascade`]): the
    /// permissions revoked (`also_revoked`) and the consent items unset (`consent_items_unset`).
    pub fn losing(&self, revoked: &[String], unset: &[String]) -> Self {
        self.noting(&[("also_revoked", revoked.into()), ("consent_items_unset", unset.into())])
    }

    /// A copy whose `after.granted` says whether the store's transaction granted.
    pub fn granting(&self, granted: bool) -> Self {
        self.noting(&[("granted", granted.into())])
    }

    /// A copy whose `after.consent_items_unset` names `unset` (what a store's transaction found).
    pub fn unsetting(&self, unset: &[String]) -> Self {
        self.noting(&[("consent_items_unset", unset.into())])
    }

    /// A copy with `fields` set in `after` (made an object if it was not one).
    fn noting(&self, fields: &[(&str, serde_json::Value)]) -> Self {
        let mut event = self.clone();
        if !event.after.is_object() {
            event.after = serde_json::json!({});
        }
        if let Some(after) = event.after.as_object_mut() {
            for (key, value) in fields {
                after.insert((*key).into(), value.clone());
            }
        }
        event
    }

    pub fn after(mut self, value: impl Serialize) -> Self {
        self.after = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self
    }

    /// The hash of this event chained after `prev_hash`, as the event at `seq`.
    pub fn chain_hash(&self, seq: i64, prev_hash: &str) -> String {
        let content = serde_json::json!([
            seq,
            self.at.0,
            self.actor,
            self.action,
            self.target,
            self.app_id,
            self.before,
            self.after
        ]);
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(b"\n");
        h.update(content.to_string().as_bytes());
        crate::secret::hex_digest(&h.finalize())
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AuditEvent {
    pub seq: i64,
    #[serde(flatten)]
    pub event: NewAuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// Checks a run of events, oldest first, starting from the genesis hash. Returns the `seq` of the
/// first event whose hash does not verify.
pub fn verify_chain(events: &[AuditEvent]) -> Result<(), i64> {
    let mut prev = GENESIS_HASH.to_owned();
    for e in events {
        if e.prev_hash != prev || e.event.chain_hash(e.seq, &prev) != e.hash {
            return Err(e.seq);
        }
        prev = e.hash.clone();
    }
    Ok(())
}

/// Why an audit trail does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrailError {
    #[error("the chain breaks at event {0}: it was changed, or an event before it was removed")]
    Broken(i64),
    #[error("the newest events were removed: the trail ends at event {last}, but event {head} was written")]
    Truncated { last: i64, head: i64 },
    #[error("event {0} differs from the one recorded as the newest when it was written")]
    HeadMismatch(i64),
}

/// Checks the whole trail: the hash chain, and that its last event is the head recorded beside
/// it (so that deleting the newest events, which leaves a valid shorter chain, is detected).
pub fn verify_trail(events: &[AuditEvent], head: Option<&(i64, String)>) -> Result<(), TrailError> {
    verify_chain(events).map_err(TrailError::Broken)?;
    let last = events.last().map(|e| (e.seq, e.hash.as_str()));
    match (last, head) {
        (None, None) => Ok(()),
        (Some((seq, _)), None) => Err(TrailError::HeadMismatch(seq)),
        (None, Some((head, _))) => Err(TrailError::Truncated { last: 0, head: *head }),
        (Some((seq, _)), Some((head, _))) if seq < *head => Err(TrailError::Truncated { last: seq, head: *head }),
        (Some((seq, hash)), Some((head, head_hash))) if seq != *head || hash != head_hash => {
            Err(TrailError::HeadMismatch(seq))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let event =
                    NewAuditEvent::new(Timestamp(seq), Some(AccountId(1)), "grant.create", format!("app:{seq}"))
                        .after(serde_json::json!({"permission": "kakao_moment"}));
                let hash = event.chain_hash(seq, &prev);
                let e = AuditEvent { seq, event, prev_hash: prev.clone(), hash: hash.clone() };
                prev = hash;
                e
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(()));
    }

    #[test]
    fn editing_a_past_event_is_detected_at_that_event() {
        let mut events = chain(5);
        events[2].event.target = "app:99".into();
        assert_eq!(verify_chain(&events), Err(3));
    }

    #[test]
    fn deleting_the_newest_events_is_detected_by_the_head() {
        let events = chain(5);
        let head = (5, events[4].hash.clone());
        assert_eq!(verify_trail(&events, Some(&head)), Ok(()));
        assert_eq!(verify_trail(&events[..3], Some(&head)), Err(TrailError::Truncated { last: 3, head: 5 }));
        assert_eq!(verify_trail(&[], Some(&head)), Err(TrailError::Truncated { last: 0, head: 5 }));
        assert_eq!(verify_trail(&events, None), Err(TrailError::HeadMismatch(5)));
        assert_eq!(verify_trail(&[], None), Ok(()));
    }

    /// The store keeps `before` and `after` as JSON text and reads them back to verify: a number
    /// must come back as the same number, or an untouched event would fail. (Without serde_json's
    /// `float_roundtrip`, about 3 in 10 random doubles did not: `1.0715660391465826e-75` was read
    /// as `…825e-75`.)
    #[test]
    fn an_event_read_back_from_its_stored_text_verifies_whatever_numbers_it_holds() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let limits: Vec<f64> = std::iter::from_fn(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Some(f64::from_bits(x))
        })
        .filter(|f| f.is_finite())
        .take(2_000)
        .chain([1.071_566_039_146_582_6e-75, 0.1, 1e300, 12_345.678])
        .collect();
        let event = NewAuditEvent::new(Timestamp(1), Some(AccountId(1)), "grant.create", "app:1".into())
            .after(serde_json::json!({"params": {"limits": limits}}));
        let hash = event.chain_hash(1, GENESIS_HASH);
        let mut stored = AuditEvent { seq: 1, event, prev_hash: GENESIS_HASH.to_owned(), hash };
        stored.event.after = serde_json::from_str(&stored.event.after.to_string()).unwrap_or_default();
        assert_eq!(verify_chain(&[stored]), Ok(()));
    }

    #[test]
    fn deleting_an_event_is_detected() {
        let mut events = chain(5);
        events.remove(1);
        assert_eq!(verify_chain(&events), Err(3));
    }
}
