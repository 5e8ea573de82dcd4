//! The review workflow and the notification outbox on PostgreSQL: app settings the workflow
//! checks, permission requests with their history and evidence, and outbox messages. Each write
//! is one transaction under the schema's write lock with its audit event (see
//! [`PostgresStore::write`]); the outbox is claimed with `FOR UPDATE SKIP LOCKED`, so nodes
//! sharing the database never take the same message.

use std::collections::BTreeMap;

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
use postgres::error::SqlState;
use postgres::{GenericClient, Row, Transaction};

use super::{Fail, PostgresStore, Tried, WRITE_LOCK, cap, insert_grant_row, parse, record_of};

/// The placeholder a new request's audit target, grant reason and notifications carry until the
/// store knows the request's id.
const REQUEST_ID: &str = "{request_id}";

/// The partial unique index that allows one open request per app, permission and quota rule.
const ONE_OPEN: &str = "permission_requests_one_open";

impl WorkflowStore for PostgresStore {
    fn agree_eligibility(&self, app: AppId, by: AccountId, now: Timestamp, audit: &NewAuditEvent) -> StoreResult<bool> {
        // Two agreeing at once: the one whose row is not stored writes no event either.
        self.write_changed(audit, |tx| {
            let n = tx.execute(
                "INSERT INTO app_eligibility (app_id, agreed_by, agreed_at) VALUES ($1, $2, $3)
                 ON CONFLICT (app_id) DO NOTHING",
                &[&app.0, &by.0, &now.0],
            )?;
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
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (app_id) DO UPDATE SET registration_number = excluded.registration_number,
                 company_name = excluded.company_name, verified_at = excluded.verified_at, kind = excluded.kind,
                 icon_url = excluded.icon_url",
                &[
                    &app.0,
                    &business.registration_number,
                    &business.company_name,
                    &business.verified_at.0,
                    &business.kind.as_str(),
                    &business.icon_url,
                ],
            )?;
            if let Some(g) = grant {
                insert_grant_row(tx, g, business.verified_at)?;
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
            let deleted = tx.execute("DELETE FROM app_business WHERE app_id = $1", &[&app.0])?;
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
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                 business_registration_number = excluded.business_registration_number,
                 business_channel = excluded.business_channel",
                &[&channel.id, &channel.name, &channel.business_registration_number, &channel.business_channel, &now.0],
            )?;
            Ok(())
        })
    }

    fn channels(&self) -> StoreResult<Vec<TalkChannel>> {
        self.read(|c| {
            c.query(
                r#"SELECT id, name, business_registration_number, business_channel FROM talk_channels
                   ORDER BY id COLLATE "C""#,
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(TalkChannel {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    business_registration_number: r.try_get(2)?,
                    business_channel: r.try_get(3)?,
                })
            })
            .collect()
        })
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
                "INSERT INTO app_channels (app_id, channel_id, connected_at) VALUES ($1, $2, $3)",
                &[&app.0, &channel, &now.0],
            )?;
            if granted {
                insert_grant_row(tx, grant, now)?;
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
            let n =
                tx.execute("DELETE FROM app_channels WHERE app_id = $1 AND channel_id = $2", &[&app.0, &channel])?;
            if n == 0 {
                return Ok(None);
            }
            let left: i64 =
                tx.query_one("SELECT count(*) FROM app_channels WHERE app_id = $1", &[&app.0])?.try_get(0)?;
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
            let n = tx.execute("DELETE FROM app_consent_items WHERE app_id = $1 AND scope = $2", &[&app.0, &scope])?;
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
                None => {
                    tx.execute("DELETE FROM app_consent_items WHERE app_id = $1 AND scope = $2", &[&app.0, &scope])?
                }
                Some(c) => tx.execute(
                    "INSERT INTO app_consent_items (app_id, scope, consent_type, purpose, set_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (app_id, scope) DO UPDATE SET consent_type = excluded.consent_type,
                     purpose = excluded.purpose, set_at = excluded.set_at",
                    &[&app.0, &scope, &c.consent_type.as_str(), &c.purpose, &c.set_at.0],
                )?,
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
        self.transaction(WRITE_LOCK, |tx| {
            let evidence_id: Option<i64> = match evidence {
                None => None,
                Some(e) => {
                    let size = cap(u64::try_from(e.bytes.len()).unwrap_or(u64::MAX));
                    let row = tx.query_one(
                        "INSERT INTO evidence_files (file_name, content_type, size, sha256, content)
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        &[&e.file_name, &e.content_type, &size, &e.sha256, &e.bytes],
                    )?;
                    Some(row.try_get(0)?)
                }
            };
            let row = tx
                .query_one(
                    "INSERT INTO permission_requests (app_id, permission, state, service_url, reason, usage_scenario,
                     requested_limit, requested_rule, evidence_id, applicant, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
                    &[
                        &new.app_id.0,
                        &new.permission,
                        &new.event.to.as_str(),
                        &new.service_url,
                        &new.reason,
                        &new.usage_scenario,
                        &new.requested_limit.map(cap),
                        &new.requested_rule,
                        &evidence_id,
                        &new.applicant.0,
                        &new.event.at.0,
                    ],
                )
                .map_err(|e| open_conflict(e, &new.permission))?;
            let id: i64 = row.try_get(0)?;
            let fill = |text: &str| text.replace(REQUEST_ID, &id.to_string());
            insert_history(tx, id, &new.event)?;
            if let Some((g, requires)) = grant {
                check_requirements(tx, g, requires, new.event.at)?;
                let g = NewGrant { reason: fill(&g.reason), ..g.clone() };
                let grant_id = insert_grant_row(tx, &g, new.event.at)?;
                tx.execute("UPDATE permission_requests SET grant_id = $1 WHERE id = $2", &[&grant_id, &id])?;
            }
            for m in messages {
                let m = NewMessage { subject: fill(&m.subject), body: fill(&m.body), ..m.clone() };
                insert_message(tx, &m, new.event.at)?;
            }
            let mut audit = audit.clone();
            audit.target = fill(&audit.target);
            self.append_audit(tx, &audit)?;
            load_request(tx, id)?.ok_or_else(|| StoreError::Backend("the new request vanished".into()).into())
        })
    }

    fn transition_request(
        &self,
        t: &Transition,
        grant: Option<(&NewGrant, &Requirements)>,
        messages: &[NewMessage],
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<PermissionRequest>> {
        self.transaction_or_rollback(WRITE_LOCK, |tx| {
            let n = tx.execute(
                "UPDATE permission_requests SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4",
                &[&t.event.to.as_str(), &t.event.at.0, &t.request_id, &t.from.as_str()],
            )?;
            if n == 0 {
                // Moved on (or gone) meanwhile: nothing is written.
                return Ok((None, false));
            }
            insert_history(tx, t.request_id, &t.event)?;
            if let Some((g, requires)) = grant {
                check_requirements(tx, g, requires, t.event.at)?;
                let grant_id = insert_grant_row(tx, g, t.event.at)?;
                tx.execute("UPDATE permission_requests SET grant_id = $1 WHERE id = $2", &[&grant_id, &t.request_id])?;
            }
            for m in messages {
                insert_message(tx, m, t.event.at)?;
            }
            self.append_audit(tx, audit)?;
            Ok((load_request(tx, t.request_id)?, true))
        })
    }

    fn request(&self, id: i64) -> StoreResult<Option<PermissionRequest>> {
        // Two queries: one snapshot, so the history belongs to the request as read.
        self.read(|c| {
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let request = load_request(&mut tx, id)?;
            tx.commit()?;
            Ok(request)
        })
    }

    fn requests(&self, filter: &RequestFilter) -> StoreResult<Vec<PermissionRequest>> {
        let state = filter.state.map(|s| s.as_str());
        let app = filter.app_id.map(|a| a.0);
        let among: Option<Vec<i64>> = filter.among_apps.as_ref().map(|ids| ids.iter().map(|a| a.0).collect());
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        self.read(|c| {
            c.query(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM permission_requests r LEFT JOIN evidence_files e ON e.id = r.evidence_id
                     WHERE ($1::text IS NULL OR r.state = $1) AND ($2::bigint IS NULL OR r.app_id = $2)
                     AND ($3::bigint[] IS NULL OR r.app_id = ANY($3))
                     AND ($5::bigint IS NULL OR r.id < $5)
                     ORDER BY r.id DESC LIMIT $4"
                ),
                &[&state, &app, &among, &limit, &filter.before],
            )?
            .iter()
            .map(request_row)
            .collect()
        })
    }

    fn evidence(&self, id: i64) -> StoreResult<Option<(EvidenceInfo, Vec<u8>)>> {
        self.read(|c| {
            c.query_opt(
                "SELECT id, file_name, content_type, size, sha256, content FROM evidence_files WHERE id = $1",
                &[&id],
            )?
            .map(|r| {
                Ok((
                    EvidenceInfo {
                        id: r.try_get(0)?,
                        file_name: r.try_get(1)?,
                        content_type: r.try_get(2)?,
                        size: r.try_get::<_, i64>(3)?.cast_unsigned(),
                        sha256: r.try_get(4)?,
                    },
                    r.try_get(5)?,
                ))
            })
            .transpose()
        })
    }
}

impl OutboxStore for PostgresStore {
    /// One statement: rows another node is claiming right now are skipped, not waited for, and a
    /// row it has just claimed is re-checked against its new lease and left out.
    fn claim_messages(&self, now: Timestamp, limit: usize, lease_secs: i64) -> StoreResult<Vec<OutboxMessage>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let until = now.0.saturating_add(lease_secs);
        let mut messages = self.once(|c| {
            c.query(
                &format!(
                    "WITH due AS (
                         SELECT id FROM outbox WHERE state = 'pending'
                         AND coalesce(next_attempt_at, 0) <= $1 AND coalesce(locked_until, 0) <= $1
                         ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
                     )
                     UPDATE outbox o SET locked_until = $3 FROM due WHERE o.id = due.id
                     RETURNING {}",
                    qualified_message_columns("o")
                ),
                &[&now.0, &limit, &until],
            )?
            .iter()
            .map(message_row)
            .collect::<Tried<Vec<_>>>()
        })?;
        // RETURNING keeps no order.
        messages.sort_by_key(|m| m.id);
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
        self.once(|c| {
            c.execute(
                "UPDATE outbox SET state = $1::text, attempts = attempts + 1, next_attempt_at = $2::bigint,
                 locked_until = NULL, last_error = coalesce($3::text, last_error),
                 delivered_at = CASE WHEN $1::text = 'delivered' THEN $4::bigint END
                 WHERE id = $5",
                &[&state.as_str(), &next_attempt_at.map(|t| t.0), &error, &now.0, &id],
            )?;
            Ok(())
        })
    }

    fn messages(&self, app: Option<AppId>, limit: usize) -> StoreResult<Vec<OutboxMessage>> {
        let app = app.map(|a| a.0);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            c.query(
                &format!(
                    "SELECT {} FROM outbox WHERE ($1::bigint IS NULL OR app_id = $1) ORDER BY id DESC LIMIT $2",
                    qualified_message_columns("outbox")
                ),
                &[&app, &limit],
            )?
            .iter()
            .map(message_row)
            .collect()
        })
    }
}

/// A refused second open request, said so; other errors as usual.
fn open_conflict(e: postgres::Error, permission: &str) -> Fail {
    match e.as_db_error() {
        Some(db) if *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(ONE_OPEN) => {
            Fail::Store(StoreError::Conflict(format!("the app already has an open request for `{permission}`")))
        }
        _ => Fail::Pg(e),
    }
}

fn insert_history(tx: &mut Transaction<'_>, request: i64, e: &RequestEvent) -> Tried<()> {
    tx.execute(
        "INSERT INTO permission_request_history
         (request_id, at, actor, action, from_state, to_state, reason_code, reason, comment)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &request,
            &e.at.0,
            &e.actor.map(|a| a.0),
            &e.action,
            &e.from.map(|s| s.as_str()),
            &e.to.as_str(),
            &e.reason_code,
            &e.reason,
            &e.comment,
        ],
    )?;
    Ok(())
}

pub(super) fn insert_message(tx: &mut Transaction<'_>, m: &NewMessage, now: Timestamp) -> Tried<()> {
    tx.execute(
        "INSERT INTO outbox (channel, recipient, subject, body, app_id, created_at, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &[&m.channel.as_str(), &m.recipient, &m.subject, &m.body, &m.app_id.map(|a| a.0), &now.0],
    )?;
    Ok(())
}

const REQUEST_COLUMNS: &str = "r.id, r.app_id, r.permission, r.state, r.service_url, r.reason, r.usage_scenario,
    r.requested_limit, r.requested_rule, r.applicant, r.created_at, r.updated_at, r.grant_id,
    e.id, e.file_name, e.content_type, e.size, e.sha256";

fn request_row(r: &Row) -> Tried<PermissionRequest> {
    let evidence = match r.try_get::<_, Option<i64>>(13)? {
        None => None,
        Some(id) => Some(EvidenceInfo {
            id,
            file_name: r.try_get(14)?,
            content_type: r.try_get(15)?,
            size: r.try_get::<_, i64>(16)?.cast_unsigned(),
            sha256: r.try_get(17)?,
        }),
    };
    Ok(PermissionRequest {
        id: r.try_get(0)?,
        app_id: AppId(r.try_get(1)?),
        permission: r.try_get(2)?,
        state: parse(r.try_get(3)?, "request state")?,
        service_url: r.try_get(4)?,
        reason: r.try_get(5)?,
        usage_scenario: r.try_get(6)?,
        requested_limit: r.try_get::<_, Option<i64>>(7)?.map(i64::cast_unsigned),
        requested_rule: r.try_get(8)?,
        evidence,
        applicant: AccountId(r.try_get(9)?),
        created_at: Timestamp(r.try_get(10)?),
        updated_at: Timestamp(r.try_get(11)?),
        grant_id: r.try_get(12)?,
        history: Vec::new(),
    })
}

/// One request with its history, oldest entry first.
fn load_request(c: &mut impl GenericClient, id: i64) -> Tried<Option<PermissionRequest>> {
    let Some(row) = c.query_opt(
        &format!(
            "SELECT {REQUEST_COLUMNS} FROM permission_requests r LEFT JOIN evidence_files e ON e.id = r.evidence_id
             WHERE r.id = $1"
        ),
        &[&id],
    )?
    else {
        return Ok(None);
    };
    let mut request = request_row(&row)?;
    for r in c.query(
        "SELECT at, actor, action, from_state, to_state, reason_code, reason, comment
         FROM permission_request_history WHERE request_id = $1 ORDER BY id",
        &[&id],
    )? {
        request.history.push(RequestEvent {
            at: Timestamp(r.try_get(0)?),
            actor: r.try_get::<_, Option<i64>>(1)?.map(AccountId),
            action: r.try_get(2)?,
            from: r.try_get::<_, Option<&str>>(3)?.map(|f| parse(f, "request state")).transpose()?,
            to: parse(r.try_get(4)?, "request state")?,
            reason_code: r.try_get(5)?,
            reason: r.try_get(6)?,
            comment: r.try_get(7)?,
        });
    }
    Ok(Some(request))
}

/// The outbox columns [`message_row`] reads, of the table (or alias) `table`.
fn qualified_message_columns(table: &str) -> String {
    [
        "id",
        "channel",
        "recipient",
        "subject",
        "body",
        "app_id",
        "state",
        "attempts",
        "created_at",
        "next_attempt_at",
        "delivered_at",
        "last_error",
    ]
    .map(|c| format!("{table}.{c}"))
    .join(", ")
}

fn message_row(r: &Row) -> Tried<OutboxMessage> {
    Ok(OutboxMessage {
        id: r.try_get(0)?,
        channel: parse(r.try_get(1)?, "channel")?,
        recipient: r.try_get(2)?,
        subject: r.try_get(3)?,
        body: r.try_get(4)?,
        app_id: r.try_get::<_, Option<i64>>(5)?.map(AppId),
        state: parse(r.try_get(6)?, "delivery state")?,
        attempts: u32::try_from(r.try_get::<_, i64>(7)?).unwrap_or(u32::MAX),
        created_at: Timestamp(r.try_get(8)?),
        next_attempt_at: r.try_get::<_, Option<i64>>(9)?.map(Timestamp),
        delivered_at: r.try_get::<_, Option<i64>>(10)?.map(Timestamp),
        last_error: r.try_get(11)?,
    })
}

/// Fills in the settings the workflow keeps (business information, consent items, the
/// eligibility agreement) of the records read so far, from the same snapshot.
pub(super) fn load_settings(
    tx: &mut Transaction<'_>,
    only: Option<i64>,
    records: &mut BTreeMap<i64, AppRecord>,
) -> Tried<()> {
    for r in tx.query(
        "SELECT app_id, registration_number, company_name, verified_at, kind, icon_url FROM app_business
         WHERE ($1::bigint IS NULL OR app_id = $1)",
        &[&only],
    )? {
        if let Some(record) = record_of(records, &r)? {
            record.business = Some(Business {
                kind: parse(r.try_get(4)?, "Biz kind")?,
                registration_number: r.try_get(1)?,
                company_name: r.try_get(2)?,
                verified_at: Timestamp(r.try_get(3)?),
                icon_url: r.try_get(5)?,
            });
        }
    }

    for r in tx.query(
        r#"SELECT app_id, channel_id, connected_at FROM app_channels
           WHERE ($1::bigint IS NULL OR app_id = $1) ORDER BY app_id, channel_id COLLATE "C""#,
        &[&only],
    )? {
        if let Some(record) = record_of(records, &r)? {
            record
                .channels
                .push(ConnectedChannel { channel_id: r.try_get(1)?, connected_at: Timestamp(r.try_get(2)?) });
        }
    }

    // COLLATE "C": byte order, as SQLite sorts, whatever the database's collation.
    for r in tx.query(
        r#"SELECT app_id, scope, consent_type, purpose, set_at FROM app_consent_items
           WHERE ($1::bigint IS NULL OR app_id = $1) ORDER BY app_id, scope COLLATE "C""#,
        &[&only],
    )? {
        if let Some(record) = record_of(records, &r)? {
            record.consent_items.push(ConsentSetting {
                scope: r.try_get(1)?,
                consent_type: parse(r.try_get(2)?, "consent type")?,
                purpose: r.try_get(3)?,
                set_at: Timestamp(r.try_get(4)?),
            });
        }
    }

    for r in tx.query(
        "SELECT app_id, agreed_by, agreed_at FROM app_eligibility WHERE ($1::bigint IS NULL OR app_id = $1)",
        &[&only],
    )? {
        if let Some(record) = record_of(records, &r)? {
            record.eligibility =
                Some(Eligibility { agreed_by: AccountId(r.try_get(1)?), agreed_at: Timestamp(r.try_get(2)?) });
        }
    }
    Ok(())
}

/// Revokes the grants of `permissions` still in force, app-wide and bound to a key alike (what
/// needed a lost prerequisite needed it whichever key it is for); returns those revoked.
pub(super) fn revoke_grants(
    tx: &mut Transaction<'_>,
    app: AppId,
    permissions: &[String],
    by: impl Into<Option<AccountId>>,
    reason: &str,
    now: Timestamp,
) -> Tried<Vec<String>> {
    let by: Option<AccountId> = by.into();
    let mut revoked = Vec::new();
    for p in permissions {
        let n = tx.execute(
            "UPDATE grants SET revoked_at = $1, revoked_by = $2, revoke_reason = $3
             WHERE app_id = $4 AND permission = $5 AND revoked_at IS NULL",
            &[&now.0, &by.map(|b| b.0), &reason, &app.0, p],
        )?;
        if n > 0 && !revoked.contains(p) {
            revoked.push(p.clone());
        }
    }
    Ok(revoked)
}

/// Which grants a [`GrantOf`] means, as SQL over `$1` (app), `$2` (permission), `$3` (key) and
/// `$4` (rule).
pub(super) const GRANTS_OF: &str = "app_id = $1 AND permission = $2 AND key_id IS NOT DISTINCT FROM $3
                          AND revoked_at IS NULL AND ($4::TEXT IS NULL OR params->>'rule' = $4)";

/// Revokes the grants `of` names and, if the app then holds the permission app-wide no more,
/// applies `cascade` (said to follow from the permission's revocation for `reason`). Returns
/// what the cascade took, when it ran.
pub(super) fn revoke_of(
    tx: &mut Transaction<'_>,
    app: AppId,
    of: GrantOf<'_>,
    cascade: Cascade<'_>,
    by: Option<AccountId>,
    reason: &str,
    now: Timestamp,
) -> Tried<Option<(Vec<String>, Vec<String>)>> {
    tx.execute(
        &format!("UPDATE grants SET revoked_at = $5, revoked_by = $6, revoke_reason = $7 WHERE {GRANTS_OF}"),
        &[&app.0, &of.permission, &of.key.map(|k| k.0), &of.rule, &now.0, &by.map(|b| b.0), &reason],
    )?;
    if of.key.is_some() {
        return Ok(None);
    }
    follow(tx, app, of.permission, cascade, by, &format!("`{}` revoked: {reason}", of.permission), now)
}

/// Whether a grant `of` names, newer than grant `id`, is in force at `now`: it stands for the
/// holding.
pub(super) fn granted_since(
    tx: &mut Transaction<'_>,
    app: AppId,
    of: GrantOf<'_>,
    id: i64,
    now: Timestamp,
) -> Tried<bool> {
    Ok(tx
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM grants WHERE {GRANTS_OF} AND id > $5 AND (expires_at IS NULL OR expires_at > $6))"
            ),
            &[&app.0, &of.permission, &of.key.map(|k| k.0), &of.rule, &id, &now.0],
        )?
        .try_get(0)?)
}

/// Applies `cascade` (for `reason`) if the app holds `permission` app-wide no more; returns what
/// it took, when it ran.
pub(super) fn follow(
    tx: &mut Transaction<'_>,
    app: AppId,
    permission: &str,
    cascade: Cascade<'_>,
    by: Option<AccountId>,
    reason: &str,
    now: Timestamp,
) -> Tried<Option<(Vec<String>, Vec<String>)>> {
    if cascade.is_empty() || holds(tx, app, permission, now)? {
        return Ok(None);
    }
    Ok(Some(lose(tx, app, cascade, by, reason, now)?))
}

/// Applies `cascade` in `tx`: revokes its permissions' grants, unsets its consent
/// items, and queues its messages if anything went. Returns what went.
pub(super) fn lose(
    tx: &mut Transaction<'_>,
    app: AppId,
    cascade: Cascade<'_>,
    by: impl Into<Option<AccountId>>,
    reason: &str,
    now: Timestamp,
) -> Tried<(Vec<String>, Vec<String>)> {
    let revoked = revoke_grants(tx, app, cascade.revoke, by, reason, now)?;
    let mut unset = Vec::new();
    for scope in cascade.unset {
        let n = tx.execute("DELETE FROM app_consent_items WHERE app_id = $1 AND scope = $2", &[&app.0, scope])?;
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
pub(super) fn holds(tx: &mut Transaction<'_>, app: AppId, permission: &str, now: Timestamp) -> Tried<bool> {
    Ok(tx.query_one(HOLDS, &[&app.0, &permission, &now.0])?.try_get(0)?)
}

/// Checks `requires` for `g` in `tx`, under the write lock: a removal of Biz or of the last
/// channel, or another grant of the same permission, either committed before (and is seen here)
/// or waits until this grant is in (and revokes it, or finds it).
fn check_requirements(tx: &mut Transaction<'_>, g: &NewGrant, requires: &Requirements, at: Timestamp) -> Tried<()> {
    for p in &requires.permissions {
        let held: bool = tx.query_one(HOLDS, &[&g.app_id.0, p, &at.0])?.try_get(0)?;
        if !held {
            return Err(Requirements::unmet(g, &format!("it no longer holds `{p}`")).into());
        }
    }
    if requires.channel_connected {
        let connected: bool = tx.query_one(HAS_CHANNEL, &[&g.app_id.0])?.try_get(0)?;
        if !connected {
            return Err(Requirements::unmet(g, "it no longer has a Kakao Talk Channel connected").into());
        }
    }
    for c in &requires.consent_items {
        let set: bool = tx.query_one(HAS_CONSENT_ITEM, &[&g.app_id.0, c])?.try_get(0)?;
        if !set {
            return Err(Requirements::unmet(g, &format!("the consent item `{c}` is no longer set")).into());
        }
    }
    if let Some(after) = requires.not_held_after
        && held_past(tx, g, after)?
    {
        return Err(Requirements::unmet(g, "it holds it already (granted since the request was read)").into());
    }
    Ok(())
}

/// Whether the app holds `g`'s permission for `g`'s key (and quota rule, when `g` names one)
/// live past `after`: then `g` would be a second grant of it.
pub(super) fn held_past(tx: &mut Transaction<'_>, g: &NewGrant, after: Timestamp) -> Tried<bool> {
    let rule = g.params.get("rule").and_then(serde_json::Value::as_str);
    let row = tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM grants WHERE app_id = $1 AND permission = $2
         AND key_id IS NOT DISTINCT FROM $3 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $4)
         AND ($5::TEXT IS NULL OR params->>'rule' IS NULL OR params->>'rule' = $5))",
        &[&g.app_id.0, &g.permission, &g.key_id.map(|k| k.0), &after.0, &rule],
    )?;
    Ok(row.try_get(0)?)
}

/// Whether app $1 holds permission $2 app-wide at $3.
const HOLDS: &str = "SELECT EXISTS (SELECT 1 FROM grants WHERE app_id = $1 AND permission = $2 AND key_id IS NULL
     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3))";
const HAS_CHANNEL: &str = "SELECT EXISTS (SELECT 1 FROM app_channels WHERE app_id = $1)";
const HAS_CONSENT_ITEM: &str = "SELECT EXISTS (SELECT 1 FROM app_consent_items WHERE app_id = $1 AND scope = $2)";
