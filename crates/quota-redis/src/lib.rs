//! permgate's [`QuotaCounter`] on a shared Redis, so that several permgate nodes count one quota
//! together, exactly, with few round trips to Redis.
//!
//! # Layout
//! - [`RedisCounter`] (this file) implements the port: `admit` spends local leases and refills
//!   them from Redis; dry runs and `count` read Redis without spending.
//! - `lease` is the local lease book, without I/O: lease sizes, spending, giving back, sweeping
//!   leases of ended windows.
//! - `link` is the Redis side: the lazily (re)opened connection with its timeouts, the atomic
//!   `lease` Lua script, key names and TTLs, and URLs with their passwords hidden.
//! - `tests/it/` runs against the real Redis at `PERMGATE_TEST_REDIS_URL` (two "nodes" on one
//!   prefix, round trips, dry runs, cut connections, windows).
//!
//! # How it counts
//! Redis holds one key per counter and window, `{prefix}q:{rule_id}:{scope in 16 hex
//! digits}:{window_start}`, whose value is the number of units *handed out* for that window. A
//! node does not ask Redis for every call: it takes a *lease*, a few units at once, carved
//! atomically from the limit by a Lua script (`granted = min(want, limit - handed_out)`), and
//! spends them locally. Far from the limit a lease is 64 units (so at steady load about one
//! round trip per 64 calls); it is 1/16 of what is left, so it shrinks as the limit nears, down
//! to one unit when fewer than 32 are left. Units handed out are never returned to Redis.
//!
//! # What is exact, and what is not
//! - **Admitted calls never exceed the limit**, however many nodes count: every admitted call
//!   spends a unit that Redis handed out, and Redis hands out units atomically and never more
//!   than the limit. (If the limit is *lowered* in the middle of a window, units leased before
//!   the change can still be spent by nodes that have not yet seen the counter reach the new
//!   limit. Limits above 2^53 count as 2^53, the largest exact number in Redis's Lua.)
//! - **The only inexactness: a call can be denied a little early.** Units leased to another node
//!   and not yet spent count as used. A node holds at most one lease per counter, refilled only
//!   when empty, of at most 64 units and at most 1/16 of what it saw left (but at least 1). So
//!   with *N* nodes, the quota a node can be refused while it is still unspent elsewhere is at
//!   most what the other *N − 1* nodes hold: at most *64 × (N − 1)* units in the worst case,
//!   and at most *N − 1* units (one per other node) near the limit, once each node has taken its
//!   latest lease with fewer than 32 units left. Those units are not lost while their node keeps
//!   receiving calls: it spends them, so under steady load the whole limit is admitted.
//! - Units are lost for good (counted as used until the window ends) only when their node stops
//!   or restarts holding them, or when Redis granted a lease whose reply never arrived (a timeout
//!   or a cut connection at that moment): at most one lease, 64 units, per such event.
//! - `remaining` in an [`Admission::Admitted`] is this node's best knowledge: the units nobody had
//!   leased when it last read Redis, plus its own unspent units. `count` is Redis's value minus
//!   this node's unspent units: both count other nodes' unspent units as used.
//! - **Alerts (80 % and 100 % of an app-wide rule) are sent once per threshold and window**, by
//!   the node whose lease took Redis's count past the threshold, with its next admitted call of
//!   that counter. A threshold is passed when the units *handed out* reach it, so an alert can
//!   come up to one lease (at most 1/16 of what was left) before the calls that spend them.
//! - Once this node has seen a counter at its limit, it denies that counter without asking Redis
//!   again in that window, since handed-out units only grow (unless the limit is raised).
//! - One Redis (or a primary with replicas), not Redis Cluster: a dry run reads all its charges
//!   with one `MGET`. A Redis that loses its data mid-window starts those counters over; a node
//!   that reads a count lower than it saw before drops the units it holds of it (they are no
//!   longer counted there), so `remaining` never exceeds the limit.
//! - Leases are kept per rule *id*: a catalog reload that gives a rule's index to another rule
//!   (one removed or reordered) never lets units leased for one rule admit calls of the other.
//!
//! # Failures
//! Every Redis exchange is bounded by a timeout (1 s by default, for connecting, reading and
//! writing). On any error the connection is dropped and [`CounterError`] is returned, with
//! nothing spent for that call; the next call reconnects. After a failed connection attempt,
//! calls within one timeout of it fail at once rather than each waiting out its own attempt
//! behind the counter's lock (a call otherwise waits for the call ahead of it, itself bounded).
//! The same holds after an exchange that timed out on an open connection (a Redis that accepts
//! connections but does not answer, such as one paused or busy with a script).
//! Whether a call is then admitted (fail open) or denied (fail closed) is the caller's policy,
//! not this crate's.

mod lease;
mod link;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use permgate_core::quota::{Admission, Charge, CounterError, CounterKey, Passed, QuotaCounter};

use crate::lease::{Leases, Local};
use crate::link::{Link, key_name};

/// The default bound on connecting to Redis, and on each read and write.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// A [`QuotaCounter`] shared by every node that uses the same Redis and prefix.
pub struct RedisCounter {
    prefix: String,
    shown_url: String,
    state: Mutex<State>,
    round_trips: AtomicU64,
    admissions: AtomicU64,
}

struct State {
    link: Link,
    leases: Leases,
}

impl std::fmt::Debug for RedisCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounter")
            .field("url", &self.shown_url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCounter {
    /// Connects to the Redis at `url` (`redis://[:password@]host:port[/db]`) with the default
    /// timeouts. Keys start with `prefix`. Fails, naming the URL without its password, when Redis
    /// does not answer.
    pub fn connect(url: &str, prefix: &str) -> Result<RedisCounter, CounterError> {
        RedisCounter::connect_with_timeout(url, prefix, DEFAULT_TIMEOUT)
    }

    /// [`RedisCounter::connect`] with `timeout` bounding connecting and each read and write.
    pub fn connect_with_timeout(url: &str, prefix: &str, timeout: Duration) -> Result<RedisCounter, CounterError> {
        let counter = RedisCounter::unchecked(url, prefix, timeout)?;
        counter.lock().link.check(&counter.round_trips)?;
        Ok(counter)
    }

    /// A counter for `url` that has not talked to Redis yet (only the address is checked): it
    /// connects on its first call, and each call fails until Redis answers. For a node that
    /// fails open and must start while Redis is down.
    pub fn unchecked(url: &str, prefix: &str, timeout: Duration) -> Result<RedisCounter, CounterError> {
        let link = Link::new(url, timeout)?;
        Ok(RedisCounter {
            prefix: prefix.to_owned(),
            shown_url: link.shown.clone(),
            state: Mutex::new(State { link, leases: Leases::default() }),
            round_trips: AtomicU64::new(0),
            admissions: AtomicU64::new(0),
        })
    }

    /// Exchanges with Redis so far: each command, pipeline or (re)connection counts one.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Calls admitted and counted so far (`admit` without `dry_run` answering `Admitted`), so
    /// that `round_trips() / admissions()` is the round trips per admitted call.
    pub fn admissions(&self) -> u64 {
        self.admissions.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panic in another thread leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spend(&self, charges: &[Charge<'_>]) -> Result<Admission, CounterError> {
        let mut guard = self.lock();
        let State { link, leases } = &mut *guard;
        for c in charges {
            leases.observe(c.key.window_start);
        }
        let mut taken: Vec<&Charge<'_>> = Vec::with_capacity(charges.len());
        // Units taken for this call go back to the lease book if a later charge does not fit:
        // they are leased, not spent.
        let give_back =
            |leases: &mut Leases, taken: &[&Charge<'_>]| taken.iter().for_each(|c| leases.give_back(&c.key, c.rule_id));
        for (index, c) in charges.iter().enumerate() {
            let want = match leases.take(&c.key, c.rule_id, c.limit) {
                Local::Took => {
                    taken.push(c);
                    continue;
                }
                Local::Exhausted => {
                    give_back(leases, &taken);
                    return Ok(Admission::Exhausted { index });
                }
                Local::Refill(want) => want,
            };
            match link.lease(&self.round_trips, &self.prefix, c, want) {
                Err(e) => {
                    give_back(leases, &taken);
                    return Err(e);
                }
                Ok((granted, handed_out)) => {
                    leases.grant(c.key, c.rule_id, c.window_end, c.limit, granted, handed_out);
                    if granted == 0 || leases.take(&c.key, c.rule_id, c.limit) != Local::Took {
                        give_back(leases, &taken);
                        return Ok(Admission::Exhausted { index });
                    }
                    taken.push(c);
                }
            }
        }
        let remaining = charges.iter().map(|c| leases.remaining(&c.key, c.rule_id, c.limit)).collect();
        let mut passed = Passed::new();
        for (index, c) in charges.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            leases.take_passed(&c.key, c.rule_id).for_each(|percent| passed.push((index, percent)));
        }
        self.admissions.fetch_add(1, Ordering::Relaxed);
        Ok(Admission::Admitted { remaining, passed })
    }

    fn peek(&self, charges: &[Charge<'_>]) -> Result<Admission, CounterError> {
        let keys: Vec<String> = charges.iter().map(|c| key_name(&self.prefix, c)).collect();
        let mut guard = self.lock();
        let State { link, leases } = &mut *guard;
        let handed_out = if charges.is_empty() { Vec::new() } else { link.handed_out(&self.round_trips, &keys)? };
        for (c, &h) in charges.iter().zip(&handed_out) {
            leases.seen(&c.key, c.rule_id, h);
        }
        // What the call would take from each counter: one unit per charge naming it.
        let uses = |upto: usize, key: &CounterKey| charges[..upto].iter().filter(|c| c.key == *key).count() as u64;
        let mut remaining = permgate_core::quota::Remaining::new();
        for (index, (c, &h)) in charges.iter().zip(&handed_out).enumerate() {
            // Nobody's units plus this node's own; none if the counter is already past the limit.
            let left = if h > c.limit { 0 } else { c.limit - h + leases.available(&c.key, c.rule_id) };
            if uses(index + 1, &c.key) > left {
                return Ok(Admission::Exhausted { index });
            }
            remaining.push(left.saturating_sub(uses(charges.len(), &c.key)));
        }
        Ok(Admission::Admitted { remaining, passed: Passed::new() })
    }
}

impl QuotaCounter for RedisCounter {
    fn admit(&self, charges: &[Charge<'_>], dry_run: bool) -> Result<Admission, CounterError> {
        if dry_run { self.peek(charges) } else { self.spend(charges) }
    }

    fn count(&self, key: &CounterKey, rule_id: &str) -> Result<u64, CounterError> {
        let probe = Charge { key: *key, rule_id, limit: 0, window_end: 0, own: false };
        let name = key_name(&self.prefix, &probe);
        let mut guard = self.lock();
        let State { link, leases } = &mut *guard;
        let handed_out = link.handed_out(&self.round_trips, &[name])?.first().copied().unwrap_or(0);
        leases.seen(key, rule_id, handed_out);
        Ok(handed_out.saturating_sub(leases.available(key, rule_id)))
    }
}
