//! The catalog as code: parse a TOML file, validate every reference, and build the indexes and the
//! router the decision engine reads. The format is documented in `docs/CATALOG.md`.

mod diff;
mod raw;

pub use diff::{CatalogDiff, Changed, SectionDiff, diff};

use crate::fast_hash::FastMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::model::KeyKind;
use crate::route::{Method, Pattern, Router};

/// The catalog permgate ships, modelled on Kakao Developers (see `shared/KAKAO.md`).
pub const DEFAULT_CATALOG: &str = include_str!("default.toml");
/// The name the built-in catalog is reported under in errors.
pub const DEFAULT_CATALOG_NAME: &str = "<built-in catalog>";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    DefaultOn,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObtainedBy {
    AppType,
    AdditionalFeature,
    GeneralRequest,
    Default,
    Operator,
}

impl ObtainedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ObtainedBy::AppType => "app_type",
            ObtainedBy::AdditionalFeature => "additional_feature",
            ObtainedBy::GeneralRequest => "general_request",
            ObtainedBy::Default => "default",
            ObtainedBy::Operator => "operator",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PermissionKind {
    #[default]
    Feature,
    Api,
    Response,
    ConsentItem,
    Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentType {
    Privacy,
    Service,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaPeriod {
    Second,
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaScope {
    App,
    Developer,
    User,
    Recipient,
    Pair,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecisionKind {
    Hold,
    Reject,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiStatus {
    #[default]
    Active,
    Maintenance,
    Terminated,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WithoutPermission {
    #[default]
    Deny,
    MembersOnly,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub description: String,
    pub activation: Activation,
    pub further_app_permission: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Prerequisites {
    pub biz_app: bool,
    pub channel_connected: bool,
    pub consent_items: Vec<String>,
    pub permissions: Vec<String>,
}

/// Conditions under which a request for a permission is approved without a reviewer. Every
/// condition given must hold; a request that fails one goes to the review queue as usual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoApprove {
    /// The app must be a Biz app.
    #[serde(default)]
    pub biz: bool,
    /// ... whose business was verified at least this many days ago.
    #[serde(default)]
    pub verified_days: u32,
    /// The app had no request rejected in this many days.
    #[serde(default)]
    pub no_rejection_days: u32,
    /// The app exists for at least this many days.
    #[serde(default)]
    pub app_age_days: u32,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Permission {
    pub id: String,
    /// `id`, interned: what a decision carries without allocating.
    #[serde(skip)]
    pub static_id: &'static str,
    pub name: String,
    pub description: String,
    pub obtained_by: ObtainedBy,
    pub kind: PermissionKind,
    pub approval_criteria: Vec<String>,
    pub cautions: Vec<String>,
    pub retired: bool,
    /// Calls this permission would deny are allowed and reported as `would_deny`.
    pub shadow: bool,
    /// How long a grant lasts unless the grant says otherwise (renewal reminders at 30 and 7 days).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_duration_days: Option<u32>,
    /// Requests that meet these conditions are approved at submission; others go to a reviewer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<AutoApprove>,
    pub immediate: bool,
    pub test_only: bool,
    pub grants_quota: bool,
    /// The quota rules a grant of this permission raises (its `params.limit`); empty with
    /// `grants_quota` means any rule, named by the grant's `params.rule`.
    pub raises_quota_rules: Vec<String>,
    pub prerequisites: Prerequisites,
}

impl Permission {
    /// Whether each grant (and request) names the quota rule it raises (`increased_quota`): the
    /// app may then hold the permission once per rule. A permission that raises one rule
    /// (`talk_share_quota`), or none, is one holding whatever its grants' `params.rule` says.
    pub fn names_its_rule(&self) -> bool {
        self.grants_quota && self.raises_quota_rules.len() != 1
    }

    /// Whether a grant of this permission may raise `rule`: one of its `raises_quota_rules`, or,
    /// where it lists none (it raises whichever rule its grant names), an app's own quota of some
    /// APIs ([`QuotaRule::raisable_by_any`]).
    pub fn may_raise(&self, rule: &QuotaRule) -> bool {
        if self.raises_quota_rules.is_empty() {
            rule.raisable_by_any()
        } else {
            self.raises_quota_rules.contains(&rule.id)
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ConsentItem {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ConsentType,
    pub requires_biz: bool,
    pub requires_permission: Option<String>,
    pub settable_before_permission: bool,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct QuotaError {
    pub code: i32,
    pub status: u16,
    // Interned at load: a quota deny carries it without allocating.
    pub msg: &'static str,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct QuotaRule {
    pub id: String,
    /// `id`, interned: what a decision carries without allocating.
    #[serde(skip)]
    pub static_id: &'static str,
    pub name: String,
    pub period: QuotaPeriod,
    pub scope: QuotaScope,
    pub limit: u64,
    pub all_apis: bool,
    /// Calls this rule would deny are allowed and reported as `would_deny`.
    pub shadow: bool,
    pub exclude_categories: Vec<String>,
    pub error: QuotaError,
    /// `false` where no grant may raise the rule even if its scope would allow it (Kakao: the
    /// message API's quota cannot be raised). See [`QuotaRule::raisable_by_any`].
    pub raisable: bool,
}

impl QuotaRule {
    /// Whether a permission that raises whichever rule its grant names (`raises_quota_rules`
    /// empty, as `increased_quota`) may raise this one: an app's own quota of some APIs, not a
    /// limit per developer, user, recipient or sender–recipient pair, not the monthly total of
    /// all APIs, and not a rule the catalog marks `raisable = false`. Paid usage buys more of the
    /// same rules (KAKAO.md 3.6).
    pub fn raisable_by_any(&self) -> bool {
        self.raisable && self.scope == QuotaScope::App && !self.all_apis
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ReviewReason {
    pub id: String,
    pub text: String,
    pub applies_to: Vec<ReviewDecisionKind>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ResponseField {
    pub api: String,
    pub field: String,
    pub consent_item: Option<String>,
    pub permission: Option<String>,
    pub needs_agreement_field: Option<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ConfigItem {
    pub id: String,
    pub name: String,
    pub permission: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Api {
    pub id: String,
    pub name: String,
    pub product: String,
    pub category: String,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub key_kinds: Vec<KeyKind>,
    pub permissions: Vec<String>,
    pub consent_items: Vec<String>,
    pub quota_rules: Vec<String>,
    pub status: ApiStatus,
    pub without_permission: WithoutPermission,
    /// Calls this API's checks would deny are allowed and reported as `would_deny`.
    pub shadow: bool,
    /// Where a call names its recipients (e.g. `receiver_uuids`), for recipient and pair quotas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_from: Option<String>,
    /// Indexes into `Catalog::permissions`, for the decision engine.
    #[serde(skip)]
    pub permission_idx: Vec<usize>,
    /// Indexes into `Catalog::consent_items`, for the decision engine.
    #[serde(skip)]
    pub consent_idx: Vec<usize>,
    #[serde(skip)]
    pub product_idx: usize,
    /// Indexes into `Catalog::quota_rules` of every rule that counts this API (its own and the
    /// `all_apis` ones), filled once the catalog is validated.
    #[serde(skip)]
    pub quota_idx: Vec<usize>,
    /// Every rule in `quota_idx` counts per app and none (nor the API) is in shadow mode: an
    /// app's call is then counted in its own meter alone, by the decision's short path.
    #[serde(skip)]
    pub counted_per_app: bool,
    /// `id`, interned: what a decision carries without allocating.
    #[serde(skip)]
    pub static_id: &'static str,
    /// The -401 message for each credential kind the API does not accept, written once (interned)
    /// so that refusing one allocates nothing.
    #[serde(skip)]
    pub refusals: Vec<(KeyKind, &'static str)>,
    /// The deny of a call while the API is under maintenance (-7) or terminated (-9): its code
    /// and message, interned for the same reason; `None` while it is active.
    #[serde(skip)]
    pub closed: Option<(i32, &'static str)>,
    /// What the decision's quick lane checks of an app calling this API, when the lane can take
    /// its calls (see [`QuickApi`]); `None` sends every call to the general path.
    #[serde(skip)]
    pub quick: Option<QuickApi>,
}

/// An API whose allowed calls need nothing beyond bits of an app's first line: it is active, not
/// in shadow mode, accepts REST API keys, is counted per app ([`Api::counted_per_app`]), and its
/// permissions and consent items are among the catalog's first 64 of each and its product among
/// the first 32, so that each set is one word (the products' a half). The masks are those sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuickApi {
    pub permissions: u64,
    pub consent_items: u64,
    pub product: u32,
}

impl QuickApi {
    fn of(api: &Api) -> Option<QuickApi> {
        let mask = |idx: &[usize]| idx.iter().try_fold(0u64, |m, &i| (i < 64).then(|| m | 1 << i));
        if !api.counted_per_app || api.closed.is_some() || api.refusal(KeyKind::RestApi).is_some() {
            return None;
        }
        Some(QuickApi {
            permissions: mask(&api.permission_idx)?,
            consent_items: mask(&api.consent_idx)?,
            product: u32::try_from(mask(&[api.product_idx])?).ok()?,
        })
    }
}

impl Api {
    /// Why a credential of `kind` is refused, if it is: the API does not accept that kind.
    pub fn refusal(&self, kind: KeyKind) -> Option<&'static str> {
        self.refusals.iter().find(|(k, _)| *k == kind).map(|(_, msg)| *msg)
    }
}

/// The deny of a call to API `id` in `status`, if it is closed (see [`Api::closed`]).
fn closed(id: &str, status: ApiStatus) -> Option<(i32, &'static str)> {
    use crate::decision::code::{MAINTENANCE, TERMINATED};
    let (code, state) = match status {
        ApiStatus::Active => return None,
        ApiStatus::Maintenance => (MAINTENANCE, "is under maintenance"),
        ApiStatus::Terminated => (TERMINATED, "is terminated"),
    };
    Some((code, crate::intern::intern(&format!("API `{id}` {state}"))))
}

/// The -401 messages of an API that accepts `accepted` (see [`Api::refusal`]).
fn refusals(id: &str, accepted: &[KeyKind]) -> Vec<(KeyKind, &'static str)> {
    let list = accepted.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
    KeyKind::ALL
        .iter()
        .copied()
        .filter(|k| !accepted.contains(k))
        .map(|k| {
            let msg = format!("API `{id}` does not accept a {k} credential; it accepts: {list}");
            (k, crate::intern::intern(&msg))
        })
        .collect()
}

/// A validated catalog: every reference resolves, every id is unique, every route is unambiguous.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Catalog {
    pub version: String,
    pub time_zone: String,
    /// `time_zone`'s offset east of UTC in seconds, resolved once at load.
    #[serde(skip)]
    pub utc_offset: i32,
    pub products: Vec<Product>,
    pub permissions: Vec<Permission>,
    pub consent_items: Vec<ConsentItem>,
    pub quota_rules: Vec<QuotaRule>,
    pub review_reasons: Vec<ReviewReason>,
    pub response_fields: Vec<ResponseField>,
    pub config_items: Vec<ConfigItem>,
    pub apis: Vec<Api>,
    #[serde(skip)]
    index: Indexes,
    #[serde(skip)]
    router: Router,
}

#[derive(Debug, Clone, Default)]
struct Indexes {
    products: FastMap<String, usize>,
    permissions: FastMap<String, usize>,
    consent_items: FastMap<String, usize>,
    quota_rules: FastMap<String, usize>,
    review_reasons: FastMap<String, usize>,
    apis: FastMap<String, usize>,
}

/// One problem in a catalog file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogIssue {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for CatalogIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// Every problem found in a catalog file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CatalogError {
    pub issues: Vec<CatalogIssue>,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(f, "the catalog has {n} error{}:", if n == 1 { "" } else { "s" })?;
        for issue in &self.issues {
            write!(f, "\n  {issue}")?;
        }
        Ok(())
    }
}

impl Catalog {
    /// The built-in catalog. It is validated by the test suite, so failing here is a build defect;
    /// callers still get the error rather than a panic.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Catalog::parse(DEFAULT_CATALOG_NAME, DEFAULT_CATALOG)
    }

    /// Parses and validates `text`, reporting errors against `file`.
    pub fn parse(file: &str, text: &str) -> Result<Catalog, CatalogError> {
        let mut v = Validator { file, text, issues: Vec::new() };
        let raw: raw::RawCatalog = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                v.push(offset, e.message().trim_end().to_owned());
                return Err(CatalogError { issues: v.issues });
            }
        };
        let catalog = v.build(raw);
        if v.issues.is_empty() {
            Ok(catalog)
        } else {
            v.issues.sort_by_key(|i| (i.line, i.column));
            Err(CatalogError { issues: v.issues })
        }
    }

    pub fn product(&self, id: &str) -> Option<&Product> {
        self.index.products.get(id).map(|&i| &self.products[i])
    }

    pub fn permission(&self, id: &str) -> Option<&Permission> {
        self.index.permissions.get(id).map(|&i| &self.permissions[i])
    }

    pub fn permission_index(&self, id: &str) -> Option<usize> {
        self.index.permissions.get(id).copied()
    }

    pub fn consent_item(&self, id: &str) -> Option<&ConsentItem> {
        self.index.consent_items.get(id).map(|&i| &self.consent_items[i])
    }

    pub fn quota_rule(&self, id: &str) -> Option<&QuotaRule> {
        self.index.quota_rules.get(id).map(|&i| &self.quota_rules[i])
    }

    pub fn quota_rule_index(&self, id: &str) -> Option<usize> {
        self.index.quota_rules.get(id).copied()
    }

    pub fn review_reason(&self, id: &str) -> Option<&ReviewReason> {
        self.index.review_reasons.get(id).map(|&i| &self.review_reasons[i])
    }

    pub fn api(&self, id: &str) -> Option<&Api> {
        self.index.apis.get(id).map(|&i| &self.apis[i])
    }

    /// The API a call goes to, if the catalog has one.
    pub fn route(&self, method: Method, path: &str) -> Option<&Api> {
        self.router.lookup(method, path).map(|i| &self.apis[i as usize])
    }

    /// What an app loses with `permissions` (revoked; `biz_app` standing for its Biz status and
    /// `connect_talk_channel` for a connected channel) and `consent_items` (unset), SPEC 4's "the
    /// grants that depended on it": every permission it `holds` whose prerequisites name one of
    /// those, every consent item it has `set` that requires one, and so on until nothing more
    /// follows. Only what follows is returned.
    pub fn lost_with(
        &self,
        permissions: &[&str],
        consent_items: &[&str],
        holds: impl Fn(&str) -> bool,
        set: impl Fn(&str) -> bool,
    ) -> (Vec<String>, Vec<String>) {
        let mut lost: Vec<&str> = permissions.to_vec();
        let mut unset: Vec<&str> = consent_items.to_vec();
        loop {
            let before = (lost.len(), unset.len());
            for p in &self.permissions {
                let pre = &p.prerequisites;
                let follows = (pre.biz_app && lost.contains(&"biz_app"))
                    || (pre.channel_connected && lost.contains(&"connect_talk_channel"))
                    || pre.permissions.iter().any(|q| lost.contains(&q.as_str()))
                    || pre.consent_items.iter().any(|c| unset.contains(&c.as_str()));
                if follows && !lost.contains(&p.id.as_str()) && holds(&p.id) {
                    lost.push(&p.id);
                }
            }
            for c in &self.consent_items {
                // An item that may be set before its permission is granted stays without it.
                let follows = (c.requires_biz && lost.contains(&"biz_app"))
                    || (!c.settable_before_permission
                        && c.requires_permission.as_deref().is_some_and(|p| lost.contains(&p)));
                if follows && !unset.contains(&c.id.as_str()) && set(&c.id) {
                    unset.push(&c.id);
                }
            }
            if (lost.len(), unset.len()) == before {
                break;
            }
        }
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        (owned(&lost[permissions.len()..]), owned(&unset[consent_items.len()..]))
    }

    /// The `all_apis` quota rules that count `api` (besides the ones it names).
    pub fn quota_rules_for<'a>(&'a self, api: &'a Api) -> impl Iterator<Item = &'a QuotaRule> + 'a {
        self.quota_rules.iter().filter(move |r| {
            api.quota_rules.contains(&r.id) || (r.all_apis && !r.exclude_categories.contains(&api.category))
        })
    }
}

struct Validator<'a> {
    file: &'a str,
    text: &'a str,
    issues: Vec<CatalogIssue>,
}

impl Validator<'_> {
    fn push(&mut self, offset: usize, message: String) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        self.issues.push(CatalogIssue { file: self.file.to_owned(), line, column, message });
    }

    fn at<T>(&mut self, spanned: &Spanned<T>, message: String) {
        self.push(spanned.span().start, message);
    }

    /// Registers ids of one kind, reporting duplicates and malformed ids.
    fn index(&mut self, kind: &str, ids: &[&Spanned<String>]) -> FastMap<String, usize> {
        let mut map = FastMap::default();
        for (i, id) in ids.iter().enumerate() {
            let text = id.get_ref();
            if !is_snake_case(text) {
                self.at(id, format!("{kind} id `{text}` must be snake_case: a lowercase letter, then lowercase letters, digits or `_`"));
            }
            if map.insert(text.clone(), i).is_some() {
                self.at(id, format!("duplicate {kind} id `{text}`"));
            }
        }
        map
    }

    fn check_ref(
        &mut self,
        map: &FastMap<String, usize>,
        what: &str,
        owner: &str,
        reference: &Spanned<String>,
    ) -> Option<usize> {
        let found = map.get(reference.get_ref()).copied();
        if found.is_none() {
            self.at(reference, format!("{owner} refers to unknown {what} `{}`", reference.get_ref()));
        }
        found
    }

    fn build(&mut self, raw: raw::RawCatalog) -> Catalog {
        let index = Indexes {
            products: self.index("product", &raw.products.iter().map(|p| &p.id).collect::<Vec<_>>()),
            permissions: self.index("permission", &raw.permissions.iter().map(|p| &p.id).collect::<Vec<_>>()),
            consent_items: self.index("consent item", &raw.consent_items.iter().map(|c| &c.id).collect::<Vec<_>>()),
            quota_rules: self.index("quota rule", &raw.quota_rules.iter().map(|q| &q.id).collect::<Vec<_>>()),
            review_reasons: self.index("review reason", &raw.review_reasons.iter().map(|r| &r.id).collect::<Vec<_>>()),
            apis: self.index("api", &raw.apis.iter().map(|a| &a.id).collect::<Vec<_>>()),
        };
        let config_ids = raw.config_items.iter().map(|c| &c.id).collect::<Vec<_>>();
        self.index("config item", &config_ids);

        let time_zone = match &raw.time_zone {
            None => "Asia/Seoul".to_owned(),
            Some(tz) => {
                // The zones permgate can compute windows for without a tz database: fixed offsets.
                if tz_offset_seconds(tz.get_ref()).is_none() {
                    self.at(
                        tz,
                        format!(
                            "unsupported time_zone `{}`; use Asia/Seoul, UTC or a fixed offset such as +09:00",
                            tz.get_ref()
                        ),
                    );
                }
                tz.get_ref().clone()
            }
        };
        if raw.version.get_ref().trim().is_empty() {
            self.at(&raw.version, "version must not be empty".to_owned());
        }

        let products = raw
            .products
            .into_iter()
            .map(|p| {
                let owner = format!("product `{}`", p.id.get_ref());
                if let Some(perm) = &p.further_app_permission {
                    self.check_ref(&index.permissions, "permission", &owner, perm);
                }
                Product {
                    id: p.id.into_inner(),
                    name: p.name,
                    description: p.description,
                    activation: p.activation,
                    further_app_permission: p.further_app_permission.map(Spanned::into_inner),
                }
            })
            .collect();

        let permissions = raw
            .permissions
            .into_iter()
            .map(|p| {
                let owner = format!("permission `{}`", p.id.get_ref());
                for c in &p.prerequisites.consent_items {
                    self.check_ref(&index.consent_items, "consent item", &owner, c);
                }
                for q in &p.prerequisites.permissions {
                    self.check_ref(&index.permissions, "permission", &owner, q);
                    if q.get_ref() == p.id.get_ref() {
                        self.at(q, format!("{owner} lists itself as a prerequisite"));
                    }
                }
                for q in &p.raises_quota_rules {
                    self.check_ref(&index.quota_rules, "quota rule", &owner, q);
                }
                if !p.raises_quota_rules.is_empty() && !p.grants_quota {
                    self.at(&p.id, format!("{owner} lists raises_quota_rules but is not grants_quota = true"));
                }
                if p.test_only && p.obtained_by != ObtainedBy::AppType {
                    self.at(&p.id, format!("{owner} is test_only, so it must be obtained_by = \"app_type\""));
                }
                let default_duration_days =
                    p.default_duration_days.as_ref().and_then(|d| match u32::try_from(*d.get_ref()) {
                        Ok(days) if days > 0 => Some(days),
                        _ => {
                            self.at(d, format!("{owner}: default_duration_days must be a positive number of days"));
                            None
                        }
                    });
                if p.auto_approve.is_some()
                    && !matches!(p.obtained_by, ObtainedBy::AdditionalFeature | ObtainedBy::GeneralRequest)
                {
                    self.at(&p.id, format!("{owner} has auto_approve, so it must be obtained by a request"));
                }
                Permission {
                    static_id: crate::intern::intern(p.id.get_ref()),
                    id: p.id.into_inner(),
                    name: p.name,
                    description: p.description,
                    obtained_by: p.obtained_by,
                    kind: p.kind,
                    approval_criteria: p.approval_criteria,
                    cautions: p.cautions,
                    retired: p.retired,
                    shadow: p.shadow,
                    default_duration_days,
                    auto_approve: p.auto_approve,
                    immediate: p.immediate,
                    test_only: p.test_only,
                    grants_quota: p.grants_quota,
                    raises_quota_rules: strings(p.raises_quota_rules),
                    prerequisites: Prerequisites {
                        biz_app: p.prerequisites.biz_app,
                        channel_connected: p.prerequisites.channel_connected,
                        consent_items: strings(p.prerequisites.consent_items),
                        permissions: strings(p.prerequisites.permissions),
                    },
                }
            })
            .collect();

        let consent_items = raw
            .consent_items
            .into_iter()
            .map(|c| {
                let owner = format!("consent item `{}`", c.id.get_ref());
                if let Some(perm) = &c.requires_permission {
                    self.check_ref(&index.permissions, "permission", &owner, perm);
                } else if c.settable_before_permission {
                    self.at(&c.id, format!("{owner} is settable_before_permission but names no requires_permission"));
                }
                ConsentItem {
                    id: c.id.into_inner(),
                    name: c.name,
                    kind: c.kind,
                    requires_biz: c.requires_biz,
                    requires_permission: c.requires_permission.map(Spanned::into_inner),
                    settable_before_permission: c.settable_before_permission,
                }
            })
            .collect();

        let raw_scopes: Vec<QuotaScope> = raw.quota_rules.iter().map(|q| q.scope).collect();
        let quota_rules: Vec<QuotaRule> = raw
            .quota_rules
            .into_iter()
            .map(|q| {
                let limit = *q.limit.get_ref();
                if limit <= 0 {
                    self.at(&q.limit, format!("quota rule `{}` needs a limit above 0, not {limit}", q.id.get_ref()));
                }
                if !q.all_apis && !q.exclude_categories.is_empty() {
                    self.at(
                        &q.id,
                        format!("quota rule `{}` has exclude_categories without all_apis = true", q.id.get_ref()),
                    );
                }
                let error = q.error.map_or(QuotaError { code: -10, status: 400, msg: QUOTA_MSG }, |e| {
                    let status = e.status.as_ref().map_or(400, |s| *s.get_ref());
                    if let Some(s) = &e.status
                        && !(400..=599).contains(s.get_ref())
                    {
                        self.at(
                            s,
                            format!("quota error status must be an HTTP error status (400-599), not {}", s.get_ref()),
                        );
                    }
                    QuotaError {
                        code: e.code.unwrap_or(-10),
                        status,
                        msg: e.msg.map_or(QUOTA_MSG, |m| crate::intern::intern(&m)),
                    }
                });
                QuotaRule {
                    static_id: crate::intern::intern(q.id.get_ref()),
                    id: q.id.into_inner(),
                    name: q.name,
                    period: q.period,
                    scope: q.scope,
                    limit: u64::try_from(limit).unwrap_or(0),
                    all_apis: q.all_apis,
                    shadow: q.shadow,
                    exclude_categories: q.exclude_categories,
                    error,
                    raisable: q.raisable,
                }
            })
            .collect();

        let review_reasons = raw
            .review_reasons
            .into_iter()
            .map(|r| {
                if r.applies_to.get_ref().is_empty() {
                    self.at(
                        &r.applies_to,
                        format!("review reason `{}` must apply to hold, reject or both", r.id.get_ref()),
                    );
                }
                ReviewReason { id: r.id.into_inner(), text: r.text, applies_to: r.applies_to.into_inner() }
            })
            .collect();

        let config_items = raw
            .config_items
            .into_iter()
            .map(|c| {
                let owner = format!("config item `{}`", c.id.get_ref());
                self.check_ref(&index.permissions, "permission", &owner, &c.permission);
                ConfigItem {
                    id: c.id.into_inner(),
                    name: c.name,
                    permission: c.permission.into_inner(),
                    description: c.description,
                }
            })
            .collect();

        let mut router = Router::default();
        let mut routed: Vec<String> = Vec::new();
        let mut apis = Vec::with_capacity(raw.apis.len());
        for (i, a) in raw.apis.into_iter().enumerate() {
            let owner = format!("api `{}`", a.id.get_ref());
            let product_idx = self.check_ref(&index.products, "product", &owner, &a.product).unwrap_or(0);
            let permission_idx = a
                .permissions
                .iter()
                .filter_map(|p| self.check_ref(&index.permissions, "permission", &owner, p))
                .collect();
            let consent_idx = a
                .consent_items
                .iter()
                .filter_map(|c| self.check_ref(&index.consent_items, "consent item", &owner, c))
                .collect();
            for q in &a.quota_rules {
                if let Some(i) = self.check_ref(&index.quota_rules, "quota rule", &owner, q)
                    && matches!(raw_scopes[i], QuotaScope::Recipient | QuotaScope::Pair)
                    && a.recipient_from.is_none()
                {
                    self.at(
                        q,
                        format!("{owner} counts recipient quota rule `{}` but names no recipient_from", q.get_ref()),
                    );
                }
            }
            if a.key_kinds.get_ref().is_empty() {
                self.at(&a.key_kinds, format!("{owner} accepts no key kind; list at least one of rest_api, javascript, native_app, admin, user_token"));
            }
            if a.without_permission == WithoutPermission::MembersOnly && a.permissions.is_empty() {
                self.at(&a.id, format!("{owner} is without_permission = \"members_only\" but requires no permission"));
            }
            if a.category.trim().is_empty() {
                self.at(&a.id, format!("{owner} needs a category"));
            }
            let method = Method::parse(a.method.get_ref()).filter(|m| m.as_str() == a.method.get_ref());
            if method.is_none() {
                self.at(
                    &a.method,
                    format!(
                        "{owner} has method `{}`; use one of GET, POST, PUT, PATCH, DELETE (upper case)",
                        a.method.get_ref()
                    ),
                );
            }
            match Pattern::parse(a.path.get_ref()) {
                Err(e) => self.at(&a.path, format!("{owner} has a bad path pattern `{}`: {e}", a.path.get_ref())),
                Ok(pattern) => {
                    if let Some(method) = method {
                        let idx = u32::try_from(i).unwrap_or(u32::MAX);
                        if let Err(existing) = router.insert(method, &pattern, idx) {
                            let other = routed.get(existing as usize).cloned().unwrap_or_default();
                            self.at(&a.path, format!("{owner}'s route {method} {} overlaps api `{other}`: both match exactly the same paths", a.path.get_ref()));
                        }
                    }
                }
            }
            routed.push(a.id.get_ref().clone());
            apis.push(Api {
                static_id: crate::intern::intern(a.id.get_ref()),
                refusals: refusals(a.id.get_ref(), a.key_kinds.get_ref()),
                closed: closed(a.id.get_ref(), a.status),
                id: a.id.into_inner(),
                name: a.name,
                product: a.product.into_inner(),
                category: a.category,
                method: a.method.into_inner(),
                path: a.path.into_inner(),
                host: a.host,
                key_kinds: a.key_kinds.into_inner(),
                permissions: strings(a.permissions),
                consent_items: strings(a.consent_items),
                quota_rules: strings(a.quota_rules),
                status: a.status,
                without_permission: a.without_permission,
                shadow: a.shadow,
                recipient_from: a.recipient_from,
                permission_idx,
                consent_idx,
                product_idx,
                quota_idx: Vec::new(),
                counted_per_app: false,
                quick: None,
            });
        }

        let response_fields = raw
            .response_fields
            .into_iter()
            .map(|f| {
                let owner = format!("response field `{}`", f.field.get_ref());
                self.check_ref(&index.apis, "api", &owner, &f.api);
                match (&f.consent_item, &f.permission) {
                    (None, None) => self
                        .at(&f.field, format!("{owner} names neither a consent_item nor a permission that guards it")),
                    (c, p) => {
                        if let Some(c) = c {
                            self.check_ref(&index.consent_items, "consent item", &owner, c);
                        }
                        if let Some(p) = p {
                            self.check_ref(&index.permissions, "permission", &owner, p);
                        }
                    }
                }
                ResponseField {
                    api: f.api.into_inner(),
                    field: f.field.into_inner(),
                    consent_item: f.consent_item.map(Spanned::into_inner),
                    permission: f.permission.map(Spanned::into_inner),
                    needs_agreement_field: f.needs_agreement_field,
                }
            })
            .collect();

        for api in &mut apis {
            api.quota_idx = quota_rules_vec_idx(&quota_rules, api);
            api.counted_per_app = !api.shadow
                && api.quota_idx.iter().all(|&r| quota_rules[r].scope == QuotaScope::App && !quota_rules[r].shadow);
            api.quick = QuickApi::of(api);
        }
        Catalog {
            version: raw.version.into_inner(),
            utc_offset: tz_offset_seconds(&time_zone).unwrap_or(0),
            time_zone,
            products,
            permissions,
            consent_items,
            quota_rules,
            review_reasons,
            response_fields,
            config_items,
            apis,
            index,
            router,
        }
    }
}

fn quota_rules_vec_idx(rules: &[QuotaRule], api: &Api) -> Vec<usize> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            api.quota_rules.contains(&r.id) || (r.all_apis && !r.exclude_categories.contains(&api.category))
        })
        .map(|(i, _)| i)
        .collect()
}

const QUOTA_MSG: &str = "API limit has been exceeded.";

fn strings(ids: Vec<Spanned<String>>) -> Vec<String> {
    ids.into_iter().map(Spanned::into_inner).collect()
}

fn is_snake_case(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The UTC offset of a supported time zone name, in seconds.
pub fn tz_offset_seconds(zone: &str) -> Option<i32> {
    match zone {
        "Asia/Seoul" | "Asia/Tokyo" | "KST" => Some(9 * 3600),
        "UTC" | "Etc/UTC" | "Z" => Some(0),
        other => {
            let (sign, rest) = match other.as_bytes().first()? {
                b'+' => (1, &other[1..]),
                b'-' => (-1, &other[1..]),
                _ => return None,
            };
            let (h, m) = rest.split_once(':')?;
            let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
            ((0..=14).contains(&h) && (0..60).contains(&m) && h.to_string().len() <= 2)
                .then_some(sign * (h * 3600 + m * 60))
        }
    }
}

#[cfg(test)]
mod tests;
