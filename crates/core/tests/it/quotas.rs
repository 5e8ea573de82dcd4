//! Quota counting through `decide_and_count`, over a small catalog with tiny limits and a manual
//! clock that crosses Seoul midnight and month ends.

use std::sync::Arc;

use permgate_core::catalog::Catalog;
use permgate_core::credential::{TokenVerifier, mint_user_token};
use permgate_core::decision::{CounterFailure, Decision, Query, decide_and_count};
use permgate_core::model::*;
use permgate_core::quota::{Admission, Charge, CounterError, CounterKey, MemoryCounter, QuotaCounter};
use permgate_core::secret;
use permgate_core::snapshot::Snapshot;
use permgate_core::time::Timestamp;

const CATALOG: &str = r#"
version = "quota-test"
time_zone = "Asia/Seoul"

[[products]]
id = "p"
name = "P"

[[permissions]]
id = "boost"
name = "Boost"
obtained_by = "operator"
grants_quota = true
raises_quota_rules = ["daily"]

[[quota_rules]]
id = "daily"
name = "Searches a day"
period = "day"
scope = "app"
limit = 3

[[quota_rules]]
id = "monthly"
name = "Everything a month"
period = "month"
scope = "app"
limit = 5
all_apis = true
exclude_categories = ["msg", "map", "burst"]

[[quota_rules]]
id = "sender"
name = "Per sender"
period = "day"
scope = "user"
limit = 2
error = { code = -532 }

[[quota_rules]]
id = "recipient"
name = "Per recipient"
period = "day"
scope = "recipient"
limit = 2
error = { code = -533 }

[[quota_rules]]
id = "pair"
name = "Per pair"
period = "day"
scope = "pair"
limit = 1
error = { code = -536 }

[[quota_rules]]
id = "map"
name = "Map"
period = "day"
scope = "app"
limit = 1
error = { status = 429 }

[[apis]]
id = "search"
name = "Search"
product = "p"
category = "search"
method = "GET"
path = "/search"
key_kinds = ["rest_api"]
quota_rules = ["daily"]

[[apis]]
id = "send"
name = "Send"
product = "p"
category = "msg"
method = "POST"
path = "/send"
key_kinds = ["user_token"]
recipient_from = "receiver_uuids"
quota_rules = ["sender", "recipient", "pair"]

[[apis]]
id = "map"
name = "Map"
product = "p"
category = "map"
method = "GET"
path = "/map"
key_kinds = ["rest_api"]
quota_rules = ["map"]
"#;

/// 2026-11-28 23:59:00 in Seoul.
const LATE: Timestamp = Timestamp(1_795_877_940);
const SECRET: &[u8] = b"quota-test";

fn record(grants: Vec<Grant>, paid: Option<PaidUsage>) -> AppRecord {
    AppRecord {
        app: App {
            id: AppId(1),
            name: "a".into(),
            company_name: "c".into(),
            category: "x".into(),
            owner: AccountId(9),
            status: AppStatus::Active,
            created_at: LATE,
            original: None,
            status_before_block: None,
        },
        owner_blocked: false,
        members: vec![],
        keys: vec![Key {
            id: KeyId(1),
            kind: KeyKind::RestApi,
            value: Some("rest".into()),
            hash: secret::hash("rest"),
            hint: "rest".into(),
            platforms: Platforms::default(),
            created_at: LATE,
        }],
        products: vec![],
        grants,
        paid,
        business: None,
        consent_items: Vec::new(),
        eligibility: None,
        channels: Vec::new(),
    }
}

fn world(grants: Vec<Grant>, paid: Option<PaidUsage>) -> Snapshot {
    let catalog = Catalog::parse("quota.toml", CATALOG).unwrap_or_else(|e| unreachable!("{e}"));
    Snapshot::build(Arc::new(catalog), Arc::new(TokenVerifier::new(Some(SECRET))), [record(grants, paid)])
}

fn call(s: &Snapshot, c: &dyn QuotaCounter, path: &str, now: Timestamp) -> Decision {
    let q = Query { method: "GET", path, authorization: Some("KakaoAK rest"), ..Query::default() };
    decide_and_count(s, &q, c, now, true, CounterFailure::Closed)
}

fn send(s: &Snapshot, c: &dyn QuotaCounter, user: &str, to: &str, now: Timestamp) -> Decision {
    send_to(s, c, user, &[to], now)
}

fn send_to(s: &Snapshot, c: &dyn QuotaCounter, user: &str, recipients: &[&str], now: Timestamp) -> Decision {
    let token = mint_user_token(SECRET, AppId(1), user, &[], Timestamp(now.0 + 600)).unwrap_or_default();
    let auth = format!("Bearer {token}");
    let q = Query { method: "POST", path: "/send", authorization: Some(&auth), recipients, ..Query::default() };
    decide_and_count(s, &q, c, now, true, CounterFailure::Closed)
}

/// A recipient named several times in one message is one recipient: checked and counted once
/// (each name was checked against the count before the call and then counted, past the limit).
#[test]
fn a_recipient_named_twice_in_one_message_counts_once() {
    let (s, c) = (world(vec![], None), MemoryCounter::new());
    assert!(send_to(&s, &c, "u1", &["r1", "r1", "r1"], LATE).allow);
    assert_eq!(send(&s, &c, "u1", "r1", LATE).code, -536, "the pair's one message a day is spent");
    assert!(send(&s, &c, "u2", "r1", LATE).allow, "the recipient's second message of two");
    assert_eq!(send_to(&s, &c, "u3", &["r2", "r1", "r2"], LATE).code, -533, "r1 has had its two");
}

#[test]
fn a_daily_quota_runs_out_and_comes_back_at_seoul_midnight() {
    let (s, c) = (world(vec![], None), MemoryCounter::new());
    let remaining: Vec<u64> = (0..3).map(|_| call(&s, &c, "/search", LATE).quota.map_or(99, |q| q.remaining)).collect();
    assert_eq!(remaining, vec![2, 1, 0]);
    let d = call(&s, &c, "/search", LATE);
    assert_eq!((d.allow, d.status, d.code), (false, 400, -10));
    assert_eq!(d.msg.as_deref(), Some("API limit has been exceeded."));
    assert_eq!(d.retry_after, Some(60), "one minute to midnight in Seoul");
    let q = d.quota.clone().unwrap_or_else(|| unreachable!());
    assert_eq!(
        (q.rule, q.limit, q.remaining, q.reset_at.to_rfc3339()),
        ("daily", 3, 0, "2026-11-28T15:00:00Z".to_owned())
    );
    assert_eq!(d.error_body()["reset_at"], "2026-11-28T15:00:00Z");
    let midnight = Timestamp(LATE.0 + 60);
    assert!(call(&s, &c, "/search", midnight).allow, "a new Seoul day");
}

#[test]
fn the_monthly_total_spans_days_and_resets_on_the_first_in_seoul() {
    let (s, c) = (world(vec![], None), MemoryCounter::new());
    // Two days of three searches: the fifth search of the month is the last.
    let mut results = Vec::new();
    for day in 0..2 {
        for _ in 0..3 {
            results.push(call(&s, &c, "/search", Timestamp(LATE.0 - 86_400 * (1 - day))).code);
        }
    }
    assert_eq!(results, vec![0, 0, 0, 0, 0, -10]);
    let d = call(&s, &c, "/search", LATE);
    assert_eq!(d.quota.map(|q| q.rule), Some("monthly"));
    // 2026-12-01 00:00 in Seoul is 2026-11-30 15:00 UTC.
    let december = Timestamp::parse_rfc3339("2026-11-30T15:00:00Z").unwrap_or(LATE);
    assert!(call(&s, &c, "/search", december).allow);
}

#[test]
fn denied_calls_and_dry_runs_consume_nothing() {
    let (s, c) = (world(vec![], None), MemoryCounter::new());
    let q = Query { method: "GET", path: "/search", authorization: Some("KakaoAK rest"), ..Query::default() };
    for _ in 0..5 {
        let d = decide_and_count(&s, &q, &c, LATE, false, CounterFailure::Closed);
        assert_eq!(d.quota.map(|q| q.remaining), Some(2), "what would be left had it counted");
    }
    let bad = Query { authorization: Some("KakaoAK nope"), ..q };
    assert_eq!(decide_and_count(&s, &bad, &c, LATE, true, CounterFailure::Closed).code, -401);
    assert_eq!(call(&s, &c, "/search", LATE).quota.map(|q| q.remaining), Some(2), "nothing was counted before");
}

#[test]
fn message_quotas_count_per_sender_recipient_and_pair_with_their_codes() {
    let (s, c) = (world(vec![], None), MemoryCounter::new());
    assert!(send(&s, &c, "u1", "r1", LATE).allow);
    assert_eq!(send(&s, &c, "u1", "r1", LATE).code, -536, "one message a day per pair");
    assert!(send(&s, &c, "u2", "r1", LATE).allow);
    assert_eq!(send(&s, &c, "u3", "r1", LATE).code, -533, "two messages a day per recipient");
    assert!(send(&s, &c, "u1", "r2", LATE).allow);
    let d = send(&s, &c, "u1", "r3", LATE);
    assert_eq!((d.code, d.status), (-532, 400), "two messages a day per sender");
}

#[test]
fn a_map_quota_answers_429() {
    let (s, c) = (world(vec![], None), MemoryCounter::new());
    assert!(call(&s, &c, "/map", LATE).allow);
    let d = call(&s, &c, "/map", LATE);
    assert_eq!((d.status, d.code), (429, -10));
}

fn boost(limit: u64, expires_at: Option<Timestamp>) -> Grant {
    Grant {
        id: 1,
        app_id: AppId(1),
        permission: "boost".into(),
        key_id: None,
        source: GrantSource::Operator,
        granted_by: None,
        granted_at: LATE,
        expires_at,
        params: serde_json::json!({"limit": limit}),
        reason: "r".into(),
    }
}

#[test]
fn a_quota_grant_raises_the_limit_until_it_expires() {
    let expires = Timestamp(LATE.0 + 30);
    let (s, c) = (world(vec![boost(4, Some(expires))], None), MemoryCounter::new());
    let codes: Vec<i32> = (0..5).map(|_| call(&s, &c, "/search", LATE).code).collect();
    assert_eq!(codes, vec![0, 0, 0, 0, -10]);
    assert_eq!(call(&s, &c, "/search", LATE).quota.map(|q| q.limit), Some(4));
    assert_eq!(call(&s, &c, "/search", expires).quota.map(|q| q.limit), Some(3), "the default once expired");
}

#[test]
fn paid_usage_continues_past_the_free_limit_until_the_cap() {
    let paid = PaidUsage { rules: vec!["daily".into()], daily_cap: 2, monthly_cap: 3 };
    let (s, c) = (world(vec![], Some(paid)), MemoryCounter::new());
    let day1: Vec<(i32, bool)> = (0..6)
        .map(|_| call(&s, &c, "/search", Timestamp(LATE.0 - 3600)))
        .map(|d| (d.code, d.quota.is_some_and(|q| q.paid)))
        .collect();
    assert_eq!(day1, vec![(0, false), (0, false), (0, false), (0, true), (0, true), (-11, true)]);
    // The calls per rule (`daily_by_rule`) count the paid calls under their rule too; the monthly
    // total of all APIs, which they were not counted against, only the free ones.
    let calls = |rule: &str| {
        let index = s.catalog().quota_rules.iter().position(|r| r.id == rule).and_then(|i| u32::try_from(i).ok());
        let meter = s.app(AppId(1)).map(|a| a.meter.lock().clone()).unwrap_or_default();
        meter.rules().iter().find(|r| Some(r.rule) == index).map_or(0, |r| r.calls)
    };
    assert_eq!((calls("daily"), calls("monthly")), (5, 3));
    // Paid calls were not deducted from the monthly total: two free calls are left this month.
    let next_day = Timestamp(LATE.0 + 3600);
    let day2: Vec<i32> = (0..3).map(|_| call(&s, &c, "/search", next_day).code).collect();
    assert_eq!(day2, vec![0, 0, -10]);
    assert_eq!(call(&s, &c, "/search", next_day).quota.map(|q| q.rule), Some("monthly"));
}

/// A paid rule's free limit and the monthly total of all APIs used up by the same call: paid
/// usage takes the call on (paid calls are not counted in the total), whichever of the two
/// rules the catalog lists first.
#[test]
fn paid_usage_passes_a_used_up_total_listed_before_its_rule() {
    let daily =
        "[[quota_rules]]\nid = \"daily\"\nname = \"Searches a day\"\nperiod = \"day\"\nscope = \"app\"\nlimit = 3\n";
    let text = CATALOG.replacen(daily, "", 1).replacen("limit = 5\nall_apis = true", "limit = 3\nall_apis = true", 1);
    let text =
        text.replacen("[[quota_rules]]\nid = \"sender\"", &format!("{daily}\n[[quota_rules]]\nid = \"sender\""), 1);
    let catalog = Catalog::parse("quota.toml", &text).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(catalog.quota_rules.iter().take(2).map(|r| r.id.as_str()).collect::<Vec<_>>(), ["monthly", "daily"]);
    let paid = PaidUsage { rules: vec!["daily".into()], daily_cap: 10, monthly_cap: 10 };
    let s =
        Snapshot::build(Arc::new(catalog), Arc::new(TokenVerifier::new(Some(SECRET))), [record(vec![], Some(paid))]);
    let c = MemoryCounter::new();
    let calls: Vec<(i32, bool)> =
        (0..5).map(|_| call(&s, &c, "/search", LATE)).map(|d| (d.code, d.quota.is_some_and(|q| q.paid))).collect();
    assert_eq!(calls, vec![(0, false), (0, false), (0, false), (0, true), (0, true)]);
}

#[test]
fn alerts_fire_once_at_80_and_100_percent_of_app_wide_rules() {
    let (s, c) = (world(vec![boost(10, None)], None), MemoryCounter::new());
    let mut alerts = Vec::new();
    for _ in 0..10 {
        let d = call(&s, &c, "/search", LATE);
        alerts.extend(d.alerts.into_iter().map(|a| (a.rule, a.percent)));
    }
    assert_eq!(alerts, vec![("monthly".to_owned(), 80), ("monthly".to_owned(), 100)]);
}

/// A shared counter's answer is its node's estimate, and it reports which thresholds a call
/// passed: alerts come from that report alone, whatever `remaining` says (here more than the
/// limit, as a Redis that lost its count could make it), and for any limit.
struct Estimate(u64, Vec<(u32, u8)>);

impl QuotaCounter for Estimate {
    fn admit(&self, charges: &[Charge<'_>], _: bool) -> Result<Admission, CounterError> {
        Ok(Admission::Admitted { remaining: charges.iter().map(|_| self.0).collect(), passed: self.1.clone().into() })
    }
    fn count(&self, _: &CounterKey, _: &str) -> Result<u64, CounterError> {
        Ok(0)
    }
}

#[test]
fn alerts_are_the_thresholds_the_counter_says_a_call_passed() {
    let q = Query { method: "GET", path: "/search", authorization: Some("KakaoAK rest"), ..Query::default() };
    // `/search` is charged `daily` (raised to `limit` by the boost), then `monthly` (5).
    for limit in [10, u64::MAX] {
        let s = world(vec![boost(limit, None)], None);
        for (left, passed, expected) in [
            (limit.saturating_add(4), vec![], vec![]),
            (0, vec![], vec![]),
            (limit / 5, vec![(0, 80)], vec![("daily", limit, 80)]),
            (0, vec![(1, 100)], vec![("monthly", 5, 100)]),
            (0, vec![(0, 100), (1, 80)], vec![("daily", limit, 100), ("monthly", 5, 80)]),
        ] {
            let d = decide_and_count(&s, &q, &Estimate(left, passed), LATE, true, CounterFailure::Closed);
            assert!(d.allow, "{limit} {left}: {d:?}");
            let alerts: Vec<(&str, u64, u8)> = d.alerts.iter().map(|a| (a.rule.as_str(), a.limit, a.percent)).collect();
            assert_eq!(alerts, expected, "{limit} {left}");
        }
    }
}

struct Broken;

impl QuotaCounter for Broken {
    fn admit(&self, _: &[Charge<'_>], _: bool) -> Result<Admission, CounterError> {
        Err(CounterError("redis://cache:6379 did not answer".into()))
    }
    fn count(&self, _: &CounterKey, _: &str) -> Result<u64, CounterError> {
        Err(CounterError("down".into()))
    }
}

#[test]
fn an_unavailable_counter_fails_closed_by_default_or_open_when_configured() {
    let s = world(vec![], None);
    let q = Query { method: "GET", path: "/search", authorization: Some("KakaoAK rest"), ..Query::default() };
    let closed = decide_and_count(&s, &q, &Broken, LATE, true, CounterFailure::Closed);
    assert_eq!((closed.allow, closed.status, closed.code), (false, 503, -1));
    let open = decide_and_count(&s, &q, &Broken, LATE, true, CounterFailure::Open);
    assert!(open.allow);
    assert!(open.reasons.iter().any(|r| r.contains("fail open")), "{:?}", open.reasons);
}

/// Eight threads call one app at once while the app is patched twice meanwhile (as a grant or a
/// key change would): the app's counters live in its entry, and exactly the limit is admitted.
#[test]
fn concurrent_calls_on_one_app_admit_exactly_the_limit_across_patches() {
    use permgate_core::snapshot::SharedSnapshot;
    use std::sync::atomic::{AtomicU64, Ordering};
    // The monthly total (5) would bind first: here it is large, and the daily limit of 2,500 binds.
    let text = CATALOG.replace("limit = 5\nall_apis", "limit = 1000000\nall_apis");
    let catalog = Catalog::parse("quota.toml", &text).unwrap_or_else(|e| unreachable!("{e}"));
    let snapshot = Snapshot::build(
        Arc::new(catalog),
        Arc::new(TokenVerifier::new(Some(SECRET))),
        [record(vec![boost(2_500, None)], None)],
    );
    let shared = SharedSnapshot::new(snapshot);
    let counter = MemoryCounter::new();
    let admitted = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..1_000 {
                    let d = call(&shared.read(), &counter, "/search", LATE);
                    if d.allow {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        scope.spawn(|| {
            for _ in 0..2 {
                std::thread::sleep(std::time::Duration::from_millis(1));
                shared.patch(|s| s.upsert_app(&record(vec![boost(2_500, None)], None)));
            }
        });
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 2_500);
    let next = call(&shared.read(), &counter, "/search", LATE);
    assert_eq!((next.code, next.quota.map(|q| (q.rule, q.remaining))), (-10, Some(("daily", 0))));
}

/// A call counted without an explanation takes the decision's short path (every rule of
/// `/search` counts per app, and the app has no paid usage); with one, the general path. Both
/// must answer and count alike, call for call: across a raised limit that expires, the 80 % and
/// 100 % alerts, used-up rules (the short path hands those to the general one), Seoul midnight
/// and the month's end; and, with the daily limit raised to the monthly one, rules with as much
/// left as each other (the first is the one answered).
#[test]
fn the_short_counting_path_answers_and_counts_as_the_general_one() {
    let expires = Timestamp(LATE.0 + 30);
    for boost in [boost(4, Some(expires)), boost(5, None)] {
        let worlds = [world(vec![boost.clone()], None), world(vec![boost], None)];
        let counter = MemoryCounter::new();
        // 2026-11-30 23:59:00 in Seoul: a minute before the month ends.
        let month_end = Timestamp(LATE.0 + 2 * 86_400);
        let times = [LATE, LATE, LATE, LATE, LATE, expires, Timestamp(LATE.0 + 60), Timestamp(LATE.0 + 61), month_end];
        let mut answers: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for now in times.into_iter().chain([Timestamp(month_end.0 + 60); 3]) {
            for (explain, (s, out)) in [false, true].into_iter().zip(worlds.iter().zip(&mut answers)) {
                let q = Query {
                    method: "GET",
                    path: "/search",
                    authorization: Some("KakaoAK rest"),
                    explain,
                    ..Query::default()
                };
                let d = decide_and_count(s, &q, &counter, now, true, CounterFailure::Closed);
                let alerts: Vec<_> =
                    d.alerts.iter().map(|a| (a.rule.as_str(), a.percent, a.limit, a.reset_at)).collect();
                out.push(format!("{} {} {:?} {:?} {:?} {alerts:?}", d.allow, d.code, d.msg, d.quota, d.retry_after));
            }
        }
        assert_eq!(answers[0], answers[1]);
        let refusals = answers[0].iter().filter(|a| a.starts_with("false")).count();
        assert_eq!(refusals, 4, "the calls past a limit were refused: {answers:?}");
        let meters = worlds.each_ref().map(|s| {
            let m = s.app(AppId(1)).map(|a| a.meter.lock().clone()).unwrap_or_default();
            (m.rules().to_vec(), m.calls, m.last_call)
        });
        assert_eq!(meters[0], meters[1], "the same counts and activity in both meters");
    }
}

/// A message to several recipients is one call of each rule that counts it (the per-rule calls
/// the usage shows): it was counted once per recipient for the recipient and pair rules.
#[test]
fn a_message_to_several_recipients_is_one_call_of_each_rule() {
    let s = world(Vec::new(), None);
    let counter = MemoryCounter::new();
    let d = send_to(&s, &counter, "alice", &["bob", "carol"], LATE);
    assert!(d.allow, "{d:?}");
    let catalog = s.catalog();
    let calls = |rule: &str| {
        let index = catalog.quota_rules.iter().position(|r| r.id == rule).unwrap_or(usize::MAX);
        let meter = s.app(AppId(1)).map(|a| a.meter.lock().clone()).unwrap_or_default();
        meter.rules().iter().find(|r| r.rule as usize == index).map_or(0, |r| r.calls)
    };
    assert_eq!([calls("sender"), calls("recipient"), calls("pair")], [1, 1, 1]);
}
