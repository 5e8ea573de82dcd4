//! Redis unreachable, silent, or cutting the connection: the counter errs within its timeout,
//! never hangs, and works again on the next call once Redis answers.
//!
//! To cut or silence only the counter's own connection (the Redis may be shared with other
//! tests), the counter reaches Redis through a small TCP relay in this process.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use permgate_core::quota::{Admission, QuotaCounter};
use permgate_quota_redis::RedisCounter;
use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::{Space, TestResult, charge, unix_now};

#[test]
fn an_unreachable_redis_is_an_error_naming_it_without_its_password() {
    let start = Instant::now();
    let result = RedisCounter::connect("redis://:hunter2@127.0.0.1:1/0", "x:");
    let elapsed = start.elapsed();
    let Err(e) = result else {
        unreachable!("nothing listens on port 1");
    };
    let text = e.to_string();
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert!(text.contains("cannot connect to Redis at redis://:***@127.0.0.1:1/0"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn a_redis_that_never_answers_is_an_error_within_the_timeout() -> TestResult {
    // The kernel accepts connections into the backlog; nobody ever reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("redis://{}", silent.local_addr()?);
    let start = Instant::now();
    let default = RedisCounter::connect(&url, "x:");
    let elapsed = start.elapsed();
    assert!(default.is_err());
    assert!(elapsed < Duration::from_millis(2000), "the default 1 s timeout took {elapsed:?}");

    let start = Instant::now();
    assert!(RedisCounter::connect_with_timeout(&url, "x:", Duration::from_millis(200)).is_err());
    assert!(start.elapsed() < Duration::from_millis(1000), "took {:?}", start.elapsed());
    Ok(())
}

#[test]
fn after_redis_kills_the_connection_the_next_call_errs_at_most_once() -> TestResult {
    let Some(mut space) = Space::new()? else { return Ok(()) };
    let Some(relay) = Relay::start(&space.url)? else { return Ok(()) };
    let node = RedisCounter::connect(&relay.url, &space.prefix)?;
    // A lease of one unit per call, so every admission goes to Redis.
    let c = charge(0, "calls", 10, unix_now() - 10);
    assert!(matches!(node.admit(&[c], false)?, Admission::Admitted { .. }));

    for addr in relay.upstream_addrs() {
        redis::cmd("CLIENT").arg("KILL").arg("ADDR").arg(addr.to_string()).query::<()>(&mut space.admin)?;
    }
    let start = Instant::now();
    let next = node.admit(&[c], false);
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    eprintln!("the call after the kill: {next:?}");
    let mut spent = 1;
    match next {
        Ok(a) => {
            assert!(matches!(a, Admission::Admitted { .. }));
            spent += 1;
        }
        Err(e) => assert!(e.to_string().contains("lease failed"), "{e}"),
    }
    for _ in 0..3 {
        assert!(matches!(node.admit(&[c], false)?, Admission::Admitted { .. }), "the following calls reconnect");
        spent += 1;
    }
    assert_eq!(node.count(&c.key, c.rule_id)?, spent, "a failed call consumed nothing");
    space.clean()
}

#[test]
fn a_connection_that_goes_silent_errs_within_the_timeout_then_fails_fast_and_the_next_call_reconnects() -> TestResult {
    let Some(space) = Space::new()? else { return Ok(()) };
    let Some(relay) = Relay::start(&space.url)? else { return Ok(()) };
    let timeout = Duration::from_millis(300);
    let node = RedisCounter::connect_with_timeout(&relay.url, &space.prefix, timeout)?;
    let c = charge(0, "calls", 10, unix_now() - 10);
    assert!(matches!(node.admit(&[c], false)?, Admission::Admitted { .. }));

    relay.silent.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let result = node.admit(&[c], false);
    let elapsed = start.elapsed();
    let Err(e) = result else {
        unreachable!("Redis never saw the request");
    };
    assert!(elapsed >= timeout && elapsed < timeout * 5, "took {elapsed:?}");
    assert!(e.to_string().contains("timed out"), "{e}");
    // Within one timeout of it, calls fail at once: a Redis that stopped answering would
    // otherwise hold each call queued behind the counter's lock for a timeout of its own.
    let start = Instant::now();
    let again = node.admit(&[c], false);
    assert!(again.as_ref().is_err_and(|e| e.to_string().contains("timed out")), "{again:?}");
    assert!(start.elapsed() < timeout / 2, "took {:?}", start.elapsed());

    relay.silent.store(false, Ordering::Relaxed);
    std::thread::sleep(timeout);
    assert!(matches!(node.admit(&[c], false)?, Admission::Admitted { .. }), "a fresh connection");
    assert!(matches!(node.admit(&[c], true)?, Admission::Admitted { .. }));
    assert_eq!(node.count(&c.key, c.rule_id)?, 2);
    space.clean()
}

/// A TCP relay to the test Redis: records the addresses its upstream connections come from (which
/// Redis lists as the clients' addresses) and, while `silent`, drops what the counter sends.
struct Relay {
    url: String,
    silent: Arc<AtomicBool>,
    upstream: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Relay {
    /// `None` (after a notice) for a Redis not reached over TCP.
    fn start(redis_url: &str) -> Result<Option<Relay>, Box<dyn std::error::Error>> {
        let info = redis_url.into_connection_info()?;
        let ConnectionAddr::Tcp(host, port) = info.addr else {
            eprintln!("skipping: the relay needs a plain TCP Redis URL");
            return Ok(None);
        };
        let listener = TcpListener::bind("127.0.0.1:0")?;
        // Same credentials and database, through the relay.
        let target = format!("{host}:{port}");
        let url = if redis_url.contains(&target) {
            redis_url.replacen(&target, &listener.local_addr()?.to_string(), 1)
        } else {
            redis_url.replacen(&host, &listener.local_addr()?.to_string(), 1)
        };
        let relay = Relay { url, silent: Arc::default(), upstream: Arc::default() };
        let (silent, upstream) = (relay.silent.clone(), relay.upstream.clone());
        // Lives until the test process ends.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect((host.as_str(), port)) else { continue };
                if let Ok(addr) = server.local_addr() {
                    upstream.lock().unwrap_or_else(PoisonError::into_inner).push(addr);
                }
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else { continue };
                let silent = silent.clone();
                std::thread::spawn(move || pump(client, server, &silent));
                std::thread::spawn(move || pump(server2, client2, &AtomicBool::new(false)));
            }
        });
        Ok(Some(relay))
    }

    fn upstream_addrs(&self) -> Vec<SocketAddr> {
        self.upstream.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Copies `from` to `to` (dropping bytes while `silent`) until either side closes, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream, silent: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) if silent.load(Ordering::Relaxed) => {}
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
