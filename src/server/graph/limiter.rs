//! Per-tenant request budget: a rate (governor) and a cap on requests in flight (semaphore),
//! shared by every caller of one [`GraphClient`](super::GraphClient) for that tenant, and a
//! smaller rate that only writes (POST, PUT, PATCH, DELETE) take on top of it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::GraphError;
use crate::domain::reason_code::ReasonCode;

/// How fast and how wide one tenant may talk to Graph from this process.
///
/// Intune allows 1,000 requests per 20 s per app per tenant. The defaults send at most
/// `burst + rate × 20 s` = 20 + 46 × 20 = 940 requests in any 20 s window: 94 % of the ceiling
/// with room for clock skew and the token endpoint.
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// Sustained requests per second.
    pub requests_per_second: NonZeroU32,
    /// Requests that may go at once after a quiet period.
    pub burst: NonZeroU32,
    /// Requests waiting for an answer at the same time.
    pub max_in_flight: usize,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            requests_per_second: NonZeroU32::new(46).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            max_in_flight: 16,
        }
    }
}

/// How fast one tenant may write to Graph from this process, under [`LimiterConfig`]: every
/// write takes a slot of this budget and then one of the overall budget.
///
/// Intune's device configuration service (the four policy collections) allows writes (POST,
/// PUT, DELETE, PATCH) at 100 requests per 20 s per app per tenant, and 200 per 20 s per tenant
/// for all apps (<https://learn.microsoft.com/en-us/graph/throttling-limits>, "Intune device
/// configuration service limits"). The defaults send at most `burst + rate × 20 s` =
/// 10 + 4 × 20 = 90 writes in any 20 s window: 90 % of the per-app ceiling.
#[derive(Debug, Clone)]
pub struct WriteBudget {
    /// Sustained writes per second.
    pub writes_per_second: NonZeroU32,
    /// Writes that may go at once after a quiet period.
    pub burst: NonZeroU32,
}

impl Default for WriteBudget {
    fn default() -> Self {
        Self {
            writes_per_second: NonZeroU32::new(4).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// The budget of one tenant.
pub(crate) struct TenantLimiter {
    rate: DefaultDirectRateLimiter,
    /// Taken by writes only, before the overall rate.
    write_rate: DefaultDirectRateLimiter,
    in_flight: Arc<Semaphore>,
    /// Set from a 429's `Retry-After`: every request of the tenant waits, not only the one that
    /// was throttled, because Graph throttles the app for the whole tenant.
    paused_until: Mutex<Option<Instant>>,
}

impl TenantLimiter {
    fn new(config: &LimiterConfig, writes: &WriteBudget) -> Self {
        let quota = Quota::per_second(config.requests_per_second).allow_burst(config.burst);
        let write_quota = Quota::per_second(writes.writes_per_second).allow_burst(writes.burst);
        Self {
            rate: RateLimiter::direct(quota),
            write_rate: RateLimiter::direct(write_quota),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            paused_until: Mutex::new(None),
        }
    }

    /// Waits for an in-flight slot, any pause, and the rate; the permit is held until the answer
    /// has been read.
    pub(crate) async fn acquire(&self) -> Result<OwnedSemaphorePermit, GraphError> {
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_| {
                GraphError::new(
                    ReasonCode::UnknownError,
                    "the Graph request limiter was closed",
                )
            })?;
        let paused = self.paused_until.lock().map(|guard| *guard).unwrap_or(None);
        if let Some(until) = paused {
            tokio::time::sleep_until(until).await;
        }
        self.rate.until_ready().await;
        Ok(permit)
    }

    /// Waits for the write budget; a write then takes [`Self::acquire`] like any request. The
    /// write budget is taken first so a write waiting for it holds no in-flight slot.
    pub(crate) async fn acquire_write_slot(&self) {
        self.write_rate.until_ready().await;
    }

    /// How long this tenant is still held back after a `Retry-After`, if it is.
    pub(crate) fn pause_left(&self) -> Option<Duration> {
        let until = self
            .paused_until
            .lock()
            .map(|guard| *guard)
            .unwrap_or(None)?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Holds back every request of this tenant for `wait`.
    pub(crate) fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        if let Ok(mut guard) = self.paused_until.lock() {
            if guard.is_none_or(|current| current < until) {
                *guard = Some(until);
            }
        }
    }
}

/// The limiters of every tenant this process talks to.
pub(crate) struct Limiters {
    config: LimiterConfig,
    writes: WriteBudget,
    by_tenant: Mutex<HashMap<String, Arc<TenantLimiter>>>,
}

impl Limiters {
    pub(crate) fn new(config: LimiterConfig, writes: WriteBudget) -> Self {
        Self {
            config,
            writes,
            by_tenant: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's limiter, created on first use.
    pub(crate) fn for_tenant(&self, tenant_id: &str) -> Arc<TenantLimiter> {
        let mut map = self
            .by_tenant
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(
            map.entry(tenant_id.to_owned())
                .or_insert_with(|| Arc::new(TenantLimiter::new(&self.config, &self.writes))),
        )
    }
}
