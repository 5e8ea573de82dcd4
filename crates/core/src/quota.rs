//! Quota arithmetic without I/O: calendar windows in the catalog's time zone, counter keys, and
//! the `QuotaCounter` port with its in-memory implementation. The decision engine asks a counter
//! to admit a call against every rule that counts it, all or nothing: a denied call consumes
//! nothing.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::catalog::{Catalog, QuotaPeriod, QuotaScope};
use crate::meter::MeterState;
use crate::time::Timestamp;

/// A window of a quota rule: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// The window of `period` that contains `now`, in a zone `offset_seconds` east of UTC: the
/// second itself, the calendar day (00:00 to 00:00) or the calendar month (the 1st, 00:00).
#[inline]
pub fn window(period: QuotaPeriod, now: Timestamp, offset_seconds: i32) -> Window {
    match period {
        QuotaPeriod::Second => Calendar::second(now),
        _ => Calendar::at(now, offset_seconds).window(period, now),
    }
}

/// The calendar day and month around a moment, in a zone: the windows of every rule counted at
/// that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Calendar {
    day: Window,
    month: Window,
}

impl Calendar {
    /// The day and month around `now`, kept per thread for the second they were asked in: calls
    /// come many a second, and working out the day alone took a division.
    #[inline]
    pub(crate) fn at(now: Timestamp, offset_seconds: i32) -> Calendar {
        // `i32::MIN` is no zone's offset: nothing is kept yet.
        const NONE: (i64, i32, Calendar) =
            (0, i32::MIN, Calendar { day: Window { start: 0, end: 0 }, month: Window { start: 0, end: 0 } });
        thread_local! {
            static LAST: std::cell::Cell<(i64, i32, Calendar)> = const { std::cell::Cell::new(NONE) };
        }
        let (at, offset, calendar) = LAST.get();
        if (at, offset) == (now.0, offset_seconds) {
            return calendar;
        }
        let calendar = Calendar::work_out(now, offset_seconds);
        LAST.set((now.0, offset_seconds, calendar));
        calendar
    }

    /// Out of the calendar's range (year ±9999) the month falls back to the day, and where even
    /// the day's arithmetic would overflow (a timestamp within a day of the `i64` range's ends),
    /// the day to the second: never a panic.
    #[inline(never)]
    fn work_out(now: Timestamp, offset_seconds: i32) -> Calendar {
        let off = i64::from(offset_seconds);
        let day = (|| {
            let start = now.0.checked_add(off)?.div_euclid(86_400).checked_mul(86_400)?.checked_sub(off)?;
            Some(Window { start, end: start.checked_add(86_400)? })
        })()
        .unwrap_or_else(|| Calendar::second(now));
        Calendar { day, month: month_window(now, offset_seconds).unwrap_or(day) }
    }

    /// The window of a per-second rule: the second itself.
    fn second(now: Timestamp) -> Window {
        Window { start: now.0, end: now.0.saturating_add(1) }
    }

    /// The window of `period` around `now` (a moment of this calendar's second).
    #[inline]
    pub(crate) fn window(&self, period: QuotaPeriod, now: Timestamp) -> Window {
        match period {
            QuotaPeriod::Second => Calendar::second(now),
            QuotaPeriod::Day => self.day,
            QuotaPeriod::Month => self.month,
        }
    }
}

/// The calendar month around `now`, in plain integer arithmetic on days. `None` where the
/// arithmetic would overflow.
fn month_window(now: Timestamp, offset_seconds: i32) -> Option<Window> {
    let off = i64::from(offset_seconds);
    let days = now.0.checked_add(off)?.div_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let start = (days - (day - 1)).checked_mul(86_400)?.checked_sub(off)?;
    let end = days_from_civil(next_year, next_month, 1).checked_mul(86_400)?.checked_sub(off)?;
    Some(Window { start, end })
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`: years of 400-year eras, each year counted from March).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date (year, month 1-12, day 1-31) `days` after 1970-01-01; the inverse of
/// [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 { march_month + 3 } else { march_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A stable 64-bit hash (FNV-1a) for user ids and recipients in counter keys: the same on every
/// node and across restarts, unlike the standard library's randomly keyed hasher.
pub fn scope_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// One counter: a rule, the scope it counts (an app, a developer, a user, a recipient, a pair)
/// and the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    /// Index of the rule in the catalog; `PAID_DAY` / `PAID_MONTH` for paid-usage caps.
    pub rule: u32,
    pub scope: u64,
    pub window_start: i64,
}

impl Charge<'_> {
    /// The index of the charge's rule in the catalog; `None` for the paid caps.
    pub fn rule_index(&self) -> Option<usize> {
        if self.key.rule >= PAID_DAY { None } else { usize::try_from(self.key.rule).ok() }
    }

    /// The window the charge counts in.
    pub fn window(&self) -> Window {
        Window { start: self.key.window_start, end: self.window_end }
    }
}

/// Pseudo-rules counting an app's paid calls against its daily and monthly caps.
pub const PAID_DAY: u32 = u32::MAX - 1;
pub const PAID_MONTH: u32 = u32::MAX;

/// A counter's rule as it is saved and shared (its id) and how long its windows are: a catalog
/// rule's, or a paid cap's.
pub fn counter_rule(catalog: &Catalog, rule: u32) -> Option<(&'static str, QuotaPeriod)> {
    match rule {
        PAID_DAY => Some(("paid_daily_cap", QuotaPeriod::Day)),
        PAID_MONTH => Some(("paid_monthly_cap", QuotaPeriod::Month)),
        r => catalog.quota_rules.get(usize::try_from(r).ok()?).map(|q| (q.static_id, q.period)),
    }
}

/// The rule of a counter saved under `id` (the inverse of [`counter_rule`]), and whether only one
/// app counts against it (a rule per app, or a paid cap).
pub fn counter_rule_by_id(catalog: &Catalog, id: &str) -> Option<(u32, bool)> {
    match id {
        "paid_daily_cap" => Some((PAID_DAY, true)),
        "paid_monthly_cap" => Some((PAID_MONTH, true)),
        id => {
            let i = catalog.quota_rules.iter().position(|r| r.id == id)?;
            Some((u32::try_from(i).ok()?, catalog.quota_rules[i].scope == QuotaScope::App))
        }
    }
}

/// Where old index `i` went in a catalog change (`map[i]`; `None` when it is gone).
pub fn renumber(map: &[Option<usize>], i: u32) -> Option<u32> {
    let new = map.get(usize::try_from(i).ok()?).copied().flatten()?;
    u32::try_from(new).ok()
}

/// [`renumber`] for a counter's rule: the paid caps keep theirs.
pub fn renumber_rule(rule_map: &[Option<usize>], rule: u32) -> Option<u32> {
    if rule >= PAID_DAY { Some(rule) } else { renumber(rule_map, rule) }
}

/// One counter a call must fit into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge<'a> {
    pub key: CounterKey,
    /// The rule's id (or `paid_day` / `paid_month`), for shared counters' key names.
    pub rule_id: &'a str,
    pub limit: u64,
    pub window_end: i64,
    /// Only the calling app counts against it (an app-wide rule or a paid cap): counting in
    /// memory keeps it in the app's [`MeterState`].
    pub own: bool,
}

/// What each charge of an admitted call has left, inline for the usual handful.
pub type Remaining = crate::small::SmallVec<u64, 4>;

/// The alert thresholds of a charge's limit that an admitted call carried its counter past, as
/// (charge index, percent: 80 or 100). The counter reports them, since it alone sees a count
/// cross: each threshold of a counter's window is reported once, to one call, on whichever node.
pub type Passed = crate::small::SmallVec<(u32, u8), 2>;

/// The thresholds a counter of `limit` passes going from `before` to `after`: 80 % (rounded up:
/// ⌈4L/5⌉ = L − ⌊L/5⌋, which cannot overflow) and 100 %, in that order. Where the two are the
/// same count (limits below 5), only 100 % is passed.
pub fn thresholds_passed(limit: u64, before: u64, after: u64) -> impl Iterator<Item = u8> {
    [(threshold(limit, 80), 80), (threshold(limit, 100), 100)]
        .into_iter()
        .filter(move |&(at, percent)| limit > 0 && before < at && at <= after && !(percent == 80 && at == limit))
        .map(|(_, percent)| percent)
}

/// The count at which a rule of `limit` has passed `percent` (80 or 100) of it.
pub fn threshold(limit: u64, percent: u8) -> u64 {
    if percent >= 100 { limit } else { limit - limit / 5 }
}

/// What a counter answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Every charge fitted; what is left in each after this call (or, for a dry run, what would
    /// be left had it counted), and the alert thresholds this call passed (none for a dry run).
    Admitted { remaining: Remaining, passed: Passed },
    /// `index` is the first charge that did not fit; nothing was consumed.
    Exhausted { index: usize },
}

/// Why a counter could not answer (a shared counter's backend is unreachable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quota counter unavailable: {0}")]
pub struct CounterError(pub String);

/// Counts calls. Implementations must be exact under concurrency: `admit` is atomic across all
/// its charges.
pub trait QuotaCounter: Send + Sync {
    /// If each charge's count plus one fits its limit, adds one to each (unless `dry_run`).
    fn admit(&self, charges: &[Charge<'_>], dry_run: bool) -> Result<Admission, CounterError>;
    /// The count of one counter now (0 for a window that has not started counting). Counting in
    /// memory, an app's own counters are in its meter ([`MeterState::count`]), not here.
    fn count(&self, key: &CounterKey, rule_id: &str) -> Result<u64, CounterError>;
    /// This counter, when it counts in this process's memory: a decision then counts the app's
    /// own charges in its meter, under the lock it takes anyway for the app's activity.
    fn in_memory(&self) -> Option<&MemoryCounter> {
        None
    }
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    count: u64,
    window_end: i64,
    /// Changed since the last [`MemoryCounter::drain_dirty`].
    dirty: bool,
}

/// The counters and which of them changed since the last drain, under one lock. The map's hasher
/// is keyed at random per process (foldhash): scopes hash caller-chosen user ids and recipients.
#[derive(Debug, Default)]
struct Cells {
    map: HashMap<CounterKey, Cell, foldhash::fast::RandomState>,
    dirty: Vec<CounterKey>,
}

impl Cells {
    fn mark(&mut self, key: CounterKey, window_end: i64) -> &mut Cell {
        let cell = self.map.entry(key).or_insert(Cell { count: 0, window_end, dirty: false });
        if !cell.dirty {
            cell.dirty = true;
            self.dirty.push(key);
        }
        cell
    }
}

/// Exact counting in this process's memory. Counters whose window has ended are dropped by
/// [`MemoryCounter::sweep`]; [`MemoryCounter::drain_dirty`] and [`MemoryCounter::restore`] let a
/// store persist them.
#[derive(Debug, Default)]
pub struct MemoryCounter {
    cells: Mutex<Cells>,
}

impl MemoryCounter {
    pub fn new() -> Self {
        MemoryCounter::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cells> {
        self.cells.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads counts saved earlier (on start), keeping the larger of saved and present counts.
    pub fn restore(&self, saved: impl IntoIterator<Item = (CounterKey, u64, i64)>) {
        let mut cells = self.lock();
        for (key, count, window_end) in saved {
            let cell = cells.map.entry(key).or_insert(Cell { count: 0, window_end, dirty: false });
            cell.count = cell.count.max(count);
        }
    }

    /// The counters changed since the last call, with their counts and window ends.
    pub fn drain_dirty(&self) -> Vec<(CounterKey, u64, i64)> {
        let mut cells = self.lock();
        let keys = std::mem::take(&mut cells.dirty);
        let mut out: Vec<(CounterKey, u64, i64)> = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(c) = cells.map.get_mut(&k) {
                c.dirty = false;
                out.push((k, c.count, c.window_end));
            }
        }
        out.sort_unstable_by_key(|(k, _, _)| *k);
        out
    }

    /// Lists `keys` as changed again (their save failed); keys no longer counted are skipped.
    pub fn mark_dirty(&self, keys: impl IntoIterator<Item = CounterKey>) {
        let mut cells = self.lock();
        for key in keys {
            if let Some(window_end) = cells.map.get(&key).map(|c| c.window_end) {
                cells.mark(key, window_end);
            }
        }
    }

    /// Forgets counters whose window ended before `now`.
    pub fn sweep(&self, now: Timestamp) {
        let mut cells = self.lock();
        cells.map.retain(|_, c| c.window_end > now.0);
        let Cells { map, dirty } = &mut *cells;
        dirty.retain(|k| map.contains_key(k));
    }

    /// Follows a catalog change: counters of rule `i` move to `rule_map[i]`, those of rules that
    /// are gone are dropped; the paid caps stay.
    pub fn renumber(&self, rule_map: &[Option<usize>]) {
        let map = |rule: u32| renumber_rule(rule_map, rule);
        let mut cells = self.lock();
        let old = std::mem::take(&mut *cells);
        cells.map =
            old.map.into_iter().filter_map(|(k, c)| Some((CounterKey { rule: map(k.rule)?, ..k }, c))).collect();
        cells.dirty = old.dirty.into_iter().filter_map(|k| Some(CounterKey { rule: map(k.rule)?, ..k })).collect();
    }

    /// [`QuotaCounter::admit`], with the meter of the calling app when the caller holds it: the
    /// app's own charges are then counted there, the others (per developer, user, recipient) in
    /// the shared map, whose lock is taken only when there are such charges. Without a meter,
    /// every charge is counted in the map. All or nothing across both.
    pub fn admit_metered(
        &self,
        mut meter: Option<&mut MeterState>,
        charges: &[Charge<'_>],
        dry_run: bool,
    ) -> Admission {
        let mut cells = None;
        let mut remaining = Remaining::new();
        let mut passed = Passed::new();
        for (index, c) in charges.iter().enumerate() {
            let used = match meter.as_deref() {
                Some(m) if c.own => m.count(c.key.rule, c.key.window_start),
                _ => cells.get_or_insert_with(|| self.lock()).map.get(&c.key).map_or(0, |cell| cell.count),
            };
            if used >= c.limit {
                return Admission::Exhausted { index };
            }
            remaining.push(c.limit - used - 1);
            if !dry_run {
                // Counting is exact: this call alone takes the count from `used` to `used + 1`.
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                thresholds_passed(c.limit, used, used + 1).for_each(|percent| passed.push((index, percent)));
            }
        }
        if !dry_run {
            for c in charges {
                match meter.as_deref_mut() {
                    Some(m) if c.own => m.charge(c.key.rule, c.key.window_start),
                    _ => cells.get_or_insert_with(|| self.lock()).mark(c.key, c.window_end).count += 1,
                }
            }
        }
        Admission::Admitted { remaining, passed }
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl QuotaCounter for MemoryCounter {
    fn in_memory(&self) -> Option<&MemoryCounter> {
        Some(self)
    }

    fn admit(&self, charges: &[Charge<'_>], dry_run: bool) -> Result<Admission, CounterError> {
        Ok(self.admit_metered(None, charges, dry_run))
    }

    fn count(&self, key: &CounterKey, _rule_id: &str) -> Result<u64, CounterError> {
        Ok(self.lock().map.get(key).map_or(0, |c| c.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEOUL: i32 = 9 * 3600;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap_or(Timestamp(0))
    }

    #[test]
    fn a_seoul_day_runs_from_midnight_kst_which_is_15_00_utc() {
        let w = window(QuotaPeriod::Day, at("2026-11-28T14:59:59Z"), SEOUL);
        assert_eq!((w.start, w.end), (at("2026-11-27T15:00:00Z").0, at("2026-11-28T15:00:00Z").0));
        let next = window(QuotaPeriod::Day, at("2026-11-28T15:00:00Z"), SEOUL);
        assert_eq!(next.start, w.end, "midnight in Seoul starts a new day");
    }

    #[test]
    fn a_seoul_month_starts_on_the_first_at_midnight_kst() {
        let w = window(QuotaPeriod::Month, at("2026-11-30T15:00:00Z"), SEOUL);
        assert_eq!((w.start, w.end), (at("2026-11-30T15:00:00Z").0, at("2026-12-31T15:00:00Z").0), "December in Seoul");
        let nov = window(QuotaPeriod::Month, at("2026-11-30T14:59:59Z"), SEOUL);
        assert_eq!(nov.end, w.start);
        let feb = window(QuotaPeriod::Month, at("2028-02-15T00:00:00Z"), 0);
        assert_eq!(feb.end - feb.start, 29 * 86_400, "2028 is a leap year");
        let dec = window(QuotaPeriod::Month, at("2026-12-31T23:00:00Z"), 0);
        assert_eq!(dec.end, at("2027-01-01T00:00:00Z").0);
    }

    /// What `month_window` must agree with: the `time` crate's calendar.
    fn month_by_calendar(now: Timestamp, offset_seconds: i32) -> Option<Window> {
        use time::{Date, Month, OffsetDateTime, UtcOffset};
        let offset = UtcOffset::from_whole_seconds(offset_seconds).ok()?;
        let local = OffsetDateTime::from_unix_timestamp(now.0).ok()?.to_offset(offset);
        let first = Date::from_calendar_date(local.year(), local.month(), 1).ok()?;
        let (next_year, next_month) = match local.month() {
            Month::December => (local.year() + 1, Month::January),
            m => (local.year(), m.next()),
        };
        let next = Date::from_calendar_date(next_year, next_month, 1).ok()?;
        let start = first.midnight().assume_offset(offset).unix_timestamp();
        let end = next.midnight().assume_offset(offset).unix_timestamp();
        Some(Window { start, end })
    }

    #[test]
    fn month_windows_agree_with_the_calendar_across_four_centuries_and_zones() {
        // Every day from 1600 to 2400 (leap centuries and not), at times around midnight.
        let mut t = at("1600-01-01T00:00:00Z").0;
        let end = at("2400-12-31T00:00:00Z").0;
        let mut days = 0;
        while t < end {
            days += 1;
            for (dt, offset) in [(0, SEOUL), (86_399, SEOUL), (15 * 3600, SEOUL), (-1, 0), (43_200, -5 * 3600)] {
                let now = Timestamp(t + dt);
                assert_eq!(month_window(now, offset), month_by_calendar(now, offset), "{now:?} at {offset}");
            }
            t += 86_400;
        }
        assert_eq!(days, 292_559, "every day of 1600-01-01 to 2400-12-30 was checked");
    }

    #[test]
    fn windows_kept_for_a_second_are_the_zones_and_the_seconds_own() {
        // 2026-11-30T16:00:00Z: December in Seoul, still November in UTC.
        let now = at("2026-11-30T16:00:00Z");
        let seoul = window(QuotaPeriod::Month, now, SEOUL);
        let utc = window(QuotaPeriod::Month, now, 0);
        assert_eq!((seoul.start, utc.end), (at("2026-11-30T15:00:00Z").0, at("2026-12-01T00:00:00Z").0));
        assert_eq!(window(QuotaPeriod::Day, now, 0).start, at("2026-11-30T00:00:00Z").0);
        assert_eq!(window(QuotaPeriod::Day, now, SEOUL).start, at("2026-11-30T15:00:00Z").0);
        // The second before in Seoul: November, the day before.
        let before = Timestamp(now.0 - 3601);
        assert_eq!(window(QuotaPeriod::Month, before, SEOUL).end, seoul.start);
        assert_eq!(window(QuotaPeriod::Day, before, SEOUL).end, seoul.start);
        assert_eq!(window(QuotaPeriod::Month, now, SEOUL), seoul, "asked again");
    }

    #[test]
    fn windows_at_the_ends_of_time_do_not_panic() {
        for now in [i64::MIN, i64::MIN + 10, i64::MAX - 1000, i64::MAX] {
            for period in [QuotaPeriod::Second, QuotaPeriod::Day, QuotaPeriod::Month] {
                for offset in [0, SEOUL, -SEOUL] {
                    let w = window(period, Timestamp(now), offset);
                    assert!(w.start <= now && now <= w.end, "{period:?} at {now} ({offset}): {w:?}");
                }
            }
        }
    }

    #[test]
    fn a_second_window_is_the_second() {
        assert_eq!(window(QuotaPeriod::Second, Timestamp(42), SEOUL), Window { start: 42, end: 43 });
    }

    #[test]
    fn scope_hashes_are_stable_and_separate_pairs() {
        assert_eq!(scope_hash(&["user-1"]), scope_hash(&["user-1"]));
        assert_ne!(scope_hash(&["ab", "c"]), scope_hash(&["a", "bc"]));
        assert_eq!(scope_hash(&[""]), 0xcbf2_9ce4_8422_2325);
    }

    fn charge(rule: u32, limit: u64) -> Charge<'static> {
        Charge { key: CounterKey { rule, scope: 1, window_start: 0 }, rule_id: "r", limit, window_end: 100, own: false }
    }

    #[test]
    fn thresholds_are_passed_once_each_by_the_count_that_reaches_them() {
        let passed = |limit, before, after| thresholds_passed(limit, before, after).collect::<Vec<u8>>();
        assert_eq!(passed(10, 7, 8), vec![80]);
        assert_eq!(passed(10, 8, 9), Vec::<u8>::new());
        assert_eq!(passed(10, 9, 10), vec![100]);
        assert_eq!(passed(11, 8, 9), vec![80], "⌈8.8⌉ = 9");
        assert_eq!(passed(1000, 700, 1000), vec![80, 100], "a lease can pass both");
        assert_eq!(passed(4, 3, 4), vec![100], "80 % of 4 is 4: only 100 % is passed");
        assert_eq!(passed(0, 0, 1), Vec::<u8>::new(), "a limit of 0 has no thresholds");
        assert_eq!(passed(u64::MAX, 0, u64::MAX - u64::MAX / 5), vec![80], "no overflow");
        assert_eq!(passed(u64::MAX, u64::MAX - 1, u64::MAX), vec![100]);
        // Exactly one count of each window passes each threshold.
        for limit in 1..200u64 {
            let all: Vec<u8> = (0..limit).flat_map(|used| thresholds_passed(limit, used, used + 1)).collect();
            assert_eq!(all, if limit < 5 { vec![100] } else { vec![80, 100] }, "{limit}");
        }
    }

    #[test]
    fn admission_is_all_or_nothing() {
        let c = MemoryCounter::new();
        let charges = [charge(0, 5), charge(1, 1)];
        assert_eq!(
            c.admit(&charges, false),
            Ok(Admission::Admitted { remaining: vec![4, 0].into(), passed: vec![(1, 100)].into() })
        );
        assert_eq!(c.admit(&charges, false), Ok(Admission::Exhausted { index: 1 }));
        assert_eq!(c.count(&charges[0].key, "r"), Ok(1), "the denied call consumed nothing");
    }

    #[test]
    fn a_dry_run_reports_without_counting() {
        let c = MemoryCounter::new();
        let charges = [charge(0, 2)];
        assert_eq!(
            c.admit(&charges, true),
            Ok(Admission::Admitted { remaining: vec![1].into(), passed: Passed::new() })
        );
        assert_eq!(c.count(&charges[0].key, "r"), Ok(0));
        assert!(c.drain_dirty().is_empty());
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_limit() {
        let c = std::sync::Arc::new(MemoryCounter::new());
        let admitted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, admitted) = (c.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        if matches!(c.admit(&[charge(0, 2500)], false), Ok(Admission::Admitted { .. })) {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
        assert_eq!(admitted.load(std::sync::atomic::Ordering::Relaxed), 2500);
        assert_eq!(c.count(&charge(0, 0).key, "r"), Ok(2500));
    }

    #[test]
    fn counters_whose_save_failed_drain_again() {
        let c = MemoryCounter::new();
        let ch = [charge(0, 10)];
        let _ = c.admit(&ch, false);
        assert_eq!(c.drain_dirty(), vec![(ch[0].key, 1, 100)]);
        c.mark_dirty([ch[0].key, charge(7, 1).key]);
        assert_eq!(c.drain_dirty(), vec![(ch[0].key, 1, 100)], "again, and only what is counted");
    }

    #[test]
    fn dirty_counters_drain_once_and_restore_keeps_the_larger_count() {
        let c = MemoryCounter::new();
        let ch = [charge(0, 10)];
        for _ in 0..3 {
            let _ = c.admit(&ch, false);
        }
        assert_eq!(c.drain_dirty(), vec![(ch[0].key, 3, 100)]);
        assert!(c.drain_dirty().is_empty());
        c.restore([(ch[0].key, 2, 100)]);
        assert_eq!(c.count(&ch[0].key, "r"), Ok(3));
        let fresh = MemoryCounter::new();
        fresh.restore([(ch[0].key, 7, 100)]);
        assert_eq!(fresh.count(&ch[0].key, "r"), Ok(7));
        fresh.sweep(Timestamp(100));
        assert!(fresh.is_empty());
    }
}
