//! permgate's storage ports on an embedded SQLite file: nothing to install, created on first start.
//!
//! # Layout
//! - `migrations/NNNN_*.sql`: plain SQL, numbered, append-only; [`SqliteStore::open`] applies
//!   pending ones in a transaction and refuses a database newer than this binary.
//! - [`SqliteStore`] implements every port of `permgate_core::ports` on one connection behind a
//!   mutex (WAL, `synchronous = FULL`: a committed write survives a crash or power loss).
//! - Every mutation writes its audit event in the same transaction, chained to the previous hash.
//! - Row mapping helpers are at the bottom.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use permgate_core::audit::{AuditEvent, GENESIS_HASH, NewAuditEvent};
use permgate_core::model::{
    Account, AccountId, App, AppId, AppRecord, AppStatus, Grant, GrantSource, Key, KeyId, KeyKind, Member, MemberRole,
    PaidUsage, Platforms, Role,
};
use permgate_core::ports::{
    AccountStore, ActivityRow, AppStore, AuditStore, Cascade, ChangeFeed, GrantOf, GrantStore, MigrationStatus,
    NewAccount, NewApp, NewGrant, NewKey, QuotaStore, SavedCounter, Store, StoreError, StoreResult,
};
use permgate_core::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

mod ops;
mod workflow;

/// The migrations this binary knows, in order.
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

pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: String,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            let detail = msg.clone().unwrap_or_default();
            if detail.contains("accounts.name") {
                StoreError::Conflict("an account with this name exists already".into())
            } else {
                StoreError::Conflict(detail)
            }
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let store = Self::open_unmigrated(path)?;
        store.apply_migrations(&mut |_, _| {})?;
        Ok(store)
    }

    /// Opens without migrating, e.g. to report the schema status.
    pub fn open_unmigrated(path: &Path) -> StoreResult<SqliteStore> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("cannot open SQLite database {}: {e}", path.display())))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )
        .map_err(backend)?;
        Ok(SqliteStore { conn: Mutex::new(conn), path: path.display().to_string() })
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> StoreResult<SqliteStore> {
        let conn = Connection::open_in_memory().map_err(backend)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;").map_err(backend)?;
        let store = SqliteStore { conn: Mutex::new(conn), path: ":memory:".into() };
        store.apply_migrations(&mut |_, _| {})?;
        Ok(store)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply_migrations(&self, starting: &mut dyn FnMut(i64, &str)) -> StoreResult<Vec<i64>> {
        let mut conn = self.conn();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);",
        )
        .map_err(backend)?;
        let current = current_version(&conn)?;
        let latest = latest_version();
        if current > latest {
            return Err(StoreError::Backend(format!(
                "the database schema is version {current}, newer than this permgate binary knows ({latest}); upgrade permgate"
            )));
        }
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
            starting(*version, name);
            let tx = conn.transaction().map_err(backend)?;
            tx.execute_batch(sql)
                .map_err(|e| StoreError::Backend(format!("migration {version} ({name}) failed: {e}")))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, strftime('%s','now'))",
                params![version, name],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            applied.push(*version);
        }
        Ok(applied)
    }

    /// Like [`SqliteStore::write`], for a write that may find nothing to do: when `f` answers
    /// `None`, the transaction is rolled back and no audit event is written.
    fn write_if<T>(
        &self,
        audit: &NewAuditEvent,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<Option<T>>,
    ) -> StoreResult<Option<T>> {
        self.write_if_audit(|tx| Ok(f(tx)?.map(|out| (out, audit.clone()))))
    }

    /// [`SqliteStore::write_if`] for a write whose audit event says what the transaction found
    /// (`f` returns it with its result).
    fn write_if_audit<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<Option<(T, NewAuditEvent)>>,
    ) -> StoreResult<Option<T>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(backend)?;
        let Some((out, audit)) = f(&tx)? else { return Ok(None) };
        append_audit(&tx, &audit)?;
        tx.commit().map_err(backend)?;
        Ok(Some(out))
    }

    /// [`SqliteStore::write`] for a change that may find nothing to change (`f` says whether it
    /// changed anything): then nothing is committed, not even `audit`, as when two callers make
    /// the same change at once and the second finds it done.
    fn write_changed(
        &self,
        audit: &NewAuditEvent,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<bool>,
    ) -> StoreResult<bool> {
        Ok(self.write_if(audit, |tx| Ok(f(tx)?.then_some(())))?.is_some())
    }

    fn write<T>(&self, audit: &NewAuditEvent, f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(backend)?;
        let out = f(&tx)?;
        append_audit(&tx, audit)?;
        tx.commit().map_err(backend)?;
        Ok(out)
    }
}

fn current_version(conn: &Connection) -> StoreResult<i64> {
    let exists: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if !exists {
        return Ok(0);
    }
    conn.query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(backend)
}

fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _, _)| *v)
}

fn append_audit(tx: &Transaction<'_>, e: &NewAuditEvent) -> StoreResult<()> {
    let last: Option<(i64, String)> = tx
        .query_row("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)?;
    let (seq, prev) = last.map_or((1, GENESIS_HASH.to_owned()), |(s, h)| (s + 1, h));
    let hash = e.chain_hash(seq, &prev);
    tx.execute(
        "INSERT INTO audit_events (seq, at, actor, action, target, app_id, before, after, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            seq,
            e.at.0,
            e.actor.map(|a| a.0),
            e.action,
            e.target,
            e.app_id.map(|a| a.0),
            e.before.to_string(),
            e.after.to_string(),
            prev,
            hash
        ],
    )
    .map_err(backend)?;
    tx.execute(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        params![seq, hash],
    )
    .map_err(backend)?;
    if let Some(app) = e.app_id {
        tx.execute("INSERT INTO change_log (app_id, at) VALUES (?1, ?2)", params![app.0, e.at.0]).map_err(backend)?;
    }
    Ok(())
}

impl AccountStore for SqliteStore {
    fn create_account(&self, new: &NewAccount, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<Account> {
        let id = self.write(audit, |tx| {
            tx.execute(
                "INSERT INTO accounts (name, role, email, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![new.name, new.role.as_str(), new.email, new.token_hash, now.0],
            )
            .map_err(backend)?;
            Ok(tx.last_insert_rowid())
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
        self.conn()
            .query_row(
                "SELECT id, name, role, blocked, created_at, email FROM accounts WHERE id = ?1",
                [id.0],
                account_row,
            )
            .optional()
            .map_err(backend)?
            .transpose()
    }

    fn account_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<(Account, String)>> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, name, role, blocked, created_at, email, token_hash FROM accounts WHERE token_hash = ?1",
                [token_hash],
                |r| Ok((account_row(r)?, r.get::<_, String>(6)?)),
            )
            .optional()
            .map_err(backend)?;
        match row {
            None => Ok(None),
            Some((account, hash)) => Ok(Some((account?, hash))),
        }
    }

    fn accounts(&self) -> StoreResult<Vec<Account>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, name, role, blocked, created_at, email FROM accounts ORDER BY id")
            .map_err(backend)?;
        let rows = stmt.query_map([], account_row).map_err(backend)?;
        rows.map(|r| r.map_err(backend)?).collect()
    }

    fn count_admins(&self) -> StoreResult<u64> {
        self.conn().query_row("SELECT count(*) FROM accounts WHERE role = 'admin'", [], |r| r.get(0)).map_err(backend)
    }

    fn set_account_blocked(
        &self,
        account: AccountId,
        blocked: bool,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Vec<AppId>>> {
        self.write(audit, |tx| {
            let n = tx
                .execute("UPDATE accounts SET blocked = ?1 WHERE id = ?2", params![blocked, account.0])
                .map_err(backend)?;
            if n == 0 {
                return Ok(None);
            }
            let mut stmt = tx.prepare("SELECT id FROM apps WHERE owner_id = ?1 ORDER BY id").map_err(backend)?;
            let apps = stmt
                .query_map([account.0], |r| r.get::<_, i64>(0))
                .map_err(backend)?
                .map(|r| r.map(AppId).map_err(backend))
                .collect::<StoreResult<Vec<_>>>()?;
            for app in &apps {
                tx.execute("INSERT INTO change_log (app_id, at) VALUES (?1, ?2)", params![app.0, audit.at.0])
                    .map_err(backend)?;
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
            tx.execute(
                "INSERT INTO accounts (name, role, token_hash, created_at) VALUES (?1, 'admin', ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, role = 'admin'",
                params![name, token_hash, now.0],
            )
            .map_err(backend)?;
            tx.query_row(
                "SELECT id, name, role, blocked, created_at, email FROM accounts WHERE name = ?1",
                [name],
                account_row,
            )
            .map_err(backend)?
        })
    }
}

impl AppStore for SqliteStore {
    fn create_app(
        &self,
        new: &NewApp,
        keys: &[NewKey],
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<AppRecord> {
        let mut audit = audit.clone();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(backend)?;
        tx.execute(
            "INSERT INTO apps (name, company_name, category, owner_id, created_at, original_app_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![new.name, new.company_name, new.category, new.owner.0, now.0, new.original.map(|o| o.0)],
        )
        .map_err(backend)?;
        let id = AppId(tx.last_insert_rowid());
        tx.execute(
            "INSERT INTO app_members (app_id, account_id, role) VALUES (?1, ?2, 'owner')",
            params![id.0, new.owner.0],
        )
        .map_err(backend)?;
        for m in &new.members {
            tx.execute(
                "INSERT INTO app_members (app_id, account_id, role) VALUES (?1, ?2, ?3)",
                params![id.0, m.account_id.0, m.role.as_str()],
            )
            .map_err(backend)?;
        }
        for g in &new.grants {
            insert_grant_row(&tx, &NewGrant { app_id: id, ..g.clone() }, now)?;
        }
        for key in keys {
            insert_key(&tx, id, key, now)?;
        }
        audit.app_id = Some(id);
        audit.target = format!("app:{id}");
        append_audit(&tx, &audit)?;
        // Read back before the commit: a read after it could fail with the app made.
        let record = record_in(&tx, id)?;
        tx.commit().map_err(backend)?;
        Ok(record)
    }

    fn app_record(&self, id: AppId) -> StoreResult<Option<AppRecord>> {
        let conn = self.conn();
        load_record(&conn, id)
    }

    fn app_records(&self) -> StoreResult<Vec<AppRecord>> {
        let conn = self.conn();
        let ids = all_ids(&conn)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = load_record(&conn, id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn app_ids_of_member(&self, account: AccountId) -> StoreResult<Vec<AppId>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT app_id FROM app_members WHERE account_id = ?1 ORDER BY app_id").map_err(backend)?;
        let rows = stmt.query_map([account.0], |r| r.get::<_, i64>(0)).map_err(backend)?;
        rows.map(|r| r.map(AppId).map_err(backend)).collect()
    }

    fn app_ids(&self) -> StoreResult<Vec<AppId>> {
        all_ids(&self.conn())
    }

    fn set_member(&self, app: AppId, account: AccountId, role: MemberRole, audit: &NewAuditEvent) -> StoreResult<()> {
        self.write(audit, |tx| {
            tx.execute(
                "INSERT INTO app_members (app_id, account_id, role) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app_id, account_id) DO UPDATE SET role = excluded.role",
                params![app.0, account.0, role.as_str()],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn remove_member(&self, app: AppId, account: AccountId, audit: &NewAuditEvent) -> StoreResult<bool> {
        self.write_changed(audit, |tx| {
            let n = tx
                .execute(
                    "DELETE FROM app_members WHERE app_id = ?1 AND account_id = ?2 AND role <> 'owner'",
                    params![app.0, account.0],
                )
                .map_err(backend)?;
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
            updated_key(
                tx,
                &format!(
                    "UPDATE app_keys SET value = ?1, hash = ?2, hint = ?3 WHERE id = ?4 AND app_id = ?5
                     RETURNING {KEY_COLUMNS}"
                ),
                params![new.value, new.hash, new.hint, key.0, app.0],
            )
        })
    }

    fn delete_key(&self, app: AppId, key: KeyId, audit: &NewAuditEvent) -> StoreResult<bool> {
        self.write_changed(audit, |tx| {
            let n = tx
                .execute("DELETE FROM app_keys WHERE id = ?1 AND app_id = ?2", params![key.0, app.0])
                .map_err(backend)?;
            // A permission bound to the key (multi_app) dies with it and cannot come back.
            tx.execute(
                "UPDATE grants SET revoked_at = ?1, revoke_reason = 'key deleted'
                 WHERE app_id = ?2 AND key_id = ?3 AND revoked_at IS NULL",
                params![audit.at.0, app.0, key.0],
            )
            .map_err(backend)?;
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
        let json = serde_json::to_string(platforms).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write_if(audit, |tx| {
            updated_key(
                tx,
                &format!("UPDATE app_keys SET platforms = ?1 WHERE id = ?2 AND app_id = ?3 RETURNING {KEY_COLUMNS}"),
                params![json, key.0, app.0],
            )
        })
    }

    fn set_product(&self, app: AppId, product: &str, activated: bool, audit: &NewAuditEvent) -> StoreResult<()> {
        self.write(audit, |tx| {
            tx.execute(
                "INSERT INTO app_products (app_id, product, activated) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app_id, product) DO UPDATE SET activated = excluded.activated",
                params![app.0, product, activated],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn set_app_status(&self, app: AppId, status: AppStatus, audit: &NewAuditEvent) -> StoreResult<Option<AppRecord>> {
        self.write_if(audit, |tx| {
            let n = tx
                .execute(
                    "UPDATE apps SET status_before_block = CASE WHEN ?1 = 'blocked' THEN \
                       CASE WHEN status = 'blocked' THEN status_before_block ELSE status END END, status = ?1,
                       last_active_at = CASE WHEN ?1 = 'active' AND status <> 'active'
                         THEN max(coalesce(last_active_at, 0), ?3) ELSE last_active_at END
                     WHERE id = ?2",
                    params![status.as_str(), app.0, audit.at.0],
                )
                .map_err(backend)?;
            if n == 0 { Ok(None) } else { record_in(tx, app).map(Some) }
        })
    }

    fn record_activity(&self, activity: &[ActivityRow], day_start: i64) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        for row in activity {
            tx.execute(
                "UPDATE apps SET last_active_at = max(coalesce(last_active_at, 0), ?1) WHERE id = ?2",
                params![row.last_call.0, row.app.0],
            )
            .map_err(backend)?;
            for (rule, calls) in &row.calls {
                tx.execute(
                    "INSERT INTO usage_daily (app_id, day_start, rule, calls)
                     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM apps WHERE id = ?1)
                     ON CONFLICT (app_id, day_start, rule) DO UPDATE SET calls = calls + excluded.calls",
                    params![row.app.0, day_start, rule, cap(*calls)],
                )
                .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    fn daily_calls(&self, app: AppId, since: i64) -> StoreResult<Vec<(i64, String, u64)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT day_start, rule, calls FROM usage_daily WHERE app_id = ?1 AND day_start >= ?2
                 ORDER BY day_start, rule",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![app.0, since], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?.cast_unsigned()))
            })
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn idle_apps(&self, cutoff: Timestamp) -> StoreResult<Vec<AppId>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id FROM apps WHERE status = 'active' AND original_app_id IS NULL
                 AND coalesce(last_active_at, created_at) < ?1 ORDER BY id",
            )
            .map_err(backend)?;
        let rows = stmt.query_map([cutoff.0], |r| r.get::<_, i64>(0)).map_err(backend)?;
        rows.map(|r| r.map(AppId).map_err(backend)).collect()
    }

    fn suspend_if_idle(
        &self,
        app: AppId,
        cutoff: Timestamp,
        messages: &[permgate_core::notify::NewMessage],
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let done = self.write_if(audit, |tx| {
            let n = tx
                .execute(
                    "UPDATE apps SET status = 'suspended' WHERE id = ?1 AND status = 'active'
                     AND coalesce(last_active_at, created_at) < ?2",
                    params![app.0, cutoff.0],
                )
                .map_err(backend)?;
            if n == 0 {
                return Ok(None);
            }
            for m in messages {
                workflow::insert_message(tx, m, audit.at)?;
            }
            Ok(Some(()))
        })?;
        Ok(done.is_some())
    }

    fn reactivate(&self, app: AppId, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<Option<AppRecord>> {
        self.write_if(audit, |tx| {
            let n = tx
                .execute(
                    "UPDATE apps SET status = 'active', last_active_at = ?1 WHERE id = ?2 AND status = 'suspended'",
                    params![now.0, app.0],
                )
                .map_err(backend)?;
            if n == 0 { Ok(None) } else { record_in(tx, app).map(Some) }
        })
    }

    fn set_paid_usage(&self, app: AppId, paid: Option<&PaidUsage>, audit: &NewAuditEvent) -> StoreResult<()> {
        self.write(audit, |tx| {
            match paid {
                None => tx.execute("DELETE FROM paid_usage WHERE app_id = ?1", [app.0]).map_err(backend)?,
                Some(p) => {
                    let rules = serde_json::to_string(&p.rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    tx.execute(
                        "INSERT INTO paid_usage (app_id, rules, daily_cap, monthly_cap) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (app_id) DO UPDATE SET rules = excluded.rules, daily_cap = excluded.daily_cap,
                         monthly_cap = excluded.monthly_cap",
                        params![app.0, rules, cap(p.daily_cap), cap(p.monthly_cap)],
                    )
                    .map_err(backend)?
                }
            };
            Ok(())
        })
    }
}

impl QuotaStore for SqliteStore {
    fn save_counters(&self, counters: &[SavedCounter]) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        for c in counters {
            save_counter(&tx, c)?;
        }
        tx.commit().map_err(backend)
    }

    fn load_counters(&self, now: Timestamp) -> StoreResult<Vec<SavedCounter>> {
        let conn = self.conn();
        conn.execute("DELETE FROM quota_counters WHERE window_end <= ?1", [now.0]).map_err(backend)?;
        let mut stmt = conn
            .prepare("SELECT rule_id, scope, window_start, window_end, count FROM quota_counters")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SavedCounter {
                    rule_id: r.get(0)?,
                    scope: r.get::<_, i64>(1)?.cast_unsigned(),
                    window_start: r.get(2)?,
                    window_end: r.get(3)?,
                    count: r.get::<_, i64>(4)?.cast_unsigned(),
                })
            })
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }
}

/// Saves one counter, keeping the larger count where one is saved already.
fn save_counter(tx: &Transaction<'_>, c: &SavedCounter) -> StoreResult<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO quota_counters (rule_id, scope, window_start, window_end, count) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (rule_id, scope, window_start) DO UPDATE SET count = max(count, excluded.count)",
        )
        .map_err(backend)?;
    stmt.execute(params![c.rule_id, c.scope.cast_signed(), c.window_start, c.window_end, cap(c.count)])
        .map_err(backend)?;
    Ok(())
}

/// A count or cap as SQL's signed 64-bit integer (saturating: no count comes near it).
fn cap(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl GrantStore for SqliteStore {
    fn insert_grant(&self, g: &NewGrant, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<Grant> {
        let id = self.write(audit, |tx| {
            if workflow::held_past(tx, g, now)? {
                return Err(g.held_already());
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
                .query_row(
                    &format!(
                        "SELECT {GRANT_COLUMNS} FROM grants WHERE {} ORDER BY id DESC LIMIT 1",
                        workflow::GRANTS_OF
                    ),
                    params![app.0, of.permission, of.key.map(|k| k.0), of.rule],
                    grant_row,
                )
                .optional()
                .map_err(backend)?
                .transpose()?;
            let Some(held) = held else { return Ok(None) };
            let lost = workflow::revoke_of(tx, app, of, cascade, Some(by), reason, now)?;
            let audit = lost.map_or_else(|| audit.clone(), |(revoked, unset)| audit.losing(&revoked, &unset));
            Ok(Some((held, audit)))
        })
    }
}

impl AuditStore for SqliteStore {
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
            if let Some(counted) = counted {
                save_counter(tx, counted)?;
            }
            for m in messages {
                workflow::insert_message(tx, m, event.at)?;
            }
            Ok(())
        })
    }

    fn audit_events(&self, app: Option<AppId>, limit: usize) -> StoreResult<Vec<AuditEvent>> {
        let conn = self.conn();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = conn
            .prepare(
                "SELECT seq, at, actor, action, target, app_id, before, after, prev_hash, hash FROM audit_events
                 WHERE (?1 IS NULL OR app_id = ?1) ORDER BY seq LIMIT ?2",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![app.map(|a| a.0), limit], |r| {
                let before: String = r.get(6)?;
                let after: String = r.get(7)?;
                Ok((
                    AuditEvent {
                        seq: r.get(0)?,
                        event: NewAuditEvent {
                            at: Timestamp(r.get(1)?),
                            actor: r.get::<_, Option<i64>>(2)?.map(AccountId),
                            action: r.get(3)?,
                            target: r.get(4)?,
                            app_id: r.get::<_, Option<i64>>(5)?.map(AppId),
                            before: serde_json::Value::Null,
                            after: serde_json::Value::Null,
                        },
                        prev_hash: r.get(8)?,
                        hash: r.get(9)?,
                    },
                    before,
                    after,
                ))
            })
            .map_err(backend)?;
        rows.map(|row| {
            let (mut e, before, after) = row.map_err(backend)?;
            e.event.before = json(&before)?;
            e.event.after = json(&after)?;
            Ok(e)
        })
        .collect()
    }

    fn audit_head(&self) -> StoreResult<Option<(i64, String)>> {
        self.conn()
            .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(backend)
    }
}

impl ChangeFeed for SqliteStore {
    fn latest_change(&self) -> StoreResult<i64> {
        self.conn().query_row("SELECT coalesce(max(seq), 0) FROM change_log", [], |r| r.get(0)).map_err(backend)
    }

    fn changes_since(&self, seq: i64) -> StoreResult<(i64, Vec<AppId>)> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT seq, app_id FROM change_log WHERE seq > ?1 ORDER BY seq").map_err(backend)?;
        let rows = stmt.query_map([seq], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).map_err(backend)?;
        let mut newest = seq;
        let mut apps = Vec::new();
        for row in rows {
            let (s, app) = row.map_err(backend)?;
            newest = newest.max(s);
            if !apps.contains(&AppId(app)) {
                apps.push(AppId(app));
            }
        }
        Ok((newest, apps))
    }

    fn wait_for_change(&self, timeout: Duration) -> StoreResult<()> {
        // SQLite has no notifications; another process's writes are found by polling.
        std::thread::sleep(timeout);
        Ok(())
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn ping(&self) -> StoreResult<()> {
        self.conn().query_row("SELECT 1", [], |_| Ok(())).map_err(backend)
    }

    fn migration_status(&self) -> StoreResult<MigrationStatus> {
        let conn = self.conn();
        Ok(MigrationStatus { current: current_version(&conn)?, latest: latest_version() })
    }

    fn migrate_with(&self, starting: &mut dyn FnMut(i64, &str)) -> StoreResult<Vec<i64>> {
        self.apply_migrations(starting)
    }
}

// ---- row mapping ----

const GRANT_COLUMNS: &str =
    "id, app_id, permission, key_id, source, granted_by, granted_at, expires_at, params, reason";

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> StoreResult<T> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("unknown {what} `{text}`")))
}

fn json(text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("bad JSON in the database: {e}")))
}

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<Account>> {
    let role: String = r.get(2)?;
    let (id, name, blocked, created_at, email) = (r.get(0)?, r.get(1)?, r.get(3)?, r.get(4)?, r.get(5)?);
    Ok(parse::<Role>(&role, "role").map(|role| Account {
        id: AccountId(id),
        name,
        role,
        email,
        blocked,
        created_at: Timestamp(created_at),
    }))
}

fn grant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<Grant>> {
    let source: String = r.get(4)?;
    let params: String = r.get(8)?;
    let (id, app_id, permission, key_id, granted_by, granted_at, expires_at, reason) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get::<_, Option<i64>>(3)?,
        r.get::<_, Option<i64>>(5)?,
        r.get(6)?,
        r.get::<_, Option<i64>>(7)?,
        r.get(9)?,
    );
    Ok((|| {
        Ok(Grant {
            id,
            app_id: AppId(app_id),
            permission,
            key_id: key_id.map(KeyId),
            source: parse::<GrantSource>(&source, "grant source")?,
            granted_by: granted_by.map(AccountId),
            granted_at: Timestamp(granted_at),
            expires_at: expires_at.map(Timestamp),
            params: json(&params)?,
            reason,
        })
    })())
}

fn insert_grant_row(tx: &Transaction<'_>, g: &NewGrant, now: Timestamp) -> StoreResult<i64> {
    tx.execute(
        "INSERT INTO grants (app_id, permission, key_id, source, granted_by, granted_at, expires_at, params, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            g.app_id.0,
            g.permission,
            g.key_id.map(|k| k.0),
            g.source.as_str(),
            g.granted_by.map(|a| a.0),
            now.0,
            g.expires_at.map(|t| t.0),
            g.params.to_string(),
            g.reason
        ],
    )
    .map_err(backend)?;
    Ok(tx.last_insert_rowid())
}

fn insert_key(tx: &Transaction<'_>, app: AppId, key: &NewKey, now: Timestamp) -> StoreResult<Key> {
    let row = tx
        .query_row(
            &format!(
                "INSERT INTO app_keys (app_id, kind, value, hash, hint, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 RETURNING {KEY_COLUMNS}"
            ),
            params![app.0, key.kind.as_str(), key.value, key.hash, key.hint, now.0],
            key_row,
        )
        .map_err(backend)?;
    key_of(row)
}

/// The record of `app`, which the write in `tx` has just changed (or made), read in `tx`.
fn record_in(tx: &Transaction<'_>, app: AppId) -> StoreResult<AppRecord> {
    load_record(tx, app)?.ok_or_else(|| StoreError::Corrupt(format!("app {app} unreadable in its own transaction")))
}

/// A key's columns, in the order [`key_row`] reads them.
const KEY_COLUMNS: &str = "id, kind, value, hash, hint, platforms, created_at";

/// A key's row as read: id, kind, value, hash, hint, platforms (JSON), created at.
type KeyRow = (i64, String, Option<String>, String, String, String, i64);

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn key_of((id, kind, value, hash, hint, platforms, created_at): KeyRow) -> StoreResult<Key> {
    Ok(Key {
        id: KeyId(id),
        kind: parse::<KeyKind>(&kind, "key kind")?,
        value,
        hash,
        hint,
        platforms: serde_json::from_str(&platforms)
            .map_err(|e| StoreError::Corrupt(format!("bad platforms of key {id}: {e}")))?,
        created_at: Timestamp(created_at),
    })
}

/// Runs `update` (an `UPDATE app_keys … RETURNING` [`KEY_COLUMNS`]) and reads the key it changed,
/// if any.
fn updated_key(tx: &Transaction<'_>, update: &str, params: impl rusqlite::Params) -> StoreResult<Option<Key>> {
    let row = tx.query_row(update, params, key_row).optional().map_err(backend)?;
    row.map(key_of).transpose()
}

fn all_ids(conn: &Connection) -> StoreResult<Vec<AppId>> {
    let mut stmt = conn.prepare("SELECT id FROM apps ORDER BY id").map_err(backend)?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(backend)?;
    rows.map(|r| r.map(AppId).map_err(backend)).collect()
}

fn load_record(conn: &Connection, id: AppId) -> StoreResult<Option<AppRecord>> {
    let app = conn
        .query_row(
            "SELECT a.id, a.name, a.company_name, a.category, a.owner_id, a.status, a.created_at, o.blocked,
             a.original_app_id, a.status_before_block
             FROM apps a JOIN accounts o ON o.id = a.owner_id WHERE a.id = ?1",
            [id.0],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, bool>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                ))
            },
        )
        .optional()
        .map_err(backend)?;
    let Some((id, name, company_name, category, owner, status, created_at, owner_blocked, original, before_block)) =
        app
    else {
        return Ok(None);
    };
    let app = App {
        id: AppId(id),
        name,
        company_name,
        category,
        owner: AccountId(owner),
        status: parse::<AppStatus>(&status, "app status")?,
        created_at: Timestamp(created_at),
        original: original.map(AppId),
        status_before_block: before_block.map(|s| parse::<AppStatus>(&s, "app status")).transpose()?,
    };

    let mut stmt = conn
        .prepare("SELECT account_id, role FROM app_members WHERE app_id = ?1 ORDER BY role = 'owner' DESC, account_id")
        .map_err(backend)?;
    let members = stmt
        .query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .map_err(backend)?
        .map(|row| {
            let (account, role) = row.map_err(backend)?;
            Ok(Member { account_id: AccountId(account), role: parse(&role, "member role")? })
        })
        .collect::<StoreResult<Vec<_>>>()?;

    let mut stmt =
        conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM app_keys WHERE app_id = ?1 ORDER BY id")).map_err(backend)?;
    let keys = stmt
        .query_map([id], key_row)
        .map_err(backend)?
        .map(|row| key_of(row.map_err(backend)?))
        .collect::<StoreResult<Vec<_>>>()?;

    let mut stmt = conn
        .prepare("SELECT product, activated FROM app_products WHERE app_id = ?1 ORDER BY product")
        .map_err(backend)?;
    let products = stmt
        .query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;

    let mut stmt = conn
        .prepare(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE app_id = ?1 AND revoked_at IS NULL ORDER BY id"))
        .map_err(backend)?;
    let grants = stmt
        .query_map([id], grant_row)
        .map_err(backend)?
        .map(|r| r.map_err(backend)?)
        .collect::<StoreResult<Vec<_>>>()?;

    let paid = conn
        .query_row("SELECT rules, daily_cap, monthly_cap FROM paid_usage WHERE app_id = ?1", [id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
        .optional()
        .map_err(backend)?
        .map(|(rules, daily, monthly)| {
            Ok::<_, StoreError>(PaidUsage {
                rules: serde_json::from_str(&rules).map_err(|e| StoreError::Corrupt(format!("bad paid rules: {e}")))?,
                daily_cap: daily.cast_unsigned(),
                monthly_cap: monthly.cast_unsigned(),
            })
        })
        .transpose()?;

    let (business, consent_items, eligibility, channels) = workflow::load_settings(conn, id)?;
    Ok(Some(AppRecord {
        app,
        owner_blocked,
        members,
        keys,
        products,
        grants,
        paid,
        business,
        consent_items,
        eligibility,
        channels,
    }))
}
