//! Changing the catalog while the node runs: the impact preview (replaying the recent decision
//! log against the new catalog) and the reload itself, which swaps the snapshot at once and is
//! recorded in the audit trail with its diff.

use std::sync::Arc;

use serde::Serialize;

use super::{Actor, Services};
use crate::audit::NewAuditEvent;
use crate::catalog::{Catalog, CatalogDiff, diff};
use crate::decision::replay;
use crate::decision_log::{KEEP, LoggedCall};
use crate::error::{ServiceError, ServiceResult};
use crate::model::AppId;
use crate::snapshot::Snapshot;

/// A call whose decision the new catalog would change.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ChangedDecision {
    pub app_id: AppId,
    pub api: String,
    pub method: String,
    pub path: String,
    pub key_kind: String,
    /// How often it was called while it was in the log.
    pub calls: u64,
    pub before: Outcome,
    pub after: Outcome,
}

/// One side of a changed decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    pub code: i32,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
}

/// What a catalog change would do.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CatalogPreview {
    pub diff: CatalogDiff,
    /// Calls replayed from the decision log.
    pub replayed: usize,
    /// Apps and APIs with at least one changed decision.
    pub apps: Vec<AppId>,
    pub apis: Vec<String>,
    pub changed: Vec<ChangedDecision>,
    /// Grants of permissions the new catalog no longer declares (they stop counting).
    pub orphaned_grants: Vec<(AppId, String)>,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Reloaded {
    pub version: String,
    pub changed: bool,
    pub diff: CatalogDiff,
}

/// One thing in shadow mode, and what enforcing it would change.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ShadowSubject {
    /// `permission:ID`, `api:ID` or `quota_rule:ID`.
    pub shadow: String,
    /// The codes enforcement would give.
    pub codes: Vec<i32>,
    /// Apps whose calls would be denied.
    pub apps: Vec<AppId>,
    /// Calls allowed only because of shadow mode, while they were in the log.
    pub calls: u64,
}

/// `GET /v1/shadow-report`: what enforcing each shadowed check would change, from the recent
/// decision log.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ShadowReport {
    pub subjects: Vec<ShadowSubject>,
    /// The logged calls shadow mode allowed, most recently seen first.
    pub calls: Vec<LoggedCall>,
}

impl Services {
    /// What shadow mode let through, per shadowed permission, API or quota rule (staff only).
    pub fn shadow_report(&self, actor: &Actor) -> ServiceResult<ShadowReport> {
        if !actor.is_staff() {
            return Err(ServiceError::Forbidden("only reviewers and admins read the shadow report".into()));
        }
        self.save_decisions()?;
        let calls: Vec<LoggedCall> =
            self.store.recent_decisions(KEEP)?.into_iter().filter(|c| c.would_code != 0).collect();
        let mut subjects: Vec<ShadowSubject> = Vec::new();
        for c in &calls {
            let at = match subjects.iter().position(|s| s.shadow == c.shadow) {
                Some(i) => i,
                None => {
                    subjects.push(ShadowSubject {
                        shadow: c.shadow.clone(),
                        codes: Vec::new(),
                        apps: Vec::new(),
                        calls: 0,
                    });
                    subjects.len() - 1
                }
            };
            let s = &mut subjects[at];
            s.calls += c.calls;
            if !s.codes.contains(&c.would_code) {
                s.codes.push(c.would_code);
            }
            if !s.apps.contains(&c.app_id) {
                s.apps.push(c.app_id);
            }
        }
        for s in &mut subjects {
            s.apps.sort_unstable();
            s.codes.sort_unstable();
        }
        subjects.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.shadow.cmp(&b.shadow)));
        Ok(ShadowReport { subjects, calls })
    }

    /// Saves the calls decided since the last save to the decision log.
    pub fn save_decisions(&self) -> ServiceResult<usize> {
        let calls = self.decision_log.drain();
        self.store.save_decisions(&calls, KEEP)?;
        Ok(calls.len())
    }

    /// Replays the recent decision log against `new` and against the catalog in force, and lists
    /// every call whose decision would change. `progress(done, total)` is told as it goes.
    pub fn preview_catalog(
        &self,
        new: Catalog,
        progress: &mut dyn FnMut(usize, usize),
    ) -> ServiceResult<CatalogPreview> {
        // Calls made in the last second count too.
        self.save_decisions()?;
        let log = self.store.recent_decisions(KEEP)?;
        let records = self.store.app_records()?;
        let now = self.clock.now();
        // Both sides are built from the same records, without holding the snapshot: a read guard
        // held through two builds and the replay would stall every decision behind the next write.
        let (catalog, verifier) = {
            let s = self.snapshot.read();
            (s.catalog().clone(), s.verifier.clone())
        };
        let catalog_diff = diff(&catalog, &new);
        let current = Snapshot::build(catalog, verifier.clone(), records.iter().cloned());
        let candidate = Snapshot::build(Arc::new(new), verifier, records.iter().cloned());
        let mut changed = Vec::new();
        for (done, call) in log.iter().enumerate() {
            let before = outcome(&replay(&current, call, now));
            let after = outcome(&replay(&candidate, call, now));
            if before != after {
                changed.push(changed_decision(call, before, after));
            }
            if done % 256 == 0 {
                progress(done, log.len());
            }
        }
        progress(log.len(), log.len());
        let mut apps: Vec<AppId> = changed.iter().map(|c| c.app_id).collect();
        apps.sort_unstable();
        apps.dedup();
        let mut apis: Vec<String> = changed.iter().map(|c| c.api.clone()).collect();
        apis.sort_unstable();
        apis.dedup();
        let orphaned_grants = records
            .iter()
            .flat_map(|r| r.grants.iter().map(move |g| (r.app.id, g)))
            .filter(|(_, g)| {
                current.catalog().permission_index(&g.permission).is_some()
                    && candidate.catalog().permission_index(&g.permission).is_none()
            })
            .map(|(app, g)| (app, g.permission.clone()))
            .collect();
        Ok(CatalogPreview { diff: catalog_diff, replayed: log.len(), apps, apis, changed, orphaned_grants })
    }

    /// Puts `new` in force on this node: rebuilds the snapshot under it, carries over the calls
    /// not saved yet, and records the change with its diff (`source` says where it came from).
    /// A catalog equal to the one in force changes nothing and records nothing.
    pub fn reload_catalog(&self, new: Catalog, source: &str, actor: Option<&Actor>) -> ServiceResult<Reloaded> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (old, verifier) = {
            let s = self.snapshot.read();
            (s.catalog().clone(), s.verifier.clone())
        };
        let catalog_diff = diff(&old, &new);
        if catalog_diff.is_empty() && old.version == new.version {
            return Ok(Reloaded { version: new.version.clone(), changed: false, diff: catalog_diff });
        }
        let rule_map: Vec<Option<usize>> =
            old.quota_rules.iter().map(|r| new.quota_rules.iter().position(|n| n.id == r.id)).collect();
        let renumbered = rule_map.iter().enumerate().any(|(i, n)| *n != Some(i));
        let version = new.version.clone();
        let event = NewAuditEvent::new(
            self.clock.now(),
            actor.map(|a| a.account.id),
            "catalog.reload",
            format!("catalog:{version}"),
        )
        .before(serde_json::json!({"version": old.version}))
        .after(serde_json::json!({"version": version, "source": source, "diff": &catalog_diff}));
        // No app is patched from the store while the new snapshot is built from it: a write
        // made meanwhile is patched into the new snapshot once it is in place (by its own
        // refresh, or by the change sync for another node's), so none can be lost in the swap.
        let in_order = self.patching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut fresh = Snapshot::build(Arc::new(new), verifier, self.store.app_records()?);
        self.store.record_event(&event)?;
        self.snapshot.patch(|current| {
            fresh.carry_over(current, &rule_map);
            if renumbered && let Some(memory) = &self.memory {
                memory.renumber(&rule_map);
            }
            std::mem::swap(current, &mut fresh);
        });
        drop(in_order);
        Ok(Reloaded { version, changed: true, diff: catalog_diff })
    }
}

fn outcome(d: &crate::decision::Decision) -> Outcome {
    Outcome {
        code: d.code,
        status: d.status,
        msg: d.msg.as_deref().map(str::to_owned),
        permission: d.permission.filter(|_| !d.allow || d.restriction.is_some()).map(str::to_owned),
    }
}

fn changed_decision(call: &LoggedCall, before: Outcome, after: Outcome) -> ChangedDecision {
    ChangedDecision {
        app_id: call.app_id,
        api: call.api.clone(),
        method: call.method.clone(),
        path: call.path.clone(),
        key_kind: call.key_kind.as_str().to_owned(),
        calls: call.calls,
        before,
        after,
    }
}
