//! The delivery thread: it takes due messages from the notification outbox, sends e-mails through
//! SMTP and webhooks over HTTP (signed with HMAC-SHA256), and records each attempt. A failed
//! attempt is retried with backoff ([`permgate_core::notify::backoff_secs`]) up to
//! [`permgate_core::notify::MAX_ATTEMPTS`]; every attempt's outcome is visible in
//! `GET /v1/notifications`. Several nodes may run it at once: a claim hides a message from the
//! others for [`LEASE_SECS`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use hmac::{Hmac, KeyInit, Mac};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lettre::message::Mailbox;
use lettre::{SmtpTransport, Transport};
use permgate_core::notify::{Attempt, Channel, OutboxMessage};
use permgate_core::ports::Store;
use permgate_core::time::Clock;

/// How long a claimed message stays hidden from other nodes.
pub const LEASE_SECS: i64 = 120;

/// How often the outbox is polled when there is nothing to send.
pub const POLL: Duration = Duration::from_secs(1);

/// Messages taken per round.
const BATCH: usize = 20;

/// How notifications leave this node.
pub struct Delivery {
    smtp: Option<SmtpTransport>,
    from: Mailbox,
    webhook_secret: Option<String>,
    http: Client<HttpConnector, Body>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("smtp", &self.smtp.is_some()).field("from", &self.from).finish_non_exhaustive()
    }
}

impl Delivery {
    /// `smtp_url`: `smtp://[user:pass@]host[:port]` (add `?tls=required` for STARTTLS) or
    /// `smtps://host[:port]` (TLS from the start). `from`: `Name <address>` or an address.
    pub fn new(
        smtp_url: Option<&str>,
        from: &str,
        webhook_secret: Option<String>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Delivery, String> {
        let smtp = smtp_url
            .map(|url| {
                SmtpTransport::from_url(url).map(|b| b.timeout(Some(Duration::from_secs(15))).build()).map_err(|e| {
                    format!("PERMGATE_SMTP_URL `{}` is not usable: {e}", permgate_core::secret::redact_url(url))
                })
            })
            .transpose()?;
        let from: Mailbox =
            from.parse().map_err(|e| format!("PERMGATE_SMTP_FROM `{from}` is not an e-mail address: {e}"))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Delivery { smtp, from, webhook_secret, http, runtime })
    }

    /// Makes one attempt at `message`.
    pub fn attempt(&self, message: &OutboxMessage, now: i64) -> Attempt {
        let result = match message.channel {
            Channel::Email => self.send_email(message),
            Channel::Webhook => self.send_webhook(message, now),
        };
        match result {
            Ok(()) => Attempt::Delivered,
            Err(error) => Attempt::Failed { error },
        }
    }

    fn send_email(&self, message: &OutboxMessage) -> Result<(), String> {
        let smtp = self.smtp.as_ref().ok_or("no SMTP server is configured (PERMGATE_SMTP_URL)")?;
        let to: Mailbox =
            message.recipient.parse().map_err(|e| format!("`{}` is not an e-mail address: {e}", message.recipient))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(message.body.clone())
            .map_err(|e| format!("cannot build the e-mail: {e}"))?;
        smtp.send(&email).map(|_| ()).map_err(|e| format!("SMTP: {e}"))
    }

    fn send_webhook(&self, message: &OutboxMessage, now: i64) -> Result<(), String> {
        let mut request = axum::http::Request::post(&message.recipient)
            .header("content-type", "application/json")
            .header("user-agent", concat!("permgate/", env!("CARGO_PKG_VERSION")))
            .header("x-permgate-event", &message.subject)
            .header("x-permgate-delivery", message.id.to_string());
        if let Some(secret) = &self.webhook_secret {
            request = request.header("x-permgate-signature", signature(secret, now, &message.body));
        }
        let request =
            request.body(Body::from(message.body.clone())).map_err(|e| format!("bad webhook URL or header: {e}"))?;
        let status = self.runtime.block_on(async {
            match tokio::time::timeout(Duration::from_secs(10), self.http.request(request)).await {
                Err(_) => Err("the webhook endpoint did not answer within 10 s".to_owned()),
                Ok(Err(e)) => Err(format!("webhook: {e}")),
                Ok(Ok(response)) => Ok(response.status()),
            }
        })?;
        if status.is_success() { Ok(()) } else { Err(format!("the webhook endpoint answered {status}")) }
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the receiver recomputes it with the
/// shared secret and rejects old timestamps to stop replays.
pub fn signature(secret: &str, at: i64, body: &str) -> String {
    let mut mac = <Hmac<sha2_hmac::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(format!("{at}.").as_bytes());
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("t={at},v1={}", permgate_core::secret::hex_digest(&digest))
}

/// One round: claims due messages and attempts each. Returns how many were attempted.
pub fn deliver_due(store: &dyn Store, clock: &dyn Clock, delivery: &Delivery) -> Result<usize, String> {
    let now = clock.now();
    let messages = store.claim_messages(now, BATCH, LEASE_SECS).map_err(|e| e.to_string())?;
    for message in &messages {
        let attempt = delivery.attempt(message, now.0);
        let (state, next) = message.after_attempt(&attempt, clock.now());
        let error = match &attempt {
            Attempt::Delivered => {
                tracing::info!(id = message.id, channel = %message.channel, to = %message.recipient, "notification delivered");
                None
            }
            Attempt::Failed { error } => {
                tracing::warn!(
                    id = message.id, channel = %message.channel, to = %message.recipient, attempt = message.attempts + 1,
                    "notification not delivered ({state}): {error}"
                );
                Some(error.as_str())
            }
        };
        store.finish_attempt(message.id, state, next, error, clock.now()).map_err(|e| e.to_string())?;
    }
    Ok(messages.len())
}

/// Starts the delivery thread; when `stop` is set (and the thread is unparked) it delivers what is
/// due once more and ends.
pub fn spawn_delivery(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    delivery: Delivery,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("permgate-delivery".into()).spawn(move || {
        let mut failing = false;
        while !stop.load(Ordering::Relaxed) {
            match deliver_due(store.as_ref(), clock.as_ref(), &delivery) {
                Ok(n) => {
                    if failing {
                        tracing::info!("the notification outbox is readable again");
                        failing = false;
                    }
                    if n == BATCH {
                        continue;
                    }
                }
                Err(e) if !failing => {
                    tracing::warn!("cannot read the notification outbox; retrying: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
            std::thread::park_timeout(POLL);
        }
        flush(store.as_ref(), clock.as_ref(), &delivery);
    })
}

/// The longest a stopping node spends delivering what is due.
pub const FLUSH_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// On a clean stop: delivers what is due now, for at most [`FLUSH_FOR`]. What is left (or fails)
/// stays in the outbox for the next node that runs.
fn flush(store: &dyn Store, clock: &dyn Clock, delivery: &Delivery) {
    let started = std::time::Instant::now();
    let mut total = 0;
    while started.elapsed() < FLUSH_FOR {
        match deliver_due(store, clock, delivery) {
            Ok(n) => {
                total += n;
                if n < BATCH {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!("cannot flush the notification outbox at stop; it stays for the next start: {e}");
                return;
            }
        }
    }
    tracing::info!(attempted = total, "notification outbox flushed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_rfc_4231_hmac_of_timestamp_and_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = signature("Jefe", 0, "what do ya want for nothing?");
        assert_eq!(sig, "t=0,v1=".to_owned() + &hmac_of("Jefe", "0.what do ya want for nothing?"));
        let mut mac = <Hmac<sha2_hmac::Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap_or_else(|_| unreachable!());
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            permgate_core::secret::hex_digest(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn hmac_of(key: &str, data: &str) -> String {
        let mut mac =
            <Hmac<sha2_hmac::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap_or_else(|_| unreachable!());
        mac.update(data.as_bytes());
        permgate_core::secret::hex_digest(&mac.finalize().into_bytes())
    }
}
