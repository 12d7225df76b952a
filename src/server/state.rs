//! What every request handler and server function can reach.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::prelude::{use_context, LeptosOptions};

use super::auth::client_address::TrustedProxies;
use super::auth::password::Checker;
use super::auth::session::SessionSettings;
use super::auth::throttle::SignInThrottle;
use super::db::Db;
use super::engine::runner::WakeUp;
use super::graph::GraphAccess;
use super::tenants::keyring::KeyRing;
use crate::domain::AppError;

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `scheme://host[:port]` browsers use to reach the app; cross-site POSTs are checked against it.
    pub public_origin: String,
    /// The URL set with `--public-url`, for links the app hands out (invitations); `None` when
    /// it was not set, and then no such link is made (a guessed address could be wrong).
    pub public_url: Option<String>,
    pub sessions: SessionSettings,
    /// The reverse proxies whose `X-Forwarded-For` is believed (none: the socket's peer is the
    /// client). See [`super::auth::client_address`].
    pub trusted_proxies: TrustedProxies,
}

/// Shared application state, in one allocation: it is cloned several times per request (each
/// middleware that takes state, the server functions' and pages' context), and a clone is one
/// reference count rather than one per field. Its parts are read through `Deref`
/// (`state.db`).
#[derive(Clone, Debug)]
pub struct AppState(Arc<SharedState>);

/// What [`AppState`] holds.
#[derive(Clone, Debug)]
pub struct SharedState {
    pub db: Db,
    pub leptos_options: LeptosOptions,
    pub settings: Settings,
    pub sign_in_throttle: SignInThrottle,
    /// Runs sign-in password checks, a bounded number at a time.
    pub password_checker: Checker,
    /// The process's Graph client and secret resolver; `None` in a state that never talks to
    /// Graph (tests of pages and sessions).
    pub graph: Option<GraphAccess>,
    /// Wakes the run worker(s) after a submit.
    pub wake: WakeUp,
    /// Seals client secrets entered in the app; `None` without `--secret-key-file`, and then
    /// the app refuses to store a secret.
    pub secret_keys: Option<Arc<KeyRing>>,
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

impl AppState {
    pub fn new(db: Db, leptos_options: LeptosOptions, settings: Settings) -> Self {
        Self(Arc::new(SharedState {
            db,
            leptos_options,
            settings,
            sign_in_throttle: SignInThrottle::default(),
            password_checker: Checker::per_core(),
            graph: None,
            wake: WakeUp::default(),
            secret_keys: None,
        }))
    }

    /// The parts, to change while the state is built (a copy if it is shared already).
    fn parts_mut(&mut self) -> &mut SharedState {
        Arc::make_mut(&mut self.0)
    }

    /// The same state with the key ring that seals client secrets.
    pub fn with_secret_keys(mut self, keys: Option<Arc<KeyRing>>) -> Self {
        self.parts_mut().secret_keys = keys;
        self
    }

    /// The same state with another password checker (tests of the overload answer).
    pub fn with_password_checker(mut self, checker: Checker) -> Self {
        self.parts_mut().password_checker = checker;
        self
    }

    /// The same state with another sign-in throttle (tests of its limits).
    pub fn with_sign_in_throttle(mut self, throttle: SignInThrottle) -> Self {
        self.parts_mut().sign_in_throttle = throttle;
        self
    }

    /// The same state with a Graph client (pointed at Microsoft, or at the demo simulator).
    pub fn with_graph(mut self, graph: GraphAccess) -> Self {
        self.parts_mut().graph = Some(graph);
        self
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// The state inside a server function or page render (leptos_axum provides it as context).
pub fn app_state() -> Result<AppState, AppError> {
    use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the Leptos context");
        AppError::Internal
    })
}

#[cfg(test)]
mod tests {
    use super::AppState;

    #[test]
    fn a_clone_is_one_reference_count() {
        // One pointer: cloning it per middleware and per server function costs one atomic
        // increment, not one per part (pools, options, settings, throttle, …).
        assert_eq!(
            std::mem::size_of::<AppState>(),
            std::mem::size_of::<usize>()
        );
    }
}
