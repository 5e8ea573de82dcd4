//! The decision: a pure function from a snapshot, a call and the time to a verdict with its stable
//! Kakao code and the reasons. `/v1/check`, `/v1/authz`, the gateway, `permgate check` and library
//! users all call [`decide`]. Checks run in SPEC 3.1's order and the first failure wins:
//! route → -401 (credential) → -12/-13 (app status) → -9/-7 (API status) → -5 (permission, or a
//! members-only restriction) → -3 (configuration) → -402 (the user's consent); then, in
//! [`decide_and_count`], quotas (-10 and the rules' own codes) → -11.

mod quick;

use std::borrow::Cow;

use serde::Serialize;

use crate::catalog::{Api, QuotaScope, WithoutPermission};
use crate::credential::{self, Credential, NativeOrigin};
use crate::decision_log::LoggedCall;
use crate::model::{AppId, AppStatus, KeyId, KeyKind};
use crate::quota::{self, Admission, Charge, CounterError, CounterKey, PAID_DAY, PAID_MONTH, QuotaCounter, scope_hash};
use crate::route::Method;
use crate::small::SmallVec;
use crate::snapshot::{AppEntry, Snapshot};
use crate::time::Timestamp;

/// One call to decide on, as the gateway saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<'a> {
    pub method: &'a str,
    /// The request path, optionally with a query string.
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub ka: Option<&'a str>,
    /// The call's recipients (e.g. a message's `receiver_uuids`), for recipient and pair quotas.
    pub recipients: &'a [&'a str],
    /// Fill the decision's `reasons` (the explanation costs a few allocations; a gateway that
    /// only needs the verdict leaves it off).
    pub explain: bool,
}

/// The explanation being built: text is produced only when asked for.
#[derive(Debug)]
struct Reasons {
    on: bool,
    list: Vec<String>,
}

impl Reasons {
    fn new(on: bool) -> Self {
        // An allowed call gives six or seven reasons: room for them up front, not four regrowths.
        Reasons { on, list: if on { Vec::with_capacity(8) } else { Vec::new() } }
    }

    // Always: the check is one load; a call to it, six times an allowed call, was not.
    #[inline(always)]
    fn add(&mut self, text: impl FnOnce() -> String) {
        if self.on {
            self.list.push(text());
        }
    }
}

/// Stable error codes (Kakao's, plus -404 for a path the catalog does not know).
pub mod code {
    pub const ALLOWED: i32 = 0;
    pub const MALFORMED: i32 = -2;
    pub const NOT_CONFIGURED: i32 = -3;
    pub const PERMISSION_DENIED: i32 = -5;
    pub const MAINTENANCE: i32 = -7;
    pub const TERMINATED: i32 = -9;
    pub const BLOCKED: i32 = -12;
    pub const SUSPENDED: i32 = -13;
    pub const UNAUTHENTICATED: i32 = -401;
    pub const NO_CONSENT: i32 = -402;
    pub const NO_SUCH_API: i32 = -404;
    pub const QUOTA_EXCEEDED: i32 = -10;
    pub const PAID_CAP: i32 = -11;
    pub const INTERNAL: i32 = -1;
}

/// How an allowed call is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Restriction {
    /// The app lacks the permission (or is a test app): the call works for its members only.
    MembersOnly,
}

impl Restriction {
    pub fn as_str(self) -> &'static str {
        match self {
            Restriction::MembersOnly => "members_only",
        }
    }
}

/// The verdict on one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Decision {
    pub allow: bool,
    /// The HTTP status a denied call gets (200 when allowed).
    pub status: u16,
    /// 0 when allowed, else the Kakao error code.
    pub code: i32,
    // A fixed text (most denies) or one made for this call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<AppId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<&'static str>,
    /// The permission that was missing (deny) or that restricted the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<&'static str>,
    /// Where to apply for the missing permission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_url: Option<RequestUrl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restriction: Option<Restriction>,
    /// The user behind a user token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The key the call was made with (for key-bound grants).
    #[serde(skip)]
    pub key_id: Option<KeyId>,
    /// The kind of credential the call was made with, once it resolved to an app.
    #[serde(skip)]
    pub key_kind: Option<KeyKind>,
    /// The scopes the user consented to (user tokens), for response filtering.
    #[serde(skip)]
    pub consented: Vec<String>,
    /// On -402: the consent scopes the user must agree to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_scopes: Vec<String>,
    /// The quota rule with the least left after this call (or the one that denied it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaState>,
    /// Seconds until a quota deny lifts (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<i64>,
    /// Every check that ran, in order.
    pub reasons: Vec<String>,
    /// Why the quota counter could not answer, when it could not (the call was then denied or
    /// admitted uncounted by the failure policy).
    #[serde(skip)]
    pub counter_error: Option<String>,
    /// Quota thresholds (80 %, 100 %) this call crossed, for alerts.
    #[serde(skip)]
    pub alerts: Vec<QuotaAlert>,
    /// The deny a check in shadow mode would have given (the call is allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_deny: Option<Box<WouldDeny>>,
}

/// Where an app applies for a permission: `/v1/apps/{id}/permission-requests`. Written out only
/// when the verdict is serialized, so that a deny builds no string for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestUrl(pub AppId);

impl std::fmt::Display for RequestUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/v1/apps/{}/permission-requests", self.0)
    }
}

impl Serialize for RequestUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl schemars::JsonSchema for RequestUrl {
    fn schema_name() -> Cow<'static, str> {
        "RequestUrl".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

/// What enforcement would have answered to a call that shadow mode allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct WouldDeny {
    pub status: u16,
    pub code: i32,
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    /// The quota rule that would have denied it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What is in shadow mode: `permission:ID`, `api:ID` or `quota_rule:ID`.
    pub shadow: String,
}

/// Where a call stands against one quota rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct QuotaState {
    pub rule: &'static str,
    pub limit: u64,
    /// What is left after this call (for `consume: false`, what would be left had it counted).
    pub remaining: u64,
    pub reset_at: Timestamp,
    /// The call was admitted as paid usage, past the rule's free limit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paid: bool,
}

/// An app-wide quota rule passed 80 % or 100 % of its limit with this call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct QuotaAlert {
    pub app_id: AppId,
    pub rule: String,
    pub percent: u8,
    pub limit: u64,
    pub reset_at: Timestamp,
    /// The counter that passed the threshold, as it is saved: its scope (the app, or for a
    /// developer's rule the owner) and its window's start (the window ends at `reset_at`).
    #[serde(skip)]
    pub scope: u64,
    #[serde(skip)]
    pub window_start: i64,
}

impl Decision {
    fn deny(status: u16, code: i32, msg: impl Into<Cow<'static, str>>, reasons: Vec<String>) -> Decision {
        Decision::bare(false, status, code, Some(msg.into()), reasons)
    }

    /// A verdict of which nothing more than these is known yet.
    fn bare(allow: bool, status: u16, code: i32, msg: Option<Cow<'static, str>>, reasons: Vec<String>) -> Decision {
        Decision {
            allow,
            status,
            code,
            msg,
            app_id: None,
            api: None,
            permission: None,
            request_url: None,
            restriction: None,
            user: None,
            key_id: None,
            key_kind: None,
            consented: Vec::new(),
            required_scopes: Vec::new(),
            quota: None,
            retry_after: None,
            reasons,
            counter_error: None,
            alerts: Vec::new(),
            would_deny: None,
        }
    }

    /// The Kakao-compatible error body a denied call answers with: `{"msg", "code", ...}`.
    pub fn error_body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "msg": self.msg.as_deref().unwrap_or(""),
            "code": self.code,
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(p) = self.permission {
                map.insert("permission".into(), p.into());
            }
            if let Some(u) = self.request_url {
                map.insert("request_url".into(), u.to_string().into());
            }
            if !self.required_scopes.is_empty() {
                map.insert("required_scopes".into(), self.required_scopes.clone().into());
            }
            if let Some(q) = self.quota.as_ref().filter(|_| self.retry_after.is_some()) {
                map.insert("rule".into(), q.rule.into());
                map.insert("limit".into(), q.limit.into());
                map.insert("reset_at".into(), q.reset_at.to_rfc3339().into());
            }
        }
        body
    }
}

/// The message of -5, exactly as Kakao sends it.
pub const PERMISSION_DENIED_MSG: &str = "permission denied";

/// Decides one call. Pure: reads only its arguments.
pub fn decide(snapshot: &Snapshot, query: &Query<'_>, now: Timestamp) -> Decision {
    resolve(snapshot, query, now, None, Lead::default(), &mut None)
}

/// Decides a call from the decision log again, as if made with the same credential: for the
/// impact preview of a catalog change. Quota is not consulted.
pub fn replay(snapshot: &Snapshot, call: &LoggedCall, now: Timestamp) -> Decision {
    let query = Query { method: &call.method, path: &call.path, ..Query::default() };
    resolve(snapshot, &query, now, Some(call), Lead::default(), &mut None)
}

/// [`decide`], also handing back (in `target`) the app and API an allowed call resolved to, so
/// that counting does not look them up again. Only the verdict is returned: a `Decision` is a few
/// hundred bytes, and in a pair it was built, then copied out twice on every call.
fn resolve<'s>(
    snapshot: &'s Snapshot,
    query: &Query<'_>,
    now: Timestamp,
    logged: Option<&LoggedCall>,
    lead: Lead<'s>,
    target: &mut Option<(&'s AppEntry, &'s Api)>,
) -> Decision {
    let mut reasons = Reasons::new(query.explain);
    let catalog = snapshot.catalog();

    let (method, api) = match lead.route {
        Some(routed) => routed,
        None => {
            let Some(method) = Method::parse(query.method) else {
                let msg = format!("unsupported method `{}`", query.method);
                return Decision::deny(400, code::MALFORMED, msg, reasons.list);
            };
            if !query.path.starts_with('/') {
                return Decision::deny(400, code::MALFORMED, "path must start with `/`", reasons.list);
            }
            let Some(api) = catalog.route(method, query.path) else {
                let path = crate::route::without_query(query.path);
                return Decision::deny(404, code::NO_SUCH_API, format!("no API matches {method} {path}"), reasons.list);
            };
            (method, api)
        }
    };
    reasons.add(|| {
        joined(&["route: ", method.as_str(), " ", &api.path, " is api `", &api.id, "` of product `", &api.product, "`"])
    });

    let mut verdict =
        Verdict { reasons, api, app: None, user: None, kind: None, key: None, scopes: Vec::new(), would: None };
    let identified = match logged {
        None => identify(snapshot, query, api, lead.key, now, &mut verdict.reasons),
        Some(call) => as_logged(snapshot, call, api),
    };
    let caller = match identified {
        Ok(caller) => caller,
        Err(msg) => return verdict.deny(401, code::UNAUTHENTICATED, msg),
    };
    let app = caller.app;
    verdict.app = Some(app.id);
    verdict.user = caller.user;
    verdict.kind = Some(caller.kind);
    verdict.key = caller.key;
    // Held once, by the verdict: a deny and the allowed decision both take them from there.
    verdict.scopes = caller.scopes;

    if app.owner_blocked {
        return verdict.deny(403, code::BLOCKED, "the app's owner account is blocked");
    }
    match app.status {
        AppStatus::Active => verdict.reasons.add(|| "app status: active".into()),
        AppStatus::Blocked => return verdict.deny(403, code::BLOCKED, "the app is blocked"),
        AppStatus::Suspended => {
            return verdict.deny(403, code::SUSPENDED, "the app is suspended for inactivity");
        }
    }

    // The deny was written (its message interned) with the catalog: it allocates nothing.
    if let Some((code, msg)) = api.closed
        && !verdict.shadowed(false, 400, code, msg, None)
    {
        return verdict.deny(400, code, msg);
    }

    let mut restriction = None;
    let mut restricted_by = None;
    for &p in &api.permission_idx {
        let permission = &catalog.permissions[p];
        let id = &permission.id;
        if app.holds(p, caller.key, now) {
            verdict.reasons.add(|| joined(&["permission `", id, "`: held"]));
            continue;
        }
        match api.without_permission {
            WithoutPermission::MembersOnly => {
                verdict.reasons.add(|| format!("permission `{id}`: not held; allowed for the app's members only"));
                restriction = Some(Restriction::MembersOnly);
                restricted_by.get_or_insert(permission.static_id);
            }
            WithoutPermission::Deny => {
                verdict.reasons.add(|| format!("permission `{id}`: not held"));
                if verdict.shadowed(permission.shadow, 403, code::PERMISSION_DENIED, PERMISSION_DENIED_MSG, Some(id)) {
                    continue;
                }
                let mut d = verdict.deny(403, code::PERMISSION_DENIED, PERMISSION_DENIED_MSG);
                d.permission = Some(permission.static_id);
                d.request_url = Some(RequestUrl(app.id));
                return d;
            }
        }
    }

    if let Some(original) = app.original {
        verdict.reasons.add(|| format!("test app of app {original}: for the original's members only"));
        restriction = Some(Restriction::MembersOnly);
    }

    let product = &catalog.products[api.product_idx];
    if !app.products_active.contains(api.product_idx) {
        let msg = format!(
            "product `{}` is not activated for this app; activate it with PUT /v1/apps/{}/products/{}",
            product.id, app.id, product.id
        );
        if !verdict.shadowed(false, 403, code::NOT_CONFIGURED, &msg, None) {
            return verdict.deny(403, code::NOT_CONFIGURED, msg);
        }
    } else {
        verdict.reasons.add(|| joined(&["product `", &product.id, "`: activated"]));
    }

    if caller.kind == KeyKind::Admin
        && let Some(categories) = caller.key.and_then(|k| app.key(k)).and_then(|k| k.platforms.api_categories.as_ref())
        && !categories.contains(&api.category)
    {
        let msg = format!("this admin key's available APIs exclude category `{}`", api.category);
        if !verdict.shadowed(false, 403, code::NOT_CONFIGURED, &msg, None) {
            return verdict.deny(403, code::NOT_CONFIGURED, msg);
        }
    }

    // -3: the consent items the API needs must be set on the app before users can consent.
    if let Some(&c) = api.consent_idx.iter().find(|&&c| !app.consent_set.contains(c)) {
        let scope = &catalog.consent_items[c].id;
        let msg = format!(
            "consent item `{scope}` is not set for this app; set it with PUT /v1/apps/{}/consent-items/{scope}",
            app.id
        );
        if !verdict.shadowed(false, 403, code::NOT_CONFIGURED, &msg, None) {
            return verdict.deny(403, code::NOT_CONFIGURED, msg);
        }
    }
    verdict.reasons.add(|| {
        if api.consent_items.is_empty() {
            "consent items: none needed".into()
        } else {
            format!("consent items set: {}", api.consent_items.join(", "))
        }
    });

    // -402: a user token must carry the user's consent to every scope the API needs.
    if caller.kind == KeyKind::UserToken {
        let missing: Vec<String> = api.consent_items.iter().filter(|c| !verdict.scopes.contains(c)).cloned().collect();
        if !missing.is_empty() {
            verdict.reasons.add(|| format!("user consent: missing {}", missing.join(", ")));
            const MSG: &str = "the user has not agreed to a scope this API needs";
            if !verdict.shadowed(false, 403, code::NO_CONSENT, MSG, None) {
                let mut d = verdict.deny(403, code::NO_CONSENT, MSG);
                d.required_scopes = missing;
                return d;
            }
        }
    }

    *target = Some((app, api));
    // Built in the return slot: a `Decision` is a few hundred bytes.
    Decision {
        app_id: Some(app.id),
        api: Some(api.static_id),
        permission: restricted_by,
        request_url: restriction.map(|_| RequestUrl(app.id)),
        restriction,
        user: verdict.user,
        key_id: caller.key,
        key_kind: Some(caller.kind),
        consented: verdict.scopes,
        would_deny: verdict.would,
        ..Decision::bare(true, 200, code::ALLOWED, None, verdict.reasons.list)
    }
}

struct Verdict<'a> {
    reasons: Reasons,
    api: &'a Api,
    app: Option<AppId>,
    user: Option<String>,
    kind: Option<KeyKind>,
    key: Option<KeyId>,
    scopes: Vec<String>,
    /// The first deny shadow mode turned into an allow.
    would: Option<Box<WouldDeny>>,
}

impl Verdict<'_> {
    /// Whether a failed check is in shadow mode: `own` (the permission's flag) or the API's.
    /// Then the first such failure is kept as `would_deny` and the call goes on.
    fn shadowed(&mut self, own: bool, status: u16, code: i32, msg: &str, permission: Option<&str>) -> bool {
        let shadow = match (own, permission) {
            (true, Some(p)) => format!("permission:{p}"),
            _ if self.api.shadow => format!("api:{}", self.api.id),
            _ => return false,
        };
        self.reasons.add(|| format!("shadow mode ({shadow}): would deny {code}, allowed"));
        if self.would.is_none() {
            self.would = Some(Box::new(WouldDeny {
                status,
                code,
                msg: msg.to_owned(),
                permission: permission.map(str::to_owned),
                rule: None,
                shadow,
            }));
        }
        true
    }

    fn deny(self, status: u16, code: i32, msg: impl Into<Cow<'static, str>>) -> Decision {
        let mut d = Decision::deny(status, code, msg, self.reasons.list);
        d.app_id = self.app;
        d.api = Some(self.api.static_id);
        d.user = self.user;
        d.key_kind = self.kind;
        d.key_id = self.key;
        d.consented = self.scopes;
        d
    }
}

/// An app key found: its app, id and kind.
type Found<'s> = (&'s AppEntry, KeyId, KeyKind);

/// What the quick lane found of a call before it handed the call to [`resolve`], so that nothing
/// is looked up twice: the method and API it routed to, the app key of its `KakaoAK` header, and
/// whether it found a rule used up (the general path then goes straight to [`count`], which
/// gives the deny, or the shadow or paid usage that follows: a count does not go down).
#[derive(Debug, Default, Clone, Copy)]
struct Lead<'s> {
    route: Option<(Method, &'s Api)>,
    key: Option<Found<'s>>,
    used_up: bool,
}

struct Caller<'s> {
    app: &'s AppEntry,
    kind: KeyKind,
    key: Option<KeyId>,
    user: Option<String>,
    /// The scopes the user consented to (user tokens only).
    scopes: Vec<String>,
}

/// Resolves the credential to an app, checking the key kind and the key's platform data. The error
/// is the -401 message: a fixed text where it can be, so that most refusals allocate nothing.
fn identify<'s>(
    snapshot: &'s Snapshot,
    query: &Query<'_>,
    api: &Api,
    found: Option<Found<'s>>,
    now: Timestamp,
    reasons: &mut Reasons,
) -> Result<Caller<'s>, Cow<'static, str>> {
    let credential = credential::parse_authorization(query.authorization).map_err(|e| Cow::Borrowed(e.message()))?;
    let caller = match credential {
        Credential::AppKey(presented) => {
            let (app, key, kind) = found
                .or_else(|| snapshot.find_key(presented))
                .ok_or(Cow::Borrowed("unknown app key: it was never issued, or was deleted or rotated"))?;
            Caller { app, kind, key: Some(key), user: None, scopes: Vec::new() }
        }
        Credential::UserToken(token) => {
            let claims = snapshot.verifier.verify(token, now).map_err(|e| Cow::Owned(e.to_string()))?;
            let app = snapshot.app(claims.app_id).ok_or_else(|| {
                Cow::Owned(format!("the user token names app {}, which does not exist", claims.app_id))
            })?;
            Caller { app, kind: KeyKind::UserToken, key: None, user: Some(claims.sub), scopes: claims.scopes }
        }
    };
    accepts(api, caller.kind)?;
    // Only browser and native keys carry platform data to check (a REST key needs no more reads).
    let key = match caller.kind {
        KeyKind::Javascript | KeyKind::NativeApp => caller.key.and_then(|k| caller.app.key(k)),
        _ => None,
    };
    match (caller.kind, key) {
        (KeyKind::Javascript, Some(key)) => {
            let origin = query.origin.unwrap_or("");
            if !key.platforms.origins.iter().any(|o| credential::origin_matches(o, origin)) {
                return Err(format!("domain mismatched! caller={origin}").into());
            }
        }
        (KeyKind::NativeApp, Some(key)) => {
            let registered = match query.ka.and_then(credential::parse_ka) {
                Some(NativeOrigin::AndroidPackage(p)) => key.platforms.android_packages.iter().any(|r| r == p),
                Some(NativeOrigin::IosBundle(b)) => key.platforms.ios_bundle_ids.iter().any(|r| r == b),
                None => {
                    return Err("a native app key needs a KA header naming android_pkg/… or ios_bundle_id/…".into());
                }
            };
            if !registered {
                return Err("the package or bundle ID in the KA header is not registered on this native app key".into());
            }
        }
        _ => {}
    }
    reasons.add(|| {
        let (mut app, mut key) = (itoa::Buffer::new(), itoa::Buffer::new());
        let app = app.format(caller.app.id.0);
        match (&caller.user, caller.key) {
            (Some(user), _) => joined(&["credential: user token of `", user, "` for app ", app]),
            (None, Some(k)) => {
                joined(&["credential: ", caller.kind.as_str(), " key #", key.format(k.0), " of app ", app])
            }
            (None, None) => joined(&["credential: app ", app]),
        }
    });
    Ok(caller)
}

/// The caller of a logged call, without its credential: the app and key as they are now.
fn as_logged<'s>(snapshot: &'s Snapshot, call: &LoggedCall, api: &Api) -> Result<Caller<'s>, Cow<'static, str>> {
    let app = snapshot.app(call.app_id).ok_or_else(|| Cow::Owned(format!("app {} no longer exists", call.app_id)))?;
    if let Some(key) = call.key_id
        && app.key(key).is_none()
    {
        return Err(format!("key #{key} of app {} no longer exists", app.id).into());
    }
    accepts(api, call.key_kind)?;
    let user = (call.key_kind == KeyKind::UserToken).then(|| "(replayed)".to_owned());
    let scopes = call.scopes.split_whitespace().map(str::to_owned).collect();
    Ok(Caller { app, kind: call.key_kind, key: call.key_id, user, scopes })
}

/// Whether `api` accepts credentials of `kind` (the refusal is written once, at catalog load).
fn accepts(api: &Api, kind: KeyKind) -> Result<(), Cow<'static, str>> {
    match api.refusal(kind) {
        None => Ok(()),
        Some(msg) => Err(Cow::Borrowed(msg)),
    }
}

/// What a node does when its quota counter cannot answer (a shared counter's Redis is down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterFailure {
    /// Deny the call (503, -1): no call is admitted that might exceed a quota.
    #[default]
    Closed,
    /// Admit the call uncounted, and say so in its reasons.
    Open,
}

/// [`decide`], then, for an allowed call, count it against every quota rule of its API: all of
/// them or none. With `consume` false the counters are only read.
pub fn decide_and_count(
    snapshot: &Snapshot,
    query: &Query<'_>,
    counter: &dyn QuotaCounter,
    now: Timestamp,
    consume: bool,
    on_failure: CounterFailure,
) -> Decision {
    if consume && !query.explain && counter.in_memory().is_some() {
        let mut alerts = Vec::new();
        let quick = match quick::decide_and_count(snapshot, query, now, &mut alerts) {
            Ok(allowed) => allowed,
            Err(lead) => return general(snapshot, query, counter, now, consume, on_failure, lead),
        };
        // Built in the return slot (a `Decision` is a few hundred bytes), from values the lane
        // returned whole: a verdict built elsewhere and moved here was copied in pieces whose
        // loads waited on the stores that had just written them.
        let restriction = quick.members_only.then_some(Restriction::MembersOnly);
        return Decision {
            app_id: Some(quick.app),
            api: Some(quick.api),
            request_url: restriction.map(|_| RequestUrl(quick.app)),
            restriction,
            key_id: Some(quick.key),
            key_kind: Some(KeyKind::RestApi),
            quota: quick.quota,
            // Usually none: the empty list is written, not the local one copied.
            alerts: if alerts.is_empty() { Vec::new() } else { alerts },
            ..Decision::bare(true, 200, code::ALLOWED, None, Vec::new())
        };
    }
    general(snapshot, query, counter, now, consume, on_failure, Lead::default())
}

/// [`decide_and_count`] on the general path, told what the quick lane found.
fn general(
    snapshot: &Snapshot,
    query: &Query<'_>,
    counter: &dyn QuotaCounter,
    now: Timestamp,
    consume: bool,
    on_failure: CounterFailure,
    lead: Lead<'_>,
) -> Decision {
    let mut target = None;
    let used_up = lead.used_up;
    let mut d = resolve(snapshot, query, now, None, lead, &mut target);
    if let Some((app, api)) = target {
        match counter.in_memory() {
            // One lock for the app's counters and its activity.
            Some(memory) => {
                // The short path's limits are read before the lock: the lock's atomic
                // instruction would otherwise wait for their line to arrive.
                let per_app =
                    (consume && !query.explain && !used_up && app.paid.is_none() && PerApp::takes(api)).then(|| {
                        let mut plan = PerApp::plan(snapshot.catalog(), api, now);
                        plan.raise(app, api, now);
                        plan
                    });
                let mut state = app.meter.lock();
                let short = per_app.map(|plan| {
                    let least = plan.count(&mut state, snapshot.catalog(), app, api, &mut d.alerts);
                    least.map(|least| plan.state(snapshot.catalog(), api, least))
                });
                let counted = if let Some(Ok(quota)) = short {
                    d.quota = quota;
                    Counted::new()
                } else {
                    let mut admit =
                        |charges: &[Charge<'_>]| Ok(memory.admit_metered(Some(&mut state), charges, !consume));
                    count(snapshot, app, api, &mut d, query, &mut admit, now, consume, on_failure)
                };
                if d.allow && consume {
                    note_activity(&mut state, app, api, held_all(&d), d.key_id, &counted, now);
                }
            }
            // A shared counter may wait on the network: the meter is not held meanwhile.
            None => {
                let mut admit = |charges: &[Charge<'_>]| counter.admit(charges, !consume);
                let counted = count(snapshot, app, api, &mut d, query, &mut admit, now, consume, on_failure);
                if d.allow && consume {
                    note_activity(&mut app.meter.lock(), app, api, held_all(&d), d.key_id, &counted, now);
                }
            }
        }
    }
    d
}

/// Whether an allowed call held every permission its API needs: `resolve` checked each, and an
/// unrestricted call that no shadow let through held them all.
fn held_all(d: &Decision) -> bool {
    d.restriction.is_none() && d.would_deny.is_none()
}

/// Notes an admitted call, made with `key`, in its app's meter (whose lock the caller holds, as
/// `meter`): the call, the quota rules it was counted against, and the permissions it exercised
/// (all of the API's when `all_held`, else those the app holds); and marks the meter for the
/// savers.
fn note_activity(
    meter: &mut crate::meter::MeterState,
    app: &AppEntry,
    api: &Api,
    all_held: bool,
    key: Option<KeyId>,
    counted: &[u32],
    now: Timestamp,
) {
    meter.touch(now.0);
    for &rule in counted {
        meter.count_rule(rule);
    }
    for &p in &api.permission_idx {
        if all_held || app.holds(p, key, now) {
            meter.exercise(u32::try_from(p).unwrap_or(u32::MAX), now.0);
        }
    }
    app.meter.mark(crate::meter::pending::ALL);
}

/// The quota rules an admitted call was counted against (by catalog index).
type Counted = SmallVec<u32, 4>;

/// The most rules [`PerApp`] counts (an API's own rule and the monthly total are two).
const PER_APP_RULES: usize = 4;

/// [`count`] for the usual call, in memory and counted, with no explanation asked for, to an API
/// whose every rule counts per app ([`Api::counted_per_app`]), by an app without paid usage: the
/// rules' windows and the app's limits, then checked and counted in the app's meter with one
/// search of the meter per rule and no charges built; each rule's calls are noted as well.
#[derive(Clone, Copy)]
struct PerApp {
    /// The app's limit and the present window of each of the API's rules, in `quota_idx` order.
    rules: [(u64, quota::Window); PER_APP_RULES],
}

impl PerApp {
    /// Whether the short path counts calls to `api` (as far as the API goes).
    fn takes(api: &Api) -> bool {
        api.counted_per_app && api.quota_idx.len() <= PER_APP_RULES
    }

    /// The windows and limits of `api`'s rules (one the short path [`takes`](PerApp::takes)).
    /// Inlined, and not wrapped in an `Option`: built in the caller's frame, not copied there.
    /// The caller raises the limits itself (see [`PerApp::raise`]).
    #[inline(always)]
    fn plan(catalog: &crate::catalog::Catalog, api: &Api, now: Timestamp) -> PerApp {
        let calendar = quota::Calendar::at(now, catalog.utc_offset);
        let mut plan = PerApp { rules: [(0, quota::Window::default()); PER_APP_RULES] };
        for (slot, &ri) in plan.rules.iter_mut().zip(&api.quota_idx) {
            let rule = &catalog.quota_rules[ri];
            *slot = (rule.limit, calendar.window(rule.period, now));
        }
        plan
    }

    /// Raises the limits an override of the app raises now, in one pass over its overrides, if it
    /// has any. Called on the plan where it stays: a plan raised and then moved was copied in
    /// pieces that waited on the stores of the raise.
    #[inline(always)]
    fn raise(&mut self, app: &AppEntry, api: &Api, now: Timestamp) {
        if app.has_overrides() {
            self.raise_by_overrides(app, api, now);
        }
    }

    /// [`PerApp::raise`] through the overrides. Not inlined: the compiler would read their line
    /// ahead of the branch.
    #[inline(never)]
    fn raise_by_overrides(&mut self, app: &AppEntry, api: &Api, now: Timestamp) {
        for (rule, raised) in app.raised(now) {
            for ((limit, _), &ri) in self.rules.iter_mut().zip(&api.quota_idx) {
                if ri == rule {
                    *limit = (*limit).max(raised);
                }
            }
        }
    }

    /// Checks and counts the call in `meter` (the app's, which the caller holds), adding the
    /// thresholds it passed to `alerts`; returns the rule with the least left ([`Least`]).
    /// [`UsedUp`], having changed nothing, when a rule is used up: [`count`] then answers, with
    /// the deny or the shadow or paid usage that follows.
    fn count(
        &self,
        meter: &mut crate::meter::MeterState,
        catalog: &crate::catalog::Catalog,
        app: &AppEntry,
        api: &Api,
        alerts: &mut Vec<QuotaAlert>,
    ) -> Result<Least, UsedUp> {
        let n = api.quota_idx.len().min(PER_APP_RULES);
        let mut at = [0usize; PER_APP_RULES];
        for (at, &ri) in at.iter_mut().zip(&api.quota_idx) {
            *at = meter.position(u32::try_from(ri).unwrap_or(u32::MAX - 2));
        }
        let rules = meter.rules_mut();
        let mut used = [0u64; PER_APP_RULES];
        for k in 0..n {
            let (limit, window) = self.rules[k];
            used[k] = rules.get(at[k]).map_or(0, |r| r.count_in(window.start));
            if used[k] >= limit {
                return Err(UsedUp);
            }
        }
        // The rule with the least left, the first of equals (as `count` picks it).
        let mut tightest: Option<(usize, u64)> = None;
        for k in 0..n {
            let (limit, window) = self.rules[k];
            if let Some(r) = rules.get_mut(at[k]) {
                r.charge(window.start);
                r.calls = r.calls.wrapping_add(1);
            }
            let remaining = limit - used[k] - 1;
            if tightest.is_none_or(|(_, least)| remaining < least) {
                tightest = Some((k, remaining));
            }
            // Most calls are short of the first threshold: one comparison tells (inside
            // `thresholds_passed`, the same test cost 38 instructions a call more).
            if used[k] + 1 < quota::threshold(limit, 80) {
                continue;
            }
            for percent in quota::thresholds_passed(limit, used[k], used[k] + 1) {
                let rule = &catalog.quota_rules[api.quota_idx[k]];
                alerts.push(QuotaAlert {
                    app_id: app.id,
                    rule: rule.id.clone(),
                    percent,
                    limit,
                    reset_at: Timestamp(window.end),
                    scope: app.id.0.cast_unsigned(),
                    window_start: window.start,
                });
            }
        }
        Ok(tightest.map_or(Least { at: usize::MAX, remaining: 0 }, |(at, remaining)| Least { at, remaining }))
    }

    /// The quota state of the rule `least` names (none when the API has no rule).
    #[inline]
    fn state(&self, catalog: &crate::catalog::Catalog, api: &Api, least: Least) -> Option<QuotaState> {
        let &(limit, window) = self.rules.get(least.at)?;
        Some(QuotaState {
            rule: catalog.quota_rules[*api.quota_idx.get(least.at)?].static_id,
            limit,
            remaining: least.remaining,
            reset_at: Timestamp(window.end),
            paid: false,
        })
    }
}

/// The rule with the least left after a counted call: its place among the API's rules
/// (`usize::MAX`: the API has none) and what it has left. Two words, returned whole: a
/// returned quota state was copied in pieces whose loads waited on the stores that wrote it.
#[derive(Clone, Copy)]
struct Least {
    at: usize,
    remaining: u64,
}

/// A rule of the call's was used up (the short counting path then counted nothing).
struct UsedUp;

/// Counts an allowed call against its API's quota rules through `admit` (a counter's
/// [`QuotaCounter::admit`]); returns the rules it was counted against when it was admitted and
/// counted.
#[expect(clippy::too_many_arguments, reason = "one call's whole context; a struct for it would only rename these")]
fn count(
    snapshot: &Snapshot,
    app: &AppEntry,
    api: &Api,
    d: &mut Decision,
    query: &Query<'_>,
    admit: &mut dyn FnMut(&[Charge<'_>]) -> Result<Admission, CounterError>,
    now: Timestamp,
    consume: bool,
    on_failure: CounterFailure,
) -> Counted {
    let catalog = snapshot.catalog();
    let offset = catalog.utc_offset;
    // Each recipient once: a message naming one twice would otherwise be checked against its
    // count once per name and then counted as many times, past the limit.
    // (No recipients, as for every API but messages: an empty `Vec`, which allocates nothing.)
    let mut recipients = query.recipients.to_vec();
    recipients.sort_unstable();
    recipients.dedup();
    let mut charges: SmallVec<Charge<'static>, 4> = SmallVec::new();
    for &ri in &api.quota_idx {
        let rule = &catalog.quota_rules[ri];
        let window = quota::window(rule.period, now, offset);
        let limit = app.quota_limit(ri, rule.limit, now);
        let user = d.user.as_deref();
        let own = rule.scope == QuotaScope::App;
        let mut charge = |scope: u64| {
            charges.push(Charge {
                key: CounterKey { rule: u32::try_from(ri).unwrap_or(u32::MAX - 2), scope, window_start: window.start },
                rule_id: rule.static_id,
                limit,
                window_end: window.end,
                own,
            });
        };
        // App and developer scopes (the common case) need no text: their id is the scope.
        match rule.scope {
            QuotaScope::App => charge(app.id.0.cast_unsigned()),
            QuotaScope::Developer => charge(app.owner.0.cast_unsigned()),
            QuotaScope::User => {
                if let Some(u) = user {
                    charge(scope_hash(&[&app.id.to_string(), u]));
                }
            }
            QuotaScope::Recipient => {
                let app_text = app.id.to_string();
                for r in &recipients {
                    charge(scope_hash(&[&app_text, r]));
                }
            }
            QuotaScope::Pair => {
                if let Some(u) = user {
                    let app_text = app.id.to_string();
                    for r in &recipients {
                        charge(scope_hash(&[&app_text, u, r]));
                    }
                }
            }
        }
    }
    let mut counted = Counted::new();
    if charges.is_empty() {
        return counted;
    }
    // The counter reports the first charge that does not fit. A rule under paid usage goes
    // first: used up, it takes the call on as paid usage, which the free totals of all APIs do
    // not count, so a used-up total listed before it must not deny the call.
    if let Some(pe) = &app.paid {
        charges.sort_by_key(|c| !c.rule_index().is_some_and(|r| pe.rules.contains(&r)));
    }
    let mut paid = false;
    // The rules whose free limit this call is past, taken on as paid usage: their calls still
    // count under them (`daily_by_rule`), though their counters are not charged.
    let mut paid_rules: SmallVec<u32, 2> = SmallVec::new();
    // Each round either admits, denies, or moves one exhausted rule to paid usage.
    for _ in 0..=charges.len() {
        let result = admit(&charges);
        match result {
            Err(e) => {
                d.counter_error = Some(e.0.clone());
                match on_failure {
                    CounterFailure::Closed => {
                        d.allow = false;
                        d.status = 503;
                        d.code = code::INTERNAL;
                        d.msg = Some(format!("{e}; failing closed").into());
                        d.restriction = None;
                    }
                    CounterFailure::Open => d.reasons.push(format!("{e}; admitted uncounted (fail open)")),
                }
                return counted;
            }
            Ok(Admission::Admitted { remaining, passed }) => {
                let tightest = remaining.iter().enumerate().min_by_key(|(_, r)| **r).map_or(0, |(i, _)| i);
                let c = &charges[tightest];
                d.quota = Some(QuotaState {
                    rule: c.rule_id,
                    limit: c.limit,
                    remaining: remaining[tightest],
                    reset_at: Timestamp(c.window_end),
                    paid,
                });
                note(d, query.explain, || {
                    joined(&[
                        "quota: within ",
                        itoa::Buffer::new().format(api.quota_idx.len()),
                        " rule(s)",
                        if paid { ", past a free limit as paid usage" } else { "" },
                        if consume { "" } else { " (not counted)" },
                    ])
                });
                if consume {
                    alerts(d, catalog, &charges, &passed);
                    // A call once per rule, however many recipients it was charged for.
                    let rules = charges.iter().filter(|c| c.rule_index().is_some()).map(|c| c.key.rule);
                    for rule in paid_rules.iter().copied().chain(rules) {
                        if !counted.contains(&rule) {
                            counted.push(rule);
                        }
                    }
                }
                return counted;
            }
            Ok(Admission::Exhausted { index }) => {
                let c = charges[index];
                let (exhausted, window) = (c.rule_index(), c.window());
                let paid_rule = exhausted.filter(|r| app.paid.as_ref().is_some_and(|pe| pe.rules.contains(r)));
                if let Some(ri) = paid_rule {
                    let Some(pe) = &app.paid else { return counted };
                    // Paid calls are not deducted from the free totals (KAKAO.md 3.1).
                    charges
                        .as_vec()
                        .retain(|q| q.rule_index().is_none_or(|r| r != ri && !catalog.quota_rules[r].all_apis));
                    if !paid {
                        for (pseudo, cap) in [(PAID_DAY, pe.daily_cap), (PAID_MONTH, pe.monthly_cap)] {
                            let Some((rule_id, period)) = quota::counter_rule(catalog, pseudo) else { continue };
                            let window = quota::window(period, now, offset);
                            charges.push(Charge {
                                key: CounterKey {
                                    rule: pseudo,
                                    scope: app.id.0.cast_unsigned(),
                                    window_start: window.start,
                                },
                                rule_id,
                                limit: cap,
                                window_end: window.end,
                                own: true,
                            });
                        }
                    }
                    paid = true;
                    paid_rules.push(u32::try_from(ri).unwrap_or(u32::MAX - 2));
                    note(d, query.explain, || {
                        format!("quota `{}`: free limit used up; counting as paid usage", catalog.quota_rules[ri].id)
                    });
                    continue;
                }
                if let Some(ri) = exhausted.filter(|&ri| catalog.quota_rules[ri].shadow || api.shadow) {
                    let rule = &catalog.quota_rules[ri];
                    note(d, query.explain, || {
                        format!("shadow mode: quota `{}` would deny {}, allowed", rule.id, rule.error.code)
                    });
                    if d.would_deny.is_none() {
                        let shadow =
                            if rule.shadow { format!("quota_rule:{}", rule.id) } else { format!("api:{}", api.id) };
                        d.would_deny = Some(Box::new(WouldDeny {
                            status: rule.error.status,
                            code: rule.error.code,
                            msg: rule.error.msg.to_owned(),
                            permission: None,
                            rule: Some(rule.id.clone()),
                            shadow,
                        }));
                    }
                    charges.as_vec().remove(index);
                    if charges.is_empty() {
                        return counted;
                    }
                    continue;
                }
                let (status, code, msg) = match exhausted {
                    Some(ri) => {
                        let e = &catalog.quota_rules[ri].error;
                        (e.status, e.code, e.msg)
                    }
                    None if c.key.rule == PAID_DAY => (400, code::PAID_CAP, "paid usage reached the app's daily cap"),
                    None => (400, code::PAID_CAP, "paid usage reached the app's monthly cap"),
                };
                note(d, query.explain, || format!("quota `{}`: limit {} reached", c.rule_id, c.limit));
                d.allow = false;
                d.status = status;
                d.code = code;
                d.msg = Some(msg.into());
                d.restriction = None;
                d.permission = None;
                d.request_url = None;
                d.quota = Some(QuotaState {
                    rule: c.rule_id,
                    limit: c.limit,
                    remaining: 0,
                    reset_at: Timestamp(window.end),
                    paid,
                });
                d.retry_after = Some((window.end - now.0).max(1));
                return counted;
            }
        }
    }
    counted
}

/// Adds a line to the explanation, when one is wanted.
/// `parts` one after another, in a string allocated once: the reasons an allowed call gives are
/// built this way where they hold no number (`format!` cost several times as much).
fn joined(parts: &[&str]) -> String {
    let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        text.push_str(part);
    }
    text
}

fn note(d: &mut Decision, explain: bool, text: impl FnOnce() -> String) {
    if explain {
        d.reasons.push(text());
    }
}

/// Records the 80 % and 100 % crossings of app-wide rules that the counter says this call made
/// (each crossing is reported to exactly one call, in memory or across nodes).
fn alerts(d: &mut Decision, catalog: &crate::catalog::Catalog, charges: &[Charge<'_>], passed: &quota::Passed) {
    let Some(app_id) = d.app_id else { return };
    for &(index, percent) in passed.iter() {
        let Some(c) = usize::try_from(index).ok().and_then(|i| charges.get(i)) else { continue };
        let app_wide = c
            .rule_index()
            .is_none_or(|r| matches!(catalog.quota_rules[r].scope, QuotaScope::App | QuotaScope::Developer));
        if !app_wide {
            continue;
        }
        d.alerts.push(QuotaAlert {
            app_id,
            rule: c.rule_id.to_owned(),
            percent,
            limit: c.limit,
            reset_at: Timestamp(c.window_end),
            scope: c.key.scope,
            window_start: c.key.window_start,
        });
    }
}
