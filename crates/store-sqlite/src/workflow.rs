//! The review workflow and the notification outbox on SQLite: app settings the workflow checks,
//! permission requests with their history and evidence, and outbox messages. Each write is one
//! transaction with its audit event (see [`SqliteStore::write`]).

use permgate_core::audit::NewAuditEvent;
use permgate_core::model::{
    AccountId, AppId, AppRecord, Business, ConnectedChannel, ConsentSetting, Eligibility, TalkChannel,
};
use permgate_core::notify::{DeliveryState, NewMessage, OutboxMessage};
use permgate_core::ports::{
    Cascade, GrantOf, NewGrant, OutboxStore, Requirements, StoreError, StoreResult, WorkflowStore,
};
use permgate_core::time::Timestamp;
use permgate_core::workflow::{
    EvidenceInfo, NewEvidence, NewRequest, PermissionRequest, RequestEvent, RequestFilter, Transition,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{SqliteStore, backend, cap, parse};

/// The placeholder a new request's audit target, grant reason and notifications carry until the
/// store knows the request's id.
const REQUEST_ID: &str = "{request_id}";

impl WorkflowStore for SqliteStore {
    fn agree_eligibility(&self, app: AppId, by: AccountId, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<bool> {
        // Two agreeing at once: the one whose row is not stored writes no event either.
        self.write_changed(audit, |tx| {
            let n = tx
                .execute(
                    "INSERT INTO app_eligibility (app_id, agreed_by, agreed_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (app_id) DO NOTHING",
                    params![app.0, by.0, now.0],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn set_business(
        &self,
        app: AppId,
        business: &Business,
        grant: Option<&NewGrant>,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        self.write(audit, |tx| {
            tx.execute(
                "INSERT INTO app_business (app_id, registration_number, company_name, verified_at, kind, icon_url)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (app_id) DO UPDATE SET registration_number = excluded.registration_number,
                 company_name = excluded.company_name, verified_at = excluded.verified_at, kind = excluded.kind,
                 icon_url = excluded.icon_url",
                params![
                    app.0,
                    business.registration_number,
                    business.company_name,
                    business.verified_at.0,
                    business.kind.as_str(),
                    business.icon_url
                ],
            )
            .map_err(backend)?;
            if let Some(g) = grant {
                super::insert_grant_row(tx, g, business.verified_at)?;
            }
            Ok(())
        })
    }

    fn remove_business(
        &self,
        app: AppId,
        revoke: &[String],
        unset: &[String],
        by: AccountId,
        reason: &str,
        messages: &[NewMessage],
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Vec<String>>> {
        self.write_if_audit(|tx| {
            let deleted = tx.execute("DELETE FROM app_business WHERE app_id = ?1", [app.0]).map_err(backend)?;
            // The messages go whenever Biz did, not only when something went with it.
            let (revoked, unset_now) = lose(tx, app, Cascade { revoke, unset, messages: &[] }, by, reason, audit.at)?;
            if deleted == 0 && revoked.is_empty() {
                return Ok(None);
            }
            for m in messages {
                insert_message(tx, m, audit.at)?;
            }
            let audit = audit.revoking(&revoked).unsetting(&unset_now);
            Ok(Some((revoked, audit)))
        })
    }

    fn upsert_channel(&self, channel: &TalkChannel, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<()> {
        self.write(audit, |tx| {
            tx.execute(
                "INSERT INTO talk_channels (id, name, business_registration_number, business_channel, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                 business_registration_number = excluded.business_registration_number,
                 business_channel = excluded.business_channel",
                params![
                    channel.id,
                    channel.name,
                    channel.business_registration_number,
                    channel.business_channel,
                    now.0
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn channels(&self) -> StoreResult<Vec<TalkChannel>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, name, business_registration_number, business_channel FROM talk_channels ORDER BY id")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TalkChannel {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    business_registration_number: r.get(2)?,
                    business_channel: r.get(3)?,
                })
            })
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn connect_channel(
        &self,
        app: AppId,
        channel: &str,
        now: Timestamp,
        grant: &NewGrant,
        requires: &Requirements,
        audit: &NewAuditEvent,
    ) -> StoreResult<(bool, AppRecord)> {
        let done = self.write_if_audit(|tx| {
            check_requirements(tx, grant, requires, now)?;
            let granted = !held_past(tx, grant, now)?;
            tx.execute(
                "INSERT INTO app_channels (app_id, channel_id, connected_at) VALUES (?1, ?2, ?3)",
                params![app.0, channel, now.0],
            )
            .map_err(backend)?;
            if granted {
                super::insert_grant_row(tx, grant, now)?;
            }
            Ok(Some(((granted, super::record_in(tx, app)?), audit.granting(granted))))
        })?;
        done.ok_or_else(|| StoreError::Corrupt("a channel connection wrote nothing".into()))
    }

    fn disconnect_channel(
        &self,
        app: AppId,
        channel: &str,
        cascade: Cascade<'_>,
        by: AccountId,
        reason: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<AppRecord>> {
        self.write_if_audit(|tx| {
            let n = tx
                .execute("DELETE FROM app_channels WHERE app_id = ?1 AND channel_id = ?2", params![app.0, channel])
                .map_err(backend)?;
            if n == 0 {
                return Ok(None);
            }
            let left: i64 = tx
                .query_row("SELECT count(*) FROM app_channels WHERE app_id = ?1", params![app.0], |r| r.get(0))
                .map_err(backend)?;
            let (revoked, unset) =
                if left == 0 { lose(tx, app, cascade, by, reason, audit.at)? } else { Default::default() };
            Ok(Some((super::record_in(tx, app)?, audit.revoking(&revoked).unsetting(&unset))))
        })
    }

    fn unset_consent_item(
        &self,
        app: AppId,
        scope: &str,
        cascade: Cascade<'_>,
        by: AccountId,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Vec<String>>> {
        self.write_if_audit(|tx| {
            let n = tx
                .execute("DELETE FROM app_consent_items WHERE app_id = ?1 AND scope = ?2", params![app.0, scope])
                .map_err(backend)?;
            if n == 0 {
                return Ok(None);
            }
            let reason = format!("consent item `{scope}` unset");
            let (revoked, unset) = lose(tx, app, cascade, by, &reason, audit.at)?;
            let audit = audit.losing(&revoked, &unset);
            Ok(Some((revoked, audit)))
        })
    }

    fn set_consent_item(
        &self,
        app: AppId,
        scope: &str,
        setting: Option<&ConsentSetting>,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        self.write(audit, |tx| {
            match setting {
                None => tx
                    .execute("DELETE FROM app_consent_items WHERE app_id = ?1 AND scope = ?2", params![app.0, scope])
                    .map_err(backend)?,
                Some(c) => tx
                    .execute(
                        "INSERT INTO app_consent_items (app_id, scope, consent_type, purpose, set_at) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (app_id, scope) DO UPDATE SET consent_type = excluded.consent_type,
                         purpose = excluded.purpose, set_at = excluded.set_at",
                        params![app.0, scope, c.consent_type.as_str(), c.purpose, c.set_at.0],
                    )
                    .map_err(backend)?,
            };
            Ok(())
        })
    }

    fn create_request(
        &self,
        new: &NewRequest,
        evidence: Option<&NewEvidence>,
        grant: Option<(&NewGrant, &Requirements)>,
        messages: &[NewMessage],
        audit: &NewAuditEvent,
    ) -> StoreResult<PermissionRequest> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(backend)?;
        let evidence_id = match evidence {
            None => None,
            Some(e) => {
                tx.execute(
                    "INSERT INTO evidence_files (file_name, content_type, size, sha256, content) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![e.file_name, e.content_type, cap(e.bytes.len() as u64), e.sha256, e.bytes],
                )
                .map_err(backend)?;
                Some(tx.last_insert_rowid())
            }
        };
        let at = new.event.at.0;
        tx.execute(
            "INSERT INTO permission_requests (app_id, permission, state, service_url, reason, usage_scenario,
             requested_limit, requested_rule, evidence_id, applicant, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
            params![
                new.app_id.0,
                new.permission,
                new.event.to.as_str(),
                new.service_url,
                new.reason,
                new.usage_scenario,
                new.requested_limit.map(cap),
                new.requested_rule,
                evidence_id,
                new.applicant.0,
                at
            ],
        )
        .map_err(|e| open_conflict(e, &new.permission))?;
        let id = tx.last_insert_rowid();
        let fill = |text: &str| text.replace(REQUEST_ID, &id.to_string());
        insert_history(&tx, id, &new.event)?;
        if let Some((g, requires)) = grant {
            check_requirements(&tx, g, requires, new.event.at)?;
            let g = NewGrant { reason: fill(&g.reason), ..g.clone() };
            let grant_id = super::insert_grant_row(&tx, &g, new.event.at)?;
            tx.execute("UPDATE permission_requests SET grant_id = ?1 WHERE id = ?2", params![grant_id, id])
                .map_err(backend)?;
        }
        for m in messages {
            let m = NewMessage { subject: fill(&m.subject), body: fill(&m.body), ..m.clone() };
            insert_message(&tx, &m, new.event.at)?;
        }
        let mut audit = audit.clone();
        audit.target = fill(&audit.target);
        super::append_audit(&tx, &audit)?;
        let request = load_request(&tx, id)?.ok_or_else(|| StoreError::Backend("the new request vanished".into()))?;
        tx.commit().map_err(backend)?;
        Ok(request)
    }

    fn transition_request(
        &self,
        t: &Transition,
        grant: Option<(&NewGrant, &Requirements)>,
        messages: &[NewMessage],
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<PermissionRequest>> {
        self.write_if(audit, |tx| {
            let n = tx
                .execute(
                    "UPDATE permission_requests SET state = ?1, updated_at = ?2 WHERE id = ?3 AND state = ?4",
                    params![t.event.to.as_str(), t.event.at.0, t.request_id, t.from.as_str()],
                )
                .map_err(backend)?;
            if n == 0 {
                return Ok(None);
            }
            insert_history(tx, t.request_id, &t.event)?;
            if let Some((g, requires)) = grant {
                check_requirements(tx, g, requires, t.event.at)?;
                let grant_id = super::insert_grant_row(tx, g, t.event.at)?;
                tx.execute(
                    "UPDATE permission_requests SET grant_id = ?1 WHERE id = ?2",
                    params![grant_id, t.request_id],
                )
                .map_err(backend)?;
            }
            for m in messages {
                insert_message(tx, m, t.event.at)?;
            }
            load_request(tx, t.request_id)
        })
    }

    fn request(&self, id: i64) -> StoreResult<Option<PermissionRequest>> {
        load_request(&self.conn(), id)
    }

    fn requests(&self, filter: &RequestFilter) -> StoreResult<Vec<PermissionRequest>> {
        let conn = self.conn();
        let among = filter
            .among_apps
            .as_ref()
            .map(|ids| serde_json::json!(ids.iter().map(|a| a.0).collect::<Vec<_>>()).to_string());
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {REQUEST_COLUMNS} FROM permission_requests r LEFT JOIN evidence_files e ON e.id = r.evidence_id
                 WHERE (?1 IS NULL OR r.state = ?1) AND (?2 IS NULL OR r.app_id = ?2)
                 AND (?3 IS NULL OR r.app_id IN (SELECT value FROM json_each(?3)))
                 AND (?5 IS NULL OR r.id < ?5)
                 ORDER BY r.id DESC LIMIT ?4"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                params![
                    filter.state.map(|s| s.as_str()),
                    filter.app_id.map(|a| a.0),
                    among,
                    i64::try_from(filter.limit).unwrap_or(i64::MAX),
                    filter.before
                ],
                request_row,
            )
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)?).collect()
    }

    fn evidence(&self, id: i64) -> StoreResult<Option<(EvidenceInfo, Vec<u8>)>> {
        self.conn()
            .query_row(
                "SELECT id, file_name, content_type, size, sha256, content FROM evidence_files WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        EvidenceInfo {
                            id: r.get(0)?,
                            file_name: r.get(1)?,
                            content_type: r.get(2)?,
                            size: r.get::<_, i64>(3)?.cast_unsigned(),
                            sha256: r.get(4)?,
                        },
                        r.get::<_, Vec<u8>>(5)?,
                    ))
                },
            )
            .optional()
            .map_err(backend)
    }
}

impl OutboxStore for SqliteStore {
    fn claim_messages(&self, now: Timestamp, limit: usize, lease_secs: i64) -> StoreResult<Vec<OutboxMessage>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(backend)?;
        let messages = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM outbox WHERE state = 'pending'
                     AND coalesce(next_attempt_at, 0) <= ?1 AND coalesce(locked_until, 0) <= ?1
                     ORDER BY id LIMIT ?2"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![now.0, i64::try_from(limit).unwrap_or(i64::MAX)], message_row)
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend)?).collect::<StoreResult<Vec<_>>>()?
        };
        for m in &messages {
            tx.execute("UPDATE outbox SET locked_until = ?1 WHERE id = ?2", params![now.0 + lease_secs, m.id])
                .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(messages)
    }

    fn finish_attempt(
        &self,
        id: i64,
        state: DeliveryState,
        next_attempt_at: Option<Timestamp>,
        error: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.conn()
            .execute(
                "UPDATE outbox SET state = ?1, attempts = attempts + 1, next_attempt_at = ?2, locked_until = NULL,
                 last_error = coalesce(?3, last_error), delivered_at = CASE WHEN ?1 = 'delivered' THEN ?4 END
                 WHERE id = ?5",
                params![state.as_str(), next_attempt_at.map(|t| t.0), error, now.0, id],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn messages(&self, app: Option<AppId>, limit: usize) -> StoreResult<Vec<OutboxMessage>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM outbox WHERE (?1 IS NULL OR app_id = ?1) ORDER BY id DESC LIMIT ?2"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![app.map(|a| a.0), i64::try_from(limit).unwrap_or(i64::MAX)], message_row)
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)?).collect()
    }
}

/// Revokes the grants of `permissions` still in force, app-wide and bound to a key alike (what
/// needed a lost prerequisite needed it whichever key it is for); returns those revoked.
pub(super) fn revoke_grants(
    tx: &Transaction<'_>,
    app: AppId,
    permissions: &[String],
    by: impl Into<Option<AccountId>>,
    reason: &str,
    now: Timestamp,
) -> StoreResult<Vec<String>> {
    let by: Option<AccountId> = by.into();
    let mut revoked = Vec::new();
    for p in permissions {
        let n = tx
            .execute(
                "UPDATE grants SET revoked_at = ?1, revoked_by = ?2, revoke_reason = ?3
                 WHERE app_id = ?4 AND permission = ?5 AND revoked_at IS NULL",
                params![now.0, by.map(|b| b.0), reason, app.0, p],
            )
            .map_err(backend)?;
        if n > 0 && !revoked.contains(p) {
            revoked.push(p.clone());
        }
    }
    Ok(revoked)
}

/// Which grants a [`GrantOf`] means, as SQL over `?1` (app), `?2` (permission), `?3` (key) and
/// `?4` (rule).
pub(super) const GRANTS_OF: &str = "app_id = ?1 AND permission = ?2 AND key_id IS ?3 AND revoked_at IS NULL
                          AND (?4 IS NULL OR json_extract(params, '$.rule') = ?4)";

/// Revokes the grants `of` names and, if the app then holds the permission app-wide no more,
/// applies `cascade` (said to follow from the permission's revocation for `reason`). Returns
/// what the cascade took, when it ran.
pub(super) fn revoke_of(
    tx: &Transaction<'_>,
    app: AppId,
    of: GrantOf<'_>,
    cascade: Cascade<'_>,
    by: Option<AccountId>,
    reason: &str,
    now: Timestamp,
) -> StoreResult<Option<(Vec<String>, Vec<String>)>> {
    tx.execute(
        &format!("UPDATE grants SET revoked_at = ?5, revoked_by = ?6, revoke_reason = ?7 WHERE {GRANTS_OF}"),
        params![app.0, of.permission, of.key.map(|k| k.0), of.rule, now.0, by.map(|b| b.0), reason],
    )
    .map_err(backend)?;
    if of.key.is_some() {
        return Ok(None);
    }
    follow(tx, app, of.permission, cascade, by, &format!("`{}` revoked: {reason}", of.permission), now)
}

/// Whether a grant `of` names, newer than grant `id`, is in force at `now`: it stands for the
/// holding.
pub(super) fn granted_since(
    tx: &Transaction<'_>,
    app: AppId,
    of: GrantOf<'_>,
    id: i64,
    now: Timestamp,
) -> StoreResult<bool> {
    tx.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM grants WHERE {GRANTS_OF} AND id > ?5 AND (expires_at IS NULL OR expires_at > ?6))"
        ),
        params![app.0, of.permission, of.key.map(|k| k.0), of.rule, id, now.0],
        |r| r.get(0),
    )
    .map_err(backend)
}

/// Applies `cascade` (for `reason`) if the app holds `permission` app-wide no more; returns what
/// it took, when it ran.
pub(super) fn follow(
    tx: &Transaction<'_>,
    app: AppId,
    permission: &str,
    cascade: Cascade<'_>,
    by: Option<AccountId>,
    reason: &str,
    now: Timestamp,
) -> StoreResult<Option<(Vec<String>, Vec<String>)>> {
    if cascade.is_empty() || holds(tx, app, permission, now)? {
        return Ok(None);
    }
    Ok(Some(lose(tx, app, cascade, by, reason, now)?))
}

/// Applies `cascade` in `tx`: revokes its permissions' grants, unsets its consent
/// items, and queues its messages if anything went. Returns what went.
pub(super) fn lose(
    tx: &Transaction<'_>,
    app: AppId,
    cascade: Cascade<'_>,
    by: impl Into<Option<AccountId>>,
    reason: &str,
    now: Timestamp,
) -> StoreResult<(Vec<String>, Vec<String>)> {
    let revoked = revoke_grants(tx, app, cascade.revoke, by, reason, now)?;
    let mut unset = Vec::new();
    for scope in cascade.unset {
        let n = tx
            .execute("DELETE FROM app_consent_items WHERE app_id = ?1 AND scope = ?2", params![app.0, scope])
            .map_err(backend)?;
        if n > 0 {
            unset.push(scope.clone());
        }
    }
    if !revoked.is_empty() || !unset.is_empty() {
        for m in cascade.messages {
            insert_message(tx, m, now)?;
        }
    }
    Ok((revoked, unset))
}

/// Whether `app` holds `permission` app-wide at `now`, as `tx` sees it.
pub(super) fn holds(tx: &Transaction<'_>, app: AppId, permission: &str, now: Timestamp) -> StoreResult<bool> {
    tx.query_row(HOLDS, params![app.0, permission, now.0], |r| r.get(0)).map_err(backend)
}

/// A refused second open request, said so; other errors as usual.
fn open_conflict(e: rusqlite::Error, permission: &str) -> StoreError {
    match backend(e) {
        StoreError::Conflict(detail) if detail.contains("permission_requests") => {
            StoreError::Conflict(format!("the app already has an open request for `{permission}`"))
        }
        other => other,
    }
}

fn insert_history(tx: &Transaction<'_>, request: i64, e: &RequestEvent) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO permission_request_history (request_id, at, actor, action, from_state, to_state, reason_code, reason, comment)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            request,
            e.at.0,
            e.actor.map(|a| a.0),
            e.action,
            e.from.map(|s| s.as_str()),
            e.to.as_str(),
            e.reason_code,
            e.reason,
            e.comment
        ],
    )
    .map_err(backend)?;
    Ok(())
}

pub(super) fn insert_message(tx: &Transaction<'_>, m: &NewMessage, now: Timestamp) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO outbox (channel, recipient, subject, body, app_id, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![m.channel.as_str(), m.recipient, m.subject, m.body, m.app_id.map(|a| a.0), now.0],
    )
    .map_err(backend)?;
    Ok(())
}

const REQUEST_COLUMNS: &str = "r.id, r.app_id, r.permission, r.state, r.service_url, r.reason, r.usage_scenario,
    r.requested_limit, r.requested_rule, r.applicant, r.created_at, r.updated_at, r.grant_id,
    e.id, e.file_name, e.content_type, e.size, e.sha256";

fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<PermissionRequest>> {
    let state: String = r.get(3)?;
    let evidence = match r.get::<_, Option<i64>>(13)? {
        None => None,
        Some(id) => Some(EvidenceInfo {
            id,
            file_name: r.get(14)?,
            content_type: r.get(15)?,
            size: r.get::<_, i64>(16)?.cast_unsigned(),
            sha256: r.get(17)?,
        }),
    };
    let request = PermissionRequest {
        id: r.get(0)?,
        app_id: AppId(r.get(1)?),
        permission: r.get(2)?,
        state: permgate_core::workflow::RequestState::Submitted,
        service_url: r.get(4)?,
        reason: r.get(5)?,
        usage_scenario: r.get(6)?,
        requested_limit: r.get::<_, Option<i64>>(7)?.map(i64::cast_unsigned),
        requested_rule: r.get(8)?,
        evidence,
        applicant: AccountId(r.get(9)?),
        created_at: Timestamp(r.get(10)?),
        updated_at: Timestamp(r.get(11)?),
        grant_id: r.get(12)?,
        history: Vec::new(),
    };
    Ok(parse(&state, "request state").map(|state| PermissionRequest { state, ..request }))
}

fn load_request(conn: &Connection, id: i64) -> StoreResult<Option<PermissionRequest>> {
    let Some(mut request) = conn
        .query_row(
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM permission_requests r LEFT JOIN evidence_files e ON e.id = r.evidence_id
                 WHERE r.id = ?1"
            ),
            [id],
            request_row,
        )
        .optional()
        .map_err(backend)?
        .transpose()?
    else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare(
            "SELECT at, actor, action, from_state, to_state, reason_code, reason, comment
             FROM permission_request_history WHERE request_id = ?1 ORDER BY id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, String>(7)?,
            ))
        })
        .map_err(backend)?;
    for row in rows {
        let (at, actor, action, from, to, reason_code, reason, comment) = row.map_err(backend)?;
        request.history.push(RequestEvent {
            at: Timestamp(at),
            actor: actor.map(AccountId),
            action,
            from: from.map(|f| parse(&f, "request state")).transpose()?,
            to: parse(&to, "request state")?,
            reason_code,
            reason,
            comment,
        });
    }
    Ok(Some(request))
}

const MESSAGE_COLUMNS: &str = "id, channel, recipient, subject, body, app_id, state, attempts, created_at,
    next_attempt_at, delivered_at, last_error";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<OutboxMessage>> {
    let channel: String = r.get(1)?;
    let state: String = r.get(6)?;
    let (id, recipient, subject, body, app_id, attempts, created_at, next, delivered, last_error) = (
        r.get(0)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get::<_, Option<i64>>(5)?,
        r.get::<_, i64>(7)?,
        r.get(8)?,
        r.get::<_, Option<i64>>(9)?,
        r.get::<_, Option<i64>>(10)?,
        r.get(11)?,
    );
    Ok((|| {
        Ok(OutboxMessage {
            id,
            channel: parse(&channel, "channel")?,
            recipient,
            subject,
            body,
            app_id: app_id.map(AppId),
            state: parse(&state, "delivery state")?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            created_at: Timestamp(created_at),
            next_attempt_at: next.map(Timestamp),
            delivered_at: delivered.map(Timestamp),
            last_error,
        })
    })())
}

/// The app settings the workflow keeps, for an app's record.
#[expect(clippy::type_complexity, reason = "the four settings of one app, read together")]
pub(super) fn load_settings(
    conn: &Connection,
    app: i64,
) -> StoreResult<(Option<Business>, Vec<ConsentSetting>, Option<Eligibility>, Vec<ConnectedChannel>)> {
    let business = conn
        .query_row(
            "SELECT registration_number, company_name, verified_at, kind, icon_url FROM app_business WHERE app_id = ?1",
            [app],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            },
        )
        .optional()
        .map_err(backend)?
        .map(|(registration_number, company_name, verified_at, kind, icon_url)| {
            Ok::<_, StoreError>(Business {
                kind: parse(&kind, "Biz kind")?,
                registration_number,
                company_name,
                verified_at: Timestamp(verified_at),
                icon_url,
            })
        })
        .transpose()?;
    let mut stmt = conn
        .prepare("SELECT scope, consent_type, purpose, set_at FROM app_consent_items WHERE app_id = ?1 ORDER BY scope")
        .map_err(backend)?;
    let consent_items = stmt
        .query_map([app], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
        })
        .map_err(backend)?
        .map(|row| {
            let (scope, consent_type, purpose, set_at) = row.map_err(backend)?;
            Ok(ConsentSetting {
                scope,
                consent_type: parse(&consent_type, "consent type")?,
                purpose,
                set_at: Timestamp(set_at),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let eligibility = conn
        .query_row("SELECT agreed_by, agreed_at FROM app_eligibility WHERE app_id = ?1", [app], |r| {
            Ok(Eligibility { agreed_by: AccountId(r.get(0)?), agreed_at: Timestamp(r.get(1)?) })
        })
        .optional()
        .map_err(backend)?;
    let mut stmt = conn
        .prepare("SELECT channel_id, connected_at FROM app_channels WHERE app_id = ?1 ORDER BY channel_id")
        .map_err(backend)?;
    let channels = stmt
        .query_map([app], |r| Ok(ConnectedChannel { channel_id: r.get(0)?, connected_at: Timestamp(r.get(1)?) }))
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok((business, consent_items, eligibility, channels))
}

/// Checks `requires` for `g` in `tx`, an IMMEDIATE transaction: a removal of Biz or of the last
/// channel, or another grant of the same permission, either committed before (and is seen here)
/// or waits until this grant is in (and revokes it, or finds it).
fn check_requirements(tx: &Transaction<'_>, g: &NewGrant, requires: &Requirements, at: Timestamp) -> StoreResult<()> {
    let exists = |sql: &str, values: &[&dyn rusqlite::ToSql]| -> StoreResult<bool> {
        tx.query_row(sql, values, |r| r.get(0)).map_err(backend)
    };
    for p in &requires.permissions {
        if !exists(HOLDS, params![g.app_id.0, p, at.0])? {
            return Err(Requirements::unmet(g, &format!("it no longer holds `{p}`")));
        }
    }
    if requires.channel_connected && !exists(HAS_CHANNEL, params![g.app_id.0])? {
        return Err(Requirements::unmet(g, "it no longer has a Kakao Talk Channel connected"));
    }
    for c in &requires.consent_items {
        if !exists(HAS_CONSENT_ITEM, params![g.app_id.0, c])? {
            return Err(Requirements::unmet(g, &format!("the consent item `{c}` is no longer set")));
        }
    }
    if let Some(after) = requires.not_held_after
        && held_past(tx, g, after)?
    {
        return Err(Requirements::unmet(g, "it holds it already (granted since the request was read)"));
    }
    Ok(())
}

/// Whether the app holds `g`'s permission for `g`'s key (and quota rule, when `g` names one)
/// live past `after`: then `g` would be a second grant of it.
pub(super) fn held_past(tx: &Transaction<'_>, g: &NewGrant, after: Timestamp) -> StoreResult<bool> {
    let rule = g.params.get("rule").and_then(serde_json::Value::as_str);
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM grants WHERE app_id = ?1 AND permission = ?2 AND key_id IS ?3
         AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?4)
         AND (?5 IS NULL OR json_extract(params, '$.rule') IS NULL OR json_extract(params, '$.rule') = ?5))",
        params![g.app_id.0, g.permission, g.key_id.map(|k| k.0), after.0, rule],
        |r| r.get(0),
    )
    .map_err(backend)
}

/// Whether app ?1 holds permission ?2 app-wide at ?3.
const HOLDS: &str = "SELECT EXISTS (SELECT 1 FROM grants WHERE app_id = ?1 AND permission = ?2 AND key_id IS NULL
     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?3))";
const HAS_CHANNEL: &str = "SELECT EXISTS (SELECT 1 FROM app_channels WHERE app_id = ?1)";
const HAS_CONSENT_ITEM: &str = "SELECT EXISTS (SELECT 1 FROM app_consent_items WHERE app_id = ?1 AND scope = ?2)";
