//! Slows down password guessing: sign-in attempts are counted per account and per client
//! address (a GCRA budget per key). An attempt is reserved atomically *before* the slow password
//! check, so N parallel attempts get through at most the budget, not N; once a budget is spent,
//! every attempt on that account or from that address is refused until a slot frees up, whatever
//! the password. A successful sign-in (or an attempt never checked) gives its slot back, so
//! colleagues behind one address are not locked out by normal use.
//!
//! IPv6 clients are counted per /64: one host usually holds a whole /64 and can pick a fresh
//! address from it for every attempt.
//!
//! The store holds one entry per key that used part of its budget recently; [`prune_forever`]
//! drops the others on a timer, so spraying random e-mails cannot grow memory without bound.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many attempts a key may make at once, and how fast a spent slot comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub burst: u32,
    pub refill: Duration,
}

/// Failed sign-ins allowed per account before waiting; one more every 12 s.
pub const ACCOUNT: Budget = Budget {
    burst: 5,
    refill: Duration::from_secs(12),
};
/// Failed sign-ins allowed per address (several people may share one) before waiting.
pub const ADDRESS: Budget = Budget {
    burst: 20,
    refill: Duration::from_secs(3),
};

/// What a budget is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    /// An IPv4 address, or the /64 network of an IPv6 address.
    Address(IpAddr),
}

/// The address a client's budget is kept under: IPv4 as it is, IPv6 by its /64 network, and an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, from a dual-stack listener) as the IPv4 address.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

/// Per-account and per-address budgets, shared by every request of the process.
#[derive(Clone)]
pub struct SignInThrottle {
    account: Budget,
    address: Budget,
    /// Each key's theoretical arrival time (GCRA): the key has spent its whole budget when it
    /// lies `burst × refill` in the future. A time in the past is the same as no entry.
    next_free: Arc<Mutex<HashMap<Key, Instant>>>,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self::new(ACCOUNT, ADDRESS)
    }
}

/// One reserved attempt. Dropped as it is, it stays counted (a failed or abandoned attempt);
/// [`Attempt::refund`] gives the slot back.
#[must_use = "an attempt stays counted unless it is refunded"]
pub struct Attempt {
    throttle: SignInThrottle,
    keys: Vec<Key>,
}

impl Attempt {
    /// Gives the slot back: the sign-in succeeded, or the password was never checked.
    pub fn refund(self) {
        let mut next_free = self.throttle.lock();
        for key in &self.keys {
            let refill = self.throttle.budget(key).refill;
            if let Some(at) = next_free.get_mut(key) {
                *at = at.checked_sub(refill).unwrap_or(*at);
            }
        }
    }
}

impl SignInThrottle {
    /// A throttle with these budgets (tests use small ones).
    pub fn new(account: Budget, address: Budget) -> Self {
        Self {
            account,
            address,
            next_free: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Reserves one attempt on the account and, when known, from the address: both or neither.
    /// `Err` says how long to wait before the next attempt can be made.
    pub fn reserve(&self, account: &str, address: Option<IpAddr>) -> Result<Attempt, Duration> {
        self.reserve_at(Instant::now(), account, address)
    }

    fn reserve_at(
        &self,
        now: Instant,
        account: &str,
        address: Option<IpAddr>,
    ) -> Result<Attempt, Duration> {
        let keys: Vec<Key> = std::iter::once(Key::Account(account.to_owned()))
            .chain(address.map(|ip| Key::Address(address_key(ip))))
            .collect();
        let mut next_free = self.lock();
        let mut updates = Vec::with_capacity(keys.len());
        let mut wait = Duration::ZERO;
        for key in &keys {
            let budget = self.budget(key);
            let from = next_free.get(key).map_or(now, |at| (*at).max(now));
            let after = from + budget.refill;
            let limit = now + budget.refill * budget.burst;
            wait = wait.max(after.saturating_duration_since(limit));
            updates.push(after);
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for (key, after) in keys.iter().zip(updates) {
            next_free.insert(key.clone(), after);
        }
        drop(next_free);
        Ok(Attempt {
            throttle: self.clone(),
            keys,
        })
    }

    /// Drops the keys whose whole budget is back (they behave exactly like unknown keys).
    pub fn retain_recent(&self) {
        self.retain_recent_at(Instant::now());
    }

    fn retain_recent_at(&self, now: Instant) {
        self.lock().retain(|_, at| *at > now);
    }

    /// How many keys the store holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn budget(&self, key: &Key) -> Budget {
        match key {
            Key::Account(_) => self.account,
            Key::Address(_) => self.address,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Instant>> {
        // The map is consistent after every statement, so a panic elsewhere cannot corrupt it.
        self.next_free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Prunes `throttle` every `period`, for as long as the server runs.
pub async fn prune_forever(throttle: SignInThrottle, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        throttle.retain_recent();
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

    fn ip(raw: &str) -> Option<IpAddr> {
        Some(raw.parse().unwrap())
    }

    #[test]
    fn repeated_failures_block_the_account_only() {
        let throttle = SignInThrottle::default();
        for _ in 0..ACCOUNT.burst {
            let _failed = throttle.reserve("a@x.io", None).unwrap();
        }
        let wait = throttle.reserve("a@x.io", None).err().unwrap();
        assert!(wait > Duration::ZERO && wait <= ACCOUNT.refill, "{wait:?}");
        assert!(
            throttle.reserve("b@x.io", None).is_ok(),
            "another account has its own budget"
        );
    }

    #[test]
    fn a_spent_slot_comes_back_after_the_refill() {
        let throttle = SignInThrottle::default();
        let start = Instant::now();
        for _ in 0..ACCOUNT.burst {
            let _failed = throttle.reserve_at(start, "a@x.io", None).unwrap();
        }
        assert!(throttle.reserve_at(start, "a@x.io", None).is_err());
        let later = start + ACCOUNT.refill;
        let _one = throttle.reserve_at(later, "a@x.io", None).unwrap();
        assert!(throttle.reserve_at(later, "a@x.io", None).is_err());
    }

    #[test]
    fn parallel_attempts_get_at_most_the_budget() {
        let throttle = SignInThrottle::default();
        let reserved = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..64)
                .map(|_| {
                    let throttle = &throttle;
                    scope.spawn(move || throttle.reserve("a@x.io", ip("10.0.0.1")).ok())
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .count()
        });
        assert_eq!(reserved, ACCOUNT.burst as usize);
    }

    #[test]
    fn one_address_cannot_spray_many_accounts() {
        let throttle = SignInThrottle::default();
        for n in 0..ADDRESS.burst {
            let _failed = throttle
                .reserve(&format!("user{n}@x.io"), ip("10.0.0.1"))
                .unwrap();
        }
        assert!(throttle.reserve("fresh@x.io", ip("10.0.0.1")).is_err());
        assert!(throttle.reserve("fresh@x.io", ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn a_refused_attempt_spends_nothing() {
        let throttle = SignInThrottle::default();
        for n in 0..ADDRESS.burst {
            let _failed = throttle
                .reserve(&format!("user{n}@x.io"), ip("10.0.0.1"))
                .unwrap();
        }
        // The address is spent: the account's budget must stay whole for its owner elsewhere.
        for _ in 0..10 {
            assert!(throttle.reserve("owner@x.io", ip("10.0.0.1")).is_err());
        }
        for _ in 0..ACCOUNT.burst {
            let _failed = throttle.reserve("owner@x.io", ip("10.0.0.9")).unwrap();
        }
    }

    #[test]
    fn refunded_attempts_cost_nothing() {
        let throttle = SignInThrottle::default();
        for _ in 0..100 {
            throttle
                .reserve("busy@x.io", ip("10.0.0.3"))
                .unwrap()
                .refund();
        }
        for _ in 0..ACCOUNT.burst {
            let _failed = throttle.reserve("busy@x.io", ip("10.0.0.3")).unwrap();
        }
        assert!(throttle.reserve("busy@x.io", ip("10.0.0.3")).is_err());
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let throttle = SignInThrottle::default();
        for n in 0..ADDRESS.burst {
            let address = format!("2001:db8:1:2:{n:x}::1");
            let _failed = throttle
                .reserve(&format!("user{n}@x.io"), ip(&address))
                .unwrap();
        }
        assert!(throttle
            .reserve("fresh@x.io", ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
            .is_err());
        assert!(throttle
            .reserve("fresh@x.io", ip("2001:db8:1:3::1"))
            .is_ok());
    }

    #[test]
    fn address_keys_group_ipv6_by_64_and_unmap_ipv4() {
        assert_eq!(
            address_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address_key("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address_key("192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn pruning_drops_every_key_whose_budget_is_back() {
        let throttle = SignInThrottle::default();
        let start = Instant::now();
        for n in 0..1000u32 {
            let address = IpAddr::from(n.to_be_bytes());
            let _failed = throttle
                .reserve_at(start, &format!("spray{n}@x.io"), Some(address))
                .unwrap();
        }
        assert_eq!(throttle.len(), 2000, "one key per account and per address");
        throttle.retain_recent_at(start + ADDRESS.refill);
        assert_eq!(throttle.len(), 1000, "the addresses' slots are back");
        throttle.retain_recent_at(start + ACCOUNT.refill);
        assert!(throttle.is_empty(), "{} keys left", throttle.len());
    }

    #[tokio::test]
    async fn the_timer_prunes_the_store() {
        let budget = Budget {
            burst: 2,
            refill: Duration::from_millis(10),
        };
        let throttle = SignInThrottle::new(budget, budget);
        for n in 0..500 {
            let _failed = throttle.reserve(&format!("spray{n}@x.io"), None).unwrap();
        }
        assert_eq!(throttle.len(), 500);
        tokio::spawn(prune_forever(throttle.clone(), Duration::from_millis(20)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(throttle.is_empty(), "{} keys left", throttle.len());
    }
}
