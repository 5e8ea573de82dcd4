//! The recent decision log: which app called which API with which credential, how it was
//! decided, how often and when last. It exists so that a catalog change can be previewed by
//! replaying real traffic against the new catalog before it is applied.
//!
//! Bounded twice: in memory, calls are folded by (app, credential, API, user scopes) between two
//! saves (about a second); in the store, the [`KEEP`] most recently seen combinations stay. A
//! call's path is kept without its query string, which may carry tokens.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::decision::Decision;
use crate::model::{AppId, KeyId, KeyKind};
use crate::time::Timestamp;

/// How many distinct calls the store keeps.
pub const KEEP: usize = 10_000;

/// One kind of call as it was last decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct LoggedCall {
    pub app_id: AppId,
    pub key_kind: KeyKind,
    /// The app key used (none for user tokens).
    pub key_id: Option<KeyId>,
    /// The user's consented scopes (user tokens), space-separated.
    pub scopes: String,
    pub method: String,
    /// A path that was called (the last one seen for this API), without a query string.
    pub path: String,
    pub api: String,
    /// The code it was last decided with (0 allowed).
    pub code: i32,
    /// When shadow mode allowed it: the code enforcement would have given (else 0), and what is
    /// in shadow mode (`permission:ID`, `api:ID`, `quota_rule:ID`; else empty).
    pub would_code: i32,
    pub shadow: String,
    pub calls: u64,
    pub last_at: i64,
}

/// Calls decided since the last save, folded.
#[derive(Debug, Default)]
pub struct DecisionLog {
    recent: Mutex<HashMap<u64, LoggedCall, std::hash::BuildHasherDefault<crate::fast_hash::Fast>>>,
}

impl DecisionLog {
    /// Notes one decided call. Calls that named no app or no API (-401 for an unknown key, -404)
    /// say nothing a catalog change could alter and are not kept.
    pub fn note(&self, d: &Decision, method: &str, path: &str, now: Timestamp) {
        let (Some(app_id), Some(api), Some(kind)) = (d.app_id, d.api, d.key_kind) else { return };
        let mut h = crate::fast_hash::Fast::default();
        (app_id.0, kind.as_str(), d.key_id.map(|k| k.0), api, &d.consented).hash(&mut h);
        let key = h.finish();
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = recent.get_mut(&key)
            && entry.app_id == app_id
            && entry.api == api
        {
            entry.calls += 1;
            entry.code = d.code;
            entry.last_at = now.0;
            match &d.would_deny {
                Some(w) if entry.shadow != w.shadow => {
                    entry.would_code = w.code;
                    entry.shadow.clone_from(&w.shadow);
                }
                Some(_) => {}
                None => {
                    entry.would_code = 0;
                    entry.shadow.clear();
                }
            }
            return;
        }
        recent.insert(
            key,
            LoggedCall {
                app_id,
                key_kind: kind,
                key_id: d.key_id,
                scopes: d.consented.join(" "),
                method: method.to_ascii_uppercase(),
                path: path.split('?').next().unwrap_or(path).to_owned(),
                api: api.to_owned(),
                code: d.code,
                would_code: d.would_deny.as_ref().map_or(0, |w| w.code),
                shadow: d.would_deny.as_ref().map(|w| w.shadow.clone()).unwrap_or_default(),
                calls: 1,
                last_at: now.0,
            },
        );
    }

    /// Takes what was noted since the last call.
    pub fn drain(&self) -> Vec<LoggedCall> {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.drain().map(|(_, v)| v).collect()
    }
}
