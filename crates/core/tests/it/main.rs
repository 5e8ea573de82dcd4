//! The core's integration tests: the built-in catalog pinned endpoint by endpoint, and the
//! decision engine driven by a file of cases.

mod catalog_pins;
mod decisions;
mod quick;
mod quotas;
