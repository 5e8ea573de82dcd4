//! The catalog file as written: serde types that mirror the TOML one to one, with spans kept on
//! every id and reference so that validation can point at the line that is wrong.

use serde::Deserialize;
use toml::Spanned;

pub(crate) type Id = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCatalog {
    pub version: Spanned<String>,
    #[serde(default)]
    pub time_zone: Option<Spanned<String>>,
    #[serde(default)]
    pub products: Vec<RawProduct>,
    #[serde(default)]
    pub permissions: Vec<RawPermission>,
    #[serde(default)]
    pub consent_items: Vec<RawConsentItem>,
    #[serde(default)]
    pub quota_rules: Vec<RawQuotaRule>,
    #[serde(default)]
    pub review_reasons: Vec<RawReviewReason>,
    #[serde(default)]
    pub response_fields: Vec<RawResponseField>,
    #[serde(default)]
    pub config_items: Vec<RawConfigItem>,
    #[serde(default)]
    pub apis: Vec<RawApi>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProduct {
    pub id: Id,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub activation: super::Activation,
    #[serde(default)]
    pub further_app_permission: Option<Id>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPermission {
    pub id: Id,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub obtained_by: super::ObtainedBy,
    #[serde(default)]
    pub kind: super::PermissionKind,
    #[serde(default)]
    pub approval_criteria: Vec<String>,
    #[serde(default)]
    pub cautions: Vec<String>,
    #[serde(default)]
    pub retired: bool,
    #[serde(default)]
    pub shadow: bool,
    #[serde(default)]
    pub default_duration_days: Option<Spanned<i64>>,
    #[serde(default)]
    pub auto_approve: Option<super::AutoApprove>,
    #[serde(default)]
    pub immediate: bool,
    #[serde(default)]
    pub test_only: bool,
    #[serde(default)]
    pub grants_quota: bool,
    #[serde(default)]
    pub raises_quota_rules: Vec<Id>,
    #[serde(default)]
    pub prerequisites: RawPrerequisites,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrerequisites {
    #[serde(default)]
    pub biz_app: bool,
    #[serde(default)]
    pub channel_connected: bool,
    #[serde(default)]
    pub consent_items: Vec<Id>,
    #[serde(default)]
    pub permissions: Vec<Id>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConsentItem {
    pub id: Id,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: super::ConsentType,
    #[serde(default)]
    pub requires_biz: bool,
    #[serde(default)]
    pub requires_permission: Option<Id>,
    #[serde(default)]
    pub settable_before_permission: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuotaRule {
    pub id: Id,
    pub name: String,
    pub period: super::QuotaPeriod,
    pub scope: super::QuotaScope,
    pub limit: Spanned<i64>,
    #[serde(default)]
    pub all_apis: bool,
    #[serde(default)]
    pub shadow: bool,
    #[serde(default)]
    pub exclude_categories: Vec<String>,
    #[serde(default)]
    pub error: Option<RawQuotaError>,
    #[serde(default = "yes")]
    pub raisable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuotaError {
    #[serde(default)]
    pub code: Option<i32>,
    #[serde(default)]
    pub status: Option<Spanned<u16>>,
    #[serde(default)]
    pub msg: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReviewReason {
    pub id: Id,
    pub text: String,
    pub applies_to: Spanned<Vec<super::ReviewDecisionKind>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResponseField {
    pub api: Id,
    pub field: Spanned<String>,
    #[serde(default)]
    pub consent_item: Option<Id>,
    #[serde(default)]
    pub permission: Option<Id>,
    #[serde(default)]
    pub needs_agreement_field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfigItem {
    pub id: Id,
    pub name: String,
    pub permission: Id,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApi {
    pub id: Id,
    pub name: String,
    pub product: Id,
    pub category: String,
    pub method: Spanned<String>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub host: Option<String>,
    pub key_kinds: Spanned<Vec<crate::model::KeyKind>>,
    #[serde(default)]
    pub permissions: Vec<Id>,
    #[serde(default)]
    pub consent_items: Vec<Id>,
    #[serde(default)]
    pub quota_rules: Vec<Id>,
    #[serde(default)]
    pub status: super::ApiStatus,
    #[serde(default)]
    pub without_permission: super::WithoutPermission,
    #[serde(default)]
    pub shadow: bool,
    #[serde(default)]
    pub recipient_from: Option<String>,
}
