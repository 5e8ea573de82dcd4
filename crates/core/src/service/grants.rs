//! Grants: operator grants and revocations, and the list of permissions an app holds. A change is
//! patched into the snapshot before the call returns, so the next decision enforces it.

use serde::{Deserialize, Serialize};

use super::{Access, Actor, Services, prose_text};
use crate::audit::NewAuditEvent;
use crate::catalog::{ObtainedBy, Permission};
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AccountId, AppId, Grant, GrantSource, KeyId};
use crate::ports::{Cascade, GrantOf, NewGrant};
use crate::time::Timestamp;

/// `POST /v1/apps/{id}/permissions`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantPermission {
    pub permission: String,
    pub reason: String,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub params: Option<serde_json::Value>,
    /// Binds the grant to one key of the app (e.g. `multi_app` on one native key).
    #[serde(default)]
    pub key_id: Option<KeyId>,
}

/// `DELETE /v1/apps/{id}/permissions/{permission}`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokePermission {
    pub reason: String,
    /// The key the grant is bound to, for a grant made for one key; the app-wide grant when
    /// absent.
    #[serde(default)]
    pub key_id: Option<KeyId>,
    /// For a permission held for several quota rules (`increased_quota`): the rule whose grant to
    /// revoke; every rule's when absent.
    #[serde(default)]
    pub rule: Option<String>,
}

/// A permission an app holds, as `GET /v1/apps/{id}/permissions` shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HeldPermission {
    pub permission: String,
    pub source: GrantSource,
    pub granted_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub params: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<KeyId>,
    pub granted_by: Option<AccountId>,
    pub reason: String,
}

impl From<&Grant> for HeldPermission {
    fn from(g: &Grant) -> Self {
        HeldPermission {
            permission: g.permission.clone(),
            source: g.source,
            granted_at: g.granted_at,
            expires_at: g.expires_at,
            params: g.params.clone(),
            key_id: g.key_id,
            granted_by: g.granted_by,
            reason: g.reason.clone(),
        }
    }
}

impl Services {
    /// The quota rule a grant of `permission` raises: `rule` as named in `field`, or the
    /// permission's only rule when none is named; refused when the catalog lacks it or the
    /// permission does not raise it.
    pub(super) fn raised_rule(
        &self,
        permission: &Permission,
        rule: Option<&str>,
        field: &str,
    ) -> ServiceResult<String> {
        let allowed = &permission.raises_quota_rules;
        let Some(r) = rule else {
            return match allowed.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(ServiceError::Invalid(format!(
                    "`{field}`: `{}` raises the quota rule you name (see GET /v1/catalog), e.g. `local_keyword_search_daily`",
                    permission.id
                ))),
            };
        };
        let may = match self.snapshot.read().catalog().quota_rule(r) {
            None => return Err(ServiceError::Invalid(format!("`{field}`: the catalog has no quota rule `{r}`"))),
            Some(rule) => permission.may_raise(rule),
        };
        match (may, allowed.is_empty()) {
            (true, _) => Ok(r.to_owned()),
            (false, true) => Err(ServiceError::Invalid(format!(
                "`{field}`: `{r}` cannot be raised: only an app's own quota of some APIs can (not a limit per developer, user, recipient or sender-recipient pair, the monthly total of all APIs, or a rule the catalog keeps fixed, such as the message API's)"
            ))),
            (false, false) => Err(ServiceError::Invalid(format!(
                "`{field}`: `{}` raises only {}, not `{r}`",
                permission.id,
                allowed.join(", ")
            ))),
        }
    }

    pub fn permissions(&self, actor: &Actor, app: AppId) -> ServiceResult<Vec<HeldPermission>> {
        let record = self.app_for(actor, app, Access::Read)?;
        let now = self.clock.now();
        Ok(record.grants.iter().filter(|g| g.is_active(now)).map(HeldPermission::from).collect())
    }

    pub fn grant_permission(&self, actor: &Actor, app: AppId, input: GrantPermission) -> ServiceResult<HeldPermission> {
        if !actor.is_admin() {
            return Err(ServiceError::Forbidden("only an admin may grant permissions by hand".into()));
        }
        let record = self.app_for(actor, app, Access::Read)?;
        let reason = prose_text("reason", &input.reason, 1000)?;
        let now = self.clock.now();
        let permission = {
            let snapshot = self.snapshot.read();
            let p = snapshot.catalog().permission(&input.permission).ok_or_else(|| {
                ServiceError::Invalid(format!("`permission`: the catalog has no permission `{}`", input.permission))
            })?;
            if p.obtained_by == ObtainedBy::AppType {
                return Err(ServiceError::Invalid(format!(
                    "`{}` comes with the app's type and cannot be granted by hand",
                    p.id
                )));
            }
            if p.test_only && record.app.original.is_none() {
                return Err(ServiceError::Invalid(format!("`{}` is for test apps only", p.id)));
            }
            if p.retired {
                return Err(ServiceError::Conflict(format!(
                    "`{}` is retired: existing grants keep working, new ones are refused",
                    p.id
                )));
            }
            p.clone()
        };
        if let Some(at) = input.expires_at
            && at <= now
        {
            return Err(ServiceError::Invalid(format!("`expires_at` ({at}) is not in the future")));
        }
        let params = match input.params {
            None | Some(serde_json::Value::Null) => serde_json::json!({}),
            Some(v @ serde_json::Value::Object(_)) => v,
            Some(_) => return Err(ServiceError::Invalid("`params` must be a JSON object".into())),
        };
        if permission.grants_quota {
            let limit = params.get("limit").and_then(serde_json::Value::as_u64).filter(|l| *l > 0);
            if limit.is_none() {
                return Err(ServiceError::Invalid(format!(
                    "`{}` raises a quota: `params.limit` must be a positive integer, e.g. {{\"limit\": 100000}}",
                    permission.id
                )));
            }
            let rule = params.get("rule").map(|r| r.as_str().unwrap_or(""));
            self.raised_rule(&permission, rule, "params.rule")?;
        } else if params.get("rule").is_some() {
            return Err(ServiceError::Invalid(format!("`params.rule`: `{}` does not raise a quota", permission.id)));
        }
        if let Some(key) = input.key_id
            && !record.keys.iter().any(|k| k.id == key)
        {
            return Err(ServiceError::NotFound(format!("app {app} has no key {key}")));
        }
        let new = NewGrant {
            app_id: app,
            permission: permission.id.clone(),
            key_id: input.key_id,
            source: GrantSource::Operator,
            granted_by: Some(actor.account.id),
            expires_at: input.expires_at.or_else(|| Self::default_expiry(&permission, now)),
            params,
            reason,
        };
        // A quota grant's rule (`params.rule`): only quota permissions carry one (checked above).
        // The store checks again in its transaction; this answers without writing.
        let rule = new.params.get("rule").and_then(serde_json::Value::as_str);
        let already = record
            .grants
            .iter()
            .any(|g| g.same_holding(&new.permission, rule) && g.key_id == new.key_id && g.is_active(now));
        if already {
            return Err(new.held_already().into());
        }
        let audit =
            NewAuditEvent::new(now, Some(actor.account.id), "grant.create", format!("permission:{}", new.permission))
                .app(app)
                .after(serde_json::json!({
                    "permission": new.permission, "source": new.source, "expires_at": new.expires_at,
                    "params": new.params, "key_id": new.key_id, "reason": new.reason,
                }));
        let grant = self.store.insert_grant(&new, now, &audit)?;
        self.settle(app);
        Ok(HeldPermission::from(&grant))
    }

    pub fn revoke_permission(
        &self,
        actor: &Actor,
        app: AppId,
        permission: &str,
        input: RevokePermission,
    ) -> ServiceResult<HeldPermission> {
        if !actor.is_staff() {
            return Err(ServiceError::Forbidden("only a reviewer or an admin may revoke permissions".into()));
        }
        let record = self.app_for(actor, app, Access::Read)?;
        let reason = prose_text("reason", &input.reason, 1000)?;
        let now = self.clock.now();
        // A rule is named only for a permission held once per rule; its one rule, for a
        // permission that raises one, names the permission's only holding.
        let rule = match (input.rule.as_deref(), self.snapshot.read().catalog().permission(permission)) {
            (Some(r), Some(p)) if !p.grants_quota => {
                return Err(ServiceError::Invalid(format!("`rule`: `{}` does not raise a quota ({r})", p.id)));
            }
            (Some(r), Some(p)) if !p.names_its_rule() => {
                if p.raises_quota_rules.iter().all(|only| only != r) {
                    return Err(ServiceError::Invalid(format!(
                        "`rule`: `{}` raises only {}, not `{r}`",
                        p.id,
                        p.raises_quota_rules.join(", ")
                    )));
                }
                None
            }
            (rule, _) => rule,
        };
        // Every holding the revocation ends, the newest first, as the store answers. A grant
        // that has ended is held no more (the list of holdings does not show it either).
        let holdings: Vec<&Grant> = record
            .grants
            .iter()
            .rev()
            .filter(|g| {
                g.permission == permission
                    && g.key_id == input.key_id
                    && rule.is_none_or(|r| g.raised_rule() == Some(r))
                    && g.is_active(now)
            })
            .collect();
        let not_held = || {
            let whose = match input.key_id {
                None => "app-wide".to_owned(),
                Some(key) => format!("for key #{key}"),
            };
            let rule = rule.map(|r| format!(" raising `{r}`")).unwrap_or_default();
            ServiceError::NotFound(format!("app {app} does not hold `{permission}`{rule} {whose}"))
        };
        // The audit event shows the holding it ends, or each of them (a permission held once per
        // quota rule, revoked without naming one).
        let before = match holdings.as_slice() {
            [] => return Err(not_held()),
            [one] => serde_json::json!(HeldPermission::from(*one)),
            many => serde_json::json!(many.iter().map(|g| HeldPermission::from(*g)).collect::<Vec<_>>()),
        };
        let audit = NewAuditEvent::new(now, Some(actor.account.id), "grant.revoke", format!("permission:{permission}"))
            .app(app)
            .before(before)
            .after(serde_json::json!({"revoked_at": now, "reason": reason}));
        // What needed the permission goes with it, if the app holds it app-wide no more.
        let what = format!("revoking `{permission}`");
        let (revoke, unset, messages) = match input.key_id {
            None => self.losing(&record, &[permission], &[], &what)?,
            Some(_) => Default::default(),
        };
        let cascade = Cascade { revoke: &revoke, unset: &unset, messages: &messages };
        let revoked = self
            .store
            .revoke_grant(
                app,
                GrantOf { permission, key: input.key_id, rule },
                cascade,
                actor.account.id,
                &reason,
                now,
                &audit,
            )?
            .ok_or_else(not_held)?;
        self.settle(app);
        Ok(HeldPermission::from(&revoked))
    }
}
