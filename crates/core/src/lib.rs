//! permgate's domain: the catalog, the decision engine, the use cases and the storage ports.
//! No I/O: no sockets, no files, no database drivers, no wall clock.
//!
//! # Layout
//! - [`catalog`] parses and validates the catalog TOML and routes calls to APIs ([`route`]).
//! - [`decision::decide`] is the pure decision over a [`snapshot::Snapshot`]; [`credential`]
//!   parses `KakaoAK` keys, user JWTs and the `Origin`/`KA` headers.
//! - [`service`] holds one file per use case (accounts, apps, keys, members, products, grants),
//!   all written against the traits in [`ports`]; [`error::ServiceError`] is what they return.
//! - [`model`], [`time`], [`audit`] and [`secret`] are the shared nouns, the clock, the hash
//!   chain and token hashing.

pub mod audit;
pub mod catalog;
pub mod credential;
pub mod decision;
pub mod decision_log;
pub mod error;
mod fast_hash;
pub mod intern;
mod key_table;
pub mod meter;
pub mod model;
pub mod notify;
pub mod ports;
pub mod quota;
pub mod response;
pub mod route;
pub mod secret;
pub mod service;
pub mod small;
pub mod snapshot;
pub mod time;
pub mod workflow;

pub use decision::{Decision, Query, decide};
