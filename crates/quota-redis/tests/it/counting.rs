//! Counting: exact across nodes, all or nothing, few round trips, dry runs, windows.

use std::sync::atomic::{AtomicU64, Ordering};

use permgate_core::quota::{Admission, Passed, QuotaCounter};

use crate::{Space, TestResult, charge, unix_now};

fn admitted(a: &Admission) -> bool {
    matches!(a, Admission::Admitted { .. })
}

#[test]
fn two_nodes_hammering_one_counter_admit_exactly_its_limit() -> TestResult {
    let Some(mut space) = Space::new()? else { return Ok(()) };
    let nodes = [space.node()?, space.node()?];
    let c = charge(0, "calls", 1000, unix_now() - 10);
    let total = AtomicU64::new(0);
    let per_node = [AtomicU64::new(0), AtomicU64::new(0)];
    let failures = AtomicU64::new(0);
    std::thread::scope(|s| {
        for (node, count) in nodes.iter().zip(&per_node) {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..3000 {
                        match node.admit(&[c], false) {
                            Ok(a) if admitted(&a) => {
                                count.fetch_add(1, Ordering::Relaxed);
                                total.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(_) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        }
    });
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    let [a, b] = [per_node[0].load(Ordering::Relaxed), per_node[1].load(Ordering::Relaxed)];
    eprintln!("node A admitted {a}, node B {b}; round trips {} + {}", nodes[0].round_trips(), nodes[1].round_trips());
    assert_eq!(total.load(Ordering::Relaxed), 1000, "exactly the limit, never more");
    assert_eq!(space.handed_out(&c)?, Some(1000));
    for node in &nodes {
        assert_eq!(node.count(&c.key, c.rule_id)?, 1000, "no node holds unspent units");
        assert_eq!(node.admit(&[c], false)?, Admission::Exhausted { index: 0 });
    }
    space.clean()
}

#[test]
fn a_call_denied_by_one_charge_consumes_nothing_from_the_others() -> TestResult {
    let Some(mut space) = Space::new()? else { return Ok(()) };
    let node = space.node()?;
    let start = unix_now() - 10;
    let charges = [charge(0, "a", 10, start), charge(1, "b", 3, start)];
    // B's third unit takes its count to its limit of 3: 100 % (80 % of 3 is 3 as well).
    for (left, passed) in [([9, 2], vec![]), ([8, 1], vec![]), ([7, 0], vec![(1, 100)])] {
        assert_eq!(
            node.admit(&charges, false)?,
            Admission::Admitted { remaining: left.to_vec().into(), passed: passed.into() }
        );
    }
    assert_eq!(node.admit(&charges, false)?, Admission::Exhausted { index: 1 });
    assert_eq!(node.count(&charges[0].key, "a")?, 3, "A's unit was given back");
    assert_eq!(node.count(&charges[1].key, "b")?, 3);
    assert_eq!(space.handed_out(&charges[0])?, Some(4), "A holds one leased, unspent unit");

    let trips = node.round_trips();
    assert_eq!(node.admit(&charges, false)?, Admission::Exhausted { index: 1 });
    assert_eq!(node.round_trips(), trips, "a counter seen at its limit is denied without asking Redis");
    assert_eq!(
        node.admit(&charges[..1], false)?,
        Admission::Admitted { remaining: vec![6].into(), passed: Passed::new() },
        "A alone still fits"
    );
    assert_eq!(node.count(&charges[0].key, "a")?, 4);
    space.clean()
}

#[test]
fn units_leased_for_a_rule_never_admit_calls_of_the_rule_a_reload_gives_its_index() -> TestResult {
    let Some(mut space) = Space::new()? else { return Ok(()) };
    let node = space.node()?;
    let start = unix_now() - 10;
    let talk = charge(0, "talk_daily", 1000, start);
    assert!(admitted(&node.admit(&[talk], false)?));
    assert_eq!(space.handed_out(&talk)?, Some(62), "a lease of 62 units, one spent");
    // A catalog reload removed a rule before it: rule 0 is now `map_daily`, whose limit the
    // other nodes have used up.
    let map = charge(0, "map_daily", 1000, start);
    redis::cmd("SET").arg(space.key(&map)).arg(1000).query::<()>(&mut space.admin)?;
    assert_eq!(node.admit(&[map], false)?, Admission::Exhausted { index: 0 }, "talk_daily's units are not map_daily's");
    assert_eq!(node.admit(&[map], true)?, Admission::Exhausted { index: 0 });
    assert_eq!(node.count(&map.key, map.rule_id)?, 1000);
    assert_eq!(space.handed_out(&talk)?, Some(62));
    space.clean()
}

#[test]
fn a_redis_that_lost_its_counts_never_makes_remaining_exceed_the_limit() -> TestResult {
    let Some(mut space) = Space::new()? else { return Ok(()) };
    let node = space.node()?;
    let c = charge(0, "calls", 100, unix_now() - 10);
    assert_eq!(node.admit(&[c], false)?, Admission::Admitted { remaining: vec![99].into(), passed: Passed::new() });
    assert_eq!(space.handed_out(&c)?, Some(6), "a lease of 6 units, one spent");
    // Redis restarts without its data (or is flushed): the count starts over.
    space.delete_keys()?;
    assert_eq!(node.admit(&[c], true)?, Admission::Admitted { remaining: vec![99].into(), passed: Passed::new() });
    let Admission::Admitted { remaining, .. } = node.admit(&[c], false)? else { unreachable!("far from the limit") };
    assert!(remaining.iter().all(|&r| r < 100), "remaining {remaining:?} of a limit of 100");
    assert_eq!(space.handed_out(&c)?, Some(6), "the units held before were dropped; a new lease was taken");
    space.clean()
}

/// Two nodes, four threads each, call one counter until it is spent: its 80 % and 100 % are each
/// reported to exactly one admitted call, whichever node made it (each node's own estimate of
/// what is left jumps by the other's leases, and would pass or repeat them).
#[test]
fn two_nodes_report_each_threshold_of_a_counter_exactly_once() -> TestResult {
    let Some(space) = Space::new()? else { return Ok(()) };
    let nodes = [space.node()?, space.node()?];
    let c = charge(0, "calls", 1_000, unix_now() - 10);
    let reported = std::sync::Mutex::new(Vec::new());
    let admitted = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for i in 0..8 {
            let (node, reported, admitted) = (&nodes[i % 2], &reported, &admitted);
            scope.spawn(move || {
                while let Ok(Admission::Admitted { passed, .. }) = node.admit(&[c], false) {
                    admitted.fetch_add(1, Ordering::Relaxed);
                    reported.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(&passed);
                }
            });
        }
    });
    let mut reported = reported.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    reported.sort_unstable();
    assert_eq!(reported, vec![(0, 80), (0, 100)]);
    // A node stops at the first call its counter refuses; units the other still holds are
    // spent or not, so at most the limit was admitted.
    assert!(admitted.load(Ordering::Relaxed) <= 1_000);
    space.clean()
}

/// The same, one call at a time on alternating nodes, each call checked first with a dry run (as
/// a gateway's `consume: false` check would): each node then knows Redis's count, and an alert
/// taken from a node's estimate of what is left (Redis's count less its own unspent units) fired
/// 80 % on both nodes (checked when the alerts were computed so).
#[test]
fn alternating_nodes_checked_before_each_call_report_each_threshold_once() -> TestResult {
    let Some(space) = Space::new()? else { return Ok(()) };
    let nodes = [space.node()?, space.node()?];
    let c = charge(0, "calls", 1_000, unix_now() - 10);
    let (mut reported, mut admitted, mut refused) = (Vec::new(), 0, [false, false]);
    for i in 0.. {
        if refused == [true, true] {
            break;
        }
        let node = &nodes[i % 2];
        node.admit(&[c], true)?;
        match node.admit(&[c], false)? {
            Admission::Admitted { passed, .. } => {
                admitted += 1;
                reported.extend(passed.iter().map(|&(_, percent)| percent));
            }
            Admission::Exhausted { .. } => refused[i % 2] = true,
        }
    }
    assert_eq!(reported, vec![80, 100]);
    assert_eq!(admitted, 1_000, "each node spends what it holds before it is refused");
    space.clean()
}

#[test]
fn far_from_the_limit_a_call_costs_at_most_a_twentieth_of_a_round_trip() -> TestResult {
    let Some(space) = Space::new()? else { return Ok(()) };
    let node = space.node()?;
    let c = charge(0, "calls", 10_000_000, unix_now() - 10);
    for _ in 0..10_000 {
        assert!(admitted(&node.admit(&[c], false)?));
    }
    let (trips, admissions) = (node.round_trips(), node.admissions());
    let ratio = trips as f64 / admissions as f64;
    eprintln!("{trips} round trips (connecting included) for {admissions} admissions: {ratio:.4} per call");
    assert_eq!(admissions, 10_000);
    assert!(trips <= 500 && ratio <= 0.05, "{trips} round trips");
    assert_eq!(node.count(&c.key, c.rule_id)?, 10_000);
    space.clean()
}

#[test]
fn a_dry_run_changes_nothing_in_redis() -> TestResult {
    let Some(mut space) = Space::new()? else { return Ok(()) };
    let (a, b) = (space.node()?, space.node()?);
    let c = charge(0, "calls", 5, unix_now() - 10);
    assert_eq!(a.admit(&[c], true)?, Admission::Admitted { remaining: vec![4].into(), passed: Passed::new() });
    assert_eq!(space.keys()?, Vec::<String>::new(), "no key is written");

    assert!(admitted(&a.admit(&[c], false)?));
    assert!(admitted(&a.admit(&[c], false)?));
    let before = (space.handed_out(&c)?, space.keys()?);
    assert_eq!(a.admit(&[c], true)?, Admission::Admitted { remaining: vec![2].into(), passed: Passed::new() });
    assert_eq!(
        b.admit(&[c], true)?,
        Admission::Admitted { remaining: vec![2].into(), passed: Passed::new() },
        "another node sees the same"
    );
    assert_eq!(
        b.admit(&[c, c], true)?,
        Admission::Admitted { remaining: vec![1, 1].into(), passed: Passed::new() },
        "two charges take two"
    );
    assert_eq!(b.admit(&[c, c, c, c], true)?, Admission::Exhausted { index: 3 }, "three are left, not four");
    assert_eq!((space.handed_out(&c)?, space.keys()?), before);
    assert_eq!(a.count(&c.key, c.rule_id)?, 2);

    for _ in 0..3 {
        assert!(admitted(&b.admit(&[c], false)?));
    }
    let before = space.handed_out(&c)?;
    assert_eq!(before, Some(5));
    assert_eq!(a.admit(&[c], true)?, Admission::Exhausted { index: 0 });
    assert_eq!(b.admit(&[c], true)?, Admission::Exhausted { index: 0 });
    assert_eq!(space.handed_out(&c)?, before);
    assert_eq!(a.admissions(), 2, "dry runs are not admissions");
    space.clean()
}

#[test]
fn each_window_of_a_rule_and_scope_counts_separately() -> TestResult {
    let Some(mut space) = Space::new()? else { return Ok(()) };
    let node = space.node()?;
    let first = charge(0, "calls", 2, unix_now() - 70);
    let second = charge(0, "calls", 2, first.window_end);
    assert!(admitted(&node.admit(&[first], false)?));
    assert!(admitted(&node.admit(&[first], false)?));
    assert_eq!(node.admit(&[first], false)?, Admission::Exhausted { index: 0 });
    assert_eq!(
        node.admit(&[second], false)?,
        Admission::Admitted { remaining: vec![1].into(), passed: Passed::new() },
        "a new window starts at 0"
    );
    assert_eq!(node.admit(&[first], false)?, Admission::Exhausted { index: 0 }, "the old window stays spent");
    assert_eq!((node.count(&first.key, "calls")?, node.count(&second.key, "calls")?), (2, 1));
    assert_eq!((space.handed_out(&first)?, space.handed_out(&second)?), (Some(2), Some(1)));

    let ttl: i64 = redis::cmd("TTL").arg(space.key(&second)).query(&mut space.admin)?;
    let longest = second.window_end - unix_now() + 3600;
    assert!((3600..=longest).contains(&ttl), "TTL {ttl}: until the window ends, plus an hour");
    space.clean()
}
