//! A PostgreSQL schema of its own for one test, on the server `PERMGATE_TEST_DATABASE_URL` names.
//! Without that variable, PostgreSQL tests skip with a notice; with it set but the server
//! unreachable, they fail. Every helper works from async tests too: the synchronous driver runs
//! on a thread of its own (it cannot block a thread that drives async tasks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The variable naming the test server, e.g. `postgres://postgres@127.0.0.1:5432/test`.
pub const DATABASE_URL_VAR: &str = "PERMGATE_TEST_DATABASE_URL";

/// A fresh, empty schema, dropped with everything in it when this is dropped.
#[derive(Debug)]
pub struct PgSchema {
    /// The test server's URL with `search_path` set to this schema: a store connected to it
    /// creates and finds its tables there.
    pub url: String,
    /// The schema's name: lowercase ASCII letters, digits and `_`.
    pub name: String,
    /// The test server's URL as given.
    base: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let dropped = on_own_thread(|| {
            postgres::Client::connect(&self.base, postgres::NoTls)
                .and_then(|mut c| c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)))
        });
        if let Err(e) = dropped {
            eprintln!("could not drop the test schema {}: {e}", self.name);
        }
    }
}

/// Creates a schema for one test, or `None` (with a notice) when `PERMGATE_TEST_DATABASE_URL`
/// is not set.
pub fn fresh_schema(label: &str) -> Option<PgSchema> {
    let Ok(base) = std::env::var(DATABASE_URL_VAR) else {
        eprintln!("skipping: {DATABASE_URL_VAR} is not set");
        return None;
    };
    let name = schema_name(label);
    let created = on_own_thread(|| {
        postgres::Client::connect(&base, postgres::NoTls)
            .and_then(|mut c| c.batch_execute(&format!("CREATE SCHEMA {name}")))
    });
    if let Err(e) = created {
        unreachable!("{DATABASE_URL_VAR} is set but schema {name} could not be created there: {e}");
    }
    let url = with_search_path(&base, &name);
    Some(PgSchema { url, name, base })
}

/// Cuts every connection whose `application_name` is `name` (tests name their nodes' connections
/// after their schema) and waits until each is gone; returns how many were cut.
pub fn terminate_connections(name: &str) -> u64 {
    let Ok(base) = std::env::var(DATABASE_URL_VAR) else { return 0 };
    let cut = on_own_thread(|| {
        postgres::Client::connect(&base, postgres::NoTls).and_then(|mut c| {
            c.query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&name],
            )?
            .try_get::<_, i64>(0)
        })
    });
    match cut {
        Ok(n) => u64::try_from(n).unwrap_or(0),
        Err(e) => unreachable!("cannot cut the connections of {name}: {e}"),
    }
}

/// Runs `f` on a thread of its own and waits for it.
fn on_own_thread<T: Send>(f: impl FnOnce() -> Result<T, postgres::Error> + Send) -> Result<T, String> {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(result) => result.map_err(|e| format!("{e:?}")),
        Err(_) => Err("the database thread panicked".into()),
    })
}

/// `test_<label>_<pid>_<counter>_<time>` (`pg_` is reserved): unique across concurrent test processes and runs, and
/// short enough that `permgate_changes_<name>` stays a whole identifier.
fn schema_name(label: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let label: String =
        label.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(16).collect();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("test_{label}_{}_{}_{:x}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), nanos)
}

/// `base` plus the startup option `-c search_path=<name>`. The driver percent-decodes query
/// values, so `%3D` arrives as `=`.
fn with_search_path(base: &str, name: &str) -> String {
    if base.starts_with("postgres://") || base.starts_with("postgresql://") {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-csearch_path%3D{name}")
    } else {
        format!("{base} options=-csearch_path={name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_lowercase_identifiers_that_leave_room_for_the_channel() {
        let name = schema_name("Two Nodes/HTTP-with-a-long-label");
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{name}");
        assert!("permgate_changes_".len() + name.len() <= 63, "{name}");
        assert_ne!(schema_name("a"), schema_name("a"));
    }

    #[test]
    fn the_search_path_is_appended_as_a_startup_option() {
        assert_eq!(with_search_path("postgres://u@h/db", "s1"), "postgres://u@h/db?options=-csearch_path%3Ds1");
        assert_eq!(
            with_search_path("postgres://u@h/db?sslmode=disable", "s1"),
            "postgres://u@h/db?sslmode=disable&options=-csearch_path%3Ds1"
        );
        assert_eq!(with_search_path("host=h user=u", "s1"), "host=h user=u options=-csearch_path=s1");
    }
}
