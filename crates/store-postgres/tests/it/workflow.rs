//! The notification outbox claimed by several nodes at once: `FOR UPDATE SKIP LOCKED` must hand
//! each message to exactly one of them. Everything else about the workflow and the outbox is in
//! the shared conformance suite (`permgate_testkit::conformance`), run on both backends.

use std::collections::BTreeSet;
use std::sync::Barrier;

use permgate_core::audit::NewAuditEvent;
use permgate_core::model::{AccountId, AppId};
use permgate_core::notify::{Channel, NewMessage};
use permgate_core::ports::{OutboxStore, StoreError, WorkflowStore};
use permgate_core::time::Timestamp;
use permgate_core::workflow::{NewRequest, RequestEvent, RequestState};
use permgate_testkit::pg;

use crate::{AT, migrated, new_app, owner};

fn new_request(app: AppId, applicant: AccountId) -> NewRequest {
    NewRequest {
        app_id: app,
        permission: "talk_message".into(),
        service_url: "https://shop.example.com".into(),
        reason: "we send order updates".into(),
        usage_scenario: "after checkout".into(),
        requested_limit: None,
        requested_rule: None,
        applicant,
        event: RequestEvent {
            at: AT,
            actor: Some(applicant),
            action: "submit".into(),
            from: None,
            to: RequestState::Submitted,
            reason_code: None,
            reason: None,
            comment: String::new(),
        },
    }
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

#[test]
fn nodes_claiming_at_once_never_take_the_same_message() -> Result<(), StoreError> {
    const MESSAGES: usize = 60;
    let Some(schema) = pg::fresh_schema("claims") else { return Ok(()) };
    let nodes = (0..3).map(|_| migrated(&schema.url)).collect::<Result<Vec<_>, _>>()?;
    let dana = owner(&nodes[0], "dana")?;
    let app = new_app(&nodes[0], dana)?;
    let messages: Vec<NewMessage> = (0..MESSAGES).map(|i| message(app, &format!("m{i}@example.com"))).collect();
    let audit = NewAuditEvent::new(AT, Some(dana), "request.create", "request:{request_id}".into()).app(app);
    nodes[0].create_request(&new_request(app, dana), None, None, &messages, &audit)?;

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
