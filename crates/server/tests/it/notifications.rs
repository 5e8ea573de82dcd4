//! Notifications of request transitions: written to the outbox with the transition, e-mailed to
//! the app's members through a real SMTP exchange with a local sink, posted as a signed webhook,
//! kept and retried with backoff while the SMTP server or the webhook endpoint is down.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::HeaderMap;
use permgate_core::notify::NotifySettings;
use permgate_server::{Delivery, signature};
use permgate_testkit::smtp_sink::{SmtpSink, free_port};
use permgate_testkit::{TINY_PNG, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

type Hooks = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook endpoint that records what it gets and answers `status`.
async fn webhook_sink(status: Arc<AtomicU16>) -> (String, Hooks) {
    let hooks: Hooks = Arc::default();
    let seen = hooks.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (seen, status) = (seen.clone(), status.clone());
            async move {
                seen.lock().unwrap_or_else(PoisonError::into_inner).push((headers, body));
                StatusCode::from_u16(status.load(Ordering::Relaxed)).unwrap_or(StatusCode::OK)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| unreachable!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| unreachable!("{e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}/hook"), hooks)
}

async fn outbox(t: &TestApp) -> Vec<Value> {
    let (status, body) = t.get("/v1/notifications", &t.admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["notifications"].as_array().cloned().unwrap_or_default()
}

async fn nothing_is_lost_while_smtp_and_the_webhook_are_down(postgres: bool) {
    let hook_status = Arc::new(AtomicU16::new(503));
    let (hook_url, hooks) = webhook_sink(hook_status.clone()).await;
    let notify = NotifySettings {
        email: true,
        webhook_url: Some(hook_url),
        public_url: Some("https://permgate.example.com".into()),
    };
    let Some(t) = TestApp::spawn_notifying(notify, postgres).await else { return };
    let smtp_port = free_port();
    let delivery = Arc::new(
        Delivery::new(
            Some(&format!("smtp://127.0.0.1:{smtp_port}")),
            "permgate <permgate@example.com>",
            Some("whsec-test".into()),
            tokio::runtime::Handle::current(),
        )
        .unwrap_or_else(|e| unreachable!("{e}")),
    );

    let (_, dev) = t.account_with_email("dev", "developer", "dev@example.com").await;
    let (reader_id, _) = t.account_with_email("reader", "developer", "reader@example.com").await;
    let (_, nomail) = t.account("nomail", "developer").await;
    let app = t.app(&dev, "Calendar app").await["id"].as_i64().unwrap_or_default();
    t.post(&format!("/v1/apps/{app}/members"), &dev, json!({"account_id": reader_id, "role": "reader"})).await;
    let _ = nomail;
    t.put(
        &format!("/v1/apps/{app}/consent-items/talk_calendar"),
        &dev,
        json!({"consent_type": "optional", "purpose": "calendar"}),
    )
    .await;
    t.post(&format!("/v1/apps/{app}/eligibility"), &dev, json!({})).await;
    let form = [("permission", "talk_calendar"), ("service_url", "https://c.example.com"), ("reason", "events")];
    let (status, req) = t.apply(app, &dev, &form, Some(("s.png", TINY_PNG.to_vec()))).await;
    assert_eq!(status, StatusCode::CREATED, "the transition does not wait for delivery: {req}");
    let id = req["id"].as_i64().unwrap_or_default();

    // Written with the transition: one e-mail per member with an address, one webhook.
    let queued = outbox(&t).await;
    let mut recipients: Vec<&str> =
        queued.iter().filter_map(|m| m["recipient"].as_str()).filter(|r| r.contains('@')).collect();
    recipients.sort_unstable();
    assert_eq!(recipients, ["dev@example.com", "reader@example.com"]);
    assert_eq!(queued.iter().filter(|m| m["channel"] == "webhook").count(), 1);
    assert!(queued.iter().all(|m| m["state"] == "pending"), "{queued:?}");

    // Both down: every attempt fails, is kept, and says why.
    assert_eq!(t.deliver(delivery.clone()).await, 3);
    let after = outbox(&t).await;
    assert!(after.iter().all(|m| m["state"] == "pending" && m["attempts"] == 1), "{after:?}");
    assert!(after.iter().all(|m| !m["last_error"].as_str().unwrap_or_default().is_empty()), "{after:?}");
    assert!(after.iter().any(|m| m["last_error"].as_str().unwrap_or_default().contains("503")), "{after:?}");
    // Not retried before the backoff has passed.
    assert_eq!(t.deliver(delivery.clone()).await, 0);

    // Both up again: the next round after the backoff delivers everything.
    let sink = SmtpSink::start_on(smtp_port);
    hook_status.store(200, Ordering::Relaxed);
    t.clock.advance(10);
    assert_eq!(t.deliver(delivery.clone()).await, 3);
    let done = outbox(&t).await;
    assert!(done.iter().all(|m| m["state"] == "delivered" && m["attempts"] == 2), "{done:?}");

    // Long header lines arrive folded (RFC 5322); read them unfolded.
    let unfold = |m: &permgate_testkit::smtp_sink::ReceivedMail| m.data.replace("\r\n ", " ").replace("\n ", " ");
    let mails = sink.received();
    assert_eq!(mails.len(), 2, "{mails:?}");
    let to_dev = mails.iter().find(|m| m.to == ["dev@example.com"]).map(unfold).unwrap_or_default();
    assert!(to_dev.contains(&format!("request #{id} for Talk Calendar is submitted")), "{to_dev}");
    assert!(to_dev.contains("From: permgate <permgate@example.com>"), "{to_dev}");
    assert!(to_dev.contains(&format!("https://permgate.example.com/#/requests/{id}")), "{to_dev}");

    let got = hooks.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let (headers, body) = got.last().cloned().unwrap_or_default();
    let doc: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!((doc["type"].as_str(), doc["app_id"].as_i64()), (Some("permission_request.submitted"), Some(app)));
    let sig = headers.get("x-permgate-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let at: i64 =
        sig.strip_prefix("t=").and_then(|s| s.split(',').next()).and_then(|s| s.parse().ok()).unwrap_or_default();
    assert_eq!(sig, signature("whsec-test", at, &body), "the signature covers the timestamp and the exact body");
    assert_ne!(sig, signature("another-secret", at, &body));

    // A reviewer's decision notifies again, with the reason as the catalog words it.
    let (_, rev) = t.account("rev", "reviewer").await;
    t.act(id, &rev, json!({"action": "start_review"})).await;
    t.act(
        id,
        &rev,
        json!({"action": "reject", "reason_code": "signup_policy_not_found", "comment": "Link your sign-up terms"}),
    )
    .await;
    t.deliver(delivery.clone()).await;
    let rejected = sink.received().iter().map(unfold).filter(|m| m.contains("is rejected")).count();
    assert_eq!(rejected, 2);
    assert!(sink.received().iter().map(unfold).any(|m| m.contains("Reason: sign-up policy not found")));
    // Developers do not read the outbox.
    assert_eq!(t.get("/v1/notifications", &dev).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_smtp_and_the_webhook_are_down_sqlite() {
    nothing_is_lost_while_smtp_and_the_webhook_are_down(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_smtp_and_the_webhook_are_down_postgres() {
    nothing_is_lost_while_smtp_and_the_webhook_are_down(true).await;
}
