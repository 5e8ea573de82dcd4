//! The review workflow and the notification outbox on PostgreSQL: requests with their evidence,
//! history, grants and messages written in one transaction with their audit event; the outbox
//! claimed by several nodes at once without any message taken twice.

use std::collections::BTreeSet;
use std::sync::Barrier;

use permgate_core::audit::{NewAuditEvent, verify_chain};
use permgate_core::model::{AccountId, AppId, Business, ConsentLevel, ConsentSetting, Eligibility, GrantSource, Role};
use permgate_core::notify::{Channel, DeliveryState, NewMessage};
use permgate_core::ports::{
    AccountStore, AppStore, AuditStore, ChangeFeed, NewAccount, NewGrant, OutboxStore, StoreError, WorkflowStore,
};
use permgate_core::time::Timestamp;
use permgate_core::workflow::{NewEvidence, NewRequest, RequestEvent, RequestFilter, RequestState, Transition};
use permgate_store_postgres::PostgresStore;
use permgate_testkit::pg;

use crate::{AT, migrated, new_app, owner, pg_err, sql};

fn event(action: &str, from: Option<RequestState>, to: RequestState, at: Timestamp) -> RequestEvent {
    RequestEvent {
        at,
        actor: Some(AccountId(1)),
        action: action.into(),
        from,
        to,
        reason_code: None,
        reason: None,
        comment: String::new(),
    }
}

fn new_request(app: AppId, applicant: AccountId, permission: &str) -> NewRequest {
    NewRequest {
        app_id: app,
        permission: permission.into(),
        service_url: "https://shop.example.com".into(),
        reason: "we send order updates".into(),
        usage_scenario: "after checkout".into(),
        requested_limit: Some(5000),
        requested_rule: None,
        applicant,
        event: event("submit", None, RequestState::Submitted, AT),
    }
}

fn request_audit(app: AppId, action: &str) -> NewAuditEvent {
    NewAuditEvent::new(AT, Some(AccountId(1)), action, "request:{request_id}".into()).app(app)
}

fn message(app: AppId, recipient: &str) -> NewMessage {
    NewMessage {
        channel: Channel::Email,
        recipient: recipient.into(),
        subject: "Request {request_id} received".into(),
        body: "See /requests/{request_id}".into(),
        app_id: Some(app),
    }
}

fn grant(app: AppId, permission: &str) -> NewGrant {
    NewGrant {
        app_id: app,
        permission: permission.into(),
        key_id: None,
        source: GrantSource::Review,
        granted_by: Some(AccountId(1)),
        expires_at: None,
        params: serde_json::json!({}),
        reason: "approved with request {request_id}".into(),
    }
}

/// The newest audit event's seq and hash, read from the chain itself.
fn last_event(store: &PostgresStore) -> Result<Option<(i64, String)>, StoreError> {
    Ok(store.audit_events(None, usize::MAX)?.last().map(|e| (e.seq, e.hash.clone())))
}

fn count(url: &str, table: &str) -> Result<i64, StoreError> {
    sql(url)?.query_one(&format!("SELECT count(*) FROM {table}"), &[]).and_then(|r| r.try_get(0)).map_err(pg_err)
}

#[test]
fn accounts_keep_their_email_address() -> Result<(), StoreError> {
    let Some(schema) = pg::fresh_schema("email") else { return Ok(()) };
    let store = migrated(&schema.url)?;
    let new = NewAccount {
        name: "erin".into(),
        role: Role::Reviewer,
        email: Some("erin@example.com".into()),
        token_hash: "hash-of-erin".into(),
    };
    let created = store.create_account(&new, AT, &NewAuditEvent::new(AT, None, "account.create", "x".into()))?;
    assert_eq!(created.email.as_deref(), Some("erin@example.com"));
    assert_eq!(store.account(created.id)?, Some(created.clone()));
    assert_eq!(store.account_by_token_hash("hash-of-erin")?, Some((created.clone(), "hash-of-erin".into())));
    assert_eq!(store.accounts()?, vec![created]);
    let dana = owner(&store, "dana")?;
    assert_eq!(store.account(dana)?.and_then(|a| a.email), None);
    Ok(())
}

#[test]
fn app_settings_of_the_workflow_are_kept_in_the_record() -> Result<(), StoreError> {
    let Some(schema) = pg::fresh_schema("settings") else { return Ok(()) };
    let store = migrated(&schema.url)?;
    let dana = owner(&store, "dana")?;
    let app = new_app(&store, dana)?;
    let other = new_app(&store, dana)?;
    let audit = |action: &str| NewAuditEvent::new(AT, Some(dana), action, format!("app:{app}")).app(app);

    assert!(store.agree_eligibility(app, dana, AT, &audit("app.eligibility"))?);
    assert!(!store.agree_eligibility(app, dana, Timestamp(AT.0 + 5), &audit("app.eligibility"))?);

    let business =
        Business { registration_number: "123-45-67890".into(), company_name: "Example Ltd".into(), verified_at: AT };
    store.set_business(app, &business, Some(&grant(app, "biz_app")), &audit("app.business"))?;
    let renamed = Business { company_name: "Example Corp".into(), ..business.clone() };
    store.set_business(app, &renamed, None, &audit("app.business"))?;

    let consent = |scope: &str, level| ConsentSetting {
        scope: scope.into(),
        consent_type: level,
        purpose: format!("to use {scope}"),
        set_at: AT,
    };
    store.set_consent_item(app, "talk_message", Some(&consent("talk_message", ConsentLevel::Optional)), &audit("c"))?;
    store.set_consent_item(app, "Profile", Some(&consent("Profile", ConsentLevel::Required)), &audit("c"))?;
    store.set_consent_item(app, "email", Some(&consent("email", ConsentLevel::OnUse)), &audit("c"))?;
    store.set_consent_item(app, "email", None, &audit("c"))?;
    store.set_consent_item(app, "talk_message", Some(&consent("talk_message", ConsentLevel::Required)), &audit("c"))?;

    let record = store.app_record(app)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert_eq!(record.eligibility, Some(Eligibility { agreed_by: dana, agreed_at: AT }));
    assert_eq!(record.business, Some(renamed));
    assert_eq!(
        record.consent_items,
        vec![consent("Profile", ConsentLevel::Required), consent("talk_message", ConsentLevel::Required)],
        "byte order, upper case first"
    );
    assert_eq!(record.grants.iter().map(|g| g.permission.as_str()).collect::<Vec<_>>(), ["biz_app"]);

    let records = store.app_records()?;
    let bare = records.iter().find(|r| r.app.id == other).ok_or_else(|| StoreError::NotFound("other".into()))?;
    assert_eq!((&bare.business, bare.consent_items.len(), &bare.eligibility), (&None, 0, &None));
    assert!(records.iter().any(|r| r.app.id == app && r.consent_items.len() == 2));

    let (_, changed) = store.changes_since(0)?;
    assert!(changed.contains(&app));
    assert_eq!(store.audit_head()?, last_event(&store)?);
    Ok(())
}

#[test]
fn requests_move_through_the_workflow_with_their_evidence_and_history() -> Result<(), StoreError> {
    let Some(schema) = pg::fresh_schema("requests") else { return Ok(()) };
    let store = migrated(&schema.url)?;
    let dana = owner(&store, "dana")?;
    let (a, b) = (new_app(&store, dana)?, new_app(&store, dana)?);

    // A request with an evidence file and a notification: the placeholder becomes its id.
    let bytes: Vec<u8> = (0..=255).chain([0, 0, 255]).collect();
    let evidence = NewEvidence {
        file_name: "screens.pdf".into(),
        content_type: "application/pdf".into(),
        sha256: "ab".repeat(32),
        bytes: bytes.clone(),
    };
    let changes_before = store.latest_change()?;
    let first = store.create_request(
        &new_request(a, dana, "talk_message"),
        Some(&evidence),
        None,
        &[message(a, "dana@example.com")],
        &request_audit(a, "request.create"),
    )?;
    assert_eq!((first.app_id, first.state, first.permission.as_str()), (a, RequestState::Submitted, "talk_message"));
    assert_eq!((first.requested_limit, first.grant_id, first.created_at, first.updated_at), (Some(5000), None, AT, AT));
    assert_eq!(first.history, vec![event("submit", None, RequestState::Submitted, AT)]);
    let info = first.evidence.clone().ok_or_else(|| StoreError::NotFound("evidence".into()))?;
    assert_eq!((info.file_name.as_str(), info.size, info.sha256.as_str()), ("screens.pdf", 259, &*"ab".repeat(32)));
    assert_eq!(store.evidence(info.id)?, Some((info.clone(), bytes)));
    assert_eq!(store.evidence(info.id + 100)?, None);
    let sent = store.messages(Some(a), 10)?;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].subject, format!("Request {} received", first.id));
    assert_eq!(sent[0].body, format!("See /requests/{}", first.id));
    assert_eq!((sent[0].state, sent[0].attempts, sent[0].next_attempt_at), (DeliveryState::Pending, 0, Some(AT)));
    let events = store.audit_events(None, usize::MAX)?;
    assert_eq!(events.last().map(|e| e.event.target.clone()), Some(format!("request:{}", first.id)));
    assert!(store.latest_change()? > changes_before, "a request's write is a change of its app");
    assert_eq!(store.audit_head()?, last_event(&store)?);

    // A second open request for the same app and permission is refused, and leaves nothing.
    let (audit_rows, evidence_rows, outbox_rows) =
        (count(&schema.url, "audit_events")?, count(&schema.url, "evidence_files")?, count(&schema.url, "outbox")?);
    let refused = store.create_request(
        &new_request(a, dana, "talk_message"),
        Some(&evidence),
        None,
        &[message(a, "dana@example.com")],
        &request_audit(a, "request.create"),
    );
    match refused {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "the app already has an open request for `talk_message`"),
        other => unreachable!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        (count(&schema.url, "audit_events")?, count(&schema.url, "evidence_files")?, count(&schema.url, "outbox")?),
        (audit_rows, evidence_rows, outbox_rows)
    );
    // Another app, or another permission, may apply.
    let on_b = store.create_request(&new_request(b, dana, "talk_message"), None, None, &[], &request_audit(b, "c"))?;
    assert_eq!(on_b.evidence, None);

    // Approved at once: the grant is written with the request and names it.
    let mut instant = new_request(a, dana, "profile");
    instant.event = event("submit", None, RequestState::Approved, AT);
    let approved =
        store.create_request(&instant, None, Some(&grant(a, "profile")), &[], &request_audit(a, "request.create"))?;
    assert_eq!(approved.state, RequestState::Approved);
    let record = store.app_record(a)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    let held =
        record.grants.iter().find(|g| g.permission == "profile").ok_or_else(|| StoreError::NotFound("g".into()))?;
    assert_eq!(approved.grant_id, Some(held.id));
    assert_eq!(held.reason, format!("approved with request {}", approved.id));

    // Transitions apply only from the state the caller saw.
    let later = Timestamp(AT.0 + 60);
    let review = Transition {
        request_id: first.id,
        from: RequestState::Submitted,
        event: event("start_review", Some(RequestState::Submitted), RequestState::InReview, later),
    };
    let in_review = store
        .transition_request(&review, None, &[message(a, "dana@example.com")], &request_audit(a, "request.review"))?
        .ok_or_else(|| StoreError::NotFound("the transition".into()))?;
    assert_eq!((in_review.state, in_review.updated_at, in_review.created_at), (RequestState::InReview, later, AT));
    assert_eq!(in_review.history.len(), 2);
    assert_eq!(in_review.history[1], review.event);

    let head = store.audit_head()?;
    let rows = (count(&schema.url, "audit_events")?, count(&schema.url, "outbox")?, count(&schema.url, "change_log")?);
    let stale = store.transition_request(
        &review,
        Some(&grant(a, "talk_message")),
        &[message(a, "dana@example.com")],
        &request_audit(a, "request.review"),
    )?;
    assert_eq!(stale, None);
    assert_eq!(
        (count(&schema.url, "audit_events")?, count(&schema.url, "outbox")?, count(&schema.url, "change_log")?),
        rows,
        "a stale transition writes nothing"
    );
    assert_eq!(store.audit_head()?, head);
    let missing = Transition { request_id: first.id + 1000, ..review.clone() };
    assert_eq!(store.transition_request(&missing, None, &[], &request_audit(a, "x"))?, None);

    let approve = Transition {
        request_id: first.id,
        from: RequestState::InReview,
        event: RequestEvent {
            comment: "looks fine".into(),
            ..event("approve", Some(RequestState::InReview), RequestState::Approved, Timestamp(later.0 + 1))
        },
    };
    let mut g = grant(a, "talk_message");
    g.reason = "approved".into();
    let done = store
        .transition_request(&approve, Some(&g), &[], &request_audit(a, "request.approve"))?
        .ok_or_else(|| StoreError::NotFound("the approval".into()))?;
    assert_eq!(done.state, RequestState::Approved);
    assert!(done.grant_id.is_some());
    assert_eq!(
        done.history.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["submit", "start_review", "approve"]
    );
    assert_eq!(store.request(first.id)?, Some(done.clone()));
    assert_eq!(store.request(first.id + 1000)?, None);

    // Closed, so the app may apply again.
    let again = store.create_request(&new_request(a, dana, "talk_message"), None, None, &[], &request_audit(a, "c"))?;

    // Listings: newest first, without history, filtered.
    let all = |filter: RequestFilter| -> Result<Vec<i64>, StoreError> {
        Ok(store.requests(&filter)?.iter().map(|r| r.id).collect())
    };
    let any = RequestFilter { limit: 100, ..RequestFilter::default() };
    assert_eq!(all(any.clone())?, [again.id, approved.id, on_b.id, first.id]);
    assert!(store.requests(&any)?.iter().all(|r| r.history.is_empty()));
    assert_eq!(store.requests(&any)?.last().and_then(|r| r.evidence.clone()), Some(info));
    assert_eq!(all(RequestFilter { limit: 2, ..any.clone() })?, [again.id, approved.id]);
    assert_eq!(all(RequestFilter { state: Some(RequestState::Submitted), ..any.clone() })?, [again.id, on_b.id]);
    assert_eq!(all(RequestFilter { state: Some(RequestState::Approved), ..any.clone() })?, [approved.id, first.id]);
    assert_eq!(all(RequestFilter { app_id: Some(b), ..any.clone() })?, [on_b.id]);
    assert_eq!(all(RequestFilter { among_apps: Some(vec![b]), ..any.clone() })?, [on_b.id]);
    assert_eq!(all(RequestFilter { among_apps: Some(vec![a, b]), ..any.clone() })?.len(), 4);
    assert_eq!(all(RequestFilter { among_apps: Some(vec![]), ..any.clone() })?, Vec::<i64>::new());
    assert_eq!(
        all(RequestFilter {
            state: Some(RequestState::Submitted),
            app_id: Some(a),
            among_apps: Some(vec![a, b]),
            ..any.clone()
        })?,
        [again.id]
    );
    assert_eq!(all(RequestFilter { app_id: Some(a), among_apps: Some(vec![b]), ..any })?, Vec::<i64>::new());

    let events = store.audit_events(None, usize::MAX)?;
    assert_eq!(verify_chain(&events), Ok(()));
    assert_eq!(store.audit_head()?, last_event(&store)?);
    Ok(())
}

#[test]
fn outbox_messages_are_leased_retried_and_finished() -> Result<(), StoreError> {
    let Some(schema) = pg::fresh_schema("outbox") else { return Ok(()) };
    let store = migrated(&schema.url)?;
    let dana = owner(&store, "dana")?;
    let (a, b) = (new_app(&store, dana)?, new_app(&store, dana)?);
    let messages = [message(a, "one@example.com"), message(a, "two@example.com"), message(a, "three@example.com")];
    store.create_request(&new_request(a, dana, "talk_message"), None, None, &messages, &request_audit(a, "c"))?;
    let ids: Vec<i64> = store.messages(Some(a), 10)?.iter().rev().map(|m| m.id).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(store.messages(Some(b), 10)?, vec![]);
    assert_eq!(store.messages(None, 2)?.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[2], ids[1]]);

    let now = Timestamp(AT.0 + 10);
    assert_eq!(store.claim_messages(Timestamp(AT.0 - 1), 10, 60)?, vec![], "not due before its creation");
    let claimed = store.claim_messages(now, 2, 60)?;
    assert_eq!(claimed.iter().map(|m| m.id).collect::<Vec<_>>(), ids[..2]);
    assert_eq!(claimed[0].recipient, "one@example.com");
    let rest = store.claim_messages(now, 10, 60)?;
    assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), ids[2..], "a leased message is not claimed again");
    assert_eq!(store.claim_messages(Timestamp(now.0 + 59), 10, 60)?, vec![]);

    // The first is delivered, the second failed and waits, the third's lease expires.
    store.finish_attempt(ids[0], DeliveryState::Delivered, None, None, Timestamp(now.0 + 1))?;
    let retry_at = Timestamp(now.0 + 100);
    store.finish_attempt(ids[1], DeliveryState::Pending, Some(retry_at), Some("smtp down"), Timestamp(now.0 + 1))?;
    let by_id = |id: i64| -> Result<_, StoreError> {
        store.messages(None, 10)?.into_iter().find(|m| m.id == id).ok_or_else(|| StoreError::NotFound("msg".into()))
    };
    let delivered = by_id(ids[0])?;
    assert_eq!(
        (delivered.state, delivered.attempts, delivered.delivered_at, delivered.next_attempt_at),
        (DeliveryState::Delivered, 1, Some(Timestamp(now.0 + 1)), None)
    );
    let failed = by_id(ids[1])?;
    assert_eq!(
        (failed.state, failed.attempts, failed.next_attempt_at, failed.delivered_at, failed.last_error.as_deref()),
        (DeliveryState::Pending, 1, Some(retry_at), None, Some("smtp down"))
    );

    let expired = store.claim_messages(Timestamp(now.0 + 60), 10, 60)?;
    assert_eq!(expired.iter().map(|m| m.id).collect::<Vec<_>>(), ids[2..], "released by its lease's expiry");
    let due = store.claim_messages(retry_at, 10, 60)?;
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[1]], "the retry is due, the lease still holds");
    assert_eq!(due[0].attempts, 1);

    // A later attempt without an error keeps the last one; a give-up is final.
    store.finish_attempt(ids[1], DeliveryState::Pending, Some(retry_at), None, retry_at)?;
    assert_eq!(by_id(ids[1])?.last_error.as_deref(), Some("smtp down"));
    assert_eq!(by_id(ids[1])?.attempts, 2);
    store.finish_attempt(ids[1], DeliveryState::Failed, None, Some("gave up"), retry_at)?;
    let given_up = by_id(ids[1])?;
    assert_eq!(
        (given_up.state, given_up.attempts, given_up.last_error.as_deref()),
        (DeliveryState::Failed, 3, Some("gave up"))
    );
    assert_eq!(
        store.claim_messages(Timestamp(now.0 + 10_000), 10, 60)?.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[2..]
    );
    assert_eq!(store.audit_head()?, last_event(&store)?);
    Ok(())
}

#[test]
fn nodes_claiming_at_once_never_take_the_same_message() -> Result<(), StoreError> {
    const MESSAGES: usize = 60;
    let Some(schema) = pg::fresh_schema("claims") else { return Ok(()) };
    let nodes = (0..3).map(|_| migrated(&schema.url)).collect::<Result<Vec<_>, _>>()?;
    let dana = owner(&nodes[0], "dana")?;
    let app = new_app(&nodes[0], dana)?;
    let messages: Vec<NewMessage> = (0..MESSAGES).map(|i| message(app, &format!("m{i}@example.com"))).collect();
    nodes[0].create_request(
        &new_request(app, dana, "talk_message"),
        None,
        None,
        &messages,
        &request_audit(app, "c"),
    )?;

    let now = Timestamp(AT.0 + 1);
    let start = Barrier::new(nodes.len());
    let claims = std::thread::scope(|s| {
        let runs: Vec<_> = nodes
            .iter()
            .map(|node| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let mut mine = Vec::new();
                    loop {
                        let batch = node.claim_messages(now, 4, 300)?;
                        if batch.is_empty() {
                            return Ok::<_, StoreError>(mine);
                        }
                        mine.extend(batch.into_iter().map(|m| m.id));
                    }
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap_or_else(|_| Err(StoreError::Backend("a claimer died".into()))))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let total: usize = claims.iter().map(Vec::len).sum();
    let distinct: BTreeSet<i64> = claims.iter().flatten().copied().collect();
    assert_eq!((total, distinct.len()), (MESSAGES, MESSAGES), "each message claimed exactly once");
    assert_eq!(nodes[1].claim_messages(now, 100, 300)?, vec![]);
    Ok(())
}
