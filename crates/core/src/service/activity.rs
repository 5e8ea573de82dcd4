//! Suspension for inactivity (-13): every node notes each app's last admitted call in memory and
//! saves it about once a second; an app that no node has seen called for the configured idle time
//! is suspended (audited, its members notified), and its owner reactivates it.

use std::sync::Arc;

use super::{Access, Actor, AppView, Services};
use crate::audit::NewAuditEvent;
use crate::catalog::{Catalog, QuotaPeriod};
use crate::error::{ServiceError, ServiceResult};
use crate::meter::pending;
use crate::model::{AppId, AppStatus};
use crate::ports::ActivityRow;
use crate::quota::window;
use crate::snapshot::Snapshot;
use crate::time::Timestamp;

impl Services {
    /// Saves when each app last exercised each permission, where it changed since the last save.
    pub fn save_grant_usage(&self) -> ServiceResult<usize> {
        let (read_under, rows, marks) = {
            let snapshot = self.snapshot.read();
            let (rows, marks) = unsaved_usage(&snapshot);
            (snapshot.catalog().clone(), rows, marks)
        };
        if rows.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.store.save_grant_usage(&rows) {
            self.mark_again(marks.iter().map(|(app, _, _)| *app), pending::USAGE);
            return Err(e.into());
        }
        mark_usage_saved(&self.snapshot.read(), &read_under, &marks);
        Ok(rows.len())
    }

    /// Saves the last calls not saved yet; returns how many apps had one.
    pub fn save_activity(&self) -> ServiceResult<usize> {
        // What is read here is what is marked saved below: counts added meanwhile wait for the
        // next round.
        let (read_under, seen, rows, day_start) = {
            let snapshot = self.snapshot.read();
            let day = window(QuotaPeriod::Day, self.clock.now(), snapshot.catalog().utc_offset).start;
            let (seen, rows) = unsaved_activity(&snapshot);
            (snapshot.catalog().clone(), seen, rows, day)
        };
        if rows.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.store.record_activity(&rows, day_start) {
            self.mark_again(seen.iter().map(|(app, ..)| *app), pending::ACTIVITY);
            return Err(e.into());
        }
        mark_activity_saved(&self.snapshot.read(), &read_under, &seen);
        Ok(seen.len())
    }

    /// Marks the meters of `apps` for the saver of `bits` again: what it read of them was not
    /// stored.
    fn mark_again(&self, apps: impl Iterator<Item = AppId>, bits: u8) {
        let snapshot = self.snapshot.read();
        for app in apps {
            if let Some(a) = snapshot.app(app) {
                a.meter.mark(bits);
            }
        }
    }

    /// Suspends every active app not called for `idle_secs` (on any node: the store holds every
    /// node's saved activity). Returns the apps suspended.
    pub fn suspend_idle(&self, idle_secs: i64) -> ServiceResult<Vec<AppId>> {
        self.save_activity()?;
        let now = self.clock.now();
        let cutoff = Timestamp(now.0 - idle_secs);
        let mut suspended = Vec::new();
        for app in self.store.idle_apps(cutoff)? {
            let Some(record) = self.store.app_record(app)? else { continue };
            let days = idle_secs / 86_400;
            let messages = self.app_messages(
                &record,
                &format!("[permgate] {} (app {app}) is suspended for inactivity", record.app.name),
                &format!(
                    "App {} (id {app}) has had no calls for {days} days and is suspended: its calls answer -13.\nThe owner reactivates it with POST /v1/apps/{app}/reactivate.\n",
                    record.app.name
                ),
                serde_json::json!({"type": "app.suspended", "app_id": app, "idle_days": days, "at": now}),
            )?;
            let audit = NewAuditEvent::new(now, None, "app.suspend", format!("app:{app}"))
                .app(app)
                .before(serde_json::json!({"status": record.app.status}))
                .after(
                    serde_json::json!({"status": AppStatus::Suspended, "reason": format!("no calls for {days} days")}),
                );
            if self.store.suspend_if_idle(app, cutoff, &messages, &audit)? {
                self.refresh(app)?;
                suspended.push(app);
            }
        }
        Ok(suspended)
    }

    /// The owner (or an admin) makes a suspended app active again.
    pub fn reactivate_app(&self, actor: &Actor, app: AppId) -> ServiceResult<AppView> {
        let record = if actor.is_admin() {
            self.app_for(actor, app, Access::Read)?
        } else {
            self.app_for(actor, app, Access::Own)?
        };
        if record.app.status != AppStatus::Suspended {
            return Err(ServiceError::Conflict(format!("app {app} is {}, not suspended", record.app.status)));
        }
        let now = self.clock.now();
        let audit = NewAuditEvent::new(now, Some(actor.account.id), "app.reactivate", format!("app:{app}"))
            .app(app)
            .before(serde_json::json!({"status": AppStatus::Suspended}))
            .after(serde_json::json!({"status": AppStatus::Active}));
        if !self.store.reactivate(app, now, &audit)? {
            return Err(ServiceError::Conflict(format!("app {app} changed meanwhile; reload it")));
        }
        let record = self.refresh(app)?;
        Ok(self.app_view(&record, &[]))
    }
}

/// What an app read of its meter and saves: its last call, its calls, and its calls per quota
/// rule (by the index in the catalog it was read under).
type Seen = (AppId, i64, u64, Vec<(u32, u32)>);

/// The apps' activity not saved yet, as read (and to be marked saved) and as stored.
fn unsaved_activity(snapshot: &Snapshot) -> (Vec<Seen>, Vec<ActivityRow>) {
    let catalog = snapshot.catalog();
    let mut seen = Vec::new();
    let mut rows = Vec::new();
    for a in snapshot.apps() {
        let Some(meter) = a.meter.pending(pending::ACTIVITY) else { continue };
        if !meter.unsaved() {
            continue;
        }
        let (last, total) = (meter.last_call, meter.calls - meter.calls_saved);
        let by_rule: Vec<(u32, u32)> =
            meter.rules.iter().map(|r| (r.rule, r.unsaved_calls())).filter(|(_, n)| *n > 0).collect();
        drop(meter);
        let mut calls = vec![(String::new(), total)];
        calls.extend(by_rule.iter().filter_map(|(i, n)| {
            let rule = catalog.quota_rules.get(usize::try_from(*i).ok()?)?;
            Some((rule.id.clone(), u64::from(*n)))
        }));
        calls.retain(|(_, n)| *n > 0);
        rows.push(ActivityRow { app: a.id, last_call: Timestamp(last), calls });
        seen.push((a.id, last, total, by_rule));
    }
    (seen, rows)
}

/// Marks what `seen` read as saved, in the meters of `snapshot`. A catalog reload since the read
/// (`read_under` is the catalog then) may have renumbered the rules: each is found again by id,
/// or the saved calls would be marked on another rule, and this rule's saved again next time.
fn mark_activity_saved(snapshot: &Snapshot, read_under: &Arc<Catalog>, seen: &[Seen]) {
    let now = snapshot.catalog();
    for (id, last, total, by_rule) in seen {
        if let Some(app) = snapshot.app(*id) {
            let mut meter = app.meter.lock();
            meter.last_saved = meter.last_saved.max(*last);
            meter.calls_saved += total;
            for &(rule, n) in by_rule {
                let Some(rule) = rule_now(read_under, now, rule) else { continue };
                if let Some(r) = meter.rules.iter_mut().find(|r| r.rule == rule) {
                    r.calls_saved = r.calls_saved.wrapping_add(n);
                }
            }
        }
    }
}

/// An app's use of a permission (by index in the catalog it was read under) at a time.
type UsageMark = (AppId, u32, i64);

/// When each app last exercised each permission, where it changed since the last save: the rows
/// to store, and what to mark saved (permissions by index in the snapshot's catalog).
fn unsaved_usage(snapshot: &Snapshot) -> (Vec<(AppId, String, i64)>, Vec<UsageMark>) {
    let catalog = snapshot.catalog();
    let mut rows = Vec::new();
    let mut marks = Vec::new();
    for a in snapshot.apps() {
        let Some(meter) = a.meter.pending(pending::USAGE) else { continue };
        for u in meter.used.iter().filter(|u| u.at > u.saved) {
            if let Some(permission) = usize::try_from(u.permission).ok().and_then(|p| catalog.permissions.get(p)) {
                rows.push((a.id, permission.id.clone(), u.at));
                marks.push((a.id, u.permission, u.at));
            }
        }
    }
    (rows, marks)
}

/// Marks the uses in `marks` saved, finding each permission again by id if the catalog changed.
fn mark_usage_saved(snapshot: &Snapshot, read_under: &Arc<Catalog>, marks: &[UsageMark]) {
    let now = snapshot.catalog();
    for &(app, p, at) in marks {
        let Some(p) = permission_now(read_under, now, p) else { continue };
        if let Some(a) = snapshot.app(app)
            && let Some(u) = a.meter.lock().used.iter_mut().find(|u| u.permission == p)
        {
            u.saved = u.saved.max(at);
        }
    }
}

/// Quota rule `rule` of catalog `then` in catalog `now`: the same number unless the catalog was
/// reloaded (paid usage's two pseudo-rules, past the catalog's rules, keep theirs).
pub(super) fn rule_now(then: &Arc<Catalog>, now: &Arc<Catalog>, rule: u32) -> Option<u32> {
    if Arc::ptr_eq(then, now) {
        return Some(rule);
    }
    match usize::try_from(rule).ok().and_then(|i| then.quota_rules.get(i)) {
        Some(r) => now.quota_rules.iter().position(|n| n.id == r.id).and_then(|i| u32::try_from(i).ok()),
        None => Some(rule),
    }
}

/// Permission `p` of catalog `then` in catalog `now`.
fn permission_now(then: &Arc<Catalog>, now: &Arc<Catalog>, p: u32) -> Option<u32> {
    if Arc::ptr_eq(then, now) {
        return Some(p);
    }
    let id = &then.permissions.get(usize::try_from(p).ok()?)?.id;
    now.permissions.iter().position(|n| &n.id == id).and_then(|i| u32::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::DEFAULT_CATALOG;
    use crate::credential::TokenVerifier;
    use crate::decision::{CounterFailure, Query, decide_and_count};
    use crate::model::{AppRecord, Grant, Key, KeyId, KeyKind, Platforms};
    use crate::quota::MemoryCounter;

    const NOW: Timestamp = Timestamp(1_795_824_000);
    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn snapshot(catalog: &Arc<Catalog>) -> Snapshot {
        let mut record = AppRecord::active(AppId(1), NOW);
        record.keys.push(Key::issued(KeyId(1), KeyKind::RestApi, KEY, Platforms::default(), NOW));
        for p in ["biz_app", "connect_talk_channel"] {
            record.grants.push(Grant::operator(AppId(1), p, serde_json::json!({}), NOW));
        }
        Snapshot::build(catalog.clone(), Arc::new(TokenVerifier::new(None)), vec![record])
    }

    /// A reload that renumbers the quota rules and the permissions between the savers' read and
    /// their marking: what they saved must be marked on the same rules and permissions in the new
    /// snapshot, or it is saved again (calls counted twice in the app's usage).
    #[test]
    fn calls_saved_across_a_reload_that_renumbers_rules_are_not_saved_again() {
        let old = Arc::new(Catalog::parse("old.toml", DEFAULT_CATALOG).unwrap_or_else(|e| unreachable!("{e}")));
        let text = DEFAULT_CATALOG
            .replacen(
                "[[quota_rules]]\nid = \"api_monthly_total\"",
                "[[quota_rules]]\nid = \"a_new_rule\"\nname = \"A new rule\"\nperiod = \"day\"\nscope = \"app\"\nlimit = 5\n\n[[quota_rules]]\nid = \"api_monthly_total\"",
                1,
            )
            .replacen(
                "[[permissions]]\nid = \"talk_share_quota\"",
                "[[permissions]]\nid = \"a_new_permission\"\nname = \"A new permission\"\ndescription = \"New.\"\nobtained_by = \"additional_feature\"\n\n[[permissions]]\nid = \"talk_share_quota\"",
                1,
            );
        let new = Arc::new(Catalog::parse("new.toml", &text).unwrap_or_else(|e| unreachable!("{e}")));
        let before = snapshot(&old);
        let counter = MemoryCounter::new();
        let auth = format!("KakaoAK {KEY}");
        let q = Query {
            method: "GET",
            path: "/v2/local/search/keyword.json",
            authorization: Some(&auth),
            ..Query::default()
        };
        let files = Query { path: "/v1/talkchannel/target_user_file", ..q };
        for q in [q, q, files] {
            let d = decide_and_count(&before, &q, &counter, NOW, true, CounterFailure::Closed);
            assert!(d.allow, "{} {:?}", q.path, d.msg);
        }
        let (seen, rows) = unsaved_activity(&before);
        let (used, marks) = unsaved_usage(&before);
        let used: Vec<&str> = used.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(used, ["biz_app", "connect_talk_channel"]);
        let calls: Vec<(&str, u64)> = rows[0].calls.iter().map(|(r, n)| (r.as_str(), *n)).collect();
        assert!(calls.contains(&("local_keyword_search_daily", 2)), "{calls:?}");

        // The reload, as `reload_catalog` makes it, while the saver stores what it read.
        let rule_map: Vec<Option<usize>> =
            old.quota_rules.iter().map(|r| new.quota_rules.iter().position(|n| n.id == r.id)).collect();
        let mut after = snapshot(&new);
        after.carry_over(&before, &rule_map);

        mark_activity_saved(&after, &old, &seen);
        let (_, again) = unsaved_activity(&after);
        assert!(again.is_empty(), "saved again: {again:?}");
        mark_usage_saved(&after, &old, &marks);
        let (again, _) = unsaved_usage(&after);
        assert!(again.is_empty(), "saved again: {again:?}");
    }
}
