//! The one error the Graph client returns: a stable reason code and a sanitized message.

use crate::domain::reason_code::ReasonCode;
use crate::server::sanitize::sanitize;

/// Why a Graph call failed; the message has passed the sanitizer and is safe to store and show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct GraphError {
    reason: ReasonCode,
    message: String,
}

impl GraphError {
    /// Builds an error; `message` is sanitized here so no caller can forget it.
    pub fn new(reason: ReasonCode, message: impl AsRef<str>) -> Self {
        Self {
            reason,
            message: sanitize(message.as_ref()),
        }
    }

    /// The stable code stored on the run item.
    pub fn reason_code(&self) -> ReasonCode {
        self.reason
    }

    /// The sanitized, length-capped explanation.
    pub fn message(&self) -> &str {
        &self.message
    }
}
