//! The recent decision log and the state counts `/metrics` reads, on SQLite.

use permgate_core::decision_log::LoggedCall;
use permgate_core::model::{AppId, KeyId};
use permgate_core::ports::{Lost, OpsStore, StateCounts, StoreResult};
use rusqlite::params;

use super::{SqliteStore, backend, cap, parse};

impl OpsStore for SqliteStore {
    fn save_decisions(&self, calls: &[LoggedCall], keep: usize) -> StoreResult<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO decision_log
                       (app_id, key_kind, key_id, scopes, api, method, path, code, calls, last_at, would_code, shadow)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (app_id, key_kind, key_id, scopes, api) DO UPDATE SET
                       calls = calls + excluded.calls, code = excluded.code, method = excluded.method,
                       path = excluded.path, last_at = max(last_at, excluded.last_at),
                       would_code = excluded.would_code, shadow = excluded.shadow",
                )
                .map_err(backend)?;
            for c in calls {
                stmt.execute(params![
                    c.app_id.0,
                    c.key_kind.as_str(),
                    c.key_id.map_or(0, |k| k.0),
                    c.scopes,
                    c.api,
                    c.method,
                    c.path,
                    c.code,
                    cap(c.calls),
                    c.last_at,
                    c.would_code,
                    c.shadow
                ])
                .map_err(backend)?;
            }
            tx.execute(
                "DELETE FROM decision_log WHERE last_at <=
                   (SELECT last_at FROM decision_log ORDER BY last_at DESC LIMIT 1 OFFSET ?1)",
                [i64::try_from(keep).unwrap_or(i64::MAX)],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    fn recent_decisions(&self, limit: usize) -> StoreResult<Vec<LoggedCall>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT app_id, key_kind, key_id, scopes, api, method, path, code, calls, last_at, would_code, shadow
                 FROM decision_log ORDER BY last_at DESC, app_id, api LIMIT ?1",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                let kind: String = r.get(1)?;
                let key: i64 = r.get(2)?;
                let call = LoggedCall {
                    app_id: AppId(r.get(0)?),
                    key_kind: permgate_core::model::KeyKind::RestApi,
                    key_id: (key != 0).then_some(KeyId(key)),
                    scopes: r.get(3)?,
                    api: r.get(4)?,
                    method: r.get(5)?,
                    path: r.get(6)?,
                    code: r.get(7)?,
                    calls: r.get::<_, i64>(8)?.cast_unsigned(),
                    last_at: r.get(9)?,
                    would_code: r.get(10)?,
                    shadow: r.get(11)?,
                };
                Ok(parse(&kind, "key kind").map(|key_kind| LoggedCall { key_kind, ..call }))
            })
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)?).collect()
    }

    fn state_counts(&self) -> StoreResult<StateCounts> {
        let conn = self.conn();
        let count = |sql: &str| -> StoreResult<Vec<(String, u64)>> {
            let mut stmt = conn.prepare(sql).map_err(backend)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.cast_unsigned())))
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend)).collect()
        };
        Ok(StateCounts {
            requests: count("SELECT state, count(*) FROM permission_requests GROUP BY state ORDER BY state")?,
            outbox: count("SELECT state, count(*) FROM outbox GROUP BY state ORDER BY state")?,
        })
    }
}

impl permgate_core::ports::LifecycleStore for SqliteStore {
    fn live_grants(&self) -> StoreResult<Vec<permgate_core::ports::GrantState>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {}, (SELECT u.last_used_at FROM grant_usage u
                   WHERE u.app_id = grants.app_id AND u.permission = grants.permission)
                 FROM grants WHERE revoked_at IS NULL ORDER BY id",
                super::GRANT_COLUMNS
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                let used: Option<i64> = r.get(10)?;
                Ok(super::grant_row(r)?.map(|grant| permgate_core::ports::GrantState {
                    grant,
                    last_used_at: used,
                    notices: Vec::new(),
                }))
            })
            .map_err(backend)?;
        let mut grants: Vec<permgate_core::ports::GrantState> =
            rows.map(|r| r.map_err(backend)?).collect::<StoreResult<_>>()?;
        let mut stmt = conn
            .prepare(
                "SELECT n.grant_id, n.kind, n.sent_at FROM grant_notices n JOIN grants g ON g.id = n.grant_id
                 WHERE g.revoked_at IS NULL ORDER BY n.grant_id",
            )
            .map_err(backend)?;
        let notices = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .map_err(backend)?;
        for n in notices {
            let (id, kind, at) = n.map_err(backend)?;
            if let Some(g) = grants.iter_mut().find(|g| g.grant.id == id) {
                g.notices.push((kind, at));
            }
        }
        Ok(grants)
    }

    fn grant_notice(
        &self,
        grant: &permgate_core::model::Grant,
        kind: &str,
        revoke: Option<permgate_core::ports::Revocation<'_>>,
        messages: &[permgate_core::notify::NewMessage],
        audit: &permgate_core::audit::NewAuditEvent,
    ) -> StoreResult<bool> {
        let done = self.write_if_audit(|tx| {
            let n = tx
                .execute(
                    "INSERT INTO grant_notices (grant_id, kind, sent_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![grant.id, kind, audit.at.0],
                )
                .map_err(backend)?;
            if n == 0 {
                return Ok(None);
            }
            let mut audit = audit.clone();
            if let Some(r) = revoke {
                let (app, at) = (grant.app_id, audit.at);
                let lost = match r.lost {
                    // A grant of the holding made since the round read it stands for it now.
                    Lost::Reaped(of) if super::workflow::granted_since(tx, app, of, grant.id, at)? => return Ok(None),
                    Lost::Reaped(of) => super::workflow::revoke_of(tx, app, of, r.cascade, None, r.reason, at)?,
                    // Held again since the round read it, or nothing needed it: no lapse.
                    Lost::Ended(permission) => {
                        match super::workflow::follow(tx, app, permission, r.cascade, None, r.reason, at)? {
                            None => return Ok(None),
                            lost => lost,
                        }
                    }
                };
                if let Some((revoked, unset)) = lost {
                    audit = audit.losing(&revoked, &unset);
                }
            }
            for m in messages {
                super::workflow::insert_message(tx, m, audit.at)?;
            }
            Ok(Some(((), audit)))
        })?;
        Ok(done.is_some())
    }

    fn save_grant_usage(&self, rows: &[(AppId, String, i64)]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO grant_usage (app_id, permission, last_used_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (app_id, permission) DO UPDATE SET last_used_at = max(last_used_at, excluded.last_used_at)",
                )
                .map_err(backend)?;
            for (app, permission, at) in rows {
                stmt.execute(params![app.0, permission, at]).map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }
}
