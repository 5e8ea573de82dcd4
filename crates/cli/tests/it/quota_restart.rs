//! Quota counters survive restarts: a clean stop saves them at once; a `kill -9` loses at most
//! the last second of counting (they are saved about once a second, never per call).

use std::time::{Duration, Instant};

use permgate_core::ports::QuotaStore;
use permgate_core::time::{Clock, SystemClock};
use permgate_store_sqlite::SqliteStore;
use permgate_testkit::scratch_dir;
use serde_json::json;

use crate::{Server, call, start};

const ADMIN: &str = "restart-admin-token-0123456789";
const SECRET: &str = "restart-jwt-secret";

fn node(dir: &std::path::Path) -> Server {
    start(dir, &[("PERMGATE_ADMIN_TOKEN", ADMIN), ("PERMGATE_JWT_SECRET", SECRET)])
}

async fn profile_calls(node: &Server, token: &str, n: usize) {
    let body = json!({"method": "GET", "path": "/v1/api/talk/profile", "headers": {"authorization": format!("Bearer {token}")}});
    for _ in 0..n {
        let (_, d) = call(reqwest::Method::POST, format!("{}/v1/check", node.base), None, Some(body.clone())).await;
        assert_eq!(d["allow"], true, "{d}");
    }
}

async fn used(node: &Server, dev: &str, app: i64) -> u64 {
    let (_, usage) = call(reqwest::Method::GET, format!("{}/v1/apps/{app}/usage", node.base), Some(dev), None).await;
    usage["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["rule"] == "talk_profile_daily")
        .and_then(|r| r["used"].as_u64())
        .unwrap_or(999)
}

/// Waits (up to 5 s) until the saved count of `talk_profile_daily` reaches `n`.
fn wait_saved(dir: &std::path::Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let saved = SqliteStore::open(&dir.join("permgate.db"))
            .and_then(|s| s.load_counters(SystemClock.now()))
            .map(|cs| cs.iter().filter(|c| c.rule_id == "talk_profile_daily").map(|c| c.count).sum::<u64>())
            .unwrap_or(0);
        if saved >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {saved} of {n} counts saved after 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn counts_survive_a_kill_and_a_clean_stop() {
    let dir = scratch_dir("quota-restart");
    let mut a = node(&dir.0);
    let (dev, id, token) = crate::developer_app(&a.base, ADMIN, SECRET, "u1", &["profile_nickname"]).await;

    profile_calls(&a, &token, 5).await;
    assert_eq!(used(&a, &dev, id).await, 5);
    wait_saved(&dir.0, 5);
    let _ = a.child.kill(); // SIGKILL
    let _ = a.child.wait();
    drop(a);

    let b = node(&dir.0);
    assert_eq!(used(&b, &dev, id).await, 5, "counted before the kill and saved");
    profile_calls(&b, &token, 3).await;
    let stopped = std::process::Command::new("kill").args(["-TERM", &b.child.id().to_string()]).status();
    assert!(stopped.is_ok_and(|s| s.success()));
    let mut b = b;
    let _ = b.child.wait();
    drop(b);

    let c = node(&dir.0);
    assert_eq!(used(&c, &dev, id).await, 8, "a clean stop saves the last counts at once");
}
