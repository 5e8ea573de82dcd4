//! The one Redis connection of a [`crate::RedisCounter`]: opened lazily with timeouts, dropped on
//! any error, every exchange counted as a round trip. Also the lease script and key names.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use permgate_core::quota::{Charge, CounterError};
use redis::{Client, Connection, ErrorKind, RedisError};

/// `lease(key; limit, want, ttl)`: grants `min(want, limit - handed_out)` units (never fewer
/// than 0), adds them to the key, sets the key's TTL when it has none, and returns
/// `{granted, handed_out_after}`. Atomic, like every script.
pub const LEASE_LUA: &str = r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local g = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - used)
if g > 0 then
  used = redis.call('INCRBY', KEYS[1], g)
  if redis.call('TTL', KEYS[1]) == -1 then
    redis.call('EXPIRE', KEYS[1], ARGV[3])
  end
else
  g = 0
end
return {g, used}
";

/// Lua numbers are doubles: limits are capped where they stay exact.
pub const LUA_MAX_EXACT: u64 = 1 << 53;

/// Seconds a counter key outlives its window, so a late reader still finds it.
const TTL_GRACE: i64 = 3600;

/// `{prefix}q:{rule_id}:{scope as 16 hex digits}:{window_start}`.
pub fn key_name(prefix: &str, charge: &Charge<'_>) -> String {
    format!("{prefix}q:{}:{:016x}:{}", charge.rule_id, charge.key.scope, charge.key.window_start)
}

/// The key's TTL: until the window ends, plus an hour. The wall clock is read here only: a wrong
/// clock makes keys live too long or too short after their window, never miscounts inside it.
fn ttl_seconds(window_end: i64) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    window_end.saturating_sub(now).clamp(0, i64::from(i32::MAX)) + TTL_GRACE
}

/// `url` with any password (and the query, which may hold one) replaced by `***`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
    let (rest, query) = match rest.find(['?', '#']) {
        Some(i) => (&rest[..i], "?***"),
        None => (rest, ""),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    let scheme = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
    format!("{scheme}{authority}{path}{query}")
}

pub struct Link {
    client: Client,
    /// The URL without its password, for messages.
    pub shown: String,
    timeout: Duration,
    /// What `get_connection_with_timeout` gets: the handshake reads each command's reply with
    /// the time left, one after the other, so the timeout is split between them.
    connect_timeout: Duration,
    conn: Option<Connection>,
    /// When a connection last failed to open or an exchange timed out, and why: calls within one
    /// timeout of it fail at once instead of each waiting out its own attempt behind the
    /// counter's lock.
    failed: Option<(Instant, String)>,
    script_hash: String,
}

impl Link {
    pub fn new(url: &str, timeout: Duration) -> Result<Link, CounterError> {
        let shown = redact(url);
        let client =
            Client::open(url).map_err(|e| CounterError(format!("invalid Redis URL {shown}: {}", describe(&e))))?;
        let timeout = timeout.max(Duration::from_millis(1));
        let info = &client.get_connection_info().redis;
        let handshake = u32::from(info.password.is_some()) + u32::from(info.db != 0);
        let connect_timeout = timeout / handshake.max(1);
        let script_hash = redis::Script::new(LEASE_LUA).get_hash().to_owned();
        Ok(Link { client, shown, timeout, connect_timeout, conn: None, failed: None, script_hash })
    }

    fn open(&mut self, trips: &AtomicU64) -> Result<&mut Connection, CounterError> {
        if self.conn.is_none() {
            if let Some((_, why)) = self.failed.as_ref().filter(|(at, _)| at.elapsed() < self.timeout) {
                return Err(CounterError(why.clone()));
            }
            trips.fetch_add(1, Ordering::Relaxed);
            let opened = self.client.get_connection_with_timeout(self.connect_timeout).and_then(|c| {
                c.set_read_timeout(Some(self.timeout))?;
                c.set_write_timeout(Some(self.timeout))?;
                Ok(c)
            });
            match opened {
                Ok(c) => {
                    self.failed = None;
                    self.conn = Some(c);
                }
                Err(e) => {
                    let why = format!("cannot connect to Redis at {}: {}", self.shown, describe(&e));
                    self.failed = Some((Instant::now(), why.clone()));
                    return Err(CounterError(why));
                }
            }
        }
        self.conn.as_mut().ok_or_else(|| CounterError(format!("no connection to Redis at {}", self.shown)))
    }

    /// Runs one exchange (`what`, for messages) on the connection, opening it if needed. On any
    /// error the connection is dropped: the next call opens a fresh one.
    fn run<T>(
        &mut self,
        trips: &AtomicU64,
        what: &str,
        exchange: impl FnOnce(&mut Connection, &AtomicU64) -> Result<T, RedisError>,
    ) -> Result<T, CounterError> {
        let conn = self.open(trips)?;
        match exchange(conn, trips) {
            Ok(value) => Ok(value),
            Err(e) => {
                self.conn = None;
                let why = format!("Redis at {}: {what} failed: {}", self.shown, describe(&e));
                // A Redis that stopped answering would make each call queued behind this one wait
                // out its own timeout: they fail at once for one timeout, as after a failed connect.
                if e.is_timeout() {
                    self.failed = Some((Instant::now(), why.clone()));
                }
                Err(CounterError(why))
            }
        }
    }

    /// Opens the connection and sends `PING` (on start), to fail early on a wrong URL or a Redis
    /// that does not answer.
    pub fn check(&mut self, trips: &AtomicU64) -> Result<(), CounterError> {
        self.run(trips, "PING", |conn, trips| {
            trips.fetch_add(1, Ordering::Relaxed);
            redis::cmd("PING").query::<()>(conn)
        })
        .map_err(|CounterError(why)| match why.strip_prefix("Redis at ") {
            Some(rest) => CounterError(format!("cannot connect to Redis at {rest}")),
            None => CounterError(why),
        })
    }

    /// Asks Redis for up to `want` units of `charge`'s counter: `(granted, handed_out_after)`.
    pub fn lease(
        &mut self,
        trips: &AtomicU64,
        prefix: &str,
        charge: &Charge<'_>,
        want: u64,
    ) -> Result<(u64, u64), CounterError> {
        let key = key_name(prefix, charge);
        let limit = charge.limit.min(LUA_MAX_EXACT);
        let ttl = ttl_seconds(charge.window_end);
        let hash = self.script_hash.clone();
        self.run(trips, "lease", |conn, trips| {
            trips.fetch_add(1, Ordering::Relaxed);
            let sha = redis::cmd("EVALSHA").arg(&hash).arg(1).arg(&key).arg(limit).arg(want).arg(ttl).query(conn);
            match sha {
                Err(e) if e.kind() == ErrorKind::NoScriptError => {
                    // The first call on this Redis (or after SCRIPT FLUSH): EVAL also caches it.
                    trips.fetch_add(1, Ordering::Relaxed);
                    redis::cmd("EVAL").arg(LEASE_LUA).arg(1).arg(&key).arg(limit).arg(want).arg(ttl).query(conn)
                }
                other => other,
            }
        })
    }

    /// The counters' values (units handed out), 0 for absent keys: one `MGET`, one round trip
    /// (and one reply to wait for: a pipeline of `GET`s would wait out the timeout once per key).
    pub fn handed_out(&mut self, trips: &AtomicU64, keys: &[String]) -> Result<Vec<u64>, CounterError> {
        self.run(trips, "read", |conn, trips| {
            trips.fetch_add(1, Ordering::Relaxed);
            let values: Vec<Option<u64>> = redis::cmd("MGET").arg(keys).query(conn)?;
            Ok(values.into_iter().map(Option::unwrap_or_default).collect())
        })
    }
}

/// The error's text, which never holds the URL (so never its password).
fn describe(e: &RedisError) -> String {
    if e.is_timeout() {
        format!("timed out ({e})")
    } else if e.is_connection_dropped() {
        format!("connection lost ({e})")
    } else if e.is_connection_refusal() {
        format!("connection refused ({e})")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use permgate_core::quota::CounterKey;

    #[test]
    fn passwords_and_queries_never_show_in_the_url() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("redis://:hunter2@cache:6379/0"), "redis://:***@cache:6379/0");
        assert_eq!(redact("rediss://app:hunter2@cache:6380"), "rediss://app:***@cache:6380");
        assert_eq!(redact("redis://hunter2@cache"), "redis://***@cache");
        assert_eq!(redact("redis+unix:///run/redis.sock?pass=hunter2"), "redis+unix:///run/redis.sock?***");
        assert_eq!(redact("redis://a:b@c@host/1"), "redis://a:***@host/1", "the last @ ends the user info");
    }

    #[test]
    fn key_names_carry_the_rule_the_scope_in_hex_and_the_window() {
        let charge = Charge {
            key: CounterKey { rule: 3, scope: 255, window_start: -60 },
            rule_id: "send",
            limit: 1,
            window_end: 0,
            own: false,
        };
        assert_eq!(key_name("pg:", &charge), "pg:q:send:00000000000000ff:-60");
    }

    #[test]
    fn keys_live_an_hour_past_their_window() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let ttl = ttl_seconds(now + 100);
        assert!((3699..=3700).contains(&ttl), "{ttl}");
        assert_eq!(ttl_seconds(0), 3600, "an ended window still gets the grace hour");
    }
}
