//! Control plane tests over the real router (Connect JSON and protobuf), against SQLite and
//! against the PostgreSQL server on 127.0.0.1:5432 (each test in its own schema).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

mod support;

mod api;
mod concurrency;
mod crash_recovery;
mod dedicated;
mod domains;
mod feed;
mod limits;
mod roles;
mod secrets;
mod tenancy;
mod triggers;
mod uploads;
