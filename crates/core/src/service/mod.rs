//! Use cases, one file each, all the same shape: an input type parsed at the edge, a method on
//! [`Services`] that checks the caller's role, writes through the store (with its audit event),
//! and patches the decision snapshot so the next call sees the change.

mod accounts;
mod activity;
mod apps;
mod blocking;
mod catalog;
mod explain;
mod grants;
mod keys;
mod lifecycle;
mod members;
mod paid;
mod products;
mod quotas;
mod requests;
mod settings;
mod sync;

use std::sync::{Arc, Mutex};

pub use accounts::{BootstrapOutcome, CreateAccount, CreatedAccount};
pub use apps::{AppView, CreateApp, KeyView};
pub use blocking::{AccountBlock, BlockReason};
pub use catalog::{CatalogPreview, ChangedDecision, Outcome, Reloaded, ShadowReport, ShadowSubject};
pub use explain::{Check, Explanation, Verdict};
pub use grants::{GrantPermission, HeldPermission, RevokePermission};
pub use keys::{AddKey, SetPlatforms};
pub use lifecycle::{LifecycleRun, RENEW_WITHIN_DAYS, ReapPolicy};
pub use members::AddMember;
pub use paid::SetPaidUsage;
pub use products::{ProductState, SetProduct};
pub use quotas::{RuleUsage, Usage};
pub use requests::{
    ActOnRequest, Apply, ListRequests, MAX_EVIDENCE_BYTES, MAX_PAGE, RequestPage, Upload, evidence_type,
};
pub use settings::{
    CHANNEL_PERMISSION, ConnectChannel, ELIGIBILITY_TERMS, EligibilityView, IndividualBiz, RemoveBusiness, SetBusiness,
    SetConsentItem, business_registration_number,
};

use crate::decision::{CounterFailure, QuotaAlert};
use crate::error::{ServiceError, ServiceResult};
use crate::model::{Account, AppId, AppRecord, MemberRole, Role};
use crate::notify::{Channel, NewMessage, NotifySettings};
use crate::ports::Store;
use crate::quota::{MemoryCounter, QuotaCounter};
use crate::snapshot::SharedSnapshot;
use crate::time::Clock;

/// The authenticated caller of a management call.
#[derive(Debug, Clone)]
pub struct Actor {
    pub account: Account,
}

impl Actor {
    pub fn role(&self) -> Role {
        self.account.role
    }

    pub fn is_admin(&self) -> bool {
        self.account.role == Role::Admin
    }

    pub fn is_staff(&self) -> bool {
        matches!(self.account.role, Role::Admin | Role::Reviewer)
    }
}

/// What an actor may do with one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    /// Read-only: readers, reviewers, admins who are not members.
    Read,
    /// Owner or editor: change settings.
    Edit,
    /// Owner: keys, members, Biz, deletion.
    Own,
}

/// The use cases, over one store, one snapshot, one clock and one quota counter.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub snapshot: Arc<SharedSnapshot>,
    pub clock: Arc<dyn Clock>,
    /// Counts quota: in memory (`memory` is then the same counter), or shared in Redis.
    pub counter: Arc<dyn QuotaCounter>,
    /// The in-memory counter whose counts this node saves to the store, when counting locally.
    pub memory: Option<Arc<MemoryCounter>>,
    pub on_counter_failure: CounterFailure,
    /// Quota alerts waiting to be recorded.
    pub alerts: Arc<Mutex<Vec<QuotaAlert>>>,
    /// Where request transitions are notified.
    pub notify: NotifySettings,
    /// Calls decided since the decision log was last saved.
    pub decision_log: Arc<crate::decision_log::DecisionLog>,
    /// Held for the whole of a catalog reload: two at once (the file watcher and the API) would
    /// each map the quota rules from the catalog they started from, and the second would renumber
    /// the counts of the first's catalog again.
    pub(crate) reloading: Arc<Mutex<()>>,
    /// Held from reading an app from the store until its entry is patched into the snapshot (by
    /// a write's refresh, the change sync, and a catalog reload from reading every app until the
    /// new snapshot is in place): patches then go in the order of their reads, and an older copy
    /// of an app can never replace a newer one (a revoke undone until the app next changed).
    pub(crate) patching: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").field("store", &self.store.backend()).finish_non_exhaustive()
    }
}

impl Services {
    /// Services counting quota in this process's memory.
    pub fn new(store: Arc<dyn Store>, snapshot: Arc<SharedSnapshot>, clock: Arc<dyn Clock>) -> Self {
        let memory = Arc::new(MemoryCounter::new());
        Services {
            store,
            snapshot,
            clock,
            counter: memory.clone(),
            memory: Some(memory),
            on_counter_failure: CounterFailure::Closed,
            alerts: Arc::new(Mutex::new(Vec::new())),
            notify: NotifySettings::default(),
            decision_log: Arc::default(),
            reloading: Arc::default(),
            patching: Arc::default(),
        }
    }

    /// Notifies request transitions by e-mail and/or webhook.
    pub fn with_notifications(mut self, notify: NotifySettings) -> Self {
        self.notify = notify;
        self
    }

    /// Counts quota with `counter` (shared between nodes) instead of in memory.
    pub fn with_shared_counter(mut self, counter: Arc<dyn QuotaCounter>, on_failure: CounterFailure) -> Self {
        self.counter = counter;
        self.memory = None;
        self.on_counter_failure = on_failure;
        self
    }

    /// Loads an app the actor may see at `need` level, or says why not. The role is checked
    /// before the state: a developer who is not a member is refused whatever the app's state.
    fn app_for(&self, actor: &Actor, id: AppId, need: Access) -> ServiceResult<AppRecord> {
        let record =
            self.store.app_record(id)?.ok_or_else(|| ServiceError::NotFound(format!("app {id} does not exist")))?;
        let access = match record.member_role(actor.account.id) {
            Some(MemberRole::Owner) => Some(Access::Own),
            Some(MemberRole::Editor) => Some(Access::Edit),
            Some(MemberRole::Reader) => Some(Access::Read),
            None if actor.is_staff() => Some(Access::Read),
            None => None,
        };
        match access {
            None => Err(ServiceError::Forbidden(format!("you are not a member of app {id}"))),
            Some(have) if have < need => Err(ServiceError::Forbidden(match need {
                Access::Own => format!("only the owner of app {id} may do this"),
                Access::Edit => format!("only the owner or an editor of app {id} may do this"),
                Access::Read => format!("you may not read app {id}"),
            })),
            Some(_) => Ok(record),
        }
    }

    /// One notification of a change to an app: an e-mail to each member with an address (when
    /// SMTP is configured) and the webhook document (when a webhook is), for the outbox.
    fn app_messages(
        &self,
        record: &AppRecord,
        subject: &str,
        body: &str,
        webhook: serde_json::Value,
    ) -> ServiceResult<Vec<NewMessage>> {
        let mut messages = Vec::new();
        if self.notify.email {
            for member in &record.members {
                if let Some(email) = self.store.account(member.account_id)?.and_then(|a| a.email) {
                    messages.push(NewMessage {
                        channel: Channel::Email,
                        recipient: email,
                        subject: subject.to_owned(),
                        body: body.to_owned(),
                        app_id: Some(record.app.id),
                    });
                }
            }
        }
        if let Some(url) = &self.notify.webhook_url {
            messages.push(NewMessage {
                channel: Channel::Webhook,
                recipient: url.clone(),
                subject: webhook["type"].as_str().unwrap_or("app.changed").to_owned(),
                body: webhook.to_string(),
                app_id: Some(record.app.id),
            });
        }
        Ok(messages)
    }

    /// [`Services::refresh`] after a committed write (whose answer, if it has one, its own
    /// transaction read): a failure to re-read the app is logged, not returned. The write and its change-log row are
    /// committed, so the change sync applies them to this node's snapshot within a poll, and the
    /// caller learns that the write succeeded (an error would have it retry what is done).
    fn settle(&self, id: AppId) {
        if let Err(e) = self.refresh(id) {
            tracing::warn!(
                app = id.0,
                "saved, but re-reading app {id} into this node's snapshot failed ({e}); the change sync applies it"
            );
        }
    }

    /// Patches a just-created app, as the transaction that made it read it, into the snapshot,
    /// unless a refresh or the change sync has put it there already (from a read made after
    /// that commit, so no older).
    fn install_created(&self, record: &AppRecord) {
        let _in_order = self.patching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.snapshot.patch(|s| {
            if s.app(record.app.id).is_none() {
                s.upsert_app(record);
            }
        });
    }

    /// Re-reads one app and patches it into the snapshot (every write's answer now comes from
    /// its own transaction, so only [`Services::settle`] calls this).
    fn refresh(&self, id: AppId) -> ServiceResult<()> {
        let _in_order = self.patching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let record = self
            .store
            .app_record(id)?
            .ok_or_else(|| ServiceError::Internal(format!("app {id} vanished after a write")))?;
        self.snapshot.patch(|s| s.upsert_app(&record));
        Ok(())
    }
}

/// Rejects blank or oversized text fields, and control characters, with a message naming the
/// field: for one-line values (names, ids, URLs).
fn required_text(field: &str, value: &str, max: usize) -> ServiceResult<String> {
    checked_text(field, value, max, false)
}

/// [`required_text`] for prose (reasons, comments, usage scenarios, typed into a text area):
/// line breaks and tabs are kept, `\r\n` as `\n`; other control characters are refused.
fn prose_text(field: &str, value: &str, max: usize) -> ServiceResult<String> {
    checked_text(field, &value.replace("\r\n", "\n"), max, true)
}

fn checked_text(field: &str, value: &str, max: usize, multiline: bool) -> ServiceResult<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::Invalid(format!("`{field}` must not be empty")));
    }
    if trimmed.chars().count() > max {
        return Err(ServiceError::Invalid(format!("`{field}` must be at most {max} characters")));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\t');
    if trimmed.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(ServiceError::Invalid(format!("`{field}` must not contain control characters")));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_text_trims_and_names_the_field() {
        assert_eq!(required_text("name", "  My app ", 10).ok(), Some("My app".to_owned()));
        let err = required_text("name", "   ", 10).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("`name` must not be empty"));
        assert!(required_text("name", "abcdefghijk", 10).is_err());
        assert!(required_text("name", "a\u{0}b", 10).is_err());
        assert!(required_text("name", "a\nb", 10).is_err(), "a name is one line");
    }

    #[test]
    fn prose_keeps_line_breaks_and_tabs_and_refuses_other_control_characters() {
        assert_eq!(
            prose_text("reason", " first line\r\nsecond\tline\n", 100).ok().as_deref(),
            Some("first line\nsecond\tline")
        );
        assert!(prose_text("reason", "a\u{0}b", 100).is_err());
        assert!(prose_text("reason", "a\u{1b}[31mb", 100).is_err(), "no terminal escapes");
        assert!(prose_text("reason", "\r\n\t", 100).is_err(), "blank");
    }

    #[test]
    fn access_levels_are_ordered() {
        assert!(Access::Own > Access::Edit && Access::Edit > Access::Read);
    }
}
