//! The HTTP contract of SPEC section 5, through a real server on port 0 with a fresh database.

mod access;
mod accounts;
mod app_types;
mod apps;
mod authz;
mod blocking;
mod browser;
mod check;
mod console;
mod explain;
mod gateway;
mod keys;
mod lifecycle;
mod nginx;
mod notifications;
mod openapi;
mod operations;
mod permissions;
mod quotas;
mod requests;
mod shadow;
