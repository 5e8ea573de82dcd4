//! Wiring shared by the commands: the store from its URL, the catalog from its file, the snapshot
//! and the services.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use permgate_core::catalog::Catalog;
use permgate_core::credential::TokenVerifier;
use permgate_core::ports::Store;
use permgate_core::service::Services;
use permgate_core::snapshot::{SharedSnapshot, Snapshot};
use permgate_core::time::SystemClock;
use permgate_store_sqlite::SqliteStore;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://permgate.db";

/// The SQLite file a database URL names.
pub fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        if path.is_empty() {
            bail!("PERMGATE_DATABASE_URL `{url}` names no file; use sqlite://permgate.db");
        }
        return Ok(PathBuf::from(path));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        bail!("PostgreSQL is not supported by this build yet; use sqlite://PATH (the default) for now");
    }
    bail!("PERMGATE_DATABASE_URL `{url}` is not understood; use sqlite://PATH")
}

/// Opens the store, applying pending migrations.
pub fn open_store(url: &str) -> anyhow::Result<Arc<SqliteStore>> {
    let path = sqlite_path(url)?;
    let store = SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Arc::new(store))
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

/// Builds the services over a store: reads every app into a fresh snapshot.
pub fn services(store: Arc<dyn Store>, catalog: Catalog, jwt_secret: Option<&str>) -> anyhow::Result<Services> {
    let verifier = TokenVerifier::new(jwt_secret.map(str::as_bytes));
    let records = store.app_records().context("reading apps to build the decision snapshot")?;
    let snapshot = Snapshot::build(Arc::new(catalog), Arc::new(verifier), records);
    Ok(Services::new(store, Arc::new(SharedSnapshot::new(snapshot)), Arc::new(SystemClock)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_file_and_others_are_refused_with_a_reason() {
        assert_eq!(sqlite_path("sqlite://data/p.db").ok(), Some(PathBuf::from("data/p.db")));
        assert_eq!(sqlite_path("sqlite:///var/lib/p.db").ok(), Some(PathBuf::from("/var/lib/p.db")));
        assert!(sqlite_path("sqlite://").is_err());
        let pg = sqlite_path("postgres://localhost/db").err().map(|e| e.to_string());
        assert!(pg.is_some_and(|e| e.contains("PostgreSQL")));
        assert!(sqlite_path("mysql://x").is_err());
    }
}
