//! Server-side half of [`AppError`]: causes are logged here and never reach the client, and the
//! HTTP status of a failed server function is set in one place.

use std::sync::{Arc, Mutex};

use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use leptos::prelude::use_context;
use leptos_axum::ResponseOptions;

use crate::domain::AppError;

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        // PostgreSQL's text cannot hold the NUL character (SQLSTATE 22021, or 22P05 for one its
        // encoding lacks): the input is at fault, whichever field carried it, and the failed
        // statement wrote nothing.
        let code = error.as_database_error().and_then(|e| e.code());
        if matches!(code.as_deref(), Some("22021" | "22P05")) {
            return AppError::invalid("", "Text cannot contain the NUL character or one like it.");
        }
        tracing::error!(error = %error, "database error");
        AppError::Internal
    }
}

/// Sets the response status (and, for [`AppError::Busy`], `Retry-After`) from the error when
/// answering over HTTP, and passes the result on. Every server function ends with this, so a
/// validation failure is a 4xx, not a 500.
pub fn respond<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(error) = &result {
        set_status(
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        );
        if let (AppError::Busy { retry_after }, Some(response)) =
            (error, use_context::<ResponseOptions>())
        {
            response.insert_header(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
    }
    result
}

/// Sets the status of the answer being rendered or served (a page that names nothing, a
/// failed server function); nothing outside a request.
pub fn set_status(status: StatusCode) {
    if let Some(response) = use_context::<ResponseOptions>() {
        response.set_status(status);
    }
    if let Some(page) =
        use_context::<Parts>().and_then(|parts| parts.extensions.get::<PageStatus>().cloned())
    {
        page.set(status);
    }
}

/// The status a page's render set, which `render_pages_whole` gives the page once it is whole.
/// Leptos takes a streamed page's status from [`ResponseOptions`] when its first chunk is ready,
/// so a read that failed later in the render (an id that names nothing) left it at 200 on some
/// requests and not others.
#[derive(Debug, Clone, Default)]
pub struct PageStatus(Arc<Mutex<Option<StatusCode>>>);

impl PageStatus {
    fn set(&self, status: StatusCode) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(status);
    }

    /// The last status the render set, if any.
    pub fn get(&self) -> Option<StatusCode> {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
