//! Accounts: create (admin), authenticate a bearer token, and the bootstrap admin.

use serde::{Deserialize, Serialize};

use super::{Actor, Services, required_text};
use crate::audit::NewAuditEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{Account, AccountId, Role};
use crate::ports::NewAccount;
use crate::secret;

/// `POST /v1/accounts`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub name: String,
    pub role: Role,
    /// Where review results of the account's apps are e-mailed.
    #[serde(default)]
    pub email: Option<String>,
}

/// The created account with its token, shown this once.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CreatedAccount {
    #[serde(flatten)]
    pub account: Account,
    pub token: String,
}

/// What the bootstrap did at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// `PERMGATE_ADMIN_TOKEN` is set; the `admin` account uses it.
    FromConfiguration(AccountId),
    /// No admin existed: one was created and this token must be printed once.
    Created { id: AccountId, token: String },
    /// An admin exists already; nothing to do.
    AlreadyThere,
}

/// The name of the account the bootstrap creates or maintains.
pub const BOOTSTRAP_ADMIN: &str = "admin";

impl Services {
    pub fn create_account(&self, actor: &Actor, input: CreateAccount) -> ServiceResult<CreatedAccount> {
        if !actor.is_admin() {
            return Err(ServiceError::Forbidden("only an admin may create accounts".into()));
        }
        let name = required_text("name", &input.name, 100)?;
        let email = input.email.as_deref().map(email_address).transpose()?;
        let token = secret::new_account_token()?;
        let now = self.clock.now();
        let audit = NewAuditEvent::new(now, Some(actor.account.id), "account.create", format!("account:{name}"))
            .after(serde_json::json!({"name": name, "role": input.role, "email": email}));
        let new = NewAccount { name, role: input.role, email, token_hash: secret::hash(&token) };
        let account = self.store.create_account(&new, now, &audit)?;
        Ok(CreatedAccount { account, token })
    }

    pub fn accounts(&self, actor: &Actor) -> ServiceResult<Vec<Account>> {
        if !actor.is_admin() {
            return Err(ServiceError::Forbidden("only an admin may list accounts".into()));
        }
        Ok(self.store.accounts()?)
    }

    /// Resolves a bearer token to its account, comparing hashes in constant time.
    pub fn authenticate(&self, token: Option<&str>) -> ServiceResult<Actor> {
        let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| {
            ServiceError::Unauthenticated("sign in: send `Authorization: Bearer <account token>`".into())
        })?;
        let presented = secret::hash(token);
        let bad = || ServiceError::Unauthenticated("the account token is not valid".into());
        let (account, stored) = self.store.account_by_token_hash(&presented)?.ok_or_else(bad)?;
        if !secret::hashes_equal(&stored, &presented) {
            return Err(bad());
        }
        if account.blocked {
            return Err(ServiceError::Forbidden(format!("account {} is blocked", account.id)));
        }
        Ok(Actor { account })
    }

    /// Makes sure an admin can sign in: with the configured token, or by creating one.
    pub fn bootstrap_admin(&self, configured_token: Option<&str>) -> ServiceResult<BootstrapOutcome> {
        let now = self.clock.now();
        let audit = NewAuditEvent::new(now, None, "account.bootstrap", format!("account:{BOOTSTRAP_ADMIN}"));
        if let Some(token) = configured_token {
            if token.trim().len() < 16 {
                return Err(ServiceError::Invalid(
                    "PERMGATE_ADMIN_TOKEN must be at least 16 characters; generate one with `openssl rand -hex 24`"
                        .into(),
                ));
            }
            let hash = secret::hash(token.trim());
            if let Some((account, _)) = self.store.account_by_token_hash(&hash)?
                && account.role == Role::Admin
            {
                return Ok(BootstrapOutcome::FromConfiguration(account.id));
            }
            let account = self.store.upsert_admin(BOOTSTRAP_ADMIN, &hash, now, &audit)?;
            return Ok(BootstrapOutcome::FromConfiguration(account.id));
        }
        if self.store.count_admins()? > 0 {
            return Ok(BootstrapOutcome::AlreadyThere);
        }
        let token = secret::new_account_token()?;
        let account = self.store.upsert_admin(BOOTSTRAP_ADMIN, &secret::hash(&token), now, &audit)?;
        Ok(BootstrapOutcome::Created { id: account.id, token })
    }
}

/// A plausible e-mail address (one `@`, a dotted domain, no spaces), trimmed.
fn email_address(text: &str) -> ServiceResult<String> {
    let text = text.trim();
    let ok = text.len() <= 254
        && text.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !text.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(ServiceError::Invalid(format!("`email`: `{text}` is not an e-mail address")))
    }
}
