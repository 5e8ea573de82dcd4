//! `GET /v1/apps/{id}/explain?method=&path=`: every check a call of one app to one API goes
//! through, which pass and which fail, and what to do about each failure. Unlike a decision, it
//! does not stop at the first failure: a developer sees everything left to fix at once. The
//! verdict at the end is the engine's own, replayed with the app's key.

use serde::Serialize;

use super::{Access, Actor, Services};
use crate::catalog::{ApiStatus, WithoutPermission};
use crate::decision::replay;
use crate::decision_log::LoggedCall;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AppId, AppStatus, KeyKind};
use crate::route::Method;

/// One check.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Check {
    /// `route`, `credential`, `app_status`, `api_status`, `permission`, `product`, `consent_item`,
    /// `user_consent` or `quota`.
    pub check: &'static str,
    /// `pass`, `fail`, `restricted` (allowed for the app's members only), `shadow` (would fail,
    /// allowed while in shadow mode) or `info`.
    pub result: &'static str,
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The engine's verdict for the app's key, as a call would get it now.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Verdict {
    pub allow: bool,
    pub code: i32,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// The credential kind the verdict was computed for.
    pub credential: KeyKind,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Explanation {
    pub app_id: AppId,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

fn check(check: &'static str, result: &'static str, detail: String, fix: Option<String>) -> Check {
    Check { check, result, detail, fix }
}

impl Services {
    pub fn explain(&self, actor: &Actor, app: AppId, method: &str, path: &str) -> ServiceResult<Explanation> {
        self.app_for(actor, app, Access::Read)?;
        // Quota state, read before the snapshot is held (usage reads it too).
        let usage = self.usage(actor, app)?;
        let now = self.clock.now();
        let snapshot = self.snapshot.read();
        let catalog = snapshot.catalog();
        let entry = snapshot.app(app).ok_or_else(|| ServiceError::NotFound(format!("app {app} does not exist")))?;
        let mut out = Explanation {
            app_id: app,
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            api: None,
            checks: Vec::new(),
            verdict: None,
        };
        let Some(m) = Method::parse(&out.method) else {
            return Err(ServiceError::Invalid(format!("`method`: unsupported method `{method}`")));
        };
        if !path.starts_with('/') {
            return Err(ServiceError::Invalid("`path` must start with `/`".into()));
        }
        let Some(api) = catalog.route(m, path) else {
            out.checks.push(check(
                "route",
                "fail",
                format!("no API of the catalog matches {m} {}", path.split('?').next().unwrap_or(path)),
                Some("check the method and path against GET /v1/catalog".into()),
            ));
            return Ok(out);
        };
        out.api = Some(api.id.clone());
        let checks = &mut out.checks;
        checks.push(check("route", "pass", format!("{m} {} is API `{}` ({})", api.path, api.id, api.name), None));

        // The credential: a key of a kind the API accepts.
        let accepted: Vec<&str> = api.key_kinds.iter().map(|k| k.as_str()).collect();
        let key = entry.keys.iter().find(|k| api.key_kinds.contains(&k.kind));
        let kind =
            key.map(|k| k.kind).or_else(|| api.key_kinds.contains(&KeyKind::UserToken).then_some(KeyKind::UserToken));
        match (key, kind) {
            (Some(k), _) => checks.push(check(
                "credential",
                "pass",
                format!("the app's {} key #{} is accepted (the API takes: {})", k.kind, k.id, accepted.join(", ")),
                None,
            )),
            (None, Some(_)) => checks.push(check(
                "credential",
                "pass",
                "the API takes user tokens (Authorization: Bearer) issued for the app".into(),
                None,
            )),
            (None, None) => checks.push(check(
                "credential",
                "fail",
                format!("the API accepts {} and the app has no such key", accepted.join(", ")),
                Some(format!("add one with POST /v1/apps/{app}/keys")),
            )),
        }

        match (entry.owner_blocked, entry.status) {
            (true, _) => checks.push(check(
                "app_status",
                "fail",
                "the app's owner account is blocked (-12)".into(),
                Some("the operator must unblock the account".into()),
            )),
            (false, AppStatus::Blocked) => checks.push(check(
                "app_status",
                "fail",
                "the app is blocked (-12)".into(),
                Some("the operator must unblock it; the audit trail says why it was blocked".into()),
            )),
            (false, AppStatus::Suspended) => checks.push(check(
                "app_status",
                "fail",
                "the app is suspended for inactivity (-13)".into(),
                Some(format!("the owner reactivates it with POST /v1/apps/{app}/reactivate")),
            )),
            (false, AppStatus::Active) => checks.push(check("app_status", "pass", "the app is active".into(), None)),
        }
        match api.status {
            ApiStatus::Active => checks.push(check("api_status", "pass", "the API is active".into(), None)),
            ApiStatus::Maintenance => checks.push(check(
                "api_status",
                "fail",
                "the API is under maintenance (-7)".into(),
                Some("wait until the operator ends the maintenance".into()),
            )),
            ApiStatus::Terminated => checks.push(check(
                "api_status",
                "fail",
                "the API is terminated (-9)".into(),
                Some("move to its successor; it will not come back".into()),
            )),
        }

        for &p in &api.permission_idx {
            let permission = &catalog.permissions[p];
            let apply = format!("apply for `{}` with POST /v1/apps/{app}/permission-requests", permission.id);
            if entry.holds(p, key.map(|k| k.id), now) {
                checks.push(check("permission", "pass", format!("the app holds `{}`", permission.id), None));
            } else if api.without_permission == WithoutPermission::MembersOnly {
                checks.push(check(
                    "permission",
                    "restricted",
                    format!("the app lacks `{}`: calls work for the app's members only", permission.id),
                    Some(apply),
                ));
            } else if permission.shadow {
                checks.push(check(
                    "permission",
                    "shadow",
                    format!("the app lacks `{}`: -5 once enforced; allowed now (shadow mode)", permission.id),
                    Some(apply),
                ));
            } else {
                checks.push(check(
                    "permission",
                    "fail",
                    format!("the app lacks `{}` (-5)", permission.id),
                    Some(apply),
                ));
            }
        }
        if let Some(original) = entry.original {
            checks.push(check(
                "permission",
                "restricted",
                format!("a test app of app {original}: calls work for the original's members only"),
                None,
            ));
        }

        let product = &catalog.products[api.product_idx];
        if entry.products_active.contains(api.product_idx) {
            checks.push(check("product", "pass", format!("product `{}` is activated", product.id), None));
        } else {
            checks.push(check(
                "product",
                "fail",
                format!("product `{}` is not activated (-3)", product.id),
                Some(format!("PUT /v1/apps/{app}/products/{} {{\"activated\": true}}", product.id)),
            ));
        }
        for &c in &api.consent_idx {
            let scope = &catalog.consent_items[c].id;
            if entry.consent_set.contains(c) {
                checks.push(check("consent_item", "pass", format!("consent item `{scope}` is set"), None));
            } else {
                checks.push(check("consent_item", "fail", format!("consent item `{scope}` is not set (-3)"), Some(format!("PUT /v1/apps/{app}/consent-items/{scope} {{\"consent_type\": \"optional\", \"purpose\": \"…\"}}"))));
            }
        }
        if !api.consent_items.is_empty() && api.key_kinds.contains(&KeyKind::UserToken) {
            checks.push(check(
                "user_consent",
                "info",
                format!("each user's token must carry consent to: {} (else -402)", api.consent_items.join(", ")),
                None,
            ));
        }

        for &q in &api.quota_idx {
            let rule = &catalog.quota_rules[q];
            match usage.rules.iter().find(|r| r.rule == rule.id) {
                Some(u) if u.remaining == 0 => checks.push(check(
                    "quota",
                    "fail",
                    format!("`{}`: {} of {} used ({} until it resets)", rule.id, u.used, u.limit, rule.error.code),
                    Some(format!("wait until {}, or apply for more quota", u.reset_at.to_rfc3339())),
                )),
                Some(u) => checks.push(check(
                    "quota",
                    "pass",
                    format!("`{}`: {} of {} used; resets {}", rule.id, u.used, u.limit, u.reset_at.to_rfc3339()),
                    None,
                )),
                None => checks.push(check(
                    "quota",
                    "info",
                    format!(
                        "`{}` counts per {:?} ({} per {:?}), so it depends on the call",
                        rule.id, rule.scope, rule.limit, rule.period
                    )
                    .to_lowercase(),
                    None,
                )),
            }
        }

        if let Some(kind) = kind {
            let call = LoggedCall {
                app_id: app,
                key_kind: kind,
                key_id: key.map(|k| k.id),
                scopes: api.consent_items.join(" "),
                method: out.method.clone(),
                path: path.to_owned(),
                api: api.id.clone(),
                code: 0,
                would_code: 0,
                shadow: String::new(),
                calls: 0,
                last_at: now.0,
            };
            let d = replay(&snapshot, &call, now);
            // Replaying does not count: an exhausted app-wide rule is applied here, as a call would.
            // A rule paid usage covers lets calls go on as paid.
            let paid = |q: usize| entry.paid.as_ref().is_some_and(|p| p.rules.contains(&q));
            let used_up =
                |q: usize| usage.rules.iter().any(|u| u.rule == catalog.quota_rules[q].id && u.remaining == 0);
            // A call past a paid rule's free limit is paid usage, which the totals of all APIs
            // do not count.
            let goes_paid = api.quota_idx.iter().any(|&q| paid(q) && used_up(q));
            let exhausted = api
                .quota_idx
                .iter()
                .filter(|&&q| !(paid(q) || goes_paid && catalog.quota_rules[q].all_apis))
                .find(|&&q| !catalog.quota_rules[q].shadow && !api.shadow && used_up(q))
                .map(|&q| &catalog.quota_rules[q]);
            out.verdict = Some(if let (true, Some(rule)) = (d.allow, exhausted) {
                Verdict {
                    allow: false,
                    code: rule.error.code,
                    status: rule.error.status,
                    msg: Some(rule.error.msg.to_owned()),
                    credential: kind,
                }
            } else {
                Verdict {
                    allow: d.allow,
                    code: d.code,
                    status: d.status,
                    msg: d.msg.map(std::borrow::Cow::into_owned),
                    credential: kind,
                }
            });
        }
        // Checks of an API in shadow mode fail only once it is enforced.
        if api.shadow {
            for c in out.checks.iter_mut().filter(|c| c.result == "fail") {
                c.result = "shadow";
            }
        }
        for c in out.checks.iter_mut().filter(|c| c.check == "quota" && c.result == "fail") {
            if catalog.quota_rules.iter().any(|r| r.shadow && c.detail.starts_with(&format!("`{}`", r.id))) {
                c.result = "shadow";
            }
        }
        Ok(out)
    }
}
