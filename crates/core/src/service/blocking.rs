//! Blocking: an operator blocks an app, or an account (which blocks every app it owns), for a
//! policy violation. Calls of a blocked app answer -12; its members can still read and manage it.
//! Unblocking restores the calls exactly as they were: grants, keys and settings are untouched.

use serde::{Deserialize, Serialize};

use super::{Access, Actor, AppView, Services, prose_text};
use crate::audit::NewAuditEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AccountId, AppId, AppStatus};

/// `POST /v1/apps/{id}/block`, `/unblock`, and the same for accounts.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockReason {
    pub reason: String,
}

/// An account after a block or unblock, with the apps that follow it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AccountBlock {
    pub account_id: AccountId,
    pub blocked: bool,
    pub owned_apps: Vec<AppId>,
}

impl Services {
    pub fn set_app_blocked(
        &self,
        actor: &Actor,
        app: AppId,
        blocked: bool,
        input: BlockReason,
    ) -> ServiceResult<AppView> {
        if !actor.is_admin() {
            return Err(ServiceError::Forbidden("only an admin may block or unblock apps".into()));
        }
        let record = self.app_for(actor, app, Access::Read)?;
        let reason = prose_text("reason", &input.reason, 1000)?;
        let (from, to) = match (record.app.status, blocked) {
            (AppStatus::Blocked, true) => return Err(ServiceError::Conflict(format!("app {app} is blocked already"))),
            // Unblocking restores exactly what was there (e.g. a suspension stays).
            (AppStatus::Blocked, false) => {
                (AppStatus::Blocked, record.app.status_before_block.unwrap_or(AppStatus::Active))
            }
            (_, false) => return Err(ServiceError::Conflict(format!("app {app} is not blocked"))),
            (status, true) => (status, AppStatus::Blocked),
        };
        let action = if blocked { "app.block" } else { "app.unblock" };
        let audit = NewAuditEvent::new(self.clock.now(), Some(actor.account.id), action, format!("app:{app}"))
            .app(app)
            .before(serde_json::json!({"status": from}))
            .after(serde_json::json!({"status": to, "reason": reason}));
        let record = self
            .store
            .set_app_status(app, to, &audit)?
            .ok_or_else(|| ServiceError::NotFound(format!("app {app} does not exist")))?;
        self.settle(app);
        Ok(self.app_view(&record, &[]))
    }

    pub fn set_account_blocked(
        &self,
        actor: &Actor,
        account: AccountId,
        blocked: bool,
        input: BlockReason,
    ) -> ServiceResult<AccountBlock> {
        if !actor.is_admin() {
            return Err(ServiceError::Forbidden("only an admin may block or unblock accounts".into()));
        }
        if account == actor.account.id {
            return Err(ServiceError::Conflict("you cannot block your own account".into()));
        }
        let reason = prose_text("reason", &input.reason, 1000)?;
        let current = self
            .store
            .account(account)?
            .ok_or_else(|| ServiceError::NotFound(format!("account {account} does not exist")))?;
        if current.blocked == blocked {
            return Err(ServiceError::Conflict(format!(
                "account {account} is {} already",
                if blocked { "blocked" } else { "not blocked" }
            )));
        }
        let action = if blocked { "account.block" } else { "account.unblock" };
        let audit = NewAuditEvent::new(self.clock.now(), Some(actor.account.id), action, format!("account:{account}"))
            .before(serde_json::json!({"blocked": current.blocked}))
            .after(serde_json::json!({"blocked": blocked, "reason": reason}));
        let owned = self
            .store
            .set_account_blocked(account, blocked, &audit)?
            .ok_or_else(|| ServiceError::NotFound(format!("account {account} does not exist")))?;
        for app in &owned {
            self.settle(*app);
        }
        Ok(AccountBlock { account_id: account, blocked, owned_apps: owned })
    }
}
