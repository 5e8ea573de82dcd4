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
use crate::quota::window;
use crate::time::Timestamp;

impl Services {
    /// Saves when each app last exercised each permission, where it changed since the last save.
    pub fn save_grant_usage(&self) -> ServiceResult<usize> {
        let mut rows: Vec<(AppId, String, i64)> = Vec::new();
        let mut marks: Vec<(AppId, u32, i64)> = Vec::new();
        {
            let snapshot = self.snapshot.read();
            let catalog = snapshot.catalog();
            for a in snapshot.apps() {
                let Some(meter) = a.meter.pending(pending::USAGE) else { continue };
                for u in meter.used.iter().filter(|u| u.at > u.saved) {
                    if let Some(permission) =
                        usize::try_from(u.permission).ok().and_then(|p| catalog.permissions.get(p))
                    {
                        rows.push((a.id, permission.id.clone(), u.at));
                        marks.push((a.id, u.permission, u.at));
                    }
                }
            }
        }
        if rows.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.store.save_grant_usage(&rows) {
            self.mark_again(marks.iter().map(|(app, _, _)| *app), pending::USAGE);
            return Err(e.into());
        }
        let snapshot = self.snapshot.read();
        for (app, p, at) in marks {
            if let Some(a) = snapshot.app(app)
                && let Some(u) = a.meter.lock().used.iter_mut().find(|u| u.permission == p)
            {
                u.saved = u.saved.max(at);
            }
        }
        Ok(rows.len())
    }

    /// Saves the last calls not saved yet; returns how many apps had one.
    pub fn save_activity(&self) -> ServiceResult<usize> {
        // What is read here is what is marked saved below: counts added meanwhile wait for the
        // next round.
        type Seen = (AppId, i64, u64, Vec<(u32, u32)>);
        let (seen, rows, day_start): (Vec<Seen>, Vec<ActivityRow>, i64) = {
            let snapshot = self.snapshot.read();
            let catalog = snapshot.catalog();
            let day = window(QuotaPeriod::Day, self.clock.now(), catalog.utc_offset).start;
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
            (seen, rows, day)
        };
        if rows.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.store.record_activity(&rows, day_start) {
            self.mark_again(seen.iter().map(|(app, ..)| *app), pending::ACTIVITY);
            return Err(e.into());
        }
        let snapshot = self.snapshot.read();
        for (id, last, total, by_rule) in &seen {
            if let Some(app) = snapshot.app(*id) {
                let mut meter = app.meter.lock();
                meter.last_saved = meter.last_saved.max(*last);
                meter.calls_saved += total;
                for (rule, n) in by_rule {
                    if let Some(r) = meter.rules.iter_mut().find(|r| r.rule == *rule) {
                        r.calls_saved = r.calls_saved.wrapping_add(*n);
                    }
                }
            }
        }
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
