//! The one error the Graph client returns: a stable reason code and a sanitized message.

use crate::domain::reason_code::ReasonCode;
use crate::server::sanitize::sanitize;

/// Why a Graph call failed; the message has passed the sanitizer and is safe to store and show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct GraphError {
    reason: ReasonCode,
    message: String,
    /// See [`GraphError::may_have_acted`].
    may_have_acted: bool,
}

impl GraphError {
    /// Builds an error; `message` is sanitized here so no caller can forget it.
    pub fn new(reason: ReasonCode, message: impl AsRef<str>) -> Self {
        Self {
            reason,
            message: sanitize(message.as_ref()),
            may_have_acted: false,
        }
    }

    /// Whether Graph may have acted on the request before it failed: an attempt of it got an
    /// answer that may have come after Graph did the work (a timeout, a 504, a success body cut
    /// short), this last one or an earlier one that was sent again. Then a write may have
    /// landed, whatever the final reason says (a retry of an update whose first answer was lost
    /// may end on a 429, which alone would mean Graph did nothing).
    pub fn may_have_acted(&self) -> bool {
        self.may_have_acted
    }

    /// This error, from an attempt whose answer may have come after Graph acted on it.
    pub(crate) fn acted_maybe(mut self) -> Self {
        self.may_have_acted = true;
        self
    }

    /// This error, the last of a request an earlier attempt of which got an answer that may
    /// have come after Graph acted on it (the request was sent again): its reason stays, and
    /// `message` tells both answers.
    pub(crate) fn after_unclear_attempt(self, message: impl AsRef<str>) -> Self {
        Self::new(self.reason, message).acted_maybe()
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
