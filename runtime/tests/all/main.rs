//! Runtime integration tests: real sockets, real Go guests built from source.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

mod support;

mod admin;
mod components;
mod events;
mod faults;
mod kv;
mod outbound;
mod routing;
mod sdk;
mod wagi;
