//! Paid usage: the owner switches it on for some quota rules, with the app's daily and monthly
//! caps on paid calls, or off.

use serde::Deserialize;

use super::{Access, Actor, Services};
use crate::audit::NewAuditEvent;
use crate::catalog::QuotaScope;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AppId, PaidUsage};

/// `PUT /v1/apps/{id}/paid-usage`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPaidUsage {
    pub rules: Vec<String>,
    pub daily_cap: u64,
    pub monthly_cap: u64,
}

impl Services {
    pub fn set_paid_usage(
        &self,
        actor: &Actor,
        app: AppId,
        input: Option<SetPaidUsage>,
    ) -> ServiceResult<Option<PaidUsage>> {
        let record = self.app_for(actor, app, Access::Own)?;
        let paid = match input {
            None => None,
            Some(p) => {
                if p.rules.is_empty() {
                    return Err(ServiceError::Invalid("`rules` must name at least one quota rule".into()));
                }
                {
                    let snapshot = self.snapshot.read();
                    let catalog = snapshot.catalog();
                    for r in &p.rules {
                        let Some(rule) = catalog.quota_rule(r) else {
                            return Err(ServiceError::Invalid(format!("`rules`: the catalog has no quota rule `{r}`")));
                        };
                        // Paid usage buys more of an app's own free quota (KAKAO.md 3.6); the
                        // anti-spam limits per user, recipient or pair and the monthly total of
                        // all APIs are not for sale.
                        let payable = rule.scope == QuotaScope::App && !rule.all_apis;
                        if !payable {
                            return Err(ServiceError::Invalid(format!(
                                "`rules`: `{r}` cannot continue as paid usage: only an app's own quota of some APIs can (not a limit per developer, user, recipient or sender-recipient pair, nor the monthly total of all APIs)"
                            )));
                        }
                    }
                }
                if p.daily_cap == 0 || p.monthly_cap == 0 || p.daily_cap > p.monthly_cap {
                    return Err(ServiceError::Invalid(
                        "`daily_cap` and `monthly_cap` must be positive, and the daily cap at most the monthly one"
                            .into(),
                    ));
                }
                // The stores keep caps as signed 64-bit numbers: a larger one would be kept as
                // another number than the one answered.
                if i64::try_from(p.monthly_cap).is_err() {
                    return Err(ServiceError::Invalid(format!("`monthly_cap` must be at most {}", i64::MAX)));
                }
                let mut rules = p.rules;
                rules.sort();
                rules.dedup();
                Some(PaidUsage { rules, daily_cap: p.daily_cap, monthly_cap: p.monthly_cap })
            }
        };
        // The same setting again (a second click, a retried PUT) changes nothing and records nothing.
        if paid == record.paid {
            return Ok(paid);
        }
        let audit =
            NewAuditEvent::new(self.clock.now(), Some(actor.account.id), "paid_usage.set", format!("app:{app}"))
                .app(app)
                .before(&record.paid)
                .after(&paid);
        self.store.set_paid_usage(app, paid.as_ref(), &audit)?;
        self.settle(app);
        Ok(paid)
    }
}
