//! Suspension for inactivity (-13): every node notes each app's last admitted call in memory and
//! saves it about once a second; an app that no node has seen called for the configured idle time
//! is suspended (audited, its members notified), and its owner reactivates it.

use super::{Access, Actor, AppView, Services};
use crate::audit::NewAuditEvent;
use crate::catalog::QuotaPeriod;
use crate::error::{ServiceError, ServiceResult};
use crate::meter::pending;
use crate::model::{AppId, AppStatus};
use crate::ports::ActivityRow;
use crate::quota::{counter_rule, counter_rule_by_id, window};
use crate::snapshot::Snapshot;
use crate::time::Timestamp;

impl Services {
    /// Saves when each app last exercised each permission, where it changed since the last save.
    pub fn save_grant_usage(&self) -> ServiceResult<usize> {
        let rows = unsaved_usage(&self.snapshot.read());
        if rows.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.store.save_grant_usage(&rows) {
            self.mark_again(rows.iter().map(|(app, _, _)| *app), pending::USAGE);
            return Err(e.into());
        }
        mark_usage_saved(&self.snapshot.read(), &rows);
        Ok(rows.len())
    }

    /// Saves the last calls not saved yet; returns how many apps had one.
    pub fn save_activity(&self) -> ServiceResult<usize> {
        // What is read here is what is marked saved below: counts added meanwhile wait for the
        // next round.
        let (seen, rows, day_start) = {
            let snapshot = self.snapshot.read();
            let day = window(QuotaPeriod::Day, self.clock.now(), snapshot.catalog().utc_offset).start;
            let (seen, rows) = unsaved_activity(&snapshot);
            (seen, rows, day)
        };
        if rows.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.store.record_activity(&rows, day_start) {
            self.mark_again(seen.iter().map(|(app, ..)| *app), pending::ACTIVITY);
            return Err(e.into());
        }
        mark_activity_saved(&self.snapshot.read(), &seen);
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
                self.settle(app);
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
        let record = self
            .store
            .reactivate(app, now, &audit)?
            .ok_or_else(|| ServiceError::Conflict(format!("app {app} changed meanwhile; reload it")))?;
        self.settle(app);
        Ok(self.app_view(&record, &[]))
    }
}

/// What an app read of its meter and saves: its last call, its calls, and its calls per quota
/// rule, named by id (as saved and shared): a catalog reload may renumber the rules before the
/// read is marked saved.
type Seen = (AppId, i64, u64, Vec<(&'static str, u32)>);

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
        let by_rule: Vec<(&'static str, u32)> =
            meter.unsaved_rule_calls().filter_map(|(rule, n)| Some((counter_rule(catalog, rule)?.0, n))).collect();
        drop(meter);
        let mut calls = vec![(String::new(), total)];
        // The paid caps' counts are not usage of a rule of the catalog.
        calls.extend(
            by_rule
                .iter()
                .filter(|(id, _)| catalog.quota_rule(id).is_some())
                .map(|(id, n)| ((*id).to_owned(), u64::from(*n))),
        );
        calls.retain(|(_, n)| *n > 0);
        rows.push(ActivityRow { app: a.id, last_call: Timestamp(last), calls });
        seen.push((a.id, last, total, by_rule));
    }
    (seen, rows)
}

/// Marks what `seen` read as saved, in the meters of `snapshot`, each rule found by its id in
/// the catalog in force now (by the number it had when read, a reload in between would mark the
/// calls on another rule, and this one's would be saved again).
fn mark_activity_saved(snapshot: &Snapshot, seen: &[Seen]) {
    let catalog = snapshot.catalog();
    for (id, last, total, by_rule) in seen {
        if let Some(app) = snapshot.app(*id) {
            let mut meter = app.meter.lock();
            meter.last_saved = meter.last_saved.max(*last);
            meter.calls_saved += total;
            for &(rule, n) in by_rule {
                let Some((rule, _)) = counter_rule_by_id(catalog, rule) else { continue };
                meter.rule_calls_saved(rule, n);
            }
        }
    }
}

/// When each app last exercised each permission, where it changed since the last save.
fn unsaved_usage(snapshot: &Snapshot) -> Vec<(AppId, String, i64)> {
    let catalog = snapshot.catalog();
    let mut rows = Vec::new();
    for a in snapshot.apps() {
        let Some(meter) = a.meter.pending(pending::USAGE) else { continue };
        for u in meter.used.iter().filter(|u| u.at > u.saved) {
            if let Some(permission) = usize::try_from(u.permission).ok().and_then(|p| catalog.permissions.get(p)) {
                rows.push((a.id, permission.id.clone(), u.at));
            }
        }
    }
    rows
}

/// Marks the saved uses `rows` in the meters of `snapshot`, each permission found by its id in
/// the catalog in force now (a reload may have renumbered them since the read).
fn mark_usage_saved(snapshot: &Snapshot, rows: &[(AppId, String, i64)]) {
    let catalog = snapshot.catalog();
    for (app, permission, at) in rows {
        let Some(p) = catalog.permission_index(permission).and_then(|p| u32::try_from(p).ok()) else { continue };
        if let Some(a) = snapshot.app(*app)
            && let Some(u) = a.meter.lock().used.iter_mut().find(|u| u.permission == p)
        {
            u.saved = u.saved.max(*at);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::Catalog;
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
        let usage = unsaved_usage(&before);
        let used: Vec<&str> = usage.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(used, ["biz_app", "connect_talk_channel"]);
        let calls: Vec<(&str, u64)> = rows[0].calls.iter().map(|(r, n)| (r.as_str(), *n)).collect();
        assert!(calls.contains(&("local_keyword_search_daily", 2)), "{calls:?}");

        // The reload, as `reload_catalog` makes it, while the saver stores what it read.
        let rule_map: Vec<Option<usize>> =
            old.quota_rules.iter().map(|r| new.quota_rules.iter().position(|n| n.id == r.id)).collect();
        let mut after = snapshot(&new);
        after.carry_over(&before, &rule_map);

        mark_activity_saved(&after, &seen);
        let (_, again) = unsaved_activity(&after);
        assert!(again.is_empty(), "saved again: {again:?}");
        mark_usage_saved(&after, &usage);
        let again = unsaved_usage(&after);
        assert!(again.is_empty(), "saved again: {again:?}");
    }
}
