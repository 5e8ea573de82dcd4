//! The PostgreSQL store against a real server: the shared conformance suite, plus what only a
//! database shared by several nodes can show (notifications across connections, nodes migrating
//! and writing at once, connections cut under the store). Every test but the first skips with a
//! notice when `PERMGATE_TEST_DATABASE_URL` is not set.

mod concurrency;
mod connections;
mod feed;
mod migrations;
mod workflow;

use permgate_core::audit::NewAuditEvent;
use permgate_core::model::{AccountId, AppId, Role};
use permgate_core::ports::{AccountStore, AppStore, NewAccount, NewApp, Store, StoreError};
use permgate_core::time::Timestamp;
use permgate_store_postgres::PostgresStore;
use permgate_testkit::{conformance, pg};

const AT: Timestamp = Timestamp(1_795_824_000);

fn audit(action: &str) -> NewAuditEvent {
    NewAuditEvent::new(AT, None, action, "test".into())
}

/// A connected, migrated store.
fn migrated(url: &str) -> Result<PostgresStore, StoreError> {
    let store = PostgresStore::connect(url)?;
    store.migrate()?;
    Ok(store)
}

/// A plain connection, to look behind the store's back.
fn sql(url: &str) -> Result<postgres::Client, StoreError> {
    postgres::Client::connect(url, postgres::NoTls).map_err(|e| StoreError::Backend(format!("{e:?}")))
}

fn pg_err(e: postgres::Error) -> StoreError {
    StoreError::Backend(format!("{e:?}"))
}

fn owner(store: &PostgresStore, name: &str) -> Result<AccountId, StoreError> {
    let new =
        NewAccount { name: name.into(), role: Role::Developer, email: None, token_hash: format!("hash-of-{name}") };
    Ok(store.create_account(&new, AT, &audit("account.create"))?.id)
}

fn new_app(store: &PostgresStore, owner: AccountId) -> Result<AppId, StoreError> {
    let new = NewApp {
        name: "Shop".into(),
        company_name: "Example".into(),
        category: "shopping".into(),
        owner,
        original: None,
        members: Vec::new(),
        grants: Vec::new(),
    };
    Ok(store.create_app(&new, &[], AT, &audit("app.create"))?.app.id)
}

#[test]
fn the_conformance_suite_passes_on_postgres() {
    for (name, check) in conformance::CHECKS {
        let Some(schema) = pg::fresh_schema("conformance") else { return };
        let store = match migrated(&schema.url) {
            Ok(s) => s,
            Err(e) => unreachable!("{e}"),
        };
        if let Err(e) = check(&store) {
            unreachable!("{name}: {e}");
        }
    }
}

#[test]
fn a_schema_url_puts_the_store_and_its_tables_in_that_schema() -> Result<(), StoreError> {
    let Some(schema) = pg::fresh_schema("landing") else { return Ok(()) };
    let store = migrated(&schema.url)?;
    assert_eq!(store.schema(), schema.name);
    let mut c = sql(&schema.url)?;
    let current: String =
        c.query_one("SELECT current_schema()::text", &[]).and_then(|r| r.try_get(0)).map_err(pg_err)?;
    assert_eq!(current, schema.name);
    let tables: Vec<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
            &[&schema.name],
        )
        .map_err(pg_err)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(pg_err)?;
    assert_eq!(
        tables,
        [
            "accounts",
            "app_business",
            "app_channels",
            "app_consent_items",
            "app_eligibility",
            "app_keys",
            "app_members",
            "app_products",
            "apps",
            "audit_events",
            "audit_head",
            "change_log",
            "decision_log",
            "evidence_files",
            "grant_notices",
            "grant_usage",
            "grants",
            "outbox",
            "paid_usage",
            "permission_request_history",
            "permission_requests",
            "quota_counters",
            "schema_migrations",
            "talk_channels",
            "usage_daily"
        ]
    );
    Ok(())
}

#[test]
fn an_unreachable_server_is_named_without_its_password() {
    let err = PostgresStore::connect("postgres://permgate:s3cret@127.0.0.1:1/test?connect_timeout=5")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("cannot connect to PostgreSQL at postgres://permgate:***@127.0.0.1:1/test"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
