//! Runs: the observable record of background work. The submit creates (or reuses) a run, the
//! screens read runs; the engine (`server::engine`) executes them.

pub mod cancel;
pub mod create;
pub mod key;
pub mod queries;
pub mod retry;
pub mod start;
pub mod submit;

use crate::domain::{AppError, RunStatus};

/// A stored run status that this version does not know (written by a newer server, or by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run status {0:?} in the database")]
pub struct UnknownStatus(pub String);

/// Reads a stored run status. Every reader of `runs.status` goes through here, so an unknown
/// spelling is logged and refused in this one place, never guessed.
pub fn stored_status(raw: &str) -> Result<RunStatus, UnknownStatus> {
    RunStatus::parse(raw).ok_or_else(|| {
        tracing::error!(status = %raw, "unknown run status in the database");
        UnknownStatus(raw.to_owned())
    })
}

/// A page or server function that meets an unknown status answers with a generic 500.
impl From<UnknownStatus> for AppError {
    fn from(_: UnknownStatus) -> Self {
        AppError::Internal
    }
}

/// The engine treats an unknown status like any other unreadable column.
impl From<UnknownStatus> for sqlx::Error {
    fn from(error: UnknownStatus) -> Self {
        sqlx::Error::Decode(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_and_an_unknown_one_is_an_error() {
        for status in RunStatus::ALL {
            assert_eq!(stored_status(status.as_str()), Ok(status));
        }
        for raw in ["paused", "Running", "", "running "] {
            assert_eq!(stored_status(raw), Err(UnknownStatus(raw.to_owned())));
        }
        let as_app: AppError = UnknownStatus("paused".into()).into();
        assert_eq!(as_app.status(), 500);
        let as_sqlx: sqlx::Error = UnknownStatus("paused".into()).into();
        assert!(as_sqlx.to_string().contains("paused"), "{as_sqlx}");
    }
}
