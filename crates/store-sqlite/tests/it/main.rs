//! The SQLite store: the shared conformance suite, plus what only a file database can show
//! (durability across reopen, refusing a newer schema).

use permgate_core::audit::NewAuditEvent;
use permgate_core::model::Role;
use permgate_core::ports::{AccountStore, NewAccount, Store, StoreError};
use permgate_core::time::Timestamp;
use permgate_store_sqlite::SqliteStore;
use permgate_testkit::{conformance, scratch_dir};

#[test]
fn the_conformance_suite_passes_on_sqlite() {
    for (name, check) in conformance::CHECKS {
        let dir = scratch_dir("conformance");
        let store = match SqliteStore::open(&dir.0.join("p.db")) {
            Ok(s) => s,
            Err(e) => unreachable!("{e}"),
        };
        if let Err(e) = check(&store) {
            unreachable!("{name}: {e}");
        }
    }
}

#[test]
fn committed_writes_survive_reopening_the_file() -> Result<(), StoreError> {
    let dir = scratch_dir("reopen");
    let path = dir.0.join("p.db");
    {
        let store = SqliteStore::open(&path)?;
        let new = NewAccount { name: "dana".into(), role: Role::Developer, email: None, token_hash: "h".into() };
        store.create_account(
            &new,
            Timestamp(1),
            &NewAuditEvent::new(Timestamp(1), None, "account.create", "x".into()),
        )?;
    }
    let store = SqliteStore::open(&path)?;
    assert_eq!(store.account_by_token_hash("h")?.map(|(a, _)| a.name), Some("dana".to_owned()));
    assert_eq!(store.migrate()?, Vec::<i64>::new(), "nothing left to apply");
    Ok(())
}

#[test]
fn a_schema_newer_than_the_binary_is_refused() -> Result<(), StoreError> {
    let dir = scratch_dir("newer");
    let path = dir.0.join("p.db");
    SqliteStore::open(&path)?;
    {
        let conn = rusqlite::Connection::open(&path).map_err(|e| StoreError::Backend(e.to_string()))?;
        conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)", [])
            .map_err(|e| StoreError::Backend(e.to_string()))?;
    }
    let err = SqliteStore::open(&path).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("newer than this permgate binary"), "{err}");
    Ok(())
}
