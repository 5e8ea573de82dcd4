//! Grants over time: a default lifetime per permission, renewal before expiry with reminders at
//! 30 and 7 days, auto-approval by the catalog's rules, and reaping grants an app no longer
//! exercises (a warning to its members first, then revocation; applying again restores it).

use serde::Serialize;

use super::{Actor, Services};
use crate::audit::NewAuditEvent;
use crate::catalog::{AutoApprove, Permission};
use crate::error::ServiceResult;
use crate::model::{AppId, AppRecord, GrantSource};
use crate::ports::{Cascade, GrantOf, GrantState, Lost, Revocation};
use crate::time::Timestamp;
use crate::workflow::{RequestFilter, RequestState};

const DAY: i64 = 86_400;

/// A held permission may be applied for again (renewed) this many days before it expires.
pub const RENEW_WITHIN_DAYS: i64 = 30;

/// How the app holds a permission app-wide now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holding {
    No,
    Forever,
    Until(Timestamp),
}

/// When to reap unused grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReapPolicy {
    /// A grant not exercised for this many days gets a warning...
    pub unused_days: u32,
    /// ... and is revoked this many days after the warning if still unused.
    pub warning_days: u32,
}

/// What one lifecycle round did.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct LifecycleRun {
    /// `(app, permission, notice)`: `expiry_30`, `expiry_7`, `unused`.
    pub notified: Vec<(AppId, String, String)>,
    pub reaped: Vec<(AppId, String)>,
    /// `(app, permission)`: grants that ran out, whose dependents went with them.
    pub lapsed: Vec<(AppId, String)>,
}

impl Services {
    /// How `record` holds `permission` app-wide at `now`; for a permission that raises the quota
    /// rule each grant names, the grants raising `rule` (see [`crate::model::Grant::same_holding`]).
    pub(super) fn holding(&self, record: &AppRecord, permission: &str, rule: Option<&str>, now: Timestamp) -> Holding {
        let live =
            record.grants.iter().filter(|g| g.same_holding(permission, rule) && g.key_id.is_none() && g.is_active(now));
        let mut holding = Holding::No;
        for g in live {
            holding = match (holding, g.expires_at) {
                (_, None) | (Holding::Forever, _) => Holding::Forever,
                (Holding::Until(a), Some(b)) => Holding::Until(a.max(b)),
                (Holding::No, Some(b)) => Holding::Until(b),
            };
        }
        holding
    }

    /// The end of a grant of `permission` starting at `from`, by the catalog's default lifetime.
    pub(super) fn default_expiry(permission: &Permission, from: Timestamp) -> Option<Timestamp> {
        permission.default_duration_days.map(|d| from.plus_seconds(i64::from(d) * DAY))
    }

    /// Whether `record`'s request for `permission` meets its auto-approval rule now; the text
    /// says which conditions held (for the history and the audit trail).
    pub(super) fn auto_approval(
        &self,
        record: &AppRecord,
        rule: &AutoApprove,
        now: Timestamp,
    ) -> ServiceResult<Option<String>> {
        let mut met = Vec::new();
        let days_since = |t: Timestamp| (now.0 - t.0) / DAY;
        if rule.biz || rule.verified_days > 0 {
            let verified = record.business.as_ref().map(|b| b.verified_at);
            let Some(at) = verified else { return Ok(None) };
            if days_since(at) < i64::from(rule.verified_days) {
                return Ok(None);
            }
            met.push(format!("a Biz app verified {} days ago", days_since(at)));
        }
        if rule.app_age_days > 0 {
            if days_since(record.app.created_at) < i64::from(rule.app_age_days) {
                return Ok(None);
            }
            met.push(format!("the app is {} days old", days_since(record.app.created_at)));
        }
        if rule.no_rejection_days > 0 {
            let since = now.plus_seconds(-i64::from(rule.no_rejection_days) * DAY);
            let filter = RequestFilter { app_id: Some(record.app.id), limit: 1000, ..RequestFilter::default() };
            // A rejection is final: a rejected request's last change is its rejection.
            let rejected = self
                .store
                .requests(&filter)?
                .iter()
                .any(|r| r.state == RequestState::Rejected && r.updated_at >= since);
            if rejected {
                return Ok(None);
            }
            met.push(format!("no request rejected in {} days", rule.no_rejection_days));
        }
        Ok(Some(met.join(", ")))
    }

    /// Sends the expiry reminders that are due and, with `reap`, warns about and revokes unused
    /// grants. Each notice is sent once (the store records it with its messages); the saver runs
    /// this every few minutes and `permgate grants lifecycle` once.
    pub fn run_lifecycle(&self, reap: Option<ReapPolicy>) -> ServiceResult<LifecycleRun> {
        let now = self.clock.now();
        let mut run = LifecycleRun::default();
        let catalog = self.snapshot.read().catalog().clone();
        let grants = self.store.live_grants()?;
        // Expired grants need neither a reminder nor reaping, nor do those of the app's type or
        // bound to one key.
        let considered = |g: &crate::model::Grant| {
            g.source != GrantSource::AppType && g.key_id.is_none() && g.expires_at.is_none_or(|e| e > now)
        };
        // An app may hold a permission by several grants (a renewal starts where the grant it
        // renews ends): it is the newest that stands for the holding. The older one's end is no
        // reason to remind (the app holds on), and its disuse no reason to revoke what the
        // renewal just granted.
        let end = |g: &crate::model::Grant| g.expires_at.map_or(i64::MAX, |e| e.0);
        // Per app and permission (and quota rule raised, for a permission raising the rule each
        // grant names): its newest grant, and the end of the last to end.
        type Holding<'g> = (AppId, &'g str, Option<&'g str>);
        let mut standing: std::collections::HashMap<Holding<'_>, (&crate::model::Grant, i64)> = Default::default();
        for g in grants.iter().map(|s| &s.grant).filter(|g| considered(g)) {
            standing
                .entry((g.app_id, g.permission.as_str(), rule_of(&catalog, g)))
                .and_modify(|(n, last_end)| {
                    if (g.granted_at, g.id) > (n.granted_at, n.id) {
                        *n = g;
                    }
                    *last_end = (*last_end).max(end(g));
                })
                .or_insert((g, end(g)));
        }
        let standing_of =
            |g: &crate::model::Grant| standing.get(&(g.app_id, g.permission.as_str(), rule_of(&catalog, g))).copied();
        // Per app and permission, the app-wide grant that ends last (by end, then id), ended or
        // not: once it has ended, the app holds the permission no more, and what needed it goes.
        let mut last: std::collections::HashMap<(AppId, &str), (i64, i64)> = Default::default();
        for g in grants.iter().map(|s| &s.grant).filter(|g| g.source != GrantSource::AppType && g.key_id.is_none()) {
            let at = last.entry((g.app_id, g.permission.as_str())).or_insert((end(g), g.id));
            *at = (*at).max((end(g), g.id));
        }
        for state in &grants {
            let g = &state.grant;
            let ended = g.expires_at.filter(|e| *e <= now);
            if let Some(ended) = ended
                && last.get(&(g.app_id, g.permission.as_str())) == Some(&(ended.0, g.id))
                && !state.notices.iter().any(|(k, _)| k == LAPSED)
                && needed_by_others(&catalog, &g.permission)
                && self.lapse(g, ended)?
            {
                run.lapsed.push((g.app_id, g.permission.clone()));
            }
            if !considered(g) {
                continue;
            }
            let sent = |kind: &str| state.notices.iter().any(|(k, _)| k == kind);
            let last_to_end = standing_of(g).is_some_and(|(_, last_end)| last_end == end(g));
            if let Some(end) = g.expires_at.filter(|e| *e > now && last_to_end) {
                let left = (end.0 - now.0) / DAY;
                let kind = if left < 7 {
                    (!sent("expiry_7")).then_some("expiry_7")
                } else if left < RENEW_WITHIN_DAYS {
                    (!sent("expiry_30") && !sent("expiry_7")).then_some("expiry_30")
                } else {
                    None
                };
                if let Some(kind) = kind
                    && self.expiry_notice(g, kind, end)?
                {
                    run.notified.push((g.app_id, g.permission.clone(), kind.to_owned()));
                }
            }
            let Some(policy) = reap else { continue };
            // Only permissions some API needs are exercised by calls.
            let Some(p) = catalog.permission_index(&g.permission) else { continue };
            if !catalog.apis.iter().any(|a| a.permission_idx.contains(&p)) {
                continue;
            }
            if standing_of(g).is_some_and(|(newest, _)| newest.id != g.id) {
                continue;
            }
            if let Some(outcome) = self.reap_step(state, policy, now)? {
                match outcome {
                    Reap::Warned => run.notified.push((g.app_id, g.permission.clone(), "unused".into())),
                    Reap::Revoked => run.reaped.push((g.app_id, g.permission.clone())),
                }
            }
        }
        Ok(run)
    }

    /// What needed the permission of `g`, an app-wide grant that ended at `ended` and was the
    /// last of it to end, goes (SPEC 4's cascade, as for a revocation; the grant itself stays as
    /// it ended), once, in one transaction with its audit event and messages. False when nothing
    /// was done: the notice was recorded before, the app has nothing that needs the permission,
    /// or it holds it again (asked again on the next round, which then sees why).
    fn lapse(&self, g: &crate::model::Grant, ended: Timestamp) -> ServiceResult<bool> {
        let Some(record) = self.store.app_record(g.app_id)? else { return Ok(false) };
        // Nothing the app has needs it: nothing to do (a grant made since the round read the
        // grants, which holds the permission on, is seen by the store's transaction).
        let (held, set) = self.lost_on_record(&record, &[&g.permission], &[]);
        if held.is_empty() && set.is_empty() {
            return Ok(false);
        }
        let now = self.clock.now();
        let app = g.app_id;
        let what = format!("the end of `{}` on {}", g.permission, ended.to_rfc3339());
        let (revoke, unset, messages) = self.losing(&record, &[&g.permission], &[], &what)?;
        let reason = format!("`{}` ended on {}", g.permission, ended.to_rfc3339());
        let revocation = Revocation {
            lost: Lost::Ended(&g.permission),
            cascade: Cascade { revoke: &revoke, unset: &unset, messages: &messages },
            reason: &reason,
        };
        let audit = NewAuditEvent::new(now, None, "grant.lapse", format!("grant:{}", g.id))
            .app(app)
            .before(serde_json::json!({"permission": g.permission, "grant_id": g.id, "expires_at": ended}))
            .after(serde_json::json!({"reason": reason}))
            .losing(&[], &[]);
        let done = self.store.grant_notice(g, LAPSED, Some(revocation), &[], &audit)?;
        if done {
            self.settle(app);
        }
        Ok(done)
    }

    fn expiry_notice(&self, g: &crate::model::Grant, kind: &str, end: Timestamp) -> ServiceResult<bool> {
        let Some(record) = self.store.app_record(g.app_id)? else { return Ok(false) };
        let app = g.app_id;
        // A permission held once per quota rule: the reminder is about this rule's grant.
        let rule = {
            let snapshot = self.snapshot.read();
            rule_of(snapshot.catalog(), g).map(str::to_owned)
        };
        let held = crate::model::holding_name(&g.permission, rule.as_deref());
        let apply = match &rule {
            Some(rule) => format!("permission={}, requested_rule={rule}", g.permission),
            None => format!("permission={}", g.permission),
        };
        let subject = format!("[permgate] {held} of app {app} ends on {}", end.to_rfc3339());
        let body = format!(
            "App {app} ({}) holds {held} until {}.\n\nTo keep it, apply again before then: POST /v1/apps/{app}/permission-requests with {apply} (renewals open {RENEW_WITHIN_DAYS} days before the end).\n",
            record.app.name,
            end.to_rfc3339(),
        );
        let webhook = serde_json::json!({
            "type": "grant.expiring", "app_id": app, "permission": g.permission, "rule": rule, "expires_at": end, "notice": kind,
        });
        let messages = self.app_messages(&record, &subject, &body, webhook)?;
        let audit = NewAuditEvent::new(self.clock.now(), None, "grant.expiry_reminder", format!("grant:{}", g.id))
            .after(serde_json::json!({"app_id": app, "permission": g.permission, "rule": rule, "expires_at": end, "notice": kind}));
        Ok(self.store.grant_notice(g, kind, None, &messages, &audit)?)
    }

    fn reap_step(&self, state: &GrantState, policy: ReapPolicy, now: Timestamp) -> ServiceResult<Option<Reap>> {
        let g = &state.grant;
        let last = state.last_used_at.unwrap_or(g.granted_at.0).max(g.granted_at.0);
        if now.0 - last < i64::from(policy.unused_days) * DAY {
            return Ok(None);
        }
        let Some(record) = self.store.app_record(g.app_id)? else { return Ok(None) };
        let app = g.app_id;
        // One warning per stretch of disuse: a use after the warning starts a new stretch.
        let warning = format!("unused@{last}");
        let warned_at = state.notices.iter().find(|(k, _)| *k == warning).map(|(_, at)| *at);
        match warned_at {
            None => {
                let until = now.plus_seconds(i64::from(policy.warning_days) * DAY);
                let subject = format!("[permgate] `{}` of app {app} is unused and will be revoked", g.permission);
                let body = format!(
                    "App {app} ({}) has not used `{}` since {} ({} days).\n\nUnless a call uses it, it is revoked on {}. It can be applied for again at any time.\n",
                    record.app.name,
                    g.permission,
                    Timestamp(last).to_rfc3339(),
                    (now.0 - last) / DAY,
                    until.to_rfc3339()
                );
                let webhook = serde_json::json!({
                    "type": "grant.unused", "app_id": app, "permission": g.permission,
                    "last_used_at": Timestamp(last), "revoke_after": until,
                });
                let messages = self.app_messages(&record, &subject, &body, webhook)?;
                let audit = NewAuditEvent::new(now, None, "grant.unused_warning", format!("grant:{}", g.id))
                    .app(app)
                    .after(serde_json::json!({"permission": g.permission, "last_used_at": Timestamp(last), "revoke_after": until}));
                Ok(self.store.grant_notice(g, &warning, None, &messages, &audit)?.then_some(Reap::Warned))
            }
            Some(at) if now.0 - at >= i64::from(policy.warning_days) * DAY => {
                let reason = format!(
                    "unused since {} ({} days); revoked after a warning on {}",
                    Timestamp(last).to_rfc3339(),
                    (now.0 - last) / DAY,
                    Timestamp(at).to_rfc3339()
                );
                // The holding goes: for a permission held once per quota rule, that rule's alone.
                let rule = rule_of(self.snapshot.read().catalog(), g);
                let held = crate::model::holding_name(&g.permission, rule);
                let subject = format!("[permgate] {held} of app {app} was revoked: unused");
                let body = format!(
                    "{held} of app {app} ({}) was revoked: {reason}.\n\nApply again to restore it: POST /v1/apps/{app}/permission-requests.\n",
                    record.app.name
                );
                let webhook = serde_json::json!({
                    "type": "grant.reaped", "app_id": app, "permission": g.permission, "rule": rule, "reason": reason,
                });
                let messages = self.app_messages(&record, &subject, &body, webhook)?;
                let audit = NewAuditEvent::new(
                    now,
                    None,
                    "grant.reap",
                    format!("app:{app}/permission:{}", g.permission),
                )
                .app(app)
                .before(serde_json::json!({"permission": g.permission, "rule": rule, "grant_id": g.id, "expires_at": g.expires_at}))
                .after(serde_json::json!({"revoked": true, "reason": reason}));
                // What needed the permission goes with it, if the app holds it app-wide no more.
                let (revoke, unset, cascade_messages) =
                    self.losing(&record, &[&g.permission], &[], &format!("revoking unused {held}"))?;
                let revocation = Revocation {
                    lost: Lost::Reaped(GrantOf { permission: &g.permission, key: None, rule }),
                    cascade: Cascade { revoke: &revoke, unset: &unset, messages: &cascade_messages },
                    reason: &reason,
                };
                let done = self.store.grant_notice(g, "reaped", Some(revocation), &messages, &audit)?;
                if done {
                    self.settle(app);
                }
                Ok(done.then_some(Reap::Revoked))
            }
            Some(_) => Ok(None),
        }
    }

    /// Runs one lifecycle round as an admin (for `permgate grants lifecycle`).
    pub fn run_lifecycle_as(&self, actor: &Actor, reap: Option<ReapPolicy>) -> ServiceResult<LifecycleRun> {
        if !actor.is_admin() {
            return Err(crate::error::ServiceError::Forbidden("only an admin runs the grant lifecycle".into()));
        }
        self.run_lifecycle(reap)
    }
}

enum Reap {
    Warned,
    Revoked,
}

/// The notice a grant that ran out gets once what needed it went ([`Services::lapse`]).
const LAPSED: &str = "lapsed";

/// Whether any permission or consent item of the catalog needs `permission`, so that its end can
/// take something along (most need nothing, and their ends are not looked into).
fn needed_by_others(catalog: &crate::catalog::Catalog, permission: &str) -> bool {
    let (revoke, unset) = catalog.lost_with(&[permission], &[], |_| true, |_| true);
    !revoke.is_empty() || !unset.is_empty()
}

/// The quota rule a grant raises, for a permission held once per rule (`increased_quota`); `None`
/// for any other, whatever its `params.rule` says.
fn rule_of<'g>(catalog: &crate::catalog::Catalog, g: &'g crate::model::Grant) -> Option<&'g str> {
    let names = catalog.permission(&g.permission).is_some_and(|p| p.names_its_rule());
    if names { g.raised_rule() } else { None }
}
