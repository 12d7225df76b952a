//! Slows down password guessing: failed sign-ins are counted per account and per client address
//! (GCRA from the `governor` crate). Once a budget is spent, every attempt on that account or
//! from that address is refused until the wait is over, whatever the password. Successful
//! sign-ins cost nothing, so colleagues behind one address are not locked out by normal use.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{state::keyed::DefaultKeyedStateStore, Quota, RateLimiter};

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// Failures allowed per account before waiting; one more every [`ACCOUNT_REFILL`].
pub const ACCOUNT_BURST: u32 = 5;
pub const ACCOUNT_REFILL: Duration = Duration::from_secs(12);
/// Failures allowed per address (several people may share one) before waiting.
pub const ADDRESS_BURST: u32 = 20;
pub const ADDRESS_REFILL: Duration = Duration::from_secs(3);
/// Above this many blocked keys, expired ones are dropped (bounds memory under a spray).
const PRUNE_ABOVE: usize = 10_000;

/// Per-account and per-address failure budgets, shared by every request of the process.
#[derive(Clone)]
pub struct SignInThrottle {
    failures: Arc<Keyed>,
    address_failures: Arc<Keyed>,
    blocked_until: Arc<Mutex<HashMap<String, Instant>>>,
}

fn quota(burst: u32, refill: Duration) -> Quota {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(refill)
        .unwrap_or(Quota::per_minute(burst))
        .allow_burst(burst)
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self {
            failures: Arc::new(RateLimiter::keyed(quota(ACCOUNT_BURST, ACCOUNT_REFILL))),
            address_failures: Arc::new(RateLimiter::keyed(quota(ADDRESS_BURST, ADDRESS_REFILL))),
            blocked_until: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

fn keys(account: &str, address: Option<IpAddr>) -> impl Iterator<Item = String> {
    std::iter::once(format!("account:{account}")).chain(address.map(|ip| format!("address:{ip}")))
}

impl SignInThrottle {
    /// Whether an attempt may be made now; `Err` says how long to wait.
    pub fn check(&self, account: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let blocked = self.blocked_until.lock().unwrap_or_else(|e| e.into_inner());
        let wait = keys(account, address)
            .filter_map(|key| {
                blocked
                    .get(&key)
                    .map(|until| until.saturating_duration_since(now))
            })
            .max()
            .unwrap_or_default();
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Counts a failed attempt; a spent budget blocks its key for the wait governor gives.
    pub fn record_failure(&self, account: &str, address: Option<IpAddr>) {
        let clock = DefaultClock::default();
        let now = Instant::now();
        let mut blocked = self.blocked_until.lock().unwrap_or_else(|e| e.into_inner());
        if blocked.len() > PRUNE_ABOVE {
            blocked.retain(|_, until| *until > now);
        }
        for key in keys(account, address) {
            let limiter = if key.starts_with("account:") {
                &self.failures
            } else {
                &self.address_failures
            };
            if let Err(not_until) = limiter.check_key(&key) {
                blocked.insert(key, now + not_until.wait_time_from(clock.now()));
            }
        }
    }
}

impl std::fmt::Debug for SignInThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignInThrottle")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_block_the_account_only() {
        let throttle = SignInThrottle::default();
        for _ in 0..=ACCOUNT_BURST {
            assert!(throttle.check("a@x.io", None).is_ok());
            throttle.record_failure("a@x.io", None);
        }
        let wait = throttle.check("a@x.io", None).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= ACCOUNT_REFILL);
        assert!(
            throttle.check("b@x.io", None).is_ok(),
            "another account has its own budget"
        );
    }

    #[test]
    fn one_address_cannot_spray_many_accounts() {
        let throttle = SignInThrottle::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        for n in 0..=ADDRESS_BURST {
            throttle.record_failure(&format!("user{n}@x.io"), Some(ip));
        }
        assert!(throttle.check("fresh@x.io", Some(ip)).is_err());
        assert!(throttle
            .check("fresh@x.io", Some([10, 0, 0, 2].into()))
            .is_ok());
    }

    #[test]
    fn successes_cost_nothing() {
        let throttle = SignInThrottle::default();
        for _ in 0..100 {
            assert!(throttle
                .check("busy@x.io", Some([10, 0, 0, 3].into()))
                .is_ok());
        }
    }
}
