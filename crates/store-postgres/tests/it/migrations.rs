//! Migrating a schema shared by several nodes.

use std::sync::Barrier;

use permgate_core::ports::{MigrationStatus, Store, StoreError};
use permgate_store_postgres::PostgresStore;
use permgate_testkit::pg;

use crate::{migrated, pg_err, sql};

#[test]
fn a_second_node_applies_nothing_and_a_newer_schema_is_refused() -> Result<(), StoreError> {
    let Some(schema) = pg::fresh_schema("migrate") else { return Ok(()) };
    let a = PostgresStore::connect(&schema.url)?;
    assert_eq!(a.migration_status()?, MigrationStatus { current: 0, latest: latest() });
    assert_eq!(a.migrate()?, all_versions());
    let b = PostgresStore::connect(&schema.url)?;
    assert_eq!(b.migrate()?, Vec::<i64>::new());
    assert_eq!(b.migration_status()?, MigrationStatus { current: latest(), latest: latest() });

    sql(&schema.url)?
        .execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)", &[])
        .map_err(pg_err)?;
    assert!(b.migration_status()?.too_new());
    let err = b.migrate().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains(&format!(
            "the database schema is version 999, newer than this permgate binary knows ({}); upgrade permgate",
            latest()
        )),
        "{err}"
    );
    Ok(())
}

#[test]
fn nodes_starting_at_once_apply_each_migration_once() -> Result<(), StoreError> {
    let Some(schema) = pg::fresh_schema("migrate_race") else { return Ok(()) };
    let nodes = (0..4).map(|_| PostgresStore::connect(&schema.url)).collect::<Result<Vec<_>, _>>()?;
    let start = Barrier::new(nodes.len());
    let applied = std::thread::scope(|s| {
        let runs: Vec<_> = nodes
            .iter()
            .map(|node| {
                s.spawn(|| {
                    start.wait();
                    node.migrate()
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap_or_else(|_| Err(StoreError::Backend("a migrator died".into()))))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut applied: Vec<Vec<i64>> = applied;
    applied.sort();
    assert_eq!(applied, vec![vec![], vec![], vec![], all_versions()]);
    let rows: i64 = sql(&schema.url)?
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .and_then(|r| r.try_get(0))
        .map_err(pg_err)?;
    assert_eq!(rows, latest());
    migrated(&schema.url).map(drop)
}

fn all_versions() -> Vec<i64> {
    permgate_store_postgres::MIGRATIONS.iter().map(|(v, _, _)| *v).collect()
}

fn latest() -> i64 {
    all_versions().last().copied().unwrap_or(0)
}
