//! The recent decision log and the state counts `/metrics` reads, on PostgreSQL.

use permgate_core::decision_log::LoggedCall;
use permgate_core::model::{AppId, KeyId};
use permgate_core::ports::{Lost, OpsStore, StateCounts, StoreResult};

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

impl permgate_core::ports::LifecycleStore for PostgresStore {
    fn live_grants(&self) -> StoreResult<Vec<permgate_core::ports::GrantState>> {
        self.read(|c| {
            let rows = c.query(
                &format!(
                    "SELECT {}, (SELECT u.last_used_at FROM grant_usage u
                       WHERE u.app_id = grants.app_id AND u.permission = grants.permission)
                     FROM grants WHERE revoked_at IS NULL ORDER BY id",
                    super::GRANT_COLUMNS
                ),
                &[],
            )?;
            let mut grants = Vec::with_capacity(rows.len());
            for r in &rows {
                grants.push(permgate_core::ports::GrantState {
                    grant: super::grant_row(r)?,
                    last_used_at: r.try_get(10)?,
                    notices: Vec::new(),
                });
            }
            let notices = c.query(
                "SELECT n.grant_id, n.kind, n.sent_at FROM grant_notices n JOIN grants g ON g.id = n.grant_id
                 WHERE g.revoked_at IS NULL ORDER BY n.grant_id",
                &[],
            )?;
            for n in &notices {
                let id: i64 = n.try_get(0)?;
                if let Some(g) = grants.iter_mut().find(|g| g.grant.id == id) {
                    g.notices.push((n.try_get(1)?, n.try_get(2)?));
                }
            }
            Ok(grants)
        })
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
            let n = tx.execute(
                "INSERT INTO grant_notices (grant_id, kind, sent_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&grant.id, &kind, &audit.at.0],
            )?;
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
        let apps: Vec<i64> = rows.iter().map(|r| r.0.0).collect();
        let permissions: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        let ats: Vec<i64> = rows.iter().map(|r| r.2).collect();
        self.read(|c| {
            c.execute(
                "INSERT INTO grant_usage (app_id, permission, last_used_at)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
                 ON CONFLICT (app_id, permission)
                 DO UPDATE SET last_used_at = greatest(grant_usage.last_used_at, excluded.last_used_at)",
                &[&apps, &permissions, &ats],
            )?;
            Ok(())
        })
    }
}
