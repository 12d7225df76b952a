//! The one error type every server function returns. It maps to an HTTP status in one place
//! ([`AppError::status`]) and carries only text that is safe to show to the user.

use leptos::server_fn::{
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};
use serde::{Deserialize, Serialize};

/// A failure a user may see. Internal details are logged on the server, never serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// No signed-in user (401).
    #[error("Please sign in.")]
    Unauthorized,
    /// Sign-in with an unknown e-mail or a wrong password: the two look the same (401).
    #[error("The e-mail address or password is incorrect.")]
    InvalidCredentials,
    /// Too many attempts; the text says when to try again (429).
    #[error("{0}")]
    TooManyRequests(String),
    /// The server is too busy to check a password now (503, with a `Retry-After` of this many
    /// seconds): the one 5xx a client can expect, and should retry.
    #[error("The server is busy checking other sign-ins. Try again in a few seconds.")]
    Busy { retry_after: u64 },
    /// Signed in, but not allowed here (403).
    #[error("{0}")]
    Forbidden(String),
    /// The named thing does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// Input that fails validation (422); `field` names the form field to show it next to.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The request conflicts with existing data (409), e.g. a duplicate name.
    #[error("{0}")]
    Conflict(String),
    /// Something broke on the server (500); the cause is in the server log.
    #[error("Something went wrong on the server. Please try again.")]
    Internal,
    /// The request never reached the function or its answer could not be read.
    #[error("Could not reach the server: {0}")]
    Transport(String),
}

/// A filter's value as it arrives in `field`: empty is "any" (`None`); a value `parse` does not
/// know is refused with `message` (a 422) rather than matching nothing, or everything.
pub fn parse_filter<T>(
    field: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Option<T>,
    message: impl Into<String>,
) -> Result<Option<T>, AppError> {
    if raw.is_empty() {
        return Ok(None);
    }
    parse(raw)
        .map(Some)
        .ok_or_else(|| AppError::invalid(field, message))
}

impl AppError {
    /// Shorthand for a validation failure on one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized | Self::InvalidCredentials => 401,
            Self::TooManyRequests(_) => 429,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::Invalid { .. } => 422,
            Self::Internal => 500,
            Self::Busy { .. } => 503,
            Self::Transport(_) => 502,
        }
    }

    /// The validation message for `field`, if this error is about that field.
    pub fn field_message(&self, field: &str) -> Option<String> {
        match self {
            Self::Invalid { field: f, message } if f == field => Some(message.clone()),
            _ => None,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        Self::Transport(value.to_string())
    }
}
