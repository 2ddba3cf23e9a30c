//! `ApiError`: every failure of the API, with its Connect code and a message for people.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Connect error codes (<https://connectrpc.com/docs/protocol#error-codes>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The request is malformed or fails validation.
    InvalidArgument,
    /// No such object (or not the caller's).
    NotFound,
    /// The object exists already.
    AlreadyExists,
    /// The caller may not do this.
    PermissionDenied,
    /// No or bad credentials.
    Unauthenticated,
    /// The system is not in a state that allows it.
    FailedPrecondition,
    /// Over a size or rate limit.
    ResourceExhausted,
    /// Not implemented.
    Unimplemented,
    /// A dependency is down.
    Unavailable,
    /// A bug or an unexpected failure.
    Internal,
}

impl Code {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "invalid_argument",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::Unauthenticated => "unauthenticated",
            Code::FailedPrecondition => "failed_precondition",
            Code::ResourceExhausted => "resource_exhausted",
            Code::Unimplemented => "unimplemented",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
        }
    }

    /// The HTTP status Connect maps the code to.
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An API failure: a code for programs, a message for people, and an optional field that
/// caused it (so forms can show the message next to the input).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Connect code.
    pub code: Code,
    /// What went wrong, in words a user understands.
    pub message: String,
    /// The request field at fault, if any.
    pub field: Option<&'static str>,
}

impl ApiError {
    /// An error with `code`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Invalid input in `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code: Code::InvalidArgument,
            message: message.into(),
            field: Some(field),
        }
    }

    /// Not found (also used for other tenants' objects, which must not be revealed).
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(Code::NotFound, what)
    }

    /// Already exists.
    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, message)
    }

    /// The system's state does not allow it (yet).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }

    /// Permission denied.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, message)
    }

    /// Missing or bad credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, message)
    }

    /// An internal failure: the details go to the log, the caller gets a generic message.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::new(
            Code::Internal,
            format!("internal error ({context}); see the server log"),
        )
    }

    /// Sets the field at fault.
    pub fn on(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }
}

impl From<sqlx::Error> for ApiError {
    /// A unique violation means a concurrent request created the same object first: that
    /// is the caller's conflict to resolve (read it, or retry), never a server error.
    fn from(e: sqlx::Error) -> Self {
        if crate::store::is_unique_violation(&e) {
            tracing::info!(error = %e, "unique violation answered as already_exists");
            return ApiError::exists(
                "a concurrent request created the same object first; read it or retry",
            );
        }
        ApiError::internal("database", e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "code": self.code.as_str(), "message": self.message });
        // `field` is our addition (Connect clients ignore unknown keys): forms use it to
        // show the message next to the input at fault.
        if let Some(f) = self.field {
            body["field"] = serde_json::json!(f);
        }
        (self.code.http_status(), Json(body)).into_response()
    }
}
