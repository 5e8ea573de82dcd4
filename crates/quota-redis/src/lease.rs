//! The local lease book, without I/O: for each counter, the units this node has taken from Redis
//! and not yet spent, and what it last saw of the counter. Every unit here is already counted in
//! Redis, so spending one needs no round trip and giving one back (a call denied by a later
//! charge) needs none either.

use std::collections::HashMap;

use permgate_core::quota::CounterKey;

/// The largest lease: a node far from the limit asks Redis once per this many calls.
pub const MAX_LEASE: u64 = 64;
/// A lease is at most this fraction of what was left, so leases shrink near the limit.
pub const LEASE_DIVISOR: u64 = 16;

/// How many units to ask for, given the limit and the count this node last saw: 1/16 of what
/// was left, between 1 and [`MAX_LEASE`]. Fewer than 32 units left means leases of one.
pub fn lease_size(limit: u64, handed_out_seen: u64) -> u64 {
    (limit.saturating_sub(handed_out_seen) / LEASE_DIVISOR).clamp(1, MAX_LEASE)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    /// Units leased to this node and not yet spent.
    available: u64,
    /// The counter's value in Redis (units handed out to every node) when last seen.
    handed_out_seen: u64,
    window_end: i64,
}

/// What to do with one charge, from local knowledge alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// A local unit was taken.
    Took,
    /// The counter was seen at (or past) the limit: no node can get another unit this window,
    /// since units handed out are never returned.
    Exhausted,
    /// Ask Redis for a lease of this many units.
    Refill(u64),
}

#[derive(Debug)]
pub struct Leases {
    map: HashMap<CounterKey, Lease>,
    /// The latest window start of any charge seen. A caller charges only windows that contain
    /// its `now`, so every window that ended by then is over: this sweeps without a clock.
    horizon: i64,
}

impl Default for Leases {
    fn default() -> Self {
        Leases { map: HashMap::new(), horizon: i64::MIN }
    }
}

impl Leases {
    /// Notes a window start being charged, dropping the leases of windows that ended before it.
    pub fn observe(&mut self, window_start: i64) {
        if window_start > self.horizon {
            self.horizon = window_start;
            self.map.retain(|_, lease| lease.window_end > window_start);
        }
    }

    /// Takes one local unit for `key` if there is one; otherwise says what to do.
    pub fn take(&mut self, key: &CounterKey, limit: u64) -> Local {
        let Some(lease) = self.map.get_mut(key) else { return Local::Refill(lease_size(limit, 0)) };
        // A lease carved above the limit (the limit was lowered in the window) is not spent.
        if lease.available > 0 && lease.handed_out_seen <= limit {
            lease.available -= 1;
            Local::Took
        } else if lease.handed_out_seen >= limit {
            Local::Exhausted
        } else {
            Local::Refill(lease_size(limit, lease.handed_out_seen))
        }
    }

    /// Returns a unit taken by [`Leases::take`] for a call that was then denied.
    pub fn give_back(&mut self, key: &CounterKey) {
        if let Some(lease) = self.map.get_mut(key) {
            lease.available += 1;
        }
    }

    /// Records a lease of `granted` units; Redis's count is now `handed_out`.
    pub fn grant(&mut self, key: CounterKey, window_end: i64, granted: u64, handed_out: u64) {
        let lease = self.map.entry(key).or_insert(Lease { available: 0, handed_out_seen: 0, window_end });
        lease.available += granted;
        lease.handed_out_seen = handed_out;
    }

    /// Records Redis's count read without leasing (a dry run or `count`).
    pub fn seen(&mut self, key: &CounterKey, handed_out: u64) {
        if let Some(lease) = self.map.get_mut(key) {
            lease.handed_out_seen = handed_out;
        }
    }

    /// Units leased to this node and not yet spent.
    pub fn available(&self, key: &CounterKey) -> u64 {
        self.map.get(key).map_or(0, |l| l.available)
    }

    /// The best local knowledge of what is left: the units nobody has leased when Redis was last
    /// read, plus this node's unspent ones. Other nodes' unspent units count as used.
    pub fn remaining(&self, key: &CounterKey, limit: u64) -> u64 {
        self.map.get(key).map_or(limit, |l| limit.saturating_sub(l.handed_out_seen).saturating_add(l.available))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(window_start: i64) -> CounterKey {
        CounterKey { rule: 0, scope: 7, window_start }
    }

    #[test]
    fn leases_are_large_far_from_the_limit_and_single_units_near_it() {
        assert_eq!(lease_size(10_000_000, 0), 64);
        assert_eq!(lease_size(1000, 0), 62);
        assert_eq!(lease_size(1000, 968), 2);
        assert_eq!(lease_size(1000, 969), 1, "fewer than 32 left");
        assert_eq!(lease_size(1000, 1000), 1);
        assert_eq!(lease_size(3, 0), 1);
    }

    #[test]
    fn a_new_counter_asks_for_a_lease_sized_by_its_limit() {
        let mut l = Leases::default();
        assert_eq!(l.take(&key(0), 1000), Local::Refill(62));
        assert_eq!(l.remaining(&key(0), 1000), 1000);
    }

    #[test]
    fn granted_units_are_spent_locally_then_a_smaller_lease_is_asked_for() {
        let mut l = Leases::default();
        l.grant(key(0), 60, 2, 900);
        assert_eq!(l.take(&key(0), 1000), Local::Took);
        assert_eq!(l.remaining(&key(0), 1000), 101);
        assert_eq!(l.take(&key(0), 1000), Local::Took);
        assert_eq!(l.take(&key(0), 1000), Local::Refill(6));
        assert_eq!(l.available(&key(0)), 0);
    }

    #[test]
    fn a_counter_seen_at_its_limit_is_exhausted_without_asking() {
        let mut l = Leases::default();
        l.grant(key(0), 60, 1, 10);
        assert_eq!(l.take(&key(0), 10), Local::Took, "the last unit was leased to this node");
        assert_eq!(l.take(&key(0), 10), Local::Exhausted);
        assert_eq!(l.take(&key(0), 11), Local::Refill(1), "a raised limit is asked about");
        l.give_back(&key(0));
        assert_eq!(l.take(&key(0), 9), Local::Exhausted, "a lease above a lowered limit is not spent");
    }

    #[test]
    fn leases_of_ended_windows_are_dropped_when_a_later_window_is_charged() {
        let mut l = Leases::default();
        l.observe(0);
        l.grant(key(0), 60, 5, 5);
        l.observe(30);
        assert_eq!(l.available(&key(0)), 5, "still inside [0, 60)");
        l.observe(60);
        assert_eq!(l.len(), 0);
        l.observe(0);
        assert_eq!(l.take(&key(0), 10), Local::Refill(1), "an old window starts over from Redis");
    }

    #[test]
    fn reads_update_what_was_seen_but_only_of_leased_counters() {
        let mut l = Leases::default();
        l.seen(&key(0), 4);
        assert_eq!(l.len(), 0);
        l.grant(key(0), 60, 3, 3);
        l.seen(&key(0), 8);
        assert_eq!(l.remaining(&key(0), 10), 5);
    }
}
