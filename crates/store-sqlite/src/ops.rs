//! The recent decision log and the state counts `/metrics` reads, on SQLite.

use permgate_core::decision_log::LoggedCall;
use permgate_core::model::{AppId, KeyId};
use permgate_core::ports::{OpsStore, StateCounts, StoreResult};
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
