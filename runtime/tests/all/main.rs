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
mod fault_matrix;
mod faults;
mod kv;
mod outbound;
mod properties;
mod properties_host_calls;
mod properties_inputs;
mod routing;
mod sdk;
mod wagi;
