//! Notifications through an outbox: each request transition writes its e-mails (one per member
//! with an address) and its webhook in the same transaction as the transition, and a delivery
//! loop sends them later, retrying with backoff. An SMTP server or webhook endpoint that is down
//! delays a notification; it never loses one, and never undoes the transition.

use serde::Serialize;

use crate::model::{AppId, string_enum};
use crate::time::Timestamp;

string_enum!(
    /// How a notification travels.
    Channel { Email => "email", Webhook => "webhook" }
);

string_enum!(
    /// Where a notification stands: waiting for its first or next attempt, delivered, or given
    /// up after [`MAX_ATTEMPTS`].
    DeliveryState { Pending => "pending", Delivered => "delivered", Failed => "failed" }
);

/// Attempts before a notification is marked failed (about a day of backoff).
pub const MAX_ATTEMPTS: u32 = 12;

/// Seconds to wait after the `attempts`-th failed attempt: 10 s doubling, at most an hour.
pub fn backoff_secs(attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(10);
    (10_i64 << exp).min(3600)
}

/// A notification about to be written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct NewMessage {
    pub channel: Channel,
    /// An e-mail address, or the webhook URL.
    pub recipient: String,
    pub subject: String,
    /// Plain text for e-mail; the JSON document for a webhook.
    pub body: String,
    pub app_id: Option<AppId>,
}

/// A notification in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct OutboxMessage {
    pub id: i64,
    pub channel: Channel,
    pub recipient: String,
    pub subject: String,
    #[serde(skip)]
    pub body: String,
    pub app_id: Option<AppId>,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Failed; `error` is kept for the operator to read.
    Failed {
        error: String,
    },
}

impl OutboxMessage {
    /// The message's state after one more attempt at `now`: delivered, retried after backoff, or
    /// given up.
    pub fn after_attempt(&self, attempt: &Attempt, now: Timestamp) -> (DeliveryState, Option<Timestamp>) {
        match attempt {
            Attempt::Delivered => (DeliveryState::Delivered, None),
            Attempt::Failed { .. } if self.attempts + 1 >= MAX_ATTEMPTS => (DeliveryState::Failed, None),
            Attempt::Failed { .. } => {
                (DeliveryState::Pending, Some(Timestamp(now.0 + backoff_secs(self.attempts + 1))))
            }
        }
    }
}

/// Where notifications go, as configured at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifySettings {
    /// Whether an SMTP server is configured; without one no e-mail is queued.
    pub email: bool,
    /// The webhook URL every transition is posted to, if any.
    pub webhook_url: Option<String>,
    /// The console's public address, for links in e-mails (e.g. `https://permgate.example.com`).
    pub public_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attempts: u32) -> OutboxMessage {
        OutboxMessage {
            id: 1,
            channel: Channel::Email,
            recipient: "dev@example.com".into(),
            subject: "s".into(),
            body: "b".into(),
            app_id: None,
            state: DeliveryState::Pending,
            attempts,
            created_at: Timestamp(0),
            next_attempt_at: None,
            delivered_at: None,
            last_error: None,
        }
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_an_hour() {
        let waits: Vec<i64> = (1..=10).map(backoff_secs).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]);
        assert_eq!(backoff_secs(40), 3600);
    }

    #[test]
    fn a_failure_is_retried_until_the_last_attempt_then_given_up() {
        let failed = Attempt::Failed { error: "connection refused".into() };
        assert_eq!(message(0).after_attempt(&failed, Timestamp(100)), (DeliveryState::Pending, Some(Timestamp(110))));
        assert_eq!(message(MAX_ATTEMPTS - 1).after_attempt(&failed, Timestamp(100)), (DeliveryState::Failed, None));
        assert_eq!(message(3).after_attempt(&Attempt::Delivered, Timestamp(100)), (DeliveryState::Delivered, None));
    }
}
