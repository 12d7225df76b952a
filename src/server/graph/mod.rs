//! Microsoft Graph client: client-credentials tokens per tenant, a per-tenant limiter, retries
//! that honour `Retry-After`, paging to the last `@odata.nextLink`, and policy snapshots as
//! canonical JSON with a sha256 (the same content always gives the same hash).
//!
//! Create one [`GraphClient`] per process and clone it: clones share the token cache and the
//! per-tenant limiters, so every run of a tenant stays under the same budget. The worker takes a
//! [`PolicySource`] so tests can swap in a source that fails on any call. Restores write through
//! [`PolicyWriter`] ([`write`]): the same send loop, plus a smaller per-tenant write budget.

pub mod activity;
mod client;
pub mod credentials;
mod error;
pub mod interrupt;
pub mod jwt;
pub mod limiter;
pub mod registry;
pub mod retry;
pub mod snapshot;
mod token;
pub mod write;

pub use client::{
    CaptureOptions, Granted, GraphClient, GraphConfig, GraphFuture, PolicySource, TokenFuture,
};
pub use credentials::{GraphAccess, SecretResolver};
pub use error::GraphError;
pub use limiter::{LimiterConfig, WriteBudget};
pub use registry::{PolicyListing, PolicyType};
pub use retry::RetryPolicy;
pub use snapshot::{SettingDefinition, Snapshot};
pub use token::{ClientSecret, TenantCredentials, TokenFailure};
pub use write::{DirectoryKind, PolicyWriter, WriteRequest, Written};
