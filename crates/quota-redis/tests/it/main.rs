//! The Redis counter against a real Redis at `PERMGATE_TEST_REDIS_URL`: exactness across nodes,
//! all-or-nothing admission, round trips, dry runs, windows, and connections that fail. Without
//! the variable every test prints a notice and passes. Each test counts under its own prefix and
//! deletes its keys at the end.

mod counting;
mod failures;

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use permgate_core::quota::{Charge, CounterKey};
use permgate_quota_redis::RedisCounter;

type TestResult = Result<(), Box<dyn Error>>;

const URL_VAR: &str = "PERMGATE_TEST_REDIS_URL";

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// A charge of rule `rule` (named `rule_id`) in the minute-long window starting at `window_start`.
fn charge(rule: u32, rule_id: &'static str, limit: u64, window_start: i64) -> Charge<'static> {
    Charge {
        key: CounterKey { rule, scope: 42, window_start },
        rule_id,
        limit,
        window_end: window_start + 60,
        own: false,
    }
}

/// One test's corner of the shared Redis: a unique key prefix, and a plain connection to look
/// behind the counter's back and to clean up.
struct Space {
    url: String,
    prefix: String,
    admin: redis::Connection,
}

impl Space {
    /// `None` (after a notice) when no Redis is configured.
    fn new() -> Result<Option<Space>, Box<dyn Error>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let Ok(url) = std::env::var(URL_VAR) else {
            eprintln!("skipping: {URL_VAR} is not set");
            return Ok(None);
        };
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let prefix = format!("permgate-test:{}-{}-{nanos}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let admin = redis::Client::open(url.as_str())?.get_connection()?;
        Ok(Some(Space { url, prefix, admin }))
    }

    /// A permgate node counting in this space.
    fn node(&self) -> Result<RedisCounter, Box<dyn Error>> {
        Ok(RedisCounter::connect(&self.url, &self.prefix)?)
    }

    fn key(&self, c: &Charge<'_>) -> String {
        format!("{}q:{}:{:016x}:{}", self.prefix, c.rule_id, c.key.scope, c.key.window_start)
    }

    /// The counter's value in Redis: units handed out to every node.
    fn handed_out(&mut self, c: &Charge<'_>) -> Result<Option<u64>, Box<dyn Error>> {
        let key = self.key(c);
        Ok(redis::cmd("GET").arg(key).query(&mut self.admin)?)
    }

    fn keys(&mut self) -> Result<Vec<String>, redis::RedisError> {
        let pattern = format!("{}*", self.prefix);
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut self.admin)?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    fn delete_keys(&mut self) -> Result<(), redis::RedisError> {
        let keys = self.keys()?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(keys).query::<()>(&mut self.admin)?;
        }
        Ok(())
    }

    /// Deletes this test's keys and checks that none is left.
    fn clean(mut self) -> TestResult {
        self.delete_keys()?;
        let left = self.keys()?;
        assert!(left.is_empty(), "keys left behind: {left:?}");
        Ok(())
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        // A failed test still removes its keys; `clean` has already done so for a passing one.
        let _ = self.delete_keys();
    }
}
