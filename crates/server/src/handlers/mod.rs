//! One file per resource.

pub mod accounts;
pub mod apps;
pub mod authz;
pub mod catalog;
pub mod check;
pub mod health;
pub mod requests;
