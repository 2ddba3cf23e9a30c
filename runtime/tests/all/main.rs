//! Runtime integration tests: real sockets, real Go guests built from source.

mod support;

mod admin;
mod faults;
mod routing;
mod wagi;
