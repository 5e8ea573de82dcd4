//! permgate's storage ports on PostgreSQL: one schema shared by every node of a deployment.
//!
//! # Layout
//! - `migrations/NNNN_*.sql`: plain SQL, numbered like SQLite's and meaning the same;
//!   [`PostgresStore::migrate`] applies pending ones under an advisory lock (nodes starting
//!   together apply each once) and refuses a schema newer than this binary.
//! - [`PostgresStore`] implements every port of `permgate_core::ports` over a small pool of
//!   synchronous connections (`pool.rs`). Every write transaction first takes the schema's
//!   advisory lock, so audit and change-log sequence numbers follow commit order across nodes.
//! - Every mutation writes its audit event in the same transaction; one that changes an app also
//!   appends to `change_log` and notifies `permgate_changes_<schema>`, which
//!   [`ChangeFeed::wait_for_change`] listens to on a connection of its own.
//! - `workflow.rs`: the review workflow (requests, evidence, app settings) and the outbox, whose
//!   messages nodes claim with `FOR UPDATE SKIP LOCKED`.
//! - Error mapping and row mapping helpers are at the bottom.

mod ops;
mod pool;
mod workflow;

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use permgate_core::audit::{AuditEvent, GENESIS_HASH, NewAuditEvent};
use permgate_core::model::{
    Account, AccountId, App, AppId, AppRecord, AppStatus, Grant, GrantSource, Key, KeyId, KeyKind, Member, MemberRole,
    PaidUsage, Platforms,
};
use permgate_core::ports::{
    AccountStore, ActivityRow, AppStore, AuditStore, Cascade, ChangeFeed, GrantOf, GrantStore, MigrationStatus,
    NewAccount, NewApp, NewGrant, NewKey, QuotaStore, SavedCounter, Store, StoreError, StoreResult,
};
use permgate_core::time::Timestamp;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, GenericClient, IsolationLevel, Row, Transaction};

use crate::pool::Pool;

/// The migrations this binary knows, in order; the versions are SQLite's.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "change_log", include_str!("../migrations/0002_change_log.sql")),
    (3, "quotas", include_str!("../migrations/0003_quotas.sql")),
    (4, "workflow", include_str!("../migrations/0004_workflow.sql")),
    (5, "app_types", include_str!("../migrations/0005_app_types.sql")),
    (6, "decision_log", include_str!("../migrations/0006_decision_log.sql")),
    (7, "grant_lifecycle", include_str!("../migrations/0007_grant_lifecycle.sql")),
    (8, "quota_rule_requests", include_str!("../migrations/0008_quota_rule_requests.sql")),
];

/// Connections one store opens at most (the LISTEN connection aside).
const POOL_SIZE: usize = 8;
/// Used when the URL sets no `connect_timeout`: an unreachable server fails instead of hanging.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First keys of the two-key advisory locks; the second is `hashtext(<schema>)`. Writers and
/// migrators each take their own lock for the length of their transaction.
const WRITE_LOCK: i32 = 0x7067_0001;
const MIGRATE_LOCK: i32 = 0x7067_0002;
const CHANNEL_PREFIX: &str = "permgate_changes_";
/// How long the LISTEN connection may stay silent before it is asked whether it still answers,
/// and how long it then has to answer.
const LISTENER_CHECK: Duration = Duration::from_secs(30);
const LISTENER_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1); channel names are identifiers.
const MAX_IDENTIFIER: usize = 63;

pub struct PostgresStore {
    pool: Pool,
    /// The schema this store's connections use (the first existing one of their `search_path`).
    schema: String,
    /// `permgate_changes_<schema>`: where writes notify and the listener listens.
    channel: String,
    /// `hashtext(<schema>)`: the second key of this schema's advisory locks.
    lock_key: i32,
    /// The LISTEN connection, opened on the first wait and dropped on any error.
    listener: Mutex<Option<Listener>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("url", &self.pool.target()).field("schema", &self.schema).finish()
    }
}

impl Drop for PostgresStore {
    /// Closing a connection blocks on the driver's own runtime, which panics on a thread that
    /// drives async tasks (where the last handle to a server's store may well be dropped); so the
    /// connections are closed on a thread of their own, which nothing waits for.
    fn drop(&mut self) {
        let idle = self.pool.take_idle();
        let listener = self.listener.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if idle.is_empty() && listener.is_none() {
            return;
        }
        // Should no thread start, the closure (and the connections) are dropped right here.
        let _ = std::thread::Builder::new().name("permgate-pg-close".into()).spawn(move || {
            drop(idle);
            drop(listener);
        });
    }
}

/// Why a step failed: the driver's error, classified only when it leaves the store (so a dead
/// connection can still be recognised and replaced), or an error of the store's own.
enum Fail {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> StoreError {
        match f {
            Fail::Pg(e) => store_error(&e),
            Fail::Store(e) => e,
        }
    }
}

type Tried<T> = Result<T, Fail>;

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a `key=value` string) without
    /// migrating. The schema is the first existing one of the connection's `search_path`
    /// (`?options=-csearch_path%3Dname` selects one).
    pub fn connect(url: &str) -> StoreResult<PostgresStore> {
        let target = redact(url);
        let mut config: Config = url.parse().map_err(|e: postgres::Error| {
            StoreError::Backend(format!("cannot connect to PostgreSQL at {target}: {}", describe(&e)))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let pool = Pool::new(config, target, POOL_SIZE);
        let mut client = pool.connect()?;
        let unusable = |why: String| StoreError::Backend(format!("cannot use PostgreSQL at {}: {why}", pool.target()));
        let row = client
            .query_one("SELECT current_schema()::text, hashtext(current_schema())", &[])
            .map_err(|e| unusable(describe(&e)))?;
        let schema: Option<String> = row.try_get(0).map_err(|e| unusable(describe(&e)))?;
        let lock_key: Option<i32> = row.try_get(1).map_err(|e| unusable(describe(&e)))?;
        let (Some(schema), Some(lock_key)) = (schema, lock_key) else {
            return Err(unusable("no schema named by its search_path exists".into()));
        };
        pool.adopt(client);
        Ok(PostgresStore { pool, channel: channel_name(&schema), schema, lock_key, listener: Mutex::new(None) })
    }

    /// The schema this store reads and writes.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Runs `f` on a pooled connection. A connection found dead is replaced and `f` run once more:
    /// reads are safe to repeat.
    fn read<T>(&self, mut f: impl FnMut(&mut Client) -> Tried<T>) -> StoreResult<T> {
        let mut retried = false;
        loop {
            let mut conn = self.pool.get()?;
            match f(conn.client()?) {
                Ok(v) => return Ok(v),
                Err(Fail::Pg(e)) => {
                    if conn.check_lost(&e) && !retried {
                        drop(conn);
                        self.pool.discard_idle();
                        retried = true;
                        continue;
                    }
                    return Err(store_error(&e));
                }
                Err(Fail::Store(e)) => return Err(e),
            }
        }
    }

    /// Runs `f` (a write outside the write lock, e.g. on the outbox) on a pooled connection,
    /// without retrying: a connection lost on the way may or may not have committed it.
    fn once<T>(&self, f: impl FnOnce(&mut Client) -> Tried<T>) -> StoreResult<T> {
        let mut conn = self.pool.get()?;
        match f(conn.client()?) {
            Ok(v) => Ok(v),
            Err(Fail::Pg(e)) => {
                if conn.check_lost(&e) {
                    drop(conn);
                    self.pool.discard_idle();
                }
                Err(store_error(&e))
            }
            Err(Fail::Store(e)) => Err(e),
        }
    }

    /// Runs `f` in a transaction holding the advisory lock `(lock, hashtext(schema))`; commits
    /// only if `f` succeeds. Only BEGIN is retried on a fresh connection: after that, a lost
    /// connection may or may not have committed, so the error goes to the caller.
    fn transaction<T>(&self, lock: i32, f: impl FnOnce(&mut Transaction<'_>) -> Tried<T>) -> StoreResult<T> {
        self.transaction_or_rollback(lock, |tx| f(tx).map(|v| (v, true)))
    }

    /// [`PostgresStore::transaction`] whose body also says whether to commit (`true`) or to roll
    /// back what it did and still return its value (`false`).
    fn transaction_or_rollback<T>(
        &self,
        lock: i32,
        f: impl FnOnce(&mut Transaction<'_>) -> Tried<(T, bool)>,
    ) -> StoreResult<T> {
        let mut f = Some(f);
        let mut retried = false;
        loop {
            let mut conn = self.pool.get()?;
            let (result, begun) = self.run_transaction(conn.client()?, lock, &mut f);
            match result {
                Ok(v) => return Ok(v),
                Err(Fail::Pg(e)) => {
                    if conn.check_lost(&e) && !begun && !retried {
                        drop(conn);
                        self.pool.discard_idle();
                        retried = true;
                        continue;
                    }
                    return Err(store_error(&e));
                }
                Err(Fail::Store(e)) => return Err(e),
            }
        }
    }

    /// One attempt of [`PostgresStore::transaction`]; says whether BEGIN succeeded (only then is
    /// `f` taken).
    fn run_transaction<T, F: FnOnce(&mut Transaction<'_>) -> Tried<(T, bool)>>(
        &self,
        client: &mut Client,
        lock: i32,
        f: &mut Option<F>,
    ) -> (Tried<T>, bool) {
        // READ COMMITTED whatever the server's default: each statement after the lock must see
        // what the previous lock holder committed.
        let mut tx = match client.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start() {
            Ok(tx) => tx,
            Err(e) => return (Err(e.into()), false),
        };
        let Some(f) = f.take() else {
            return (Err(StoreError::Backend("a transaction body was run twice".into()).into()), true);
        };
        let done = tx
            .execute("SELECT pg_advisory_xact_lock($1, $2)", &[&lock, &self.lock_key])
            .map_err(Fail::from)
            .and_then(|_| f(&mut tx));
        let result = match done {
            Ok((v, true)) => tx.commit().map(|()| v).map_err(Fail::from),
            Ok((v, false)) => tx.rollback().map(|()| v).map_err(Fail::from),
            Err(e) => {
                drop(tx); // rolls back
                Err(e)
            }
        };
        (result, true)
    }

    /// [`PostgresStore::write`] for a change that may find nothing to change (`f` says whether it
    /// changed anything): then nothing is committed, not even `audit`, as when two callers make
    /// the same change at once and the second finds it done.
    fn write_changed(
        &self,
        audit: &NewAuditEvent,
        f: impl FnOnce(&mut Transaction<'_>) -> Tried<bool>,
    ) -> StoreResult<bool> {
        Ok(self.write_if(audit, |tx| Ok(f(tx)?.then_some(())))?.is_some())
    }

    /// A write that may find nothing to do: `f` returns `None` for that, and then nothing is
    /// committed, not even `audit` (as [`PostgresStore::write`] otherwise).
    fn write_if<T>(
        &self,
        audit: &NewAuditEvent,
        f: impl FnOnce(&mut Transaction<'_>) -> Tried<Option<T>>,
    ) -> StoreResult<Option<T>> {
        self.write_if_audit(|tx| Ok(f(tx)?.map(|out| (out, audit.clone()))))
    }

    /// [`PostgresStore::write_if`] for a write whose audit event says what the transaction found
    /// (`f` returns it with its result).
    fn write_if_audit<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Tried<Option<(T, NewAuditEvent)>>,
    ) -> StoreResult<Option<T>> {
        self.transaction_or_rollback(WRITE_LOCK, |tx| match f(tx)? {
            Some((out, audit)) => {
                self.append_audit(tx, &audit)?;
                Ok((Some(out), true))
            }
            None => Ok((None, false)),
        })
    }

    /// A write: `f`, then `audit` appended to the chain, in one transaction under the write lock.
    fn write<T>(&self, audit: &NewAuditEvent, f: impl FnOnce(&mut Transaction<'_>) -> Tried<T>) -> StoreResult<T> {
        self.transaction(WRITE_LOCK, |tx| {
            let out = f(tx)?;
            self.append_audit(tx, audit)?;
            Ok(out)
        })
    }

    /// Appends `e` after the newest event. The caller holds the write lock, so no other node
    /// can append between the read of the last hash and the commit.
    fn append_audit(&self, tx: &mut Transaction<'_>, e: &NewAuditEvent) -> Tried<()> {
        let last = tx.query_opt("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1", &[])?;
        let (seq, prev) = match last {
            Some(row) => (row.try_get::<_, i64>(0)? + 1, row.try_get::<_, String>(1)?),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let hash = e.chain_hash(seq, &prev);
        tx.execute(
            "INSERT INTO audit_events (seq, at, actor, action, target, app_id, before, after, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &seq,
                &e.at.0,
                &e.actor.map(|a| a.0),
                &e.action,
                &e.target,
                &e.app_id.map(|a| a.0),
                &e.before.to_string(),
                &e.after.to_string(),
                &prev,
                &hash,
            ],
        )?;
        tx.execute(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            &[&seq, &hash],
        )?;
        if let Some(app) = e.app_id {
            tx.execute("INSERT INTO change_log (app_id, at) VALUES ($1, $2)", &[&app.0, &e.at.0])?;
            // Delivered to listeners when (and only if) the transaction commits.
            tx.execute("SELECT pg_notify($1, $2)", &[&self.channel, &app.0.to_string()])?;
        }
        Ok(())
    }

    fn apply_migrations(&self, starting: &mut dyn FnMut(i64, &str)) -> StoreResult<Vec<i64>> {
        self.transaction(MIGRATE_LOCK, |tx| {
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL);",
            )?;
            let current = current_version(tx)?;
            let latest = latest_version();
            if current > latest {
                return Err(StoreError::Backend(format!(
                    "the database schema is version {current}, newer than this permgate binary knows ({latest}); upgrade permgate"
                ))
                .into());
            }
            let mut applied = Vec::new();
            for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
                starting(*version, name);
                tx.batch_execute(sql).map_err(|e| {
                    StoreError::Backend(format!("migration {version} ({name}) failed: {}", describe(&e)))
                })?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at)
                     VALUES ($1, $2, extract(epoch FROM now())::bigint)",
                    &[version, name],
                )?;
                applied.push(*version);
            }
            Ok(applied)
        })
    }
}

fn current_version(c: &mut impl GenericClient) -> Tried<i64> {
    let exists: bool = c
        .query_one("SELECT to_regclass(format('%I.schema_migrations', current_schema())) IS NOT NULL", &[])?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    Ok(c.query_one("SELECT coalesce(max(version), 0)::bigint FROM schema_migrations", &[])?.try_get(0)?)
}

fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _, _)| *v)
}

impl AccountStore for PostgresStore {
    fn create_account(&self, new: &NewAccount, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<Account> {
        let id: i64 = self.write(audit, |tx| {
            let row = tx.query_one(
                "INSERT INTO accounts (name, role, email, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)
                 RETURNING id",
                &[&new.name, &new.role.as_str(), &new.email, &new.token_hash, &now.0],
            )?;
            Ok(row.try_get(0)?)
        })?;
        Ok(Account {
            id: AccountId(id),
            name: new.name.clone(),
            role: new.role,
            email: new.email.clone(),
            blocked: false,
            created_at: now,
        })
    }

    fn account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        self.read(|c| {
            c.query_opt(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"), &[&id.0])?
                .map(|r| account_row(&r))
                .transpose()
        })
    }

    fn account_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<(Account, String)>> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS}, token_hash FROM accounts WHERE token_hash = $1"),
                &[&token_hash],
            )?
            .map(|r| Ok((account_row(&r)?, r.try_get(6)?)))
            .transpose()
        })
    }

    fn accounts(&self) -> StoreResult<Vec<Account>> {
        self.read(|c| {
            c.query(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"), &[])?
                .iter()
                .map(account_row)
                .collect()
        })
    }

    fn count_admins(&self) -> StoreResult<u64> {
        let n: i64 =
            self.read(|c| Ok(c.query_one("SELECT count(*) FROM accounts WHERE role = 'admin'", &[])?.try_get(0)?))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn set_account_blocked(
        &self,
        account: AccountId,
        blocked: bool,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Vec<AppId>>> {
        self.write(audit, |tx| {
            let n = tx.execute("UPDATE accounts SET blocked = $1 WHERE id = $2", &[&blocked, &account.0])?;
            if n == 0 {
                return Ok(None);
            }
            let mut apps = Vec::new();
            for r in tx.query("SELECT id FROM apps WHERE owner_id = $1 ORDER BY id", &[&account.0])? {
                let app: i64 = r.try_get(0)?;
                tx.execute("INSERT INTO change_log (app_id, at) VALUES ($1, $2)", &[&app, &audit.at.0])?;
                tx.execute("SELECT pg_notify($1, $2)", &[&self.channel, &app.to_string()])?;
                apps.push(AppId(app));
            }
            Ok(Some(apps))
        })
    }

    fn upsert_admin(
        &self,
        name: &str,
        token_hash: &str,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Account> {
        self.write(audit, |tx| {
            let row = tx.query_one(
                &format!(
                    "INSERT INTO accounts (name, role, token_hash, created_at) VALUES ($1, 'admin', $2, $3)
                     ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, role = 'admin'
                     RETURNING {ACCOUNT_COLUMNS}"
                ),
                &[&name, &token_hash, &now.0],
            )?;
            account_row(&row)
        })
    }
}

impl AppStore for PostgresStore {
    fn create_app(
        &self,
        new: &NewApp,
        keys: &[NewKey],
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<AppRecord> {
        self.transaction(WRITE_LOCK, |tx| {
            let row = tx.query_one(
                "INSERT INTO apps (name, company_name, category, owner_id, created_at, original_app_id)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[&new.name, &new.company_name, &new.category, &new.owner.0, &now.0, &new.original.map(|o| o.0)],
            )?;
            let id = AppId(row.try_get(0)?);
            tx.execute(
                "INSERT INTO app_members (app_id, account_id, role) VALUES ($1, $2, 'owner')",
                &[&id.0, &new.owner.0],
            )?;
            for m in &new.members {
                tx.execute(
                    "INSERT INTO app_members (app_id, account_id, role) VALUES ($1, $2, $3)",
                    &[&id.0, &m.account_id.0, &m.role.as_str()],
                )?;
            }
            for g in &new.grants {
                insert_grant_row(tx, &NewGrant { app_id: id, ..g.clone() }, now)?;
            }
            for key in keys {
                insert_key(tx, id, key, now)?;
            }
            let mut audit = audit.clone();
            audit.app_id = Some(id);
            audit.target = format!("app:{id}");
            self.append_audit(tx, &audit)?;
            record_in(tx, id)
        })
    }

    fn app_record(&self, id: AppId) -> StoreResult<Option<AppRecord>> {
        self.read(|c| Ok(load_records(c, Some(id))?.pop()))
    }

    fn app_records(&self) -> StoreResult<Vec<AppRecord>> {
        self.read(|c| load_records(c, None))
    }

    fn app_ids_of_member(&self, account: AccountId) -> StoreResult<Vec<AppId>> {
        self.read(|c| {
            c.query("SELECT app_id FROM app_members WHERE account_id = $1 ORDER BY app_id", &[&account.0])?
                .iter()
                .map(|r| Ok(AppId(r.try_get(0)?)))
                .collect()
        })
    }

    fn app_ids(&self) -> StoreResult<Vec<AppId>> {
        self.read(|c| {
            c.query("SELECT id FROM apps ORDER BY id", &[])?.iter().map(|r| Ok(AppId(r.try_get(0)?))).collect()
        })
    }

    fn set_member(&self, app: AppId, account: AccountId, role: MemberRole, audit: &NewAuditEvent) -> StoreResult<()> {
        self.write(audit, |tx| {
            tx.execute(
                "INSERT INTO app_members (app_id, account_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (app_id, account_id) DO UPDATE SET role = excluded.role",
                &[&app.0, &account.0, &role.as_str()],
            )?;
            Ok(())
        })
    }

    fn remove_member(&self, app: AppId, account: AccountId, audit: &NewAuditEvent) -> StoreResult<bool> {
        self.write_changed(audit, |tx| {
            let n = tx.execute(
                "DELETE FROM app_members WHERE app_id = $1 AND account_id = $2 AND role <> 'owner'",
                &[&app.0, &account.0],
            )?;
            Ok(n > 0)
        })
    }

    fn add_key(&self, app: AppId, key: &NewKey, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<Key> {
        self.write(audit, |tx| insert_key(tx, app, key, now))
    }

    fn replace_key_secret(
        &self,
        app: AppId,
        key: KeyId,
        new: &NewKey,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Key>> {
        self.write_if(audit, |tx| {
            let row = tx.query_opt(
                &format!(
                    "UPDATE app_keys SET value = $1, hash = $2, hint = $3 WHERE id = $4 AND app_id = $5
                     RETURNING {KEY_COLUMNS}"
                ),
                &[&new.value, &new.hash, &new.hint, &key.0, &app.0],
            )?;
            row.map(|r| key_of(&r, 0)).transpose()
        })
    }

    fn delete_key(&self, app: AppId, key: KeyId, audit: &NewAuditEvent) -> StoreResult<bool> {
        self.write_changed(audit, |tx| {
            let n = tx.execute("DELETE FROM app_keys WHERE id = $1 AND app_id = $2", &[&key.0, &app.0])?;
            // A permission bound to the key (multi_app) dies with it and cannot come back.
            tx.execute(
                "UPDATE grants SET revoked_at = $1, revoke_reason = 'key deleted'
                 WHERE app_id = $2 AND key_id = $3 AND revoked_at IS NULL",
                &[&audit.at.0, &app.0, &key.0],
            )?;
            Ok(n > 0)
        })
    }

    fn set_key_platforms(
        &self,
        app: AppId,
        key: KeyId,
        platforms: &Platforms,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Key>> {
        let json = serde_json::to_value(platforms).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write_if(audit, |tx| {
            let row = tx.query_opt(
                &format!("UPDATE app_keys SET platforms = $1 WHERE id = $2 AND app_id = $3 RETURNING {KEY_COLUMNS}"),
                &[&json, &key.0, &app.0],
            )?;
            row.map(|r| key_of(&r, 0)).transpose()
        })
    }

    fn set_product(&self, app: AppId, product: &str, activated: bool, audit: &NewAuditEvent) -> StoreResult<()> {
        self.write(audit, |tx| {
            tx.execute(
                "INSERT INTO app_products (app_id, product, activated) VALUES ($1, $2, $3)
                 ON CONFLICT (app_id, product) DO UPDATE SET activated = excluded.activated",
                &[&app.0, &product, &activated],
            )?;
            Ok(())
        })
    }

    fn set_app_status(&self, app: AppId, status: AppStatus, audit: &NewAuditEvent) -> StoreResult<Option<AppRecord>> {
        self.write_if(audit, |tx| {
            let n = tx.execute(
                "UPDATE apps SET status_before_block = CASE WHEN $1 = 'blocked' THEN \
                       CASE WHEN status = 'blocked' THEN status_before_block ELSE status END END, status = $1,
                       last_active_at = CASE WHEN $1 = 'active' AND status <> 'active'
                         THEN GREATEST(COALESCE(last_active_at, 0), $3) ELSE last_active_at END
                 WHERE id = $2",
                &[&status.as_str(), &app.0, &audit.at.0],
            )?;
            if n == 0 { Ok(None) } else { record_in(tx, app).map(Some) }
        })
    }

    fn record_activity(&self, activity: &[ActivityRow], day_start: i64) -> StoreResult<()> {
        let ids: Vec<i64> = activity.iter().map(|r| r.app.0).collect();
        let ats: Vec<i64> = activity.iter().map(|r| r.last_call.0).collect();
        let (mut count_ids, mut rules, mut calls) = (Vec::new(), Vec::new(), Vec::new());
        for row in activity {
            for (rule, n) in &row.calls {
                count_ids.push(row.app.0);
                rules.push(rule.clone());
                calls.push(cap(*n));
            }
        }
        // No write lock: this is not a change of state and takes no audit seq. One statement, so a
        // retry after a lost connection cannot add the calls twice.
        self.once(|c| {
            c.execute(
                "WITH a AS (SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS a(id, at)),
                 touched AS (
                   UPDATE apps SET last_active_at = greatest(coalesce(apps.last_active_at, 0), a.at)
                   FROM a WHERE apps.id = a.id RETURNING apps.id
                 ),
                 n AS (SELECT * FROM unnest($3::bigint[], $4::text[], $5::bigint[]) AS n(id, rule, calls))
                 INSERT INTO usage_daily (app_id, day_start, rule, calls)
                 SELECT n.id, $6, n.rule, n.calls FROM n JOIN touched ON touched.id = n.id
                 ON CONFLICT (app_id, day_start, rule) DO UPDATE SET calls = usage_daily.calls + excluded.calls",
                &[&ids, &ats, &count_ids, &rules, &calls, &day_start],
            )?;
            Ok(())
        })
    }

    fn daily_calls(&self, app: AppId, since: i64) -> StoreResult<Vec<(i64, String, u64)>> {
        self.read(|c| {
            c.query(
                r#"SELECT day_start, rule, calls FROM usage_daily WHERE app_id = $1 AND day_start >= $2
                   ORDER BY day_start, rule COLLATE "C""#,
                &[&app.0, &since],
            )?
            .iter()
            .map(|r| Ok((r.try_get::<_, i64>(0)?, r.try_get(1)?, u64::try_from(r.try_get::<_, i64>(2)?).unwrap_or(0))))
            .collect()
        })
    }

    fn idle_apps(&self, cutoff: Timestamp) -> StoreResult<Vec<AppId>> {
        self.read(|c| {
            c.query(
                "SELECT id FROM apps WHERE status = 'active' AND original_app_id IS NULL
                 AND coalesce(last_active_at, created_at) < $1 ORDER BY id",
                &[&cutoff.0],
            )?
            .iter()
            .map(|r| Ok(AppId(r.try_get(0)?)))
            .collect()
        })
    }

    fn suspend_if_idle(
        &self,
        app: AppId,
        cutoff: Timestamp,
        messages: &[permgate_core::notify::NewMessage],
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        self.transaction_or_rollback(WRITE_LOCK, |tx| {
            let n = tx.execute(
                "UPDATE apps SET status = 'suspended' WHERE id = $1 AND status = 'active'
                 AND coalesce(last_active_at, created_at) < $2",
                &[&app.0, &cutoff.0],
            )?;
            if n == 0 {
                return Ok((false, false));
            }
            for m in messages {
                workflow::insert_message(tx, m, audit.at)?;
            }
            self.append_audit(tx, audit)?;
            Ok((true, true))
        })
    }

    fn reactivate(&self, app: AppId, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<Option<AppRecord>> {
        self.write_if(audit, |tx| {
            let n = tx.execute(
                "UPDATE apps SET status = 'active', last_active_at = $1 WHERE id = $2 AND status = 'suspended'",
                &[&now.0, &app.0],
            )?;
            if n == 0 { Ok(None) } else { record_in(tx, app).map(Some) }
        })
    }

    fn set_paid_usage(&self, app: AppId, paid: Option<&PaidUsage>, audit: &NewAuditEvent) -> StoreResult<()> {
        self.write(audit, |tx| {
            match paid {
                None => tx.execute("DELETE FROM paid_usage WHERE app_id = $1", &[&app.0])?,
                Some(p) => {
                    let rules = serde_json::json!(p.rules);
                    tx.execute(
                        "INSERT INTO paid_usage (app_id, rules, daily_cap, monthly_cap) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (app_id) DO UPDATE SET rules = excluded.rules, daily_cap = excluded.daily_cap,
                         monthly_cap = excluded.monthly_cap",
                        &[&app.0, &rules, &cap(p.daily_cap), &cap(p.monthly_cap)],
                    )?
                }
            };
            Ok(())
        })
    }
}

impl QuotaStore for PostgresStore {
    fn save_counters(&self, counters: &[SavedCounter]) -> StoreResult<()> {
        if counters.is_empty() {
            return Ok(());
        }
        self.read(|c| save_counters(c, counters))
    }

    fn load_counters(&self, now: Timestamp) -> StoreResult<Vec<SavedCounter>> {
        self.read(|c| {
            c.execute("DELETE FROM quota_counters WHERE window_end <= $1", &[&now.0])?;
            let rows = c.query("SELECT rule_id, scope, window_start, window_end, count FROM quota_counters", &[])?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(SavedCounter {
                    rule_id: r.try_get(0)?,
                    scope: r.try_get::<_, i64>(1)?.cast_unsigned(),
                    window_start: r.try_get(2)?,
                    window_end: r.try_get(3)?,
                    count: r.try_get::<_, i64>(4)?.cast_unsigned(),
                });
            }
            Ok(out)
        })
    }
}

/// Saves `counters`, keeping the larger count where one is saved already, in one statement.
fn save_counters(c: &mut impl GenericClient, counters: &[SavedCounter]) -> Tried<()> {
    let rule_ids: Vec<&str> = counters.iter().map(|c| c.rule_id.as_str()).collect();
    let scopes: Vec<i64> = counters.iter().map(|c| c.scope.cast_signed()).collect();
    let starts: Vec<i64> = counters.iter().map(|c| c.window_start).collect();
    let ends: Vec<i64> = counters.iter().map(|c| c.window_end).collect();
    let counts: Vec<i64> = counters.iter().map(|c| cap(c.count)).collect();
    c.execute(
        "INSERT INTO quota_counters (rule_id, scope, window_start, window_end, count)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
         ON CONFLICT (rule_id, scope, window_start)
         DO UPDATE SET count = greatest(quota_counters.count, excluded.count)",
        &[&rule_ids, &scopes, &starts, &ends, &counts],
    )?;
    Ok(())
}

/// A count or cap as SQL's signed 64-bit integer (saturating: no count comes near it).
fn cap(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl GrantStore for PostgresStore {
    fn insert_grant(&self, g: &NewGrant, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<Grant> {
        let id = self.write(audit, |tx| {
            if workflow::held_past(tx, g, now)? {
                return Err(g.held_already().into());
            }
            insert_grant_row(tx, g, now)
        })?;
        Ok(g.stored(id, now))
    }

    fn revoke_grant(
        &self,
        app: AppId,
        of: GrantOf<'_>,
        cascade: Cascade<'_>,
        by: AccountId,
        reason: &str,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Grant>> {
        self.write_if_audit(|tx| {
            let held = tx
                .query_opt(
                    &format!(
                        "SELECT {GRANT_COLUMNS} FROM grants WHERE {} ORDER BY id DESC LIMIT 1",
                        workflow::GRANTS_OF
                    ),
                    &[&app.0, &of.permission, &of.key.map(|k| k.0), &of.rule],
                )?
                .map(|r| grant_row(&r))
                .transpose()?;
            let Some(held) = held else { return Ok(None) };
            let lost = workflow::revoke_of(tx, app, of, cascade, Some(by), reason, now)?;
            let audit = lost.map_or_else(|| audit.clone(), |(revoked, unset)| audit.losing(&revoked, &unset));
            Ok(Some((held, audit)))
        })
    }
}

impl AuditStore for PostgresStore {
    fn record_event(&self, event: &NewAuditEvent) -> StoreResult<()> {
        self.write(event, |_| Ok(()))
    }

    fn record_alert(
        &self,
        event: &NewAuditEvent,
        messages: &[permgate_core::notify::NewMessage],
        counted: Option<&SavedCounter>,
    ) -> StoreResult<()> {
        self.write(event, |tx| {
            if let Some(c) = counted {
                save_counters(tx, std::slice::from_ref(c))?;
            }
            for m in messages {
                workflow::insert_message(tx, m, event.at)?;
            }
            Ok(())
        })
    }

    fn audit_events(&self, app: Option<AppId>, limit: usize) -> StoreResult<Vec<AuditEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let app = app.map(|a| a.0);
        self.read(|c| {
            c.query(
                "SELECT seq, at, actor, action, target, app_id, before, after, prev_hash, hash FROM audit_events
                 WHERE ($1::bigint IS NULL OR app_id = $1) ORDER BY seq LIMIT $2",
                &[&app, &limit],
            )?
            .iter()
            .map(|r| {
                Ok(AuditEvent {
                    seq: r.try_get(0)?,
                    event: NewAuditEvent {
                        at: Timestamp(r.try_get(1)?),
                        actor: r.try_get::<_, Option<i64>>(2)?.map(AccountId),
                        action: r.try_get(3)?,
                        target: r.try_get(4)?,
                        app_id: r.try_get::<_, Option<i64>>(5)?.map(AppId),
                        before: json(r.try_get(6)?)?,
                        after: json(r.try_get(7)?)?,
                    },
                    prev_hash: r.try_get(8)?,
                    hash: r.try_get(9)?,
                })
            })
            .collect()
        })
    }

    fn audit_head(&self) -> StoreResult<Option<(i64, String)>> {
        self.read(|c| {
            c.query_opt("SELECT seq, hash FROM audit_head WHERE id = 1", &[])?
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .transpose()
        })
    }
}

impl ChangeFeed for PostgresStore {
    fn latest_change(&self) -> StoreResult<i64> {
        self.read(|c| Ok(c.query_one("SELECT coalesce(max(seq), 0)::bigint FROM change_log", &[])?.try_get(0)?))
    }

    fn changes_since(&self, seq: i64) -> StoreResult<(i64, Vec<AppId>)> {
        let rows: Vec<(i64, i64)> = self.read(|c| {
            c.query("SELECT seq, app_id FROM change_log WHERE seq > $1 ORDER BY seq", &[&seq])?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })?;
        let mut newest = seq;
        let mut apps = Vec::new();
        for (s, app) in rows {
            newest = newest.max(s);
            if !apps.contains(&AppId(app)) {
                apps.push(AppId(app));
            }
        }
        Ok((newest, apps))
    }

    /// Waits on a LISTEN connection of its own for the first notification of the schema's
    /// channel, then drains those already queued. Any failure drops that connection (the next
    /// call reconnects) and is returned: the caller falls back to polling.
    fn wait_for_change(&self, timeout: Duration) -> StoreResult<()> {
        let mut slot = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        let listener = match slot.as_mut() {
            Some(listener) => listener,
            None => {
                let mut client = self.pool.connect()?;
                client
                    .batch_execute(&format!("LISTEN {}", quote_ident(&self.channel)))
                    .map_err(|e| StoreError::Backend(format!("cannot listen for changes: {}", describe(&e))))?;
                slot.insert(Listener { client, checked: Instant::now() })
            }
        };
        match listener.wait(timeout) {
            Ok(()) => Ok(()),
            Err(e) => {
                *slot = None;
                Err(e)
            }
        }
    }
}

/// The connection LISTENing to the schema's channel.
struct Listener {
    client: Client,
    /// When the server last answered on it.
    checked: Instant,
}

impl Listener {
    /// Blocks until a notification arrives or `timeout` passes, then drains the notifications
    /// already queued. An error means the connection is unusable.
    fn wait(&mut self, timeout: Duration) -> StoreResult<()> {
        let failed =
            |e: postgres::Error| StoreError::Backend(format!("listening for changes failed: {}", describe(&e)));
        let woken = {
            let mut notifications = self.client.notifications();
            let woken = notifications.timeout_iter(timeout).next().map_err(failed)?.is_some();
            if woken {
                // Writes that landed together wake the caller once.
                let mut queued = notifications.iter();
                while queued.next().map_err(failed)?.is_some() {}
            }
            woken
        };
        // A closed connection ends the wait early without an error.
        if self.client.is_closed() {
            return Err(StoreError::Backend("the connection listening for changes was closed".into()));
        }
        if woken {
            self.checked = Instant::now();
        } else if self.checked.elapsed() >= LISTENER_CHECK {
            // A connection that vanished without a word (a host gone, a firewall dropping it)
            // would otherwise leave the wait silent for ever.
            self.client.is_valid(LISTENER_CHECK_TIMEOUT).map_err(failed)?;
            self.checked = Instant::now();
        }
        Ok(())
    }
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn ping(&self) -> StoreResult<()> {
        self.read(|c| Ok(c.batch_execute("SELECT 1")?))
    }

    fn migration_status(&self) -> StoreResult<MigrationStatus> {
        Ok(MigrationStatus { current: self.read(current_version)?, latest: latest_version() })
    }

    fn migrate_with(&self, starting: &mut dyn FnMut(i64, &str)) -> StoreResult<Vec<i64>> {
        self.apply_migrations(starting)
    }
}

// ---- names, errors ----

/// `permgate_changes_<schema>`, cut to the longest identifier PostgreSQL keeps. Two long schema
/// names sharing a prefix would share a channel: their nodes only wake each other needlessly.
fn channel_name(schema: &str) -> String {
    let mut name = format!("{CHANNEL_PREFIX}{schema}");
    if name.len() > MAX_IDENTIFIER {
        let mut end = MAX_IDENTIFIER;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub use permgate_core::secret::redact_url as redact;

/// The driver's error with its cause (its `Display` leaves the cause out).
fn describe(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Whether `e` means the connection it came from is gone, or can no longer be trusted.
fn connection_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        // 08: connection exception; 57P: the server is shutting down or cut the connection.
        Some(db) => db.code().code().starts_with("08") || db.code().code().starts_with("57P"),
        // I/O, protocol and timeout failures (and conversion errors, which a new connection
        // repeats harmlessly).
        None => true,
    }
}

/// A constraint refusing the write is a conflict, as on SQLite; the message names the
/// constraint, never the refused values (it may reach a client). Anything else is a backend
/// failure.
fn store_error(e: &postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("23") => {
            if *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("accounts_name_key") {
                StoreError::Conflict("an account with this name exists already".into())
            } else {
                StoreError::Conflict(db.message().to_owned())
            }
        }
        _ => StoreError::Backend(describe(e)),
    }
}

// ---- row mapping ----

const ACCOUNT_COLUMNS: &str = "id, name, role, blocked, created_at, email";
const GRANT_COLUMNS: &str =
    "id, app_id, permission, key_id, source, granted_by, granted_at, expires_at, params, reason";

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> StoreResult<T> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("unknown {what} `{text}`")))
}

fn json(text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("bad JSON in the database: {e}")))
}

fn account_row(r: &Row) -> Tried<Account> {
    Ok(Account {
        id: AccountId(r.try_get(0)?),
        name: r.try_get(1)?,
        role: parse(r.try_get(2)?, "role")?,
        email: r.try_get(5)?,
        blocked: r.try_get(3)?,
        created_at: Timestamp(r.try_get(4)?),
    })
}

fn grant_row(r: &Row) -> Tried<Grant> {
    Ok(Grant {
        id: r.try_get(0)?,
        app_id: AppId(r.try_get(1)?),
        permission: r.try_get(2)?,
        key_id: r.try_get::<_, Option<i64>>(3)?.map(KeyId),
        source: parse::<GrantSource>(r.try_get(4)?, "grant source")?,
        granted_by: r.try_get::<_, Option<i64>>(5)?.map(AccountId),
        granted_at: Timestamp(r.try_get(6)?),
        expires_at: r.try_get::<_, Option<i64>>(7)?.map(Timestamp),
        params: r.try_get(8)?,
        reason: r.try_get(9)?,
    })
}

fn insert_grant_row(tx: &mut Transaction<'_>, g: &NewGrant, now: Timestamp) -> Tried<i64> {
    let row = tx.query_one(
        "INSERT INTO grants (app_id, permission, key_id, source, granted_by, granted_at, expires_at, params, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        &[
            &g.app_id.0,
            &g.permission,
            &g.key_id.map(|k| k.0),
            &g.source.as_str(),
            &g.granted_by.map(|a| a.0),
            &now.0,
            &g.expires_at.map(|t| t.0),
            &g.params,
            &g.reason,
        ],
    )?;
    Ok(row.try_get(0)?)
}

fn insert_key(tx: &mut Transaction<'_>, app: AppId, key: &NewKey, now: Timestamp) -> Tried<Key> {
    let row = tx.query_one(
        &format!(
            "INSERT INTO app_keys (app_id, kind, value, hash, hint, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING {KEY_COLUMNS}"
        ),
        &[&app.0, &key.kind.as_str(), &key.value, &key.hash, &key.hint, &now.0],
    )?;
    key_of(&row, 0)
}

/// Every app's record (`only: None`) or one app's, read from one snapshot of the database: one
/// query per table however many apps there are.
fn load_records(c: &mut Client, only: Option<AppId>) -> Tried<Vec<AppRecord>> {
    let mut tx = c.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
    let records = load_records_in(&mut tx, only)?;
    tx.commit()?;
    Ok(records)
}

/// The record of `app`, which the write in `tx` has just changed (or made), read in `tx`.
fn record_in(tx: &mut Transaction<'_>, app: AppId) -> Tried<AppRecord> {
    load_records_in(tx, Some(app))?
        .pop()
        .ok_or_else(|| Fail::Store(StoreError::Corrupt(format!("app {app} unreadable in its own transaction"))))
}

/// [`load_records`] within `tx`, whose queries must all see one state: a repeatable-read
/// transaction, or a write holding `WRITE_LOCK` (every writer of the tables read here takes it,
/// so none commits between these queries, read-committed as they are).
fn load_records_in(tx: &mut Transaction<'_>, only: Option<AppId>) -> Tried<Vec<AppRecord>> {
    let only = only.map(|a| a.0);
    let mut records = BTreeMap::new();
    for r in tx.query(
        "SELECT a.id, a.name, a.company_name, a.category, a.owner_id, a.status, a.created_at, o.blocked,
         a.original_app_id, a.status_before_block
         FROM apps a JOIN accounts o ON o.id = a.owner_id WHERE ($1::bigint IS NULL OR a.id = $1) ORDER BY a.id",
        &[&only],
    )? {
        let id: i64 = r.try_get(0)?;
        let app = App {
            id: AppId(id),
            name: r.try_get(1)?,
            company_name: r.try_get(2)?,
            category: r.try_get(3)?,
            owner: AccountId(r.try_get(4)?),
            status: parse::<AppStatus>(r.try_get(5)?, "app status")?,
            created_at: Timestamp(r.try_get(6)?),
            original: r.try_get::<_, Option<i64>>(8)?.map(AppId),
            status_before_block: r
                .try_get::<_, Option<String>>(9)?
                .map(|s| parse::<AppStatus>(&s, "app status"))
                .transpose()?,
        };
        let owner_blocked = r.try_get(7)?;
        records.insert(id, AppRecord::bare(app, owner_blocked));
    }
    // Every query reads the same snapshot, so no row belongs to an app the first one missed.

    for r in tx.query(
        "SELECT app_id, account_id, role FROM app_members WHERE ($1::bigint IS NULL OR app_id = $1)
         ORDER BY app_id, role = 'owner' DESC, account_id",
        &[&only],
    )? {
        if let Some(record) = record_of(&mut records, &r)? {
            let role: &str = r.try_get(2)?;
            record.members.push(Member { account_id: AccountId(r.try_get(1)?), role: parse(role, "member role")? });
        }
    }

    for r in tx.query(
        &format!(
            "SELECT app_id, {KEY_COLUMNS} FROM app_keys WHERE ($1::bigint IS NULL OR app_id = $1) ORDER BY app_id, id"
        ),
        &[&only],
    )? {
        if let Some(record) = record_of(&mut records, &r)? {
            record.keys.push(key_of(&r, 1)?);
        }
    }

    // COLLATE "C": byte order, as SQLite sorts, whatever the database's collation.
    for r in tx.query(
        r#"SELECT app_id, product, activated FROM app_products WHERE ($1::bigint IS NULL OR app_id = $1)
           ORDER BY app_id, product COLLATE "C""#,
        &[&only],
    )? {
        if let Some(record) = record_of(&mut records, &r)? {
            record.products.push((r.try_get(1)?, r.try_get(2)?));
        }
    }

    for r in tx.query(
        &format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE ($1::bigint IS NULL OR app_id = $1) AND revoked_at IS NULL
             ORDER BY app_id, id"
        ),
        &[&only],
    )? {
        let grant = grant_row(&r)?;
        if let Some(record) = records.get_mut(&grant.app_id.0) {
            record.grants.push(grant);
        }
    }
    for r in tx.query(
        "SELECT app_id, rules, daily_cap, monthly_cap FROM paid_usage WHERE ($1::bigint IS NULL OR app_id = $1)",
        &[&only],
    )? {
        if let Some(record) = record_of(&mut records, &r)? {
            let rules: serde_json::Value = r.try_get(1)?;
            record.paid = Some(PaidUsage {
                rules: serde_json::from_value(rules)
                    .map_err(|e| StoreError::Corrupt(format!("bad paid rules: {e}")))?,
                daily_cap: r.try_get::<_, i64>(2)?.cast_unsigned(),
                monthly_cap: r.try_get::<_, i64>(3)?.cast_unsigned(),
            });
        }
    }
    workflow::load_settings(tx, only, &mut records)?;
    Ok(records.into_values().collect())
}

/// A key's columns, in the order [`key_of`] reads them.
const KEY_COLUMNS: &str = "id, kind, value, hash, hint, platforms, created_at";

/// The key in `r`'s [`KEY_COLUMNS`], which start at column `at`.
fn key_of(r: &Row, at: usize) -> Tried<Key> {
    let id: i64 = r.try_get(at)?;
    let platforms: serde_json::Value = r.try_get(at + 5)?;
    Ok(Key {
        id: KeyId(id),
        kind: parse::<KeyKind>(r.try_get(at + 1)?, "key kind")?,
        value: r.try_get(at + 2)?,
        hash: r.try_get(at + 3)?,
        hint: r.try_get(at + 4)?,
        platforms: serde_json::from_value(platforms)
            .map_err(|e| StoreError::Corrupt(format!("bad platforms of key {id}: {e}")))?,
        created_at: Timestamp(r.try_get(at + 6)?),
    })
}

/// The record of the app whose id is the row's first column.
fn record_of<'a>(records: &'a mut BTreeMap<i64, AppRecord>, r: &Row) -> Tried<Option<&'a mut AppRecord>> {
    Ok(records.get_mut(&r.try_get::<_, i64>(0)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/permgate"), "postgres://app:***@db:5432/permgate");
        assert_eq!(redact("postgres://app@db/permgate?sslmode=disable"), "postgres://app@db/permgate?sslmode=disable");
        assert_eq!(
            redact("postgres://db/permgate?user=a&password=s3cret&x=1"),
            "postgres://db/permgate?user=a&password=***&x=1"
        );
        assert_eq!(redact("host=db user=app password=s3cret dbname=p"), "host=db user=app password=*** dbname=p");
    }

    #[test]
    fn channel_names_fit_in_an_identifier() {
        assert_eq!(channel_name("public"), "permgate_changes_public");
        let long = "s".repeat(80);
        assert_eq!(channel_name(&long).len(), MAX_IDENTIFIER);
        assert_eq!(channel_name(&format!("x{}", "é".repeat(40))).len(), MAX_IDENTIFIER - 1, "cut on a char boundary");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    }
}
