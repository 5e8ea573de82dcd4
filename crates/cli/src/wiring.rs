//! Wiring shared by the commands: the store from its URL, the catalog from its file, the snapshot
//! and the services.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use permgate_core::audit::NewAuditEvent;
use permgate_core::catalog::Catalog;
use permgate_core::credential::TokenVerifier;
use permgate_core::ports::Store;
use permgate_core::service::Services;
use permgate_core::snapshot::{SharedSnapshot, Snapshot};
use permgate_core::time::{Clock, SystemClock};
use permgate_store_postgres::PostgresStore;
use permgate_store_sqlite::SqliteStore;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://permgate.db";

/// Which backend a database URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

pub fn parse_database_url(url: &str) -> anyhow::Result<Database> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        if path.is_empty() {
            bail!("PERMGATE_DATABASE_URL `{url}` names no file; use sqlite://permgate.db");
        }
        return Ok(Database::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Database::Postgres(url.to_owned()));
    }
    bail!("PERMGATE_DATABASE_URL `{url}` is not understood; use sqlite://PATH or postgres://USER@HOST:PORT/DB")
}

/// Connects to the store without migrating it.
pub fn connect(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match parse_database_url(url)? {
        Database::Sqlite(path) => {
            Arc::new(SqliteStore::open_unmigrated(&path).with_context(|| format!("opening {}", path.display()))?)
        }
        Database::Postgres(url) => Arc::new(PostgresStore::connect(&url)?),
    })
}

/// Connects and applies pending migrations.
///
/// Commands that read what nodes have stored use this one: a SQLite file that does not exist is
/// refused rather than created, since an empty database would answer (an audit chain of no
/// events "ok", every app unknown) as if it were the real one.
pub fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    // SQLite's URI names (`file:…?mode=ro`) and `:memory:` are not files to look for.
    if let Database::Sqlite(path) = parse_database_url(url)?
        && !path.to_str().is_some_and(|p| p.starts_with("file:") || p == ":memory:")
        && !path.exists()
    {
        let dir = std::env::current_dir().map(|d| format!(" in {}", d.display())).unwrap_or_default();
        bail!(
            "no database at {}{dir}: run this where `permgate serve` keeps its database (the directory it was \
             started in), or name it with --database-url / PERMGATE_DATABASE_URL (`permgate migrate` creates an \
             empty one)",
            path.display()
        );
    }
    let store = connect(url)?;
    store.migrate()?;
    Ok(store)
}

/// Loads the catalog file, or the built-in one.
pub fn load_catalog(file: Option<&Path>) -> anyhow::Result<Catalog> {
    match file {
        None => Catalog::builtin().map_err(|e| anyhow::anyhow!("the built-in catalog is broken (a bug): {e}")),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading catalog {}", path.display()))?;
            Catalog::parse(&path.display().to_string(), &text).map_err(|e| anyhow::anyhow!("{e}"))
        }
    }
}

/// The audit event recording that this node loaded `catalog` (its version and a fingerprint of
/// its content), from `path` or built in.
pub fn catalog_load_event(catalog: &Catalog, path: Option<&Path>) -> NewAuditEvent {
    let json = serde_json::to_string(catalog).unwrap_or_default();
    NewAuditEvent::new(SystemClock.now(), None, "catalog.load", format!("catalog:{}", catalog.version)).after(
        serde_json::json!({
            "version": catalog.version,
            "sha256": permgate_core::secret::hash(&json),
            "source": path.map_or_else(|| "built-in".to_owned(), |p| p.display().to_string()),
            "permissions": catalog.permissions.len(),
            "apis": catalog.apis.len(),
        }),
    )
}

/// Builds the services over a store: notes the change-feed position, then reads every app into a
/// fresh snapshot. Returns the position, from which the change sync continues.
pub fn services(
    store: Arc<dyn Store>,
    catalog: Catalog,
    verifier: Arc<TokenVerifier>,
) -> anyhow::Result<(Services, i64)> {
    let since = store.latest_change().context("reading the change feed")?;
    let records = store.app_records().context("reading apps to build the decision snapshot")?;
    let snapshot = Snapshot::build(Arc::new(catalog), verifier, records);
    Ok((Services::new(store, Arc::new(SharedSnapshot::new(snapshot)), Arc::new(SystemClock)), since))
}

/// The services of a command that works on the database directly: the store (migrated), the
/// catalog (the file, or the built-in one) and a fresh snapshot.
pub fn open_services(url: &str, catalog: Option<&Path>, verifier: TokenVerifier) -> anyhow::Result<Services> {
    let store = open_store(url)?;
    Ok(services(store, load_catalog(catalog)?, Arc::new(verifier))?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_select_a_backend_or_are_refused_with_a_reason() {
        let url = |u: &str| parse_database_url(u).ok();
        assert_eq!(url("sqlite://data/p.db"), Some(Database::Sqlite(PathBuf::from("data/p.db"))));
        assert_eq!(url("sqlite:///var/lib/p.db"), Some(Database::Sqlite(PathBuf::from("/var/lib/p.db"))));
        assert_eq!(url("postgres://u@h/db"), Some(Database::Postgres("postgres://u@h/db".into())));
        assert!(parse_database_url("sqlite://").is_err());
        let err = parse_database_url("mysql://x").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("postgres://")));
    }
}
