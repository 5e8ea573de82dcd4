//! The app settings the review workflow checks: the eligibility agreement, business information
//! (which makes a Biz app) and consent items.

use serde::{Deserialize, Serialize};

use super::{Access, Actor, Services, prose_text, required_text};
use crate::audit::NewAuditEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{
    AppId, AppRecord, BizKind, Business, ConsentLevel, ConsentSetting, Eligibility, GrantSource, TalkChannel,
};
use crate::notify::NewMessage;
use crate::ports::{Cascade, NewGrant, Requirements};

/// The terms an owner or editor agrees to once per app before a first application.
pub const ELIGIBILITY_TERMS: &str = "I confirm that the app's operating entity and its purpose of use comply with \
the platform's operating policy; that the feature applied for is implemented and works for the app's members; \
that screenshots and forms submitted mask all personal data; and that the app's members receive the review \
results by e-mail.";

/// `GET`/`POST /v1/apps/{id}/eligibility`
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct EligibilityView {
    pub app_id: AppId,
    pub terms: &'static str,
    pub agreed: bool,
    #[serde(flatten)]
    pub agreement: Option<Eligibility>,
}

/// `PUT /v1/apps/{id}/business`: registered business information, or the individual-developer
/// path.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBusiness {
    #[serde(default)]
    pub business_registration_number: Option<String>,
    #[serde(default)]
    pub company_name: Option<String>,
    #[serde(default)]
    pub individual: Option<IndividualBiz>,
}

/// The individual-developer Biz path: the owner's identity verified, the Biz terms agreed, and
/// the app's icon set.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IndividualBiz {
    pub identity_verified: bool,
    pub terms_agreed: bool,
    pub icon_url: String,
}

/// `DELETE /v1/apps/{id}/business`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveBusiness {
    pub reason: String,
}

/// `POST /v1/apps/{id}/channels`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectChannel {
    pub channel_id: String,
}

/// The permission connecting a Kakao Talk Channel brings (SPEC section 2).
pub const CHANNEL_PERMISSION: &str = "connect_talk_channel";

/// `PUT /v1/apps/{id}/consent-items/{scope}`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConsentItem {
    pub consent_type: ConsentLevel,
    pub purpose: String,
}

/// A Korean business registration number (`123-45-67890` or ten digits) whose check digit holds,
/// normalised to `123-45-67890`.
pub fn business_registration_number(text: &str) -> Result<String, String> {
    let digits: Vec<u32> = text.trim().chars().filter(|c| *c != '-').map(|c| c.to_digit(10).unwrap_or(99)).collect();
    if digits.len() != 10 || digits.iter().any(|d| *d > 9) {
        return Err(format!("`{text}` is not a business registration number: expected 10 digits such as 123-45-67890"));
    }
    const WEIGHTS: [u32; 9] = [1, 3, 7, 1, 3, 7, 1, 3, 5];
    let mut sum: u32 = digits.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum();
    sum += digits[8] * 5 / 10;
    let check = (10 - sum % 10) % 10;
    if check != digits[9] {
        return Err(format!("`{text}` is not a valid business registration number: its check digit does not match"));
    }
    let s: String = digits.iter().map(|d| char::from(b'0' + u8::try_from(*d).unwrap_or(0))).collect();
    Ok(format!("{}-{}-{}", &s[..3], &s[3..5], &s[5..]))
}

impl Services {
    pub fn eligibility(&self, actor: &Actor, app: AppId) -> ServiceResult<EligibilityView> {
        let record = self.app_for(actor, app, Access::Read)?;
        Ok(EligibilityView {
            app_id: app,
            terms: ELIGIBILITY_TERMS,
            agreed: record.eligibility.is_some(),
            agreement: record.eligibility,
        })
    }

    /// Agrees to the eligibility terms; agreeing again changes nothing.
    pub fn agree_eligibility(&self, actor: &Actor, app: AppId) -> ServiceResult<EligibilityView> {
        let record = self.app_for(actor, app, Access::Edit)?;
        if record.eligibility.is_none() {
            let now = self.clock.now();
            let audit = NewAuditEvent::new(now, Some(actor.account.id), "eligibility.agree", format!("app:{app}"))
                .app(app)
                .after(serde_json::json!({"terms": ELIGIBILITY_TERMS}));
            self.store.agree_eligibility(app, actor.account.id, now, &audit)?;
            self.settle(app);
        }
        self.eligibility(actor, app)
    }

    /// Registers business information (or takes the individual-developer path): the app becomes
    /// a Biz app and holds `biz_app`.
    pub fn set_business(&self, actor: &Actor, app: AppId, input: SetBusiness) -> ServiceResult<Business> {
        let record = self.app_for(actor, app, Access::Own)?;
        if let Some(original) = record.app.original {
            return Err(ServiceError::Conflict(format!(
                "app {app} is a test app: it has the Biz status of its original app {original}"
            )));
        }
        let now = self.clock.now();
        let business = match (&input.individual, &input.business_registration_number) {
            (Some(_), Some(_)) => {
                return Err(ServiceError::Invalid(
                    "send either `business_registration_number` and `company_name`, or `individual`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(ServiceError::Invalid(
                    "send `business_registration_number` and `company_name`, or `individual` {identity_verified, terms_agreed, icon_url} for an individual developer".into(),
                ));
            }
            (None, Some(number)) => {
                let number = business_registration_number(number)
                    .map_err(|m| ServiceError::Invalid(format!("`business_registration_number`: {m}")))?;
                let company_name = required_text("company_name", input.company_name.as_deref().unwrap_or(""), 200)?;
                Business {
                    kind: BizKind::Corporate,
                    registration_number: number,
                    company_name,
                    verified_at: now,
                    icon_url: None,
                }
            }
            (Some(ind), None) => {
                if !ind.identity_verified {
                    return Err(ServiceError::Invalid(
                        "`individual.identity_verified`: the owner's identity must be verified first".into(),
                    ));
                }
                if !ind.terms_agreed {
                    return Err(ServiceError::Invalid(
                        "`individual.terms_agreed`: the owner must agree to the Biz app terms".into(),
                    ));
                }
                let icon = required_text("individual.icon_url", &ind.icon_url, 2000)?;
                if !(icon.starts_with("https://") || icon.starts_with("http://")) {
                    return Err(ServiceError::Invalid(format!(
                        "`individual.icon_url`: `{icon}` is not an http(s) URL of the app's icon"
                    )));
                }
                Business {
                    kind: BizKind::Individual,
                    registration_number: String::new(),
                    company_name: record.app.company_name.clone(),
                    verified_at: now,
                    icon_url: Some(icon),
                }
            }
        };
        let grant = NewGrant {
            app_id: app,
            permission: "biz_app".into(),
            key_id: None,
            source: GrantSource::AppType,
            granted_by: Some(actor.account.id),
            expires_at: None,
            params: serde_json::json!({}),
            reason: format!("{} Biz app", business.kind),
        };
        let already_biz = self.holds_now(&record, "biz_app");
        let audit = NewAuditEvent::new(now, Some(actor.account.id), "business.set", format!("app:{app}"))
            .app(app)
            .before(&record.business)
            .after(&business);
        self.store.set_business(app, &business, (!already_biz).then_some(&grant), &audit)?;
        self.settle(app);
        Ok(business)
    }

    /// An operator removes an app's Biz status: `biz_app`, every grant whose prerequisites
    /// needed Biz, and the consent items only a Biz app may set stop at once; the members are
    /// notified.
    pub fn remove_business(&self, actor: &Actor, app: AppId, input: RemoveBusiness) -> ServiceResult<Vec<String>> {
        if !actor.is_admin() {
            return Err(ServiceError::Forbidden("only an admin may remove an app's Biz status".into()));
        }
        let record = self.app_for(actor, app, Access::Read)?;
        let reason = prose_text("reason", &input.reason, 1000)?;
        if record.business.is_none() && !self.holds_now(&record, "biz_app") {
            return Err(ServiceError::Conflict(format!("app {app} is not a Biz app")));
        }
        // Biz goes, and whatever needed it, however far removed (its own messages are below).
        let (mut revoke, unset, _) = self.losing(&record, &["biz_app"], &[], "removing Biz")?;
        revoke.insert(0, "biz_app".to_owned());
        let now = self.clock.now();
        // What the members are told: what the app had as read (the store's transaction revokes
        // what it has then, and the audit event names that).
        let held: Vec<String> =
            revoke.iter().filter(|p| record.grants.iter().any(|g| &g.permission == *p)).cloned().collect();
        let set: Vec<String> =
            unset.iter().filter(|c| record.consent_items.iter().any(|s| &s.scope == *c)).cloned().collect();
        let messages = self.app_messages(
            &record,
            &format!("[permgate] {} (app {app}) is no longer a Biz app", record.app.name),
            &format!(
                "An operator removed the Biz status of app {} (id {app}).\nReason: {reason}\nRevoked: {}\nConsent items unset: {}\n",
                record.app.name,
                if held.is_empty() { "nothing".to_owned() } else { held.join(", ") },
                if set.is_empty() { "none".to_owned() } else { set.join(", ") },
            ),
            serde_json::json!({"type": "app.biz_removed", "app_id": app, "revoked": held, "unset": set, "reason": reason, "at": now}),
        )?;
        let audit = NewAuditEvent::new(now, Some(actor.account.id), "business.remove", format!("app:{app}"))
            .app(app)
            .before(&record.business)
            .after(serde_json::json!({"reason": reason}));
        let Some(revoked) =
            self.store.remove_business(app, &revoke, &unset, actor.account.id, &reason, &messages, &audit)?
        else {
            return Err(ServiceError::Conflict(format!(
                "app {app} is not a Biz app (its Biz status was removed already)"
            )));
        };
        self.settle(app);
        Ok(revoked)
    }

    /// An operator adds or updates a channel of the registry.
    pub fn upsert_channel(&self, actor: &Actor, input: TalkChannel) -> ServiceResult<TalkChannel> {
        if !actor.is_admin() {
            return Err(ServiceError::Forbidden("only an admin manages the channel registry".into()));
        }
        let id = required_text("id", &input.id, 100)?;
        if id.contains(char::is_whitespace) || id.contains('/') {
            return Err(ServiceError::Invalid(format!("`id`: `{id}` must not contain spaces or slashes")));
        }
        let channel = TalkChannel {
            id,
            name: required_text("name", &input.name, 200)?,
            business_registration_number: business_registration_number(&input.business_registration_number)
                .map_err(|m| ServiceError::Invalid(format!("`business_registration_number`: {m}")))?,
            business_channel: input.business_channel,
        };
        let now = self.clock.now();
        let audit =
            NewAuditEvent::new(now, Some(actor.account.id), "channel.upsert", format!("channel:{}", channel.id))
                .after(&channel);
        self.store.upsert_channel(&channel, now, &audit)?;
        Ok(channel)
    }

    pub fn channels(&self, _actor: &Actor) -> ServiceResult<Vec<TalkChannel>> {
        Ok(self.store.channels()?)
    }

    /// Connects a Kakao Talk Channel: at once, without review, when the app is a Biz app of the
    /// same business as a business channel; refused otherwise, naming the condition that failed.
    pub fn connect_channel(&self, actor: &Actor, app: AppId, input: ConnectChannel) -> ServiceResult<AppRecord> {
        let record = self.app_for(actor, app, Access::Edit)?;
        let channel = self.store.channels()?.into_iter().find(|c| c.id == input.channel_id).ok_or_else(|| {
            ServiceError::NotFound(format!("the channel registry has no channel `{}`", input.channel_id))
        })?;
        if record.channels.iter().any(|c| c.channel_id == channel.id) {
            return Err(ServiceError::Conflict(format!("channel `{}` is connected to app {app} already", channel.id)));
        }
        let business = match &record.business {
            Some(b) if self.holds_now(&record, "biz_app") => b,
            _ => {
                return Err(ServiceError::Forbidden(format!(
                    "connecting a channel needs a Biz app: register business information first (PUT /v1/apps/{app}/business)"
                )));
            }
        };
        if business.kind == BizKind::Individual {
            return Err(ServiceError::Forbidden(
                "an individual developer's Biz app has no business information, so it cannot connect a channel".into(),
            ));
        }
        if business.registration_number != channel.business_registration_number {
            return Err(ServiceError::Forbidden(format!(
                "channel `{}` belongs to business {}, and app {app} to business {}: only a channel of the same business connects",
                channel.id, channel.business_registration_number, business.registration_number
            )));
        }
        if !channel.business_channel {
            return Err(ServiceError::Forbidden(format!(
                "channel `{}` is not a business channel (it has not passed the business-channel review)",
                channel.id
            )));
        }
        let now = self.clock.now();
        // Granted unless held already, and only while the app is a Biz app: both are asked
        // again in the store's transaction.
        let grant = NewGrant {
            app_id: app,
            permission: CHANNEL_PERMISSION.into(),
            key_id: None,
            source: GrantSource::Review,
            granted_by: Some(actor.account.id),
            expires_at: None,
            params: serde_json::json!({"channel_id": channel.id}),
            reason: format!("channel `{}` connected (same business, business channel)", channel.id),
        };
        let requires = Requirements { permissions: vec!["biz_app".into()], ..Requirements::default() };
        let audit =
            NewAuditEvent::new(now, Some(actor.account.id), "channel.connect", format!("channel:{}", channel.id))
                .app(app)
                .after(serde_json::json!({"channel": channel}));
        let (_, record) = self.store.connect_channel(app, &channel.id, now, &grant, &requires, &audit)?;
        self.settle(app);
        Ok(record)
    }

    /// Disconnects a channel; with no channel left, the grants that needed one are revoked.
    pub fn disconnect_channel(&self, actor: &Actor, app: AppId, channel: &str) -> ServiceResult<AppRecord> {
        let record = self.app_for(actor, app, Access::Edit)?;
        let not_connected = || ServiceError::NotFound(format!("channel `{channel}` is not connected to app {app}"));
        if !record.channels.iter().any(|c| c.channel_id == channel) {
            return Err(not_connected());
        }
        // Revoked only if no channel is left, which the store counts in its transaction: two
        // channels disconnected at once each saw the other here, and neither revoked.
        let (mut revoke, unset, messages) =
            self.losing(&record, &[CHANNEL_PERMISSION], &[], "disconnecting the last Kakao Talk Channel")?;
        revoke.insert(0, CHANNEL_PERMISSION.to_owned());
        let cascade = Cascade { revoke: &revoke, unset: &unset, messages: &messages };
        let audit = NewAuditEvent::new(
            self.clock.now(),
            Some(actor.account.id),
            "channel.disconnect",
            format!("channel:{channel}"),
        )
        .app(app);
        let reason = format!("channel `{channel}` disconnected");
        let record = self
            .store
            .disconnect_channel(app, channel, cascade, actor.account.id, &reason, &audit)?
            .ok_or_else(not_connected)?;
        self.settle(app);
        Ok(record)
    }

    /// What an app loses with `permissions` and `consent_items` (SPEC 4: the grants that
    /// depended on them). For the store, the whole chain the catalog gives
    /// ([`crate::catalog::Catalog::lost_with`] over every permission and item): its transaction
    /// revokes what is held then, including a grant approved after `record` was read, and
    /// nothing of what is not. And, when `record` has any of it, the messages telling its members
    /// that `what` took it along.
    pub(super) fn losing(
        &self,
        record: &AppRecord,
        permissions: &[&str],
        consent_items: &[&str],
        what: &str,
    ) -> ServiceResult<(Vec<String>, Vec<String>, Vec<NewMessage>)> {
        let now = self.clock.now();
        let (revoke, unset) = self.snapshot.read().catalog().lost_with(permissions, consent_items, |_| true, |_| true);
        let (held, set) = self.lost_on_record(record, permissions, consent_items);
        if held.is_empty() && set.is_empty() {
            return Ok((revoke, unset, Vec::new()));
        }
        let app = record.app.id;
        let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
        let messages = self.app_messages(
            record,
            &format!("[permgate] {} (app {app}): what depended on {what} went with it", record.app.name),
            &format!(
                "{what} on app {} (id {app}) took along what needed it.\nPermissions revoked: {}\nConsent items unset: {}\n",
                record.app.name,
                list(&held),
                list(&set),
            ),
            serde_json::json!({"type": "app.prerequisite_lost", "app_id": app, "lost": what, "revoked": held, "unset": set, "at": now}),
        )?;
        Ok((revoke, unset, messages))
    }

    /// What of `record` goes with `permissions` and `consent_items`: the permissions it holds
    /// (app-wide or by a key) and the consent items it has set that need them, however far
    /// removed.
    pub(super) fn lost_on_record(
        &self,
        record: &AppRecord,
        permissions: &[&str],
        consent_items: &[&str],
    ) -> (Vec<String>, Vec<String>) {
        let now = self.clock.now();
        self.snapshot.read().catalog().lost_with(
            permissions,
            consent_items,
            |p| record.grants.iter().any(|g| g.permission == p && g.is_active(now)),
            |c| record.consent_items.iter().any(|s| s.scope == c),
        )
    }

    /// Whether the app holds `permission` now (app-wide).
    pub(super) fn holds_now(&self, record: &AppRecord, permission: &str) -> bool {
        self.holding(record, permission, None, self.clock.now()) != super::lifecycle::Holding::No
    }

    pub fn set_consent_item(
        &self,
        actor: &Actor,
        app: AppId,
        scope: &str,
        input: SetConsentItem,
    ) -> ServiceResult<ConsentSetting> {
        let record = self.app_for(actor, app, Access::Edit)?;
        let item = self
            .snapshot
            .read()
            .catalog()
            .consent_item(scope)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("the catalog has no consent item `{scope}`")))?;
        let purpose = prose_text("purpose", &input.purpose, 500)?;
        if item.requires_biz && !self.holds_now(&record, "biz_app") {
            return Err(ServiceError::Forbidden(format!(
                "the consent item `{scope}` can be set only on a Biz app: register business information first (PUT /v1/apps/{app}/business)"
            )));
        }
        if let Some(p) = &item.requires_permission
            && !item.settable_before_permission
            && !self.holds_now(&record, p)
        {
            return Err(ServiceError::Forbidden(format!(
                "the consent item `{scope}` can be set only with the `{p}` permission (apply at /v1/apps/{app}/permission-requests)"
            )));
        }
        let setting = ConsentSetting {
            scope: item.id.clone(),
            consent_type: input.consent_type,
            purpose,
            set_at: self.clock.now(),
        };
        let before = record.consent_items.iter().find(|c| c.scope == scope);
        let audit = NewAuditEvent::new(
            setting.set_at,
            Some(actor.account.id),
            "consent_item.set",
            format!("consent_item:{scope}"),
        )
        .app(app)
        .before(before)
        .after(&setting);
        self.store.set_consent_item(app, scope, Some(&setting), &audit)?;
        self.settle(app);
        Ok(setting)
    }

    pub fn unset_consent_item(&self, actor: &Actor, app: AppId, scope: &str) -> ServiceResult<()> {
        let record = self.app_for(actor, app, Access::Edit)?;
        let Some(before) = record.consent_items.iter().find(|c| c.scope == scope) else {
            return Err(ServiceError::NotFound(format!("the consent item `{scope}` is not set on app {app}")));
        };
        let audit = NewAuditEvent::new(
            self.clock.now(),
            Some(actor.account.id),
            "consent_item.unset",
            format!("consent_item:{scope}"),
        )
        .app(app)
        .before(before);
        let what = format!("unsetting the consent item `{scope}`");
        let (revoke, unset, messages) = self.losing(&record, &[], &[scope], &what)?;
        let cascade = Cascade { revoke: &revoke, unset: &unset, messages: &messages };
        if self.store.unset_consent_item(app, scope, cascade, actor.account.id, &audit)?.is_none() {
            return Err(ServiceError::NotFound(format!("the consent item `{scope}` is not set on app {app}")));
        }
        self.settle(app);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_number_with_a_matching_check_digit_is_normalised() {
        // Kakao Corp.'s published number.
        assert_eq!(business_registration_number("1208147521").ok().as_deref(), Some("120-81-47521"));
        assert_eq!(business_registration_number(" 120-81-47521 ").ok().as_deref(), Some("120-81-47521"));
    }

    #[test]
    fn a_wrong_check_digit_or_shape_is_refused_with_the_reason() {
        let e = business_registration_number("120-81-47522").err().unwrap_or_default();
        assert!(e.contains("check digit"), "{e}");
        let e = business_registration_number("12-34").err().unwrap_or_default();
        assert!(e.contains("10 digits"), "{e}");
        assert!(business_registration_number("12081475x1").is_err());
    }
}
