//! Dashboard tests: the real router, driven request by request, over a real control plane on
//! SQLite in a temporary directory. Pages are checked for what a user would read in them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

mod support;

mod apps;
mod assets;
mod csrf;
mod login;
mod oidc;
mod secrets;
mod tokens;
mod uploads;
