//! Quota usage of an app (`GET /v1/apps/{id}/usage`), and recording quota alerts.

use serde::Serialize;

use super::{Access, Actor, Services};
use crate::audit::NewAuditEvent;
use crate::catalog::{QuotaPeriod, QuotaScope};
use crate::decision::QuotaAlert;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AppId, PaidUsage};
use crate::notify::NewMessage;
use crate::ports::SavedCounter;
use crate::quota::{CounterKey, PAID_DAY, PAID_MONTH, Window, counter_rule, counter_rule_by_id, window};
use crate::time::Timestamp;

/// One app-wide rule's state in its current window.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RuleUsage {
    pub rule: String,
    pub name: String,
    pub period: QuotaPeriod,
    pub scope: QuotaScope,
    /// The app's limit: the catalog's, or a granted one.
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    pub percent: u8,
    pub reset_at: Timestamp,
}

/// `GET /v1/apps/{id}/usage`
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Usage {
    pub app_id: AppId,
    pub time_zone: String,
    pub rules: Vec<RuleUsage>,
    /// Paid calls today and this month, when paid usage is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid: Option<PaidState>,
    /// Calls admitted per local day over the last 30 days, oldest first (saved about once a
    /// second by every node).
    pub daily: Vec<DayUsage>,
    /// The same per quota rule, for the rules this app was counted against in those days (a
    /// paid call under the rule whose free limit it was past).
    pub daily_by_rule: std::collections::BTreeMap<String, Vec<DayUsage>>,
}

/// Calls admitted on one local day.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DayUsage {
    pub day_start: Timestamp,
    pub calls: u64,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PaidState {
    #[serde(flatten)]
    pub settings: PaidUsage,
    pub used_today: u64,
    pub used_this_month: u64,
}

impl Services {
    /// Usage of every rule counted per app or per developer; per-user and per-recipient rules
    /// have a counter for each user and are not listed.
    pub fn usage(&self, actor: &Actor, app: AppId) -> ServiceResult<Usage> {
        let record = self.app_for(actor, app, Access::Read)?;
        let now = self.clock.now();
        let snapshot = self.snapshot.read();
        let catalog = snapshot.catalog();
        let entry = snapshot.app(app).ok_or_else(|| ServiceError::NotFound(format!("app {app} does not exist")))?;
        let offset = catalog.utc_offset;
        let catalog_zone = catalog.time_zone.clone();
        // Counting in memory, the app's own counters are in its meter.
        let count = |key: CounterKey, rule_id: &str, own: bool| match self.counter.in_memory() {
            Some(_) if own => Ok(entry.meter.lock().count(key.rule, key.window_start)),
            _ => self.counter.count(&key, rule_id).map_err(|e| ServiceError::Internal(e.to_string())),
        };
        let mut rules = Vec::new();
        for (ri, rule) in catalog.quota_rules.iter().enumerate() {
            let scope = match rule.scope {
                QuotaScope::App => app.0,
                QuotaScope::Developer => record.app.owner.0,
                _ => continue,
            };
            let w = window(rule.period, now, offset);
            let limit = entry.quota_limit(ri, rule.limit, now);
            let key = CounterKey {
                rule: u32::try_from(ri).unwrap_or(u32::MAX - 2),
                scope: scope.cast_unsigned(),
                window_start: w.start,
            };
            let used = count(key, &rule.id, rule.scope == QuotaScope::App)?;
            rules.push(RuleUsage {
                rule: rule.id.clone(),
                name: rule.name.clone(),
                period: rule.period,
                scope: rule.scope,
                limit,
                used,
                remaining: limit.saturating_sub(used),
                percent: u8::try_from((used.saturating_mul(100) / limit.max(1)).min(100)).unwrap_or(100),
                reset_at: Timestamp(w.end),
            });
        }
        let paid = match &record.paid {
            None => None,
            Some(settings) => {
                let day = window(QuotaPeriod::Day, now, offset);
                let month = window(QuotaPeriod::Month, now, offset);
                let used = |rule: u32, window_start: i64| {
                    let id = counter_rule(catalog, rule).map_or("", |(id, _)| id);
                    count(CounterKey { rule, scope: app.0.cast_unsigned(), window_start }, id, true)
                };
                Some(PaidState {
                    settings: settings.clone(),
                    used_today: used(PAID_DAY, day.start)?,
                    used_this_month: used(PAID_MONTH, month.start)?,
                })
            }
        };
        let today = window(QuotaPeriod::Day, now, offset).start;
        drop(snapshot);
        let since = today - 29 * 86_400;
        let saved = self.store.daily_calls(app, since)?;
        // Days are local calendar days: 86,400 s apart in a zone without daylight saving.
        let series = |rule: &str| -> Vec<DayUsage> {
            (0..30)
                .map(|i| {
                    let day = since + i * 86_400;
                    let calls = saved.iter().find(|(d, r, _)| *d == day && r == rule).map_or(0, |(_, _, c)| *c);
                    DayUsage { day_start: Timestamp(day), calls }
                })
                .collect()
        };
        let daily = series("");
        let mut used_rules: Vec<&str> = saved.iter().map(|(_, r, _)| r.as_str()).filter(|r| !r.is_empty()).collect();
        used_rules.sort_unstable();
        used_rules.dedup();
        let daily_by_rule = used_rules.into_iter().map(|r| (r.to_owned(), series(r))).collect();
        Ok(Usage { app_id: app, time_zone: catalog_zone, rules, paid, daily, daily_by_rule })
    }

    /// Records waiting quota alerts as audit events (`quota.alert`), each with its message to the
    /// app's members and the webhook through the notification outbox, in one transaction;
    /// returns how many.
    pub fn flush_alerts(&self) -> ServiceResult<usize> {
        let alerts = std::mem::take(&mut *self.alerts.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for (i, a) in alerts.iter().enumerate() {
            let event = NewAuditEvent::new(self.clock.now(), None, "quota.alert", format!("quota:{}", a.rule))
                .app(a.app_id)
                .after(a);
            let recorded = self
                .alert_messages(a)
                .and_then(|messages| Ok(self.store.record_alert(&event, &messages, self.alert_counted(a).as_ref())?));
            if let Err(e) = recorded {
                // Each threshold is passed once a window: an alert dropped here never comes back.
                // This one and the rest go back to the front of the queue for the next round.
                let mut queue = self.alerts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                queue.splice(0..0, alerts[i..].iter().cloned());
                return Err(e);
            }
        }
        Ok(alerts.len())
    }

    /// The counter an alert was raised by, counted up to its threshold, when this node counts in
    /// memory (in Redis the count is shared and kept there): saved with the alert, so that a
    /// restart before the node saves its counters neither hands out those calls again nor
    /// raises the alert twice. `None` when the catalog no longer counts the rule that way (it
    /// was reloaded since, with another period, scope or time zone): no floor beats a wrong one.
    fn alert_counted(&self, a: &QuotaAlert) -> Option<SavedCounter> {
        self.memory.as_ref()?;
        let snapshot = self.snapshot.read();
        let catalog = snapshot.catalog();
        let (rule, own) = counter_rule_by_id(catalog, &a.rule)?;
        let (_, period) = counter_rule(catalog, rule)?;
        // An app's own rule (or paid cap) counts per app; a developer's, per owner (alerts are
        // raised for no other scope).
        let scope = match own {
            true => a.app_id.0,
            false if catalog.quota_rules.get(rule as usize)?.scope == QuotaScope::Developer => {
                snapshot.app(a.app_id)?.owner.0
            }
            false => return None,
        };
        let counted = window(period, Timestamp(a.window_start), catalog.utc_offset);
        if scope.cast_unsigned() != a.scope || counted != (Window { start: a.window_start, end: a.reset_at.0 }) {
            return None;
        }
        Some(SavedCounter {
            rule_id: a.rule.clone(),
            scope: a.scope,
            window_start: counted.start,
            window_end: counted.end,
            count: crate::quota::threshold(a.limit, a.percent),
        })
    }

    /// What the app's members (and the webhook) are told of an alert; nothing for an app that is
    /// gone.
    fn alert_messages(&self, a: &QuotaAlert) -> ServiceResult<Vec<NewMessage>> {
        let Some(record) = self.store.app_record(a.app_id)? else { return Ok(Vec::new()) };
        let app = &record.app;
        let subject = format!("[permgate] {} (app {}): quota `{}` is {} % used", app.name, app.id, a.rule, a.percent);
        let mut body = format!(
            "App {} (id {}) has used {} % of the quota rule `{}` (limit {}) in the present window, which ends {}.\n",
            app.name,
            app.id,
            a.percent,
            a.rule,
            a.limit,
            a.reset_at.to_rfc3339()
        );
        if a.percent >= 100 {
            body.push_str(
                "\nFurther calls counted by this rule are refused until then, unless paid usage is on for it.\n",
            );
        }
        body.push_str(&format!(
            "To apply for a higher limit: POST /v1/apps/{}/permission-requests (see GET /v1/apps/{}/usage).\n",
            app.id, app.id
        ));
        let webhook = serde_json::json!({
            "type": "quota.alert", "app_id": a.app_id, "rule": a.rule, "percent": a.percent,
            "limit": a.limit, "reset_at": a.reset_at,
        });
        self.app_messages(&record, &subject, &body, webhook)
    }

    /// Saves the in-memory counters changed since the last save (about once a second): the
    /// shared map's and each app's own; then forgets the shared map's ended windows. Records the
    /// waiting quota alerts first ([`Services::flush_alerts`]): each is recorded with its counter
    /// saved as at least the count that passed its threshold, so that a crash after a save that
    /// kept a count past a threshold cannot lose that threshold's alert (which the restarted
    /// node, seeing the count, would not raise again). An alert queued while the save runs is
    /// recorded by the next one.
    pub fn save_counters(&self) -> ServiceResult<usize> {
        let Some(memory) = &self.memory else { return Ok(0) };
        self.flush_alerts()?;
        // Read under the snapshot's guard: a catalog reload renumbers the counters under its
        // write lock, and keys drained before it would be named with the new catalog's rules.
        let snapshot = self.snapshot.read();
        let read_under = snapshot.catalog().clone();
        let catalog = &read_under;
        let mut dirty = memory.drain_dirty();
        // Where the shared map's counters end and the apps' own begin, to mark them again if the
        // store refuses them.
        let shared = dirty.len();
        for app in snapshot.apps() {
            let Some(mut state) = app.meter.pending(crate::meter::pending::COUNTERS) else { continue };
            let scope = app.id.0.cast_unsigned();
            // A meter keeps a window's start; its end follows from the rule's period.
            dirty.extend(state.drain_dirty().filter_map(|(rule, window_start, count)| {
                let (_, period) = counter_rule(catalog, rule)?;
                let end = window(period, Timestamp(window_start), catalog.utc_offset).end;
                Some((CounterKey { rule, scope, window_start }, count, end))
            }));
        }
        let saved: Vec<SavedCounter> = dirty
            .iter()
            .filter_map(|(key, count, window_end)| {
                Some(SavedCounter {
                    rule_id: counter_rule(catalog, key.rule)?.0.to_owned(),
                    scope: key.scope,
                    window_start: key.window_start,
                    window_end: *window_end,
                    count: *count,
                })
            })
            .collect();
        drop(snapshot);
        memory.sweep(self.clock.now());
        if saved.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.store.save_counters(&saved) {
            // Not saved: changed since the last save still, so the next round tries them again
            // (an idle counter would otherwise keep its older saved count until it changes).
            // A reload since the read may have renumbered the rules: each is found again by id.
            let snapshot = self.snapshot.read();
            let now = snapshot.catalog();
            let again = |key: &CounterKey| {
                let (id, _) = counter_rule(&read_under, key.rule)?;
                Some(CounterKey { rule: counter_rule_by_id(now, id)?.0, ..*key })
            };
            let (in_map, own) = dirty.split_at(shared.min(dirty.len()));
            memory.mark_dirty(in_map.iter().filter_map(|(key, _, _)| again(key)));
            for key in own.iter().filter_map(|(key, _, _)| again(key)) {
                if let Some(app) = snapshot.app(AppId(key.scope.cast_signed())) {
                    app.meter.lock().mark_dirty(key.rule, key.window_start);
                    app.meter.mark(crate::meter::pending::COUNTERS);
                }
            }
            return Err(e.into());
        }
        Ok(saved.len())
    }

    /// Loads saved counters (at start): each app's own into its meter, the others into the
    /// shared in-memory counter.
    pub fn restore_counters(&self) -> ServiceResult<usize> {
        let Some(memory) = &self.memory else { return Ok(0) };
        let saved = self.store.load_counters(self.clock.now())?;
        let snapshot = self.snapshot.read();
        let catalog = snapshot.catalog();
        let mut shared: Vec<(CounterKey, u64, i64)> = Vec::new();
        let mut n = 0;
        for c in &saved {
            let Some((rule, own)) = counter_rule_by_id(catalog, &c.rule_id) else { continue };
            if own {
                // An app that no longer exists has nothing to count.
                let Some(app) = snapshot.app(AppId(c.scope.cast_signed())) else { continue };
                app.meter.lock().restore(rule, c.window_start, c.count);
            } else {
                shared.push((CounterKey { rule, scope: c.scope, window_start: c.window_start }, c.count, c.window_end));
            }
            n += 1;
        }
        memory.restore(shared);
        Ok(n)
    }
}
