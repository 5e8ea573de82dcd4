//! Brute-force throttling of account sign-ins: an address that presents too many wrong account
//! tokens in a short time is refused (429) until the window passes, whatever it presents then.
//! The refusals say nothing about any token: an unknown and a wrong token fail alike.
//!
//! Only the management API and the console's sign-in are throttled. The decision API is not: a
//! gateway sends every client's calls from one address, and its -401 decisions cost nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::error::ApiError;

/// Failed sign-ins an address may make within [`WINDOW`].
pub const LIMIT: u32 = 20;
/// The window failures are counted in, and how long an address is refused after the limit.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most (old windows are dropped first).
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug, Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl SignInThrottle {
    /// Refuses an address that reached the limit in its current window.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match failures.get(&ip) {
            Some((n, since)) if *n >= LIMIT && since.elapsed() < WINDOW => {
                let wait = WINDOW.saturating_sub(since.elapsed()).as_secs().max(1);
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    -401,
                    format!("too many failed sign-ins from this address; try again in {wait} s"),
                );
                e.retry_after = Some(wait);
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Counts one failed sign-in.
    pub fn failed(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_ADDRESSES {
            failures.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        if entry.0 == LIMIT {
            tracing::warn!(%ip, "{LIMIT} failed sign-ins within {} s: refusing this address for {} s", WINDOW.as_secs(), WINDOW.as_secs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_the_limit_and_others_are_not() {
        let t = SignInThrottle::default();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..LIMIT - 1 {
            t.failed(a);
        }
        assert!(t.check(a).is_ok(), "one below the limit");
        t.failed(a);
        let refused = t.check(a).err();
        assert!(refused.as_ref().is_some_and(|e| e.status == StatusCode::TOO_MANY_REQUESTS && e.retry_after.is_some()));
        assert!(t.check(b).is_ok());
        assert!(t.check(None).is_ok(), "no address known: not throttled");
    }
}
