//! The decision: a pure function from a snapshot, a call and the time to a verdict with its stable
//! Kakao code and the reasons. `/v1/check`, `/v1/authz`, the gateway, `permgate check` and library
//! users all call [`decide`]. Checks run in SPEC 3.1's order and the first failure wins:
//! route → -401 (credential) → -12/-13 (app status) → -9/-7 (API status) → -5 (permission, or a
//! members-only restriction) → -3 (configuration).

use serde::Serialize;

use crate::catalog::{Api, ApiStatus, WithoutPermission};
use crate::credential::{self, Credential, NativeOrigin};
use crate::model::{AppId, AppStatus, KeyId, KeyKind};
use crate::route::Method;
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
    pub const NO_SUCH_API: i32 = -404;
}

/// How an allowed call is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allow: bool,
    /// The HTTP status a denied call gets (200 when allowed).
    pub status: u16,
    /// 0 when allowed, else the Kakao error code.
    pub code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<AppId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// The permission that was missing (deny) or that restricted the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    /// Where to apply for the missing permission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restriction: Option<Restriction>,
    /// The user behind a user token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every check that ran, in order.
    pub reasons: Vec<String>,
}

impl Decision {
    fn deny(status: u16, code: i32, msg: impl Into<String>, reasons: Vec<String>) -> Decision {
        Decision {
            allow: false,
            status,
            code,
            msg: Some(msg.into()),
            app_id: None,
            api: None,
            permission: None,
            request_url: None,
            restriction: None,
            user: None,
            reasons,
        }
    }

    /// The Kakao-compatible error body a denied call answers with: `{"msg", "code", ...}`.
    pub fn error_body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "msg": self.msg.as_deref().unwrap_or(""),
            "code": self.code,
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(p) = &self.permission {
                map.insert("permission".into(), p.as_str().into());
            }
            if let Some(u) = &self.request_url {
                map.insert("request_url".into(), u.as_str().into());
            }
        }
        body
    }
}

/// The message of -5, exactly as Kakao sends it.
pub const PERMISSION_DENIED_MSG: &str = "permission denied";

/// Decides one call. Pure: reads only its arguments.
pub fn decide(snapshot: &Snapshot, query: &Query<'_>, now: Timestamp) -> Decision {
    let mut reasons = Vec::new();
    let catalog = snapshot.catalog();

    let Some(method) = Method::parse(query.method) else {
        return Decision::deny(400, code::MALFORMED, format!("unsupported method `{}`", query.method), reasons);
    };
    if !query.path.starts_with('/') {
        return Decision::deny(400, code::MALFORMED, "path must start with `/`", reasons);
    }
    let Some(api) = catalog.route(method, query.path) else {
        let path = query.path.split('?').next().unwrap_or(query.path);
        return Decision::deny(404, code::NO_SUCH_API, format!("no API matches {method} {path}"), reasons);
    };
    reasons.push(format!("route: {method} {} is api `{}` of product `{}`", api.path, api.id, api.product));

    let mut verdict = Verdict { reasons, api, app: None, user: None };
    let caller = match identify(snapshot, query, api, now, &mut verdict.reasons) {
        Ok(caller) => caller,
        Err(msg) => return verdict.deny(401, code::UNAUTHENTICATED, msg),
    };
    let app = caller.app;
    verdict.app = Some(app.id);
    verdict.user = caller.user;

    if app.owner_blocked {
        return verdict.deny(403, code::BLOCKED, "the app's owner account is blocked");
    }
    match app.status {
        AppStatus::Active => verdict.reasons.push("app status: active".into()),
        AppStatus::Blocked => return verdict.deny(403, code::BLOCKED, "the app is blocked"),
        AppStatus::Suspended => {
            return verdict.deny(403, code::SUSPENDED, "the app is suspended for inactivity");
        }
    }

    match api.status {
        ApiStatus::Active => {}
        ApiStatus::Maintenance => {
            return verdict.deny(400, code::MAINTENANCE, format!("API `{}` is under maintenance", api.id));
        }
        ApiStatus::Terminated => {
            return verdict.deny(400, code::TERMINATED, format!("API `{}` is terminated", api.id));
        }
    }

    let mut restriction = None;
    let mut restricted_by = None;
    for &p in &api.permission_idx {
        let permission = &catalog.permissions[p].id;
        if app.holds(p, caller.key, now) {
            verdict.reasons.push(format!("permission `{permission}`: held"));
            continue;
        }
        match api.without_permission {
            WithoutPermission::MembersOnly => {
                verdict
                    .reasons
                    .push(format!("permission `{permission}`: not held; allowed for the app's members only"));
                restriction = Some(Restriction::MembersOnly);
                restricted_by.get_or_insert_with(|| permission.clone());
            }
            WithoutPermission::Deny => {
                verdict.reasons.push(format!("permission `{permission}`: not held"));
                let mut d = verdict.deny(403, code::PERMISSION_DENIED, PERMISSION_DENIED_MSG);
                d.permission = Some(permission.clone());
                d.request_url = Some(format!("/v1/apps/{}/permission-requests", app.id));
                return d;
            }
        }
    }

    let product = &catalog.products[api.product_idx];
    if !app.products_active.get(api.product_idx).copied().unwrap_or(false) {
        return verdict.deny(
            403,
            code::NOT_CONFIGURED,
            format!(
                "product `{}` is not activated for this app; activate it with PUT /v1/apps/{}/products/{}",
                product.id, app.id, product.id
            ),
        );
    }
    verdict.reasons.push(format!("product `{}`: activated", product.id));

    if caller.kind == KeyKind::Admin
        && let Some(categories) = caller.key.and_then(|k| app.key(k)).and_then(|k| k.platforms.api_categories.as_ref())
        && !categories.contains(&api.category)
    {
        return verdict.deny(
            403,
            code::NOT_CONFIGURED,
            format!("this admin key's available APIs exclude category `{}`", api.category),
        );
    }

    let mut d = Decision {
        allow: true,
        status: 200,
        code: code::ALLOWED,
        msg: None,
        app_id: Some(app.id),
        api: Some(api.id.clone()),
        permission: restricted_by,
        request_url: None,
        restriction,
        user: verdict.user,
        reasons: verdict.reasons,
    };
    if d.restriction.is_some() {
        d.request_url = Some(format!("/v1/apps/{}/permission-requests", app.id));
    }
    d
}

struct Verdict<'a> {
    reasons: Vec<String>,
    api: &'a Api,
    app: Option<AppId>,
    user: Option<String>,
}

impl Verdict<'_> {
    fn deny(self, status: u16, code: i32, msg: impl Into<String>) -> Decision {
        let mut d = Decision::deny(status, code, msg, self.reasons);
        d.app_id = self.app;
        d.api = Some(self.api.id.clone());
        d.user = self.user;
        d
    }
}

struct Caller<'s> {
    app: &'s AppEntry,
    kind: KeyKind,
    key: Option<KeyId>,
    user: Option<String>,
}

/// Resolves the credential to an app, checking the key kind and the key's platform data.
fn identify<'s>(
    snapshot: &'s Snapshot,
    query: &Query<'_>,
    api: &Api,
    now: Timestamp,
    reasons: &mut Vec<String>,
) -> Result<Caller<'s>, String> {
    let credential = credential::parse_authorization(query.authorization).map_err(|e| e.to_string())?;
    let caller = match credential {
        Credential::AppKey(presented) => {
            let (app, key) = snapshot
                .find_key(presented)
                .ok_or_else(|| "unknown app key: it was never issued, or was deleted or rotated".to_owned())?;
            Caller { app, kind: key.kind, key: Some(key.id), user: None }
        }
        Credential::UserToken(token) => {
            let claims = snapshot.verifier.verify(token, now).map_err(|e| e.to_string())?;
            let app = snapshot
                .app(claims.app_id)
                .ok_or_else(|| format!("the user token names app {}, which does not exist", claims.app_id))?;
            Caller { app, kind: KeyKind::UserToken, key: None, user: Some(claims.sub) }
        }
    };
    if !api.key_kinds.contains(&caller.kind) {
        let accepted: Vec<&str> = api.key_kinds.iter().map(|k| k.as_str()).collect();
        return Err(format!(
            "API `{}` does not accept a {} credential; it accepts: {}",
            api.id,
            caller.kind,
            accepted.join(", ")
        ));
    }
    let key = caller.key.and_then(|k| caller.app.key(k));
    match (caller.kind, key) {
        (KeyKind::Javascript, Some(key)) => {
            let origin = query.origin.unwrap_or("");
            if !key.platforms.origins.iter().any(|o| credential::origin_matches(o, origin)) {
                return Err(format!("domain mismatched! caller={origin}"));
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
    reasons.push(match (&caller.user, caller.key) {
        (Some(user), _) => format!("credential: user token of `{user}` for app {}", caller.app.id),
        (None, Some(key)) => format!("credential: {} key #{key} of app {}", caller.kind, caller.app.id),
        (None, None) => format!("credential: app {}", caller.app.id),
    });
    Ok(caller)
}
