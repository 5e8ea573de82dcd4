//! Cleaning up after tests that count in the Redis of `PERMGATE_TEST_REDIS_URL`.

/// Deletes every key under `prefix`; a test calls it at its end so it leaves nothing behind.
pub fn delete_prefix(prefix: &str) {
    let Ok(url) = std::env::var("PERMGATE_TEST_REDIS_URL") else { return };
    let cleaned = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()).and_then(|mut conn| {
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut conn)?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).query::<()>(&mut conn)?;
        }
        Ok(())
    });
    if let Err(e) = cleaned {
        eprintln!("could not delete the test keys under {prefix}: {e}");
    }
}
