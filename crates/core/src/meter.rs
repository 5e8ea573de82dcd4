//! One app's meter: the quota counters only this app counts against (its app-wide rules and its
//! paid-usage caps) and its activity (last call, calls per quota rule, last use of each
//! permission), kept in the app's snapshot entry under one lock. Counting an admitted call in
//! memory then takes that one lock and touches memory beside the app's entry, instead of a shared
//! map behind a process-wide lock and three separately allocated tables.
//!
//! A meter moves from entry to entry when its app is patched, and follows catalog changes
//! ([`Meter::renumbered`]); both happen under the snapshot's write lock, so no count is lost.
//!
//! The savers visit every app about once a second; [`Meter::pending`] lets them pass an app that
//! has nothing to save without taking its lock (with a million apps, a lock each is ~20 ms a
//! pass).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::quota::{renumber, renumber_rule};
use crate::small::SmallVec;

/// What a saver may find to save in a meter, one bit per saver.
pub mod pending {
    /// The app's own quota counters changed.
    pub const COUNTERS: u8 = 1;
    /// Calls were admitted (last call, calls, calls per rule).
    pub const ACTIVITY: u8 = 2;
    /// Permissions were exercised.
    pub const USAGE: u8 = 4;
    pub const ALL: u8 = COUNTERS | ACTIVITY | USAGE;
}

/// An app's meter; see the module documentation. `repr(C)`: the pending bits sit beside the lock
/// word, on the line a counted call has just locked (by default they went after the state, a
/// line further, and marking them cost a miss per call).
#[derive(Debug, Default)]
#[repr(C)]
pub struct Meter {
    /// [`pending`] bits: set under the lock by a call that changed the state, cleared under the
    /// lock by the saver that reads it, read without the lock to skip a meter.
    pending: AtomicU8,
    state: Mutex<MeterState>,
}

impl Clone for Meter {
    fn clone(&self) -> Self {
        let state = self.lock().clone();
        Meter { state: Mutex::new(state), pending: AtomicU8::new(self.pending.load(Ordering::Relaxed)) }
    }
}

impl Meter {
    pub fn lock(&self) -> MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that the meter has something of each kind in `bits` to save. A call marks it while
    /// holding the lock; a saver that could not store what it read marks it again.
    pub fn mark(&self, bits: u8) {
        // Usually set already: a load, not a write to the line, on every call.
        if self.pending.load(Ordering::Relaxed) & bits != bits {
            self.pending.fetch_or(bits, Ordering::Relaxed);
        }
    }

    /// The meter's state, locked, if it may have something of `bits` to save; those bits are then
    /// clear (under the lock: a call that changes the state after this marks it again).
    pub fn pending(&self, bits: u8) -> Option<MutexGuard<'_, MeterState>> {
        if self.pending.load(Ordering::Relaxed) & bits == 0 {
            return None;
        }
        let state = self.lock();
        self.pending.fetch_and(!bits, Ordering::Relaxed);
        Some(state)
    }

    /// A copy whose rules and permissions follow a catalog change: `rule_map[i]` is old rule `i`'s
    /// new index (`None` when it is gone; the paid caps keep theirs), likewise `permission_map`.
    pub fn renumbered(&self, rule_map: &[Option<usize>], permission_map: &[Option<usize>]) -> Meter {
        let mut state = self.lock().clone();
        let (rules, saved): (Vec<RuleMeter>, Vec<RuleSaved>) = state
            .rules
            .iter()
            .zip(state.saved.iter())
            .filter_map(|(r, saved)| Some((RuleMeter { rule: renumber_rule(rule_map, r.rule)?, ..*r }, *saved)))
            .unzip();
        let used: Vec<Used> = state
            .used
            .iter()
            .filter_map(|u| Some(Used { permission: renumber(permission_map, u.permission)?, ..*u }))
            .collect();
        state.rules = rules.into();
        state.saved = saved.into();
        state.used = used.into();
        Meter { state: Mutex::new(state), pending: AtomicU8::new(pending::ALL) }
    }
}

/// What a meter holds (`repr(C)` keeps this order): first what every counted call touches (the
/// last call, the calls, the rules' counters: 80 bytes, which the app's entry places right after
/// the lock word, on its first two lines), then what only the savers read.
#[derive(Debug, Clone, Default)]
#[repr(C)]
pub struct MeterState {
    /// The last admitted call (Unix seconds).
    pub last_call: i64,
    /// Calls admitted on this node.
    pub calls: u64,
    /// One per quota rule (by catalog index, or `PAID_DAY` / `PAID_MONTH`) the app was counted
    /// against; inline for the usual two (an API's own rule and the monthly total). Added to
    /// only through [`MeterState::position`], which keeps `saved` beside it (read it through
    /// [`MeterState::rules`]).
    rules: SmallVec<RuleMeter, 2>,
    /// What of each rule in `rules` (same place) was last saved.
    saved: SmallVec<RuleSaved, 2>,
    /// What of the last call and the calls is saved.
    pub last_saved: i64,
    pub calls_saved: u64,
    /// The permissions the app's admitted calls exercised.
    pub used: SmallVec<Used, 1>,
}

/// One quota rule in an app's meter, as a counted call changes it: 24 bytes, two to a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleMeter {
    pub rule: u32,
    /// Calls counted against the rule on this node (whatever its scope); wraps (only its
    /// difference from the saved calls, a second's, is read).
    pub calls: u32,
    /// The start of the window the app's own counter counts in ([`NOT_COUNTING`] until it
    /// counts: only rules counted per app keep their counter here), and its count there. The
    /// window's end follows from the rule's period.
    pub window_start: i64,
    pub count: u64,
}

/// What of a rule's meter was last saved (or restored): a counter whose window or count differs
/// has changed since. Kept apart from [`RuleMeter`], so that counting writes nothing but the
/// counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RuleSaved {
    window_start: i64,
    count: u64,
    calls: u32,
}

impl Default for RuleSaved {
    fn default() -> Self {
        RuleSaved { window_start: NOT_COUNTING, count: 0, calls: 0 }
    }
}

/// The `window_start` of a rule whose counter is not kept in the meter (yet).
pub const NOT_COUNTING: i64 = i64::MIN;

impl Default for RuleMeter {
    fn default() -> Self {
        RuleMeter { rule: 0, calls: 0, window_start: NOT_COUNTING, count: 0 }
    }
}

impl RuleMeter {
    /// The app's own count in the window starting at `window_start`: see [`MeterState::count`].
    pub fn count_in(&self, window_start: i64) -> u64 {
        if self.window_start != NOT_COUNTING && window_start <= self.window_start { self.count } else { 0 }
    }

    /// Adds one to the app's own count in the window starting at `window_start`: see
    /// [`MeterState::charge`].
    pub fn charge(&mut self, window_start: i64) {
        if window_start > self.window_start {
            (self.window_start, self.count) = (window_start, 0);
        }
        self.count += 1;
    }
}

/// When an app's call last exercised a permission (by catalog index), and the last time saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Used {
    pub permission: u32,
    pub at: i64,
    pub saved: i64,
}

impl MeterState {
    /// The rules the app was counted against, with their counters.
    pub fn rules(&self) -> &[RuleMeter] {
        &self.rules
    }

    /// The same, to count in place (no rule can be added or removed through it).
    pub fn rules_mut(&mut self) -> &mut [RuleMeter] {
        &mut self.rules
    }

    /// Where `rule`'s meter is in `rules`, added (counting nothing yet) if the app has none.
    /// Inlined: every counted call looks its rules up; adding one is rare and is not.
    #[inline]
    pub fn position(&mut self, rule: u32) -> usize {
        match self.rules.iter().position(|r| r.rule == rule) {
            Some(i) => i,
            None => self.add(rule),
        }
    }

    /// Adds a meter for `rule`, beside its saved copy; where it is.
    #[inline(never)]
    fn add(&mut self, rule: u32) -> usize {
        self.rules.push(RuleMeter { rule, ..RuleMeter::default() });
        self.saved.push(RuleSaved::default());
        self.rules.len() - 1
    }

    fn rule_mut(&mut self, rule: u32) -> &mut RuleMeter {
        let at = self.position(rule);
        &mut self.rules[at]
    }

    /// The app's own count for `rule` in the window starting at `window_start` (0 for a window
    /// that has not started counting). The counter keeps one window, the latest: a call that
    /// read the clock just before another call started the next window counts in that next one
    /// (so neither window can go past its limit, and no count is lost).
    pub fn count(&self, rule: u32, window_start: i64) -> u64 {
        self.rules.iter().find(|r| r.rule == rule).map_or(0, |r| r.count_in(window_start))
    }

    /// Adds one to the app's own counter for `rule` in the window starting at `window_start`:
    /// a later window starts again from zero; an earlier one counts in the present one (see
    /// [`MeterState::count`]).
    pub fn charge(&mut self, rule: u32, window_start: i64) {
        self.rule_mut(rule).charge(window_start);
    }

    /// Marks the app's own counter for `rule` changed again (its save failed), if it still
    /// counts in the window starting at `window_start` (a later window is marked already).
    pub fn mark_dirty(&mut self, rule: u32, window_start: i64) {
        if let Some(i) = self.rules.iter().position(|r| r.rule == rule && r.window_start == window_start) {
            self.saved[i].window_start = NOT_COUNTING;
        }
    }

    /// Loads a saved count of the app's own counter (at start), keeping the larger one; what is
    /// loaded is saved already.
    pub fn restore(&mut self, rule: u32, window_start: i64, count: u64) {
        let i = self.position(rule);
        let r = &mut self.rules[i];
        let clean = self.saved[i].window_start == r.window_start && self.saved[i].count == r.count;
        if r.window_start < window_start {
            (r.window_start, r.count) = (window_start, count);
        } else if r.window_start == window_start {
            r.count = r.count.max(count);
        }
        if clean {
            (self.saved[i].window_start, self.saved[i].count) = (r.window_start, r.count);
        }
    }

    /// The app's own counters changed since the last call, as (rule, window start, count); each
    /// is then clean.
    pub fn drain_dirty(&mut self) -> impl Iterator<Item = (u32, i64, u64)> + '_ {
        self.rules.iter().zip(self.saved.iter_mut()).filter_map(|(r, saved)| {
            let changed =
                r.window_start != NOT_COUNTING && (r.window_start, r.count) != (saved.window_start, saved.count);
            changed.then(|| {
                (saved.window_start, saved.count) = (r.window_start, r.count);
                (r.rule, r.window_start, r.count)
            })
        })
    }

    /// Each rule's calls not saved yet, as (rule, calls), for the rules that have some.
    pub fn unsaved_rule_calls(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.rules
            .iter()
            .zip(self.saved.iter())
            .map(|(r, saved)| (r.rule, r.calls.wrapping_sub(saved.calls)))
            .filter(|(_, n)| *n > 0)
    }

    /// Marks `n` more of `rule`'s calls saved.
    pub fn rule_calls_saved(&mut self, rule: u32, n: u32) {
        if let Some(i) = self.rules.iter().position(|r| r.rule == rule) {
            self.saved[i].calls = self.saved[i].calls.wrapping_add(n);
        }
    }

    /// Notes an admitted call at `now`.
    pub fn touch(&mut self, now: i64) {
        self.calls += 1;
        self.last_call = self.last_call.max(now);
    }

    /// Notes that an admitted call was counted against quota rule `rule`.
    pub fn count_rule(&mut self, rule: u32) {
        let r = self.rule_mut(rule);
        r.calls = r.calls.wrapping_add(1);
    }

    /// Notes that an admitted call at `now` exercised permission `permission`.
    pub fn exercise(&mut self, permission: u32, now: i64) {
        match self.used.iter_mut().find(|u| u.permission == permission) {
            Some(u) => u.at = u.at.max(now),
            None => self.used.push(Used { permission, at: now, saved: 0 }),
        }
    }

    /// Whether anything of the activity is not saved yet.
    pub fn unsaved(&self) -> bool {
        self.last_call > self.last_saved || self.calls > self.calls_saved || self.unsaved_rule_calls().next().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_counters_follow_the_last_call_and_the_calls() {
        // The entry puts the state's first 16 bytes on its first line, the counters on its
        // second (see the layout test in snapshot.rs).
        assert_eq!(std::mem::offset_of!(MeterState, calls), 8);
        assert_eq!(std::mem::offset_of!(MeterState, rules), 16);
        assert_eq!(std::mem::size_of::<RuleMeter>(), 24);
        assert_eq!(std::mem::size_of::<SmallVec<RuleMeter, 2>>(), 64);
    }

    #[test]
    fn a_counter_counts_in_its_window_and_starts_again_in_the_next() {
        let mut m = MeterState::default();
        assert_eq!(m.count(0, 100), 0);
        m.charge(0, 100);
        m.charge(0, 100);
        assert_eq!(m.count(0, 100), 2);
        assert_eq!(m.count(0, 200), 0, "the next window has not counted");
        assert_eq!(m.count(1, 100), 0, "another rule");
        m.charge(0, 200);
        assert_eq!(m.count(0, 200), 1);
        assert_eq!(m.drain_dirty().collect::<Vec<_>>(), vec![(0, 200, 1)]);
        assert_eq!(m.drain_dirty().count(), 0, "drained once");
        m.mark_dirty(0, 100);
        assert_eq!(m.drain_dirty().count(), 0, "an ended window is not saved again");
        m.mark_dirty(0, 200);
        assert_eq!(m.drain_dirty().collect::<Vec<_>>(), vec![(0, 200, 1)], "a failed save is tried again");
    }

    #[test]
    fn a_call_late_for_its_window_counts_in_the_next_one_and_loses_nothing() {
        // Two threads at midnight: one read 23:59:59 (window 100), the other 00:00:00 (200)
        // and counted first.
        let mut m = MeterState::default();
        m.charge(0, 100);
        m.charge(0, 200);
        assert_eq!(m.count(0, 100), 1, "the late call is checked against the new window");
        m.charge(0, 100);
        assert_eq!(m.count(0, 200), 2, "and counted there: the new window's first count is kept");
        assert_eq!(m.drain_dirty().collect::<Vec<_>>(), vec![(0, 200, 2)]);
    }

    #[test]
    fn restoring_keeps_the_larger_count_of_the_same_window_and_the_later_window() {
        let mut m = MeterState::default();
        m.charge(3, 100);
        m.restore(3, 100, 7);
        assert_eq!(m.count(3, 100), 7);
        m.restore(3, 100, 2);
        assert_eq!(m.count(3, 100), 7);
        m.restore(3, 0, 50);
        assert_eq!(m.count(3, 100), 7, "an older window does not replace the present one");
        m.restore(3, 200, 4);
        assert_eq!(m.count(3, 200), 4);
    }

    #[test]
    fn activity_is_unsaved_until_marked() {
        let mut m = MeterState::default();
        assert!(!m.unsaved());
        m.touch(10);
        m.count_rule(2);
        m.exercise(5, 10);
        m.exercise(5, 9);
        assert!(m.unsaved());
        assert_eq!(m.used.iter().map(|u| (u.permission, u.at)).collect::<Vec<_>>(), vec![(5, 10)]);
        (m.last_saved, m.calls_saved) = (m.last_call, m.calls);
        assert!(m.unsaved(), "the rule's call is not saved yet");
        assert_eq!(m.unsaved_rule_calls().collect::<Vec<_>>(), vec![(2, 1)]);
        m.rule_calls_saved(2, 1);
        assert!(!m.unsaved());
    }

    #[test]
    fn a_saver_passes_a_meter_with_nothing_pending_and_sees_the_next_change() {
        let meter = Meter::default();
        assert!(meter.pending(pending::ALL).is_none(), "a new meter has nothing to save");
        {
            let mut state = meter.lock();
            state.touch(10);
            meter.mark(pending::ACTIVITY);
        }
        assert!(meter.pending(pending::COUNTERS).is_none(), "another saver's bit");
        assert!(meter.pending(pending::ACTIVITY).is_some_and(|s| s.unsaved()));
        assert!(meter.pending(pending::ACTIVITY).is_none(), "taken once");
        meter.mark(pending::ACTIVITY);
        assert!(meter.pending(pending::ACTIVITY).is_some(), "marked again after a failed save");
    }

    #[test]
    fn renumbering_follows_rules_and_permissions_and_drops_what_is_gone() {
        let meter = Meter::default();
        {
            let mut m = meter.lock();
            m.charge(0, 100);
            m.charge(1, 100);
            m.charge(crate::quota::PAID_DAY, 100);
            m.exercise(0, 5);
            m.exercise(1, 6);
        }
        let moved = meter.renumbered(&[Some(1), None], &[None, Some(0)]);
        let m = moved.lock();
        assert_eq!(m.rules().iter().map(|r| r.rule).collect::<Vec<_>>(), vec![1, crate::quota::PAID_DAY]);
        assert_eq!(m.count(1, 100), 1);
        assert_eq!(m.used.iter().map(|u| (u.permission, u.at)).collect::<Vec<_>>(), vec![(0, 6)]);
    }
}
