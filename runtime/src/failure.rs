//! `GuestFailure`: every way a guest can fail a request, and the response each one gets.
//!
//! The host answers for the guest: the client gets a status and a short message that says
//! what happened (never host internals), the log gets the details with the request id.

use http::StatusCode;
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

use crate::admission::Capacity;
use crate::guest::LimitHits;

/// A request the guest did not answer properly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestFailure {
    /// Ran past the release's wall-time limit.
    #[error("the function ran past its time limit")]
    Timeout,
    /// Tried to grow memory past the release's limit.
    #[error("the function ran out of memory (limit reached)")]
    MemoryLimit,
    /// A Go panic or runtime fatal error (exit code 2 with a panic message).
    #[error("the function panicked: {0}")]
    Panic(String),
    /// Exited with a non-zero status.
    #[error("the function exited with status {0}")]
    Exit(i32),
    /// Recursed too deep: a WebAssembly stack overflow, or Go's own stack limit.
    #[error("the function overflowed its stack (recursion too deep)")]
    StackOverflow,
    /// Tried to grow a table past the host's limit.
    #[error("the function grew a table past its limit")]
    TableLimit,
    /// A WebAssembly trap (unreachable, out-of-bounds access, ...).
    #[error("the function trapped: {0}")]
    Trap(String),
    /// Output that is not a valid response.
    #[error("the function's response is invalid: {0}")]
    BadOutput(String),
    /// A request body (one without a declared length) went past the release's limit
    /// while the function read it.
    #[error("the request body is larger than this function's limit of {0} bytes")]
    BodyTooLarge(u64),
    /// A response larger than the release allows.
    #[error("the function's response is larger than the limit of {0} bytes")]
    ResponseTooLarge(u64),
    /// The host could not start the instance.
    #[error("the function could not start: {0}")]
    Instantiate(String),
    /// A concurrency cap stayed full for the whole wait budget.
    #[error("{}", overloaded_message(*.0))]
    Overloaded(Capacity),
}

fn overloaded_message(cap: Capacity) -> &'static str {
    match cap {
        Capacity::App => "the app is at its concurrency limit, try again shortly",
        Capacity::Tenant => "the tenant's apps are at their concurrency limit, try again shortly",
        Capacity::Instances => "all of the app's instances are busy, try again shortly",
        Capacity::Host => "the host is at capacity, try again shortly",
    }
}

impl GuestFailure {
    /// The HTTP status for the client.
    pub fn status(&self) -> StatusCode {
        match self {
            GuestFailure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            GuestFailure::BadOutput(_) | GuestFailure::ResponseTooLarge(_) => {
                StatusCode::BAD_GATEWAY
            }
            GuestFailure::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            GuestFailure::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Metric label (`traps_total{kind=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            GuestFailure::Timeout => "timeout",
            GuestFailure::MemoryLimit => "memory",
            GuestFailure::Panic(_) => "panic",
            GuestFailure::Exit(_) => "exit",
            GuestFailure::StackOverflow => "stack_overflow",
            GuestFailure::TableLimit => "table",
            GuestFailure::Trap(_) => "trap",
            GuestFailure::BadOutput(_) => "bad_output",
            GuestFailure::ResponseTooLarge(_) => "response_too_large",
            GuestFailure::BodyTooLarge(_) => "body_too_large",
            GuestFailure::Instantiate(_) => "instantiate",
            GuestFailure::Overloaded(_) => "overloaded",
        }
    }

    /// A message safe to show the client.
    pub fn public_message(&self) -> String {
        match self {
            GuestFailure::Panic(_) => "the function panicked".into(),
            GuestFailure::Trap(_) => "the function crashed (WebAssembly trap)".into(),
            GuestFailure::Instantiate(_) => "the function could not start".into(),
            other => other.to_string(),
        }
    }

    /// Classifies the error a guest call ended with. `hits` says which limits refused a
    /// growth; `stderr` is what the guest printed (Go prints panics there).
    pub fn classify(err: &wasmtime::Error, hits: LimitHits, stderr: &[u8]) -> Self {
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            if hits.memory {
                return GuestFailure::MemoryLimit;
            }
            if let Some(msg) = panic_message(stderr) {
                // Go's "fatal error: stack overflow" (past its goroutine stack limit).
                if msg.starts_with("fatal error: stack overflow") {
                    return GuestFailure::StackOverflow;
                }
                return GuestFailure::Panic(msg);
            }
            return GuestFailure::Exit(exit.0);
        }
        if let Some(trap) = err.downcast_ref::<Trap>() {
            return match trap {
                Trap::Interrupt => GuestFailure::Timeout,
                Trap::StackOverflow => GuestFailure::StackOverflow,
                _ if hits.memory => GuestFailure::MemoryLimit,
                _ if hits.table => GuestFailure::TableLimit,
                other => GuestFailure::Trap(other.to_string()),
            };
        }
        if hits.memory {
            return GuestFailure::MemoryLimit;
        }
        if hits.table {
            return GuestFailure::TableLimit;
        }
        GuestFailure::Trap(format!("{err:#}"))
    }
}

/// The first panic/fatal line Go wrote to stderr, if any.
fn panic_message(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .find(|l| l.starts_with("panic: ") || l.starts_with("fatal error: "))
        .map(|l| l.chars().take(300).collect())
}

/// True when a guest call ended normally: returned, or exited with status 0.
pub fn is_clean_exit(err: &wasmtime::Error) -> bool {
    err.downcast_ref::<I32Exit>().is_some_and(|e| e.0 == 0)
}
