//! The recent decision log and the state counts `/metrics` reads, on PostgreSQL.

use permgate_core::decision_log::LoggedCall;
use permgate_core::model::{AppId, KeyId};
use permgate_core::ports::{OpsStore, StateCounts, StoreResult};

use super::{PostgresStore, cap, parse};

impl OpsStore for PostgresStore {
    fn save_decisions(&self, calls: &[LoggedCall], keep: usize) -> StoreResult<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let apps: Vec<i64> = calls.iter().map(|c| c.app_id.0).collect();
        let kinds: Vec<&str> = calls.iter().map(|c| c.key_kind.as_str()).collect();
        let keys: Vec<i64> = calls.iter().map(|c| c.key_id.map_or(0, |k| k.0)).collect();
        let scopes: Vec<&str> = calls.iter().map(|c| c.scopes.as_str()).collect();
        let apis: Vec<&str> = calls.iter().map(|c| c.api.as_str()).collect();
        let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
        let paths: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
        let codes: Vec<i32> = calls.iter().map(|c| c.code).collect();
        let counts: Vec<i64> = calls.iter().map(|c| cap(c.calls)).collect();
        let lasts: Vec<i64> = calls.iter().map(|c| c.last_at).collect();
        let woulds: Vec<i32> = calls.iter().map(|c| c.would_code).collect();
        let shadows: Vec<&str> = calls.iter().map(|c| c.shadow.as_str()).collect();
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        // Not retried: a lost connection may have committed, and counting twice is worse than
        // losing a second of the log.
        self.once(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO decision_log
                   (app_id, key_kind, key_id, scopes, api, method, path, code, calls, last_at, would_code, shadow)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                                      $7::text[], $8::int[], $9::bigint[], $10::bigint[], $11::int[], $12::text[])
                 ON CONFLICT (app_id, key_kind, key_id, scopes, api) DO UPDATE SET
                   calls = decision_log.calls + excluded.calls, code = excluded.code, method = excluded.method,
                   path = excluded.path, last_at = greatest(decision_log.last_at, excluded.last_at),
                   would_code = excluded.would_code, shadow = excluded.shadow",
                &[&apps, &kinds, &keys, &scopes, &apis, &methods, &paths, &codes, &counts, &lasts, &woulds, &shadows],
            )?;
            tx.execute(
                "DELETE FROM decision_log WHERE last_at <=
                   (SELECT last_at FROM decision_log ORDER BY last_at DESC LIMIT 1 OFFSET $1)",
                &[&keep],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn recent_decisions(&self, limit: usize) -> StoreResult<Vec<LoggedCall>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            let rows = c.query(
                "SELECT app_id, key_kind, key_id, scopes, api, method, path, code, calls, last_at, would_code, shadow
                 FROM decision_log ORDER BY last_at DESC, app_id, api LIMIT $1",
                &[&limit],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let kind: String = r.try_get(1)?;
                let key: i64 = r.try_get(2)?;
                out.push(LoggedCall {
                    app_id: AppId(r.try_get(0)?),
                    key_kind: parse(&kind, "key kind")?,
                    key_id: (key != 0).then_some(KeyId(key)),
                    scopes: r.try_get(3)?,
                    api: r.try_get(4)?,
                    method: r.try_get(5)?,
                    path: r.try_get(6)?,
                    code: r.try_get(7)?,
                    calls: r.try_get::<_, i64>(8)?.cast_unsigned(),
                    last_at: r.try_get(9)?,
                    would_code: r.try_get(10)?,
                    shadow: r.try_get(11)?,
                });
            }
            Ok(out)
        })
    }

    fn state_counts(&self) -> StoreResult<StateCounts> {
        self.read(|c| {
            let mut count = |sql: &str| -> Result<Vec<(String, u64)>, postgres::Error> {
                c.query(sql, &[])?
                    .iter()
                    .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, i64>(1)?.cast_unsigned())))
                    .collect()
            };
            Ok(StateCounts {
                requests: count("SELECT state, count(*) FROM permission_requests GROUP BY state ORDER BY state")?,
                outbox: count("SELECT state, count(*) FROM outbox GROUP BY state ORDER BY state")?,
            })
        })
    }
}
