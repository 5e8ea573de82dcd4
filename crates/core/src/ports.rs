//! Storage ports: small capability traits the services call, implemented once per backend
//! (SQLite and PostgreSQL) and held to the same conformance suite in the testkit. Every
//! mutating call takes the audit event that describes it and writes both in one transaction, so
//! a change is never committed without its record.

use crate::audit::{AuditEvent, NewAuditEvent};
use crate::decision_log::LoggedCall;
use crate::model::{
    Account, AccountId, AppId, AppRecord, Business, ConsentSetting, Grant, GrantSource, Key, KeyId, KeyKind,
    MemberRole, PaidUsage, Platforms, Role, TalkChannel,
};
use crate::notify::{DeliveryState, NewMessage, OutboxMessage};
use crate::time::Timestamp;
use crate::workflow::{EvidenceInfo, NewEvidence, NewRequest, PermissionRequest, RequestFilter, Transition};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule of the schema refused the write (e.g. a duplicate account name).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The referenced row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database failed or is unreachable.
    #[error("storage failure: {0}")]
    Backend(String),
    /// Stored data that cannot be read back (a bug or a hand-edited database).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: String,
    pub role: Role,
    pub email: Option<String>,
    pub token_hash: String,
}

#[derive(Debug, Clone)]
pub struct NewApp {
    pub name: String,
    pub company_name: String,
    pub category: String,
    pub owner: AccountId,
    /// For a test app: the app it tests.
    pub original: Option<AppId>,
    /// Members besides the owner (a test app takes its original's).
    pub members: Vec<crate::model::Member>,
    /// Grants the app starts with (a test app's `test_app`); their `app_id` is ignored.
    pub grants: Vec<NewGrant>,
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub kind: KeyKind,
    /// `None` for secret kinds: only the hash is kept.
    pub value: Option<String>,
    pub hash: String,
    pub hint: String,
}

#[derive(Debug, Clone)]
pub struct NewGrant {
    pub app_id: AppId,
    pub permission: String,
    pub key_id: Option<KeyId>,
    pub source: GrantSource,
    pub granted_by: Option<AccountId>,
    pub expires_at: Option<Timestamp>,
    pub params: serde_json::Value,
    pub reason: String,
}

impl NewGrant {
    /// The grant as stored under `id` at `now`.
    pub fn stored(&self, id: i64, now: Timestamp) -> Grant {
        Grant {
            id,
            app_id: self.app_id,
            permission: self.permission.clone(),
            key_id: self.key_id,
            source: self.source,
            granted_by: self.granted_by,
            granted_at: now,
            expires_at: self.expires_at,
            params: self.params.clone(),
            reason: self.reason.clone(),
        }
    }
}

pub trait AccountStore {
    fn create_account(&self, new: &NewAccount, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<Account>;
    fn account(&self, id: AccountId) -> StoreResult<Option<Account>>;
    /// The account whose token hashes to `token_hash`, with the stored hash.
    fn account_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<(Account, String)>>;
    fn accounts(&self) -> StoreResult<Vec<Account>>;
    fn count_admins(&self) -> StoreResult<u64>;
    /// Blocks or unblocks an account; returns the apps it owns, which are marked changed so that
    /// every node re-reads them (their calls answer -12 while the owner is blocked).
    fn set_account_blocked(
        &self,
        account: AccountId,
        blocked: bool,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Vec<AppId>>>;
    /// Creates the admin account `name`, or resets its token if it exists.
    fn upsert_admin(&self, name: &str, token_hash: &str, now: Timestamp, audit: &NewAuditEvent)
    -> StoreResult<Account>;
}

pub trait AppStore {
    /// Creates the app with its owner as a member and its first keys, atomically; the app as
    /// stored, read in the same transaction (so that no read after the commit can fail with the
    /// app made and its one-time keys unshown).
    fn create_app(
        &self,
        new: &NewApp,
        keys: &[NewKey],
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<AppRecord>;
    fn app_record(&self, id: AppId) -> StoreResult<Option<AppRecord>>;
    /// Every app, for building the decision snapshot.
    fn app_records(&self) -> StoreResult<Vec<AppRecord>>;
    fn app_ids_of_member(&self, account: AccountId) -> StoreResult<Vec<AppId>>;
    fn app_ids(&self) -> StoreResult<Vec<AppId>>;
    fn set_member(&self, app: AppId, account: AccountId, role: MemberRole, audit: &NewAuditEvent) -> StoreResult<()>;
    fn remove_member(&self, app: AppId, account: AccountId, audit: &NewAuditEvent) -> StoreResult<bool>;
    /// Adds a key to `app`; the key as stored (`INSERT … RETURNING`).
    fn add_key(&self, app: AppId, key: &NewKey, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<Key>;
    /// Gives key `key` of `app` a new secret, keeping its id and platforms; the key as stored
    /// then (read in the same transaction), or `None` if the app has no such key.
    fn replace_key_secret(
        &self,
        app: AppId,
        key: KeyId,
        new: &NewKey,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Key>>;
    fn delete_key(&self, app: AppId, key: KeyId, audit: &NewAuditEvent) -> StoreResult<bool>;
    /// Sets key `key`'s platforms; the key as stored then, as [`AppStore::replace_key_secret`].
    fn set_key_platforms(
        &self,
        app: AppId,
        key: KeyId,
        platforms: &Platforms,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Key>>;
    fn set_product(&self, app: AppId, product: &str, activated: bool, audit: &NewAuditEvent) -> StoreResult<()>;
    /// Sets an app's status (active, blocked, suspended). Back to active from another status
    /// (an unblock), the idle clock starts again at the event's time (`last_active_at`): a
    /// blocked app could not be called, and would otherwise be suspended for inactivity at once.
    /// Returns the app as stored then, read in the same transaction (as every write here that
    /// answers with the app, so that no read after the commit can fail it); `None` if there is
    /// no such app.
    fn set_app_status(
        &self,
        app: AppId,
        status: crate::model::AppStatus,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<AppRecord>>;
    /// Records when apps were last called (keeping the later time) and adds their new calls to
    /// the day starting at `day_start`; not a change of state, so neither audited nor sent to
    /// other nodes.
    fn record_activity(&self, activity: &[ActivityRow], day_start: i64) -> StoreResult<()>;
    /// Calls per day (`day_start`, rule id or `""` for all, calls) of `app` from `since` on.
    fn daily_calls(&self, app: AppId, since: i64) -> StoreResult<Vec<(i64, String, u64)>>;
    /// Active apps (not test apps) last called, or created, before `cutoff`.
    fn idle_apps(&self, cutoff: Timestamp) -> StoreResult<Vec<AppId>>;
    /// Suspends `app` if it is still active and idle since before `cutoff`, with `messages`;
    /// false (and nothing written) otherwise.
    fn suspend_if_idle(
        &self,
        app: AppId,
        cutoff: Timestamp,
        messages: &[NewMessage],
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;
    /// Makes a suspended app active again, counting `now` as its last call; the app as stored
    /// then (as [`AppStore::set_app_status`]), or `None` if it was not suspended.
    fn reactivate(&self, app: AppId, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<Option<AppRecord>>;
    /// Switches paid usage on (with its rules and caps) or off (`None`).
    fn set_paid_usage(&self, app: AppId, paid: Option<&PaidUsage>, audit: &NewAuditEvent) -> StoreResult<()>;
}

/// What a node saw of one app since its last save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    pub app: AppId,
    pub last_call: Timestamp,
    /// Calls admitted since the last save: all of them under `""`, and per quota rule id.
    pub calls: Vec<(String, u64)>,
}

/// A quota counter as saved by a node that counts in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCounter {
    pub rule_id: String,
    pub scope: u64,
    pub window_start: i64,
    pub window_end: i64,
    pub count: u64,
}

/// Where a node counting quotas in memory saves its counters (about once a second, never per
/// call), so that a restart does not hand out a window's quota again.
pub trait QuotaStore {
    /// Saves counters, keeping the larger count where one is saved already.
    fn save_counters(&self, counters: &[SavedCounter]) -> StoreResult<()>;
    /// The counters whose window has not ended at `now`; older ones are deleted.
    fn load_counters(&self, now: Timestamp) -> StoreResult<Vec<SavedCounter>>;
}

/// Which of an app's grants a revocation means: those of `permission` bound to `key` (the
/// app-wide ones when `None`) and, when `rule` is given, raising that quota rule (`params.rule`;
/// `increased_quota` may be held for several).
#[derive(Debug, Clone, Copy)]
pub struct GrantOf<'a> {
    pub permission: &'a str,
    pub key: Option<KeyId>,
    pub rule: Option<&'a str>,
}

/// A loss that permgate itself carries out (`lost`, for `reason`); then, if the app holds the
/// permission app-wide no more, what needed it goes (`cascade`, as for an operator's revocation).
#[derive(Debug, Clone, Copy)]
pub struct Revocation<'a> {
    pub lost: Lost<'a>,
    pub cascade: Cascade<'a>,
    pub reason: &'a str,
}

/// What permgate takes from an app by itself.
#[derive(Debug, Clone, Copy)]
pub enum Lost<'a> {
    /// An unused holding, reaped: the grants named go.
    Reaped(GrantOf<'a>),
    /// The last grant of this permission ended: it stays as it ended.
    Ended(&'a str),
}

/// What goes with a permission or a consent item an app no longer has (SPEC 4: the grants that
/// depended on it are revoked, audited and notified): the grants of `revoke` (app-wide and bound
/// to a key alike) and the consent items `unset` ([`crate::catalog::Catalog::lost_with`]), with `messages` saying so. A
/// store applies it in the same transaction, once the app no longer holds the permission
/// app-wide, and sends the messages only if something went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cascade<'a> {
    pub revoke: &'a [String],
    pub unset: &'a [String],
    pub messages: &'a [NewMessage],
}

impl Cascade<'_> {
    pub fn is_empty(&self) -> bool {
        self.revoke.is_empty() && self.unset.is_empty()
    }
}

impl NewGrant {
    /// The refusal of a grant the app holds already (the same permission, key and quota rule,
    /// live at the time of the grant).
    pub fn held_already(&self) -> StoreError {
        let rule = self.params.get("rule").and_then(serde_json::Value::as_str);
        let what = crate::model::holding_name(&self.permission, rule);
        StoreError::Conflict(format!("app {} already holds {what}; revoke it first to change its terms", self.app_id))
    }
}

pub trait GrantStore {
    /// Writes an operator's grant; [`NewGrant::held_already`] if the app holds the same
    /// permission for the same key (and quota rule) live at `now`, checked in the transaction.
    fn insert_grant(&self, grant: &NewGrant, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<Grant>;
    /// Revokes the app's grants that `of` names, and what goes with them if the app then holds
    /// the permission app-wide no more (`cascade`; the audit event's `after` names what went:
    /// [`NewAuditEvent::losing`]); returns the newest, or `None` if none was held, and then writes
    /// nothing (no audit event either).
    #[expect(clippy::too_many_arguments, reason = "one revocation's whole record; a struct would only rename these")]
    fn revoke_grant(
        &self,
        app: AppId,
        of: GrantOf<'_>,
        cascade: Cascade<'_>,
        by: AccountId,
        reason: &str,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Grant>>;
}

pub trait AuditStore {
    /// Appends an event that records no other change (e.g. a quota alert).
    fn record_event(&self, event: &NewAuditEvent) -> StoreResult<()>;
    /// Records a quota alert's `event` and queues its `messages` in the outbox, in one
    /// transaction. For a counter kept in memory, `counted` (the count that passed the threshold)
    /// is saved in it too, as [`QuotaStore::save_counters`] saves, so that a restart before the
    /// node saves its counters does not pass the threshold, and alert, again.
    fn record_alert(
        &self,
        event: &NewAuditEvent,
        messages: &[NewMessage],
        counted: Option<&SavedCounter>,
    ) -> StoreResult<()>;
    /// Events oldest first, optionally those of one app only.
    fn audit_events(&self, app: Option<AppId>, limit: usize) -> StoreResult<Vec<AuditEvent>>;
    /// The newest event's `seq` and hash as recorded beside the chain when it was appended, so
    /// that deleting the newest events is detected too.
    fn audit_head(&self) -> StoreResult<Option<(i64, String)>>;
}

/// What must still hold when an approval's grant is written. The service checks it on the app
/// as it read it; the store checks it again in the transaction that writes the grant, so that a
/// prerequisite removed meanwhile (Biz, the last channel) cannot leave a grant nothing revokes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// Permissions the app must hold app-wide, unexpired (Biz is `biz_app`).
    pub permissions: Vec<String>,
    /// At least one Kakao Talk Channel connected.
    pub channel_connected: bool,
    /// Consent items set on the app.
    pub consent_items: Vec<String>,
    /// The app must not hold the grant's permission (for the quota rule it raises) app-wide
    /// past this time: a renewal overlaps only the last days of the grant it renews, and one
    /// granted meanwhile another way (an operator, a second approval, an application at the
    /// same moment) is not granted twice.
    pub not_held_after: Option<Timestamp>,
}

impl Requirements {
    /// The refusal of an approval whose grant's requirement (`why`) no longer holds.
    pub fn unmet(grant: &NewGrant, why: &str) -> StoreError {
        StoreError::Conflict(format!("`{}` cannot be granted to app {} now: {why}", grant.permission, grant.app_id))
    }
}

/// App settings that the review workflow checks, and the workflow itself. Each call writes its
/// rows, its audit event and its notifications in one transaction.
pub trait WorkflowStore {
    /// Records the app's agreement to the eligibility terms; false if it had agreed already.
    fn agree_eligibility(&self, app: AppId, by: AccountId, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<bool>;
    /// Registers (or updates) business information, with the `biz_app` grant it brings when the
    /// app does not hold it yet.
    fn set_business(
        &self,
        app: AppId,
        business: &Business,
        grant: Option<&NewGrant>,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;
    /// Removes the app's business information, revokes the grants of `revoke` (Biz and what
    /// needed it) and unsets the consent items of `unset`, with `messages`; returns the
    /// permissions actually revoked, which the audit event's `after.revoked` is set to (and its
    /// `after.consent_items_unset` to the items actually unset). `None`, and nothing written, when
    /// there was neither business information nor a grant to revoke
    /// (removed already, e.g. by a second click).
    #[expect(clippy::too_many_arguments, reason = "one write: what to revoke, unset and notify, and why")]
    fn remove_business(
        &self,
        app: AppId,
        revoke: &[String],
        unset: &[String],
        by: AccountId,
        reason: &str,
        messages: &[NewMessage],
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Vec<String>>>;
    /// Adds or replaces a channel of the registry.
    fn upsert_channel(&self, channel: &TalkChannel, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<()>;
    fn channels(&self) -> StoreResult<Vec<TalkChannel>>;
    /// Connects a channel to the app once `requires` holds, checked in the transaction (a Biz
    /// removal committed meanwhile is seen, and refuses it), with `grant` unless the app holds it
    /// already (two channels connected at once grant it once); `audit` says whether it granted.
    /// Returns whether it granted, and the app as stored then (read in the same transaction).
    fn connect_channel(
        &self,
        app: AppId,
        channel: &str,
        now: Timestamp,
        grant: &NewGrant,
        requires: &Requirements,
        audit: &NewAuditEvent,
    ) -> StoreResult<(bool, AppRecord)>;
    /// Disconnects a channel; the app as stored then (read in the same transaction), or `None`
    /// (and nothing written, not even `audit`) if it was not connected. When it was the app's last channel (counted in the same transaction, so two
    /// disconnected at once cannot both see another left) `cascade` is applied: the grants of
    /// its `revoke` revoked, its consent items unset, its messages sent if anything went. The
    /// audit event's `after.revoked` and `after.consent_items_unset` name what went.
    fn disconnect_channel(
        &self,
        app: AppId,
        channel: &str,
        cascade: Cascade<'_>,
        by: AccountId,
        reason: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<AppRecord>>;
    /// Unsets a consent item and what goes with it (`cascade`; the audit event's `after` names
    /// what went: [`NewAuditEvent::losing`]) in one transaction; returns the permissions revoked,
    /// or `None` if the item was not set, and then writes nothing.
    fn unset_consent_item(
        &self,
        app: AppId,
        scope: &str,
        cascade: Cascade<'_>,
        by: AccountId,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Vec<String>>>;
    /// Sets (`Some`) or unsets a consent item on the app.
    fn set_consent_item(
        &self,
        app: AppId,
        scope: &str,
        setting: Option<&ConsentSetting>,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;
    /// Stores a new request with its evidence file (if any), its first history entry, the grant
    /// of an immediate approval (if any, written only if its [`Requirements`] hold in the same
    /// transaction) and its notifications. A second open request for the same app and permission
    /// (and quota rule), or an unmet requirement, is a [`StoreError::Conflict`].
    fn create_request(
        &self,
        new: &NewRequest,
        evidence: Option<&NewEvidence>,
        grant: Option<(&NewGrant, &Requirements)>,
        messages: &[NewMessage],
        audit: &NewAuditEvent,
    ) -> StoreResult<PermissionRequest>;
    /// Moves a request from `t.from` to `t.event.to`, with the grant an approval creates; `None`
    /// (and nothing written) if the request is no longer in `t.from`. The grant is written only
    /// if its [`Requirements`] hold in the same transaction, else [`StoreError::Conflict`] naming
    /// the one that does not (and nothing is written).
    fn transition_request(
        &self,
        t: &Transition,
        grant: Option<(&NewGrant, &Requirements)>,
        messages: &[NewMessage],
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<PermissionRequest>>;
    /// One request with its history.
    fn request(&self, id: i64) -> StoreResult<Option<PermissionRequest>>;
    /// Requests, newest first, without history.
    fn requests(&self, filter: &RequestFilter) -> StoreResult<Vec<PermissionRequest>>;
    /// An evidence file and its bytes.
    fn evidence(&self, id: i64) -> StoreResult<Option<(EvidenceInfo, Vec<u8>)>>;
}

/// The notification outbox (see [`crate::notify`]).
pub trait OutboxStore {
    /// Takes up to `limit` pending messages that are due at `now`, hiding them from other
    /// claimers for `lease_secs` (a node that dies mid-delivery releases them by expiry).
    fn claim_messages(&self, now: Timestamp, limit: usize, lease_secs: i64) -> StoreResult<Vec<OutboxMessage>>;
    /// Records the outcome of one attempt.
    fn finish_attempt(
        &self,
        id: i64,
        state: DeliveryState,
        next_attempt_at: Option<Timestamp>,
        error: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Messages newest first, optionally of one app.
    fn messages(&self, app: Option<AppId>, limit: usize) -> StoreResult<Vec<OutboxMessage>>;
}

/// How nodes sharing one database learn of each other's writes. Every write that changes an app
/// appends the app's id to a change log in the same transaction; a node remembers the newest
/// sequence number it has applied and asks for what came after it. Sequence numbers are assigned
/// in commit order, so nothing committed is ever skipped.
pub trait ChangeFeed {
    /// The newest change's sequence number (0 when there is none).
    fn latest_change(&self) -> StoreResult<i64>;
    /// The apps changed after `seq` (each once), and the newest sequence number among them.
    fn changes_since(&self, seq: i64) -> StoreResult<(i64, Vec<AppId>)>;
    /// Blocks until another node may have written something, or `timeout` passes. A backend
    /// without notifications waits out the timeout.
    fn wait_for_change(&self, timeout: std::time::Duration) -> StoreResult<()>;
}

/// Permission requests and outbox messages counted by state, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub requests: Vec<(String, u64)>,
    pub outbox: Vec<(String, u64)>,
}

/// What operating a node needs from the store: the recent decision log (see
/// [`crate::decision_log`]) and the counts `/metrics` reports.
pub trait OpsStore {
    /// Adds calls to the log (summing calls, keeping the newest code, path and time per row),
    /// then keeps only the `keep` most recently seen rows.
    fn save_decisions(&self, calls: &[LoggedCall], keep: usize) -> StoreResult<()>;
    /// The most recently seen rows, newest first.
    fn recent_decisions(&self, limit: usize) -> StoreResult<Vec<LoggedCall>>;
    fn state_counts(&self) -> StoreResult<StateCounts>;
}

/// A live grant, when the app last exercised its permission, and the notices sent about it.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantState {
    pub grant: Grant,
    /// When a call last needed this permission (Unix seconds); `None` if never since tracking.
    pub last_used_at: Option<i64>,
    /// `(kind, sent_at)`: `expiry_30`, `expiry_7`, `unused`.
    pub notices: Vec<(String, i64)>,
}

/// What the grant lifecycle (expiry reminders, unused-grant reaping) needs from the store.
pub trait LifecycleStore {
    /// Every live (not revoked) grant, with its use and notices.
    fn live_grants(&self) -> StoreResult<Vec<GrantState>>;
    /// Records notice `kind` about a grant, once: with its messages and audit event in one
    /// transaction, and, with `revoke`, revoking a holding (by permgate). Returns false, writing
    /// nothing, if the notice was recorded before.
    fn grant_notice(
        &self,
        grant: &Grant,
        kind: &str,
        revoke: Option<Revocation<'_>>,
        messages: &[NewMessage],
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;
    /// Keeps the newest use of each (app, permission).
    fn save_grant_usage(&self, rows: &[(AppId, String, i64)]) -> StoreResult<()>;
}

/// Where a database's schema stands relative to this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The newest migration applied to the database.
    pub current: i64,
    /// The newest migration this binary knows.
    pub latest: i64,
}

impl MigrationStatus {
    pub fn pending(&self) -> bool {
        self.current < self.latest
    }

    pub fn too_new(&self) -> bool {
        self.current > self.latest
    }
}

/// Everything a backend provides.
pub trait Store:
    AccountStore
    + AppStore
    + GrantStore
    + AuditStore
    + WorkflowStore
    + OutboxStore
    + OpsStore
    + LifecycleStore
    + ChangeFeed
    + QuotaStore
    + Send
    + Sync
{
    /// A short name for logs and `/healthz` (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// Whether the store answers now.
    fn ping(&self) -> StoreResult<()>;
    fn migration_status(&self) -> StoreResult<MigrationStatus>;
    /// Applies pending migrations (safe when several nodes start at once); returns the versions
    /// applied. Refuses a schema newer than this binary.
    fn migrate(&self) -> StoreResult<Vec<i64>> {
        self.migrate_with(&mut |_, _| {})
    }
    /// [`Store::migrate`], telling `starting(version, name)` before each migration.
    fn migrate_with(&self, starting: &mut dyn FnMut(i64, &str)) -> StoreResult<Vec<i64>>;
}
