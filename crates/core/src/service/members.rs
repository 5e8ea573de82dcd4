//! Members: the owner adds editors and readers, changes their roles, removes them.

use serde::Deserialize;

use super::{Access, Actor, Services};
use crate::audit::NewAuditEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AccountId, AppId, Member, MemberRole};

/// `POST /v1/apps/{id}/members`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub account_id: AccountId,
    pub role: MemberRole,
}

impl Services {
    /// Adds a member or changes a member's role. Returns the member and whether it is new.
    pub fn set_member(&self, actor: &Actor, app: AppId, input: AddMember) -> ServiceResult<(Member, bool)> {
        let record = self.app_for(actor, app, Access::Own)?;
        if input.role == MemberRole::Owner {
            return Err(ServiceError::Invalid("`role` must be editor or reader; an app has exactly one owner".into()));
        }
        if input.account_id == record.app.owner {
            return Err(ServiceError::Conflict("the owner's role cannot be changed".into()));
        }
        if self.store.account(input.account_id)?.is_none() {
            return Err(ServiceError::NotFound(format!("account {} does not exist", input.account_id)));
        }
        let before = record.member_role(input.account_id);
        let audit = NewAuditEvent::new(
            self.clock.now(),
            Some(actor.account.id),
            "member.set",
            format!("account:{}", input.account_id),
        )
        .app(app)
        .before(before)
        .after(input.role);
        self.store.set_member(app, input.account_id, input.role, &audit)?;
        self.settle(app);
        Ok((Member { account_id: input.account_id, role: input.role }, before.is_none()))
    }

    pub fn remove_member(&self, actor: &Actor, app: AppId, account: AccountId) -> ServiceResult<()> {
        let record = self.app_for(actor, app, Access::Own)?;
        if account == record.app.owner {
            return Err(ServiceError::Conflict("the owner cannot be removed from the app".into()));
        }
        let Some(before) = record.member_role(account) else {
            return Err(ServiceError::NotFound(format!("account {account} is not a member of app {app}")));
        };
        let audit =
            NewAuditEvent::new(self.clock.now(), Some(actor.account.id), "member.remove", format!("account:{account}"))
                .app(app)
                .before(before);
        self.store.remove_member(app, account, &audit)?;
        self.settle(app);
        Ok(())
    }
}
