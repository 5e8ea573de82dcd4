//! Connections cut under the store (a restart, a failover, an administrator): the next call
//! works on a new connection, and the listener reports the cut once and then listens again.

use std::time::Duration;

use permgate_core::ports::{AppStore, ChangeFeed, StoreError};
use permgate_testkit::pg;

use crate::{audit, migrated, new_app, owner};

#[test]
fn cut_connections_are_replaced() -> Result<(), StoreError> {
    let Some(schema) = pg::fresh_schema("cut") else { return Ok(()) };
    // The application name lets the test find this store's connections.
    let url = format!("{}&application_name={}", schema.url, schema.name);
    let store = migrated(&url)?;
    let dana = owner(&store, "dana")?;
    let app = new_app(&store, dana)?;
    store.wait_for_change(Duration::ZERO)?;

    let cut = pg::terminate_connections(&schema.name);
    assert!(cut >= 2, "the pooled connection and the listener, cut {cut}");
    store.set_product(app, "local", true, &audit("product.set").app(app))?;
    assert!(store.wait_for_change(Duration::ZERO).is_err(), "the listener reports its cut");
    store.wait_for_change(Duration::ZERO)?;

    let cut = pg::terminate_connections(&schema.name);
    assert!(cut >= 2, "cut {cut}");
    assert_eq!(store.app_record(app)?.map(|r| r.products), Some(vec![("local".to_owned(), true)]));
    Ok(())
}
