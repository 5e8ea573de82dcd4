//! The local lease book, without I/O: for each counter, the units this node has taken from Redis
//! and not yet spent, and what it last saw of the counter. Every unit here is already counted in
//! Redis, so spending one needs no round trip and giving one back (a call denied by a later
//! charge) needs none either.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

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

#[derive(Debug, Clone, PartialEq, Eq)]
struct Lease {
    /// The id of the rule the units were leased for (its Redis key names it). A counter is keyed
    /// here by the rule's index in the catalog, and a catalog reload can give that index to
    /// another rule: units of one rule must never be spent on another.
    rule_id: Box<str>,
    /// Units leased to this node and not yet spent (all of them counted in Redis's value).
    available: u64,
    /// The counter's value in Redis (units handed out to every node) when last seen.
    handed_out_seen: u64,
    window_end: i64,
    /// Alert thresholds (bit 1: 80 %, bit 2: 100 %) that a lease of this node carried Redis's
    /// count past, not yet reported to an admitted call.
    passed: u8,
}

/// The bit of `passed` for each threshold.
const THRESHOLDS: [(u8, u8); 2] = [(1, 80), (2, 100)];

impl Lease {
    /// Notes Redis's count (before any units this exchange granted). Counts only grow; one below
    /// what was seen before means Redis lost its data (a restart without persistence, a flush, a
    /// failover to a replica behind): this node's unspent units are no longer counted there, so
    /// they are dropped rather than spent on top of a count that starts over.
    fn see(&mut self, handed_out: u64) {
        if handed_out < self.handed_out_seen {
            self.available = 0;
        }
    }
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
    /// `key`'s lease, if it was leased for `rule_id`. A lease of another rule under the same key
    /// (the catalog was reloaded and renumbered its rules) is dropped: its units stay counted in
    /// Redis against their own rule, as a stopped node's do.
    fn lease_mut(&mut self, key: &CounterKey, rule_id: &str) -> Option<&mut Lease> {
        match self.map.entry(*key) {
            Entry::Occupied(e) if *e.get().rule_id == *rule_id => Some(e.into_mut()),
            Entry::Occupied(e) => {
                e.remove();
                None
            }
            Entry::Vacant(_) => None,
        }
    }

    fn lease(&self, key: &CounterKey, rule_id: &str) -> Option<&Lease> {
        self.map.get(key).filter(|l| *l.rule_id == *rule_id)
    }

    /// Notes a window start being charged, dropping the leases of windows that ended before it.
    pub fn observe(&mut self, window_start: i64) {
        if window_start > self.horizon {
            self.horizon = window_start;
            self.map.retain(|_, lease| lease.window_end > window_start);
        }
    }

    /// Takes one local unit for `key` if there is one; otherwise says what to do.
    pub fn take(&mut self, key: &CounterKey, rule_id: &str, limit: u64) -> Local {
        let Some(lease) = self.lease_mut(key, rule_id) else { return Local::Refill(lease_size(limit, 0)) };
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

    /// Returns a unit taken by [`Leases::take`] (for `rule_id`) for a call that was then denied.
    pub fn give_back(&mut self, key: &CounterKey, rule_id: &str) {
        if let Some(lease) = self.lease_mut(key, rule_id) {
            lease.available += 1;
        }
    }

    /// Records a lease of `granted` units of `rule_id`'s counter (of `limit`); Redis's count is
    /// now `handed_out`. Redis hands units out atomically, so the lease that takes its count past
    /// an alert threshold is the only one that does, on any node: that threshold is noted here,
    /// to be reported with the next admitted call ([`Leases::take_passed`]).
    pub fn grant(
        &mut self,
        key: CounterKey,
        rule_id: &str,
        window_end: i64,
        limit: u64,
        granted: u64,
        handed_out: u64,
    ) {
        let fresh = || Lease { rule_id: rule_id.into(), available: 0, handed_out_seen: 0, window_end, passed: 0 };
        let lease = match self.map.entry(key) {
            Entry::Occupied(e) if *e.get().rule_id == *rule_id => e.into_mut(),
            // Another rule's lease under this index (see `lease_mut`): replaced.
            Entry::Occupied(mut e) => {
                e.insert(fresh());
                e.into_mut()
            }
            Entry::Vacant(e) => e.insert(fresh()),
        };
        let before = handed_out.saturating_sub(granted);
        lease.see(before);
        lease.available += granted;
        lease.handed_out_seen = handed_out;
        for percent in permgate_core::quota::thresholds_passed(limit, before, handed_out) {
            lease.passed |= THRESHOLDS.iter().find(|&&(_, p)| p == percent).map_or(0, |&(bit, _)| bit);
        }
    }

    /// The alert thresholds (percent) that this node's leases of `rule_id`'s counter passed and
    /// that no call was told of yet; each is told once.
    pub fn take_passed(&mut self, key: &CounterKey, rule_id: &str) -> impl Iterator<Item = u8> + use<> {
        let bits = self.lease_mut(key, rule_id).map_or(0, |l| std::mem::take(&mut l.passed));
        THRESHOLDS.into_iter().filter(move |&(bit, _)| bits & bit != 0).map(|(_, percent)| percent)
    }

    /// Records Redis's count of `rule_id`'s counter read without leasing (a dry run or `count`).
    pub fn seen(&mut self, key: &CounterKey, rule_id: &str, handed_out: u64) {
        if let Some(lease) = self.lease_mut(key, rule_id) {
            lease.see(handed_out);
            lease.handed_out_seen = handed_out;
        }
    }

    /// Units of `rule_id` leased to this node and not yet spent.
    pub fn available(&self, key: &CounterKey, rule_id: &str) -> u64 {
        self.lease(key, rule_id).map_or(0, |l| l.available)
    }

    /// The best local knowledge of what is left: the units nobody has leased when Redis was last
    /// read, plus this node's unspent ones (never more than the limit). Other nodes' unspent
    /// units count as used.
    pub fn remaining(&self, key: &CounterKey, rule_id: &str, limit: u64) -> u64 {
        self.lease(key, rule_id)
            .map_or(limit, |l| limit.saturating_sub(l.handed_out_seen).saturating_add(l.available).min(limit))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule the tests' counter (rule index 0) belongs to.
    const R: &str = "talk_daily";

    fn key(window_start: i64) -> CounterKey {
        CounterKey { rule: 0, scope: 7, window_start }
    }

    #[test]
    fn units_leased_for_one_rule_are_never_spent_on_another_rule_at_the_same_index() {
        // A catalog reload removed `talk_daily`, and `map_daily` is rule 0 now.
        let mut l = Leases::default();
        l.grant(key(0), R, 60, 1000, 50, 50);
        assert_eq!(l.available(&key(0), "map_daily"), 0);
        assert_eq!(l.remaining(&key(0), "map_daily", 100), 100, "nothing known of map_daily");
        assert_eq!(l.take(&key(0), "map_daily", 100), Local::Refill(6), "asked of Redis, not taken from talk_daily's");
        l.grant(key(0), "map_daily", 60, 1000, 1, 99);
        assert_eq!(l.take(&key(0), "map_daily", 100), Local::Took);
        assert_eq!(l.take(&key(0), "map_daily", 100), Local::Refill(1));
        assert_eq!(l.available(&key(0), R), 0, "talk_daily's lease is gone, not revived");
        assert_eq!(l.take(&key(0), R, 100), Local::Refill(6));
    }

    #[test]
    fn a_lease_that_passes_a_threshold_reports_it_once() {
        let mut l = Leases::default();
        l.grant(key(0), R, 60, 100, 6, 78);
        assert_eq!(l.take_passed(&key(0), R).collect::<Vec<_>>(), Vec::<u8>::new(), "72 → 78 of 100");
        l.grant(key(0), R, 60, 100, 3, 81);
        assert_eq!(l.take_passed(&key(0), R).collect::<Vec<_>>(), vec![80]);
        assert_eq!(l.take_passed(&key(0), R).collect::<Vec<_>>(), Vec::<u8>::new(), "told once");
        l.grant(key(0), R, 60, 100, 19, 100);
        assert_eq!(l.take_passed(&key(0), "map_daily").collect::<Vec<_>>(), Vec::<u8>::new(), "another rule's");
        l.grant(key(0), R, 60, 10, 10, 10);
        assert_eq!(l.take_passed(&key(0), R).collect::<Vec<_>>(), vec![80, 100], "one lease passed both");
    }

    #[test]
    fn a_redis_that_lost_its_count_takes_this_nodes_unspent_units_with_it() {
        let mut l = Leases::default();
        l.grant(key(0), R, 60, 1000, 5, 6);
        // Redis restarted empty: a dry run reads 0.
        l.seen(&key(0), R, 0);
        assert_eq!(l.available(&key(0), R), 0, "the units are no longer counted in Redis");
        assert!(l.remaining(&key(0), R, 100) <= 100);
        assert_eq!(l.take(&key(0), R, 100), Local::Refill(6));
        // The same seen in a lease's reply: 3 granted, the count 3 (it was 6).
        let mut l = Leases::default();
        l.grant(key(0), R, 60, 1000, 5, 6);
        l.grant(key(0), R, 60, 1000, 3, 3);
        assert_eq!(l.available(&key(0), R), 3);
        assert_eq!(l.remaining(&key(0), R, 100), 100, "97 nobody holds and this node's 3");
        // Counts that grow keep the units.
        let mut l = Leases::default();
        l.grant(key(0), R, 60, 1000, 5, 6);
        l.seen(&key(0), R, 9);
        l.grant(key(0), R, 60, 1000, 2, 11);
        assert_eq!(l.available(&key(0), R), 7);
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
        assert_eq!(l.take(&key(0), R, 1000), Local::Refill(62));
        assert_eq!(l.remaining(&key(0), R, 1000), 1000);
    }

    #[test]
    fn granted_units_are_spent_locally_then_a_smaller_lease_is_asked_for() {
        let mut l = Leases::default();
        l.grant(key(0), R, 60, 1000, 2, 900);
        assert_eq!(l.take(&key(0), R, 1000), Local::Took);
        assert_eq!(l.remaining(&key(0), R, 1000), 101);
        assert_eq!(l.take(&key(0), R, 1000), Local::Took);
        assert_eq!(l.take(&key(0), R, 1000), Local::Refill(6));
        assert_eq!(l.available(&key(0), R), 0);
    }

    #[test]
    fn a_counter_seen_at_its_limit_is_exhausted_without_asking() {
        let mut l = Leases::default();
        l.grant(key(0), R, 60, 1000, 1, 10);
        assert_eq!(l.take(&key(0), R, 10), Local::Took, "the last unit was leased to this node");
        assert_eq!(l.take(&key(0), R, 10), Local::Exhausted);
        assert_eq!(l.take(&key(0), R, 11), Local::Refill(1), "a raised limit is asked about");
        l.give_back(&key(0), R);
        assert_eq!(l.take(&key(0), R, 9), Local::Exhausted, "a lease above a lowered limit is not spent");
    }

    #[test]
    fn leases_of_ended_windows_are_dropped_when_a_later_window_is_charged() {
        let mut l = Leases::default();
        l.observe(0);
        l.grant(key(0), R, 60, 1000, 5, 5);
        l.observe(30);
        assert_eq!(l.available(&key(0), R), 5, "still inside [0, 60)");
        l.observe(60);
        assert_eq!(l.len(), 0);
        l.observe(0);
        assert_eq!(l.take(&key(0), R, 10), Local::Refill(1), "an old window starts over from Redis");
    }

    #[test]
    fn reads_update_what_was_seen_but_only_of_leased_counters() {
        let mut l = Leases::default();
        l.seen(&key(0), R, 4);
        assert_eq!(l.len(), 0);
        l.grant(key(0), R, 60, 1000, 3, 3);
        l.seen(&key(0), R, 8);
        assert_eq!(l.remaining(&key(0), R, 10), 5);
    }
}
