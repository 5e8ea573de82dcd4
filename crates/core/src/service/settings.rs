//! The app settings the review workflow checks: the eligibility agreement, business information
//! (which makes a Biz app) and consent items.

use serde::{Deserialize, Serialize};

use super::{Access, Actor, Services, required_text};
use crate::audit::NewAuditEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AppId, AppRecord, Business, ConsentLevel, ConsentSetting, Eligibility, GrantSource};
use crate::ports::NewGrant;

/// The terms an owner or editor agrees to once per app before a first application.
pub const ELIGIBILITY_TERMS: &str = "I confirm that the app's operating entity and its purpose of use comply with \
the platform's operating policy; that the feature applied for is implemented and works for the app's members; \
that screenshots and forms submitted mask all personal data; and that the app's members receive the review \
results by e-mail.";

/// `GET`/`POST /v1/apps/{id}/eligibility`
#[derive(Debug, Clone, Serialize)]
pub struct EligibilityView {
    pub app_id: AppId,
    pub terms: &'static str,
    pub agreed: bool,
    #[serde(flatten)]
    pub agreement: Option<Eligibility>,
}

/// `PUT /v1/apps/{id}/business`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBusiness {
    pub business_registration_number: String,
    pub company_name: String,
}

/// `PUT /v1/apps/{id}/consent-items/{scope}`
#[derive(Debug, Clone, Deserialize)]
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
            self.refresh(app)?;
        }
        self.eligibility(actor, app)
    }

    /// Registers business information: the app becomes a Biz app and holds `biz_app`.
    pub fn set_business(&self, actor: &Actor, app: AppId, input: SetBusiness) -> ServiceResult<Business> {
        let record = self.app_for(actor, app, Access::Own)?;
        let number = business_registration_number(&input.business_registration_number)
            .map_err(|m| ServiceError::Invalid(format!("`business_registration_number`: {m}")))?;
        let company_name = required_text("company_name", &input.company_name, 200)?;
        let now = self.clock.now();
        let business = Business { registration_number: number, company_name, verified_at: now };
        let grant = NewGrant {
            app_id: app,
            permission: "biz_app".into(),
            key_id: None,
            source: GrantSource::AppType,
            granted_by: Some(actor.account.id),
            expires_at: None,
            params: serde_json::json!({}),
            reason: "business information registered".into(),
        };
        let already_biz = self.holds_now(&record, "biz_app");
        let audit = NewAuditEvent::new(now, Some(actor.account.id), "business.set", format!("app:{app}"))
            .app(app)
            .before(&record.business)
            .after(&business);
        self.store.set_business(app, &business, (!already_biz).then_some(&grant), &audit)?;
        self.refresh(app)?;
        Ok(business)
    }

    /// Whether the app holds `permission` now (app-wide).
    pub(super) fn holds_now(&self, record: &AppRecord, permission: &str) -> bool {
        let now = self.clock.now();
        record.grants.iter().any(|g| g.permission == permission && g.key_id.is_none() && g.is_active(now))
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
        let purpose = required_text("purpose", &input.purpose, 500)?;
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
        self.refresh(app)?;
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
        self.store.set_consent_item(app, scope, None, &audit)?;
        self.refresh(app)?;
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
