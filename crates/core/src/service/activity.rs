//! Suspension for inactivity (-13): every node notes each app's last admitted call in memory and
//! saves it about once a second; an app that no node has seen called for the configured idle time
//! is suspended (audited, its members notified), and its owner reactivates it.

use std::sync::atomic::Ordering;

use super::{Access, Actor, AppView, Services};
use crate::audit::NewAuditEvent;
use crate::catalog::QuotaPeriod;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AppId, AppStatus};
use crate::ports::ActivityRow;
use crate::quota::window;
use crate::time::Timestamp;

impl Services {
    /// Saves the last calls not saved yet; returns how many apps had one.
    pub fn save_activity(&self) -> ServiceResult<usize> {
        let (pending, day_start): (Vec<ActivityRow>, i64) = {
            let snapshot = self.snapshot.read();
            let day = window(QuotaPeriod::Day, self.clock.now(), snapshot.catalog().utc_offset).start;
            let rows = snapshot
                .apps()
                .filter_map(|a| {
                    a.activity.unsaved().map(|(t, calls)| ActivityRow { app: a.id, last_call: Timestamp(t), calls })
                })
                .collect();
            (rows, day)
        };
        if pending.is_empty() {
            return Ok(0);
        }
        self.store.record_activity(&pending, day_start)?;
        let snapshot = self.snapshot.read();
        for row in &pending {
            if let Some(app) = snapshot.app(row.app) {
                app.activity.saved.fetch_max(row.last_call.0, Ordering::Relaxed);
                app.activity.saved_calls.fetch_add(row.calls, Ordering::Relaxed);
            }
        }
        Ok(pending.len())
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
