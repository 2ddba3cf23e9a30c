//! End-to-end tests of the `platform` binary: real processes, real sockets, real guests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

mod support;

mod chaos;
mod cluster;
mod cluster_workflow;
mod concurrent;
mod dedicated;
mod events;
mod isolation;
mod manifest_triggers;
mod secrets;
mod startup;
mod up;
mod workflow;
