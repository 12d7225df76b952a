//! Slows down password guessing: sign-in attempts are counted per account and per client
//! address (a GCRA budget per key). An attempt is reserved atomically *before* the slow password
//! check, so N parallel attempts get through at most the budget, not N; once a budget is spent,
//! every attempt on that account or from that address is refused until a slot frees up, whatever
//! the password. A successful sign-in (or an attempt never checked) gives its slot back, so
//! colleagues behind one address are not locked out by normal use.
//!
//! The budgets live in the database (`sign_in_budgets`), not in the process: every `serve`
//! instance on one database draws on the same budget, so K instances behind one address do not
//! give an attacker K times the guesses. Both keys of an attempt are reserved in one writing
//! transaction (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an upsert that locks each key's row, the
//! account's first, so two attempts never wait on each other in a cycle); when either key is
//! over its budget the transaction is rolled back and nothing is counted. When the database
//! cannot answer, the attempt is refused ([`Refused::Unavailable`]), never let through
//! uncounted.
//!
//! IPv6 clients are counted per /64: one host usually holds a whole /64 and can pick a fresh
//! address from it for every attempt.
//!
//! The table holds one row per key that used part of its budget recently; [`prune_forever`]
//! deletes the others on a timer, so spraying random e-mails cannot grow it without bound.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use crate::domain::Timestamp;
use crate::server::db::{Backend, Db};

/// How many attempts a key may make at once, and how fast a spent slot comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub burst: u32,
    pub refill: Duration,
}

impl Budget {
    /// One refill, in milliseconds.
    fn refill_ms(self) -> i64 {
        i64::try_from(self.refill.as_millis()).unwrap_or(i64::MAX)
    }

    /// The whole budget's span (`burst × refill`), in milliseconds: a key whose next free time
    /// lies this far ahead has spent all of it.
    fn span_ms(self) -> i64 {
        self.refill_ms().saturating_mul(i64::from(self.burst))
    }
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

/// The row an account's budget is kept in.
fn account_row(account: &str) -> String {
    format!("account:{account}")
}

/// The row an address's budget is kept in ([`address_key`]).
fn address_row(address: IpAddr) -> String {
    format!("address:{}", address_key(address))
}

/// The per-account and per-address budgets every instance on the database applies; the
/// budgets' state is in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInThrottle {
    account: Budget,
    address: Budget,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self::new(ACCOUNT, ADDRESS)
    }
}

/// Why an attempt was not reserved.
#[derive(Debug)]
pub enum Refused {
    /// A budget is spent: the next attempt can be made after this long.
    Wait(Duration),
    /// The database did not answer (logged): the attempt is refused rather than let through
    /// uncounted.
    Unavailable,
}

/// One reserved attempt. Dropped as it is, it stays counted (a failed or abandoned attempt);
/// [`Attempt::refund`] gives the slot back.
#[must_use = "an attempt stays counted unless it is refunded"]
pub struct Attempt {
    db: Db,
    /// Each reserved row and its budget's refill in milliseconds.
    keys: Vec<(String, i64)>,
}

impl Attempt {
    /// Gives the slot back: the sign-in succeeded, or the password was never checked. When the
    /// database does not answer, the attempt stays counted (logged).
    pub async fn refund(self) {
        if let Err(error) = self.try_refund().await {
            tracing::warn!(%error, "a sign-in attempt could not be refunded; it stays counted");
        }
    }

    async fn try_refund(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_writing().await?;
        for (key, refill) in &self.keys {
            sqlx::query("UPDATE sign_in_budgets SET next_free = next_free - $1 WHERE key = $2")
                .bind(*refill)
                .bind(key.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}

impl SignInThrottle {
    /// A throttle with these budgets (tests use small ones).
    pub fn new(account: Budget, address: Budget) -> Self {
        Self { account, address }
    }

    /// Reserves one attempt on the account and, when known, from the address: both or neither,
    /// in `db`, for every instance on it.
    pub async fn reserve(
        &self,
        db: &Db,
        account: &str,
        address: Option<IpAddr>,
    ) -> Result<Attempt, Refused> {
        self.reserve_at(db, Timestamp::now().millis(), account, address)
            .await
    }

    async fn reserve_at(
        &self,
        db: &Db,
        now: i64,
        account: &str,
        address: Option<IpAddr>,
    ) -> Result<Attempt, Refused> {
        // The account's row first, always: two attempts lock their rows in one order.
        let keys: Vec<(String, Budget)> = std::iter::once((account_row(account), self.account))
            .chain(address.map(|ip| (address_row(ip), self.address)))
            .collect();
        match try_reserve(db, now, &keys).await {
            Ok(None) => Ok(Attempt {
                db: db.clone(),
                keys: keys
                    .into_iter()
                    .map(|(key, budget)| (key, budget.refill_ms()))
                    .collect(),
            }),
            Ok(Some(wait)) => Err(Refused::Wait(wait)),
            Err(error) => {
                tracing::error!(%error, "the sign-in throttle could not reserve an attempt");
                Err(Refused::Unavailable)
            }
        }
    }
}

/// Takes one slot of each key's budget in one transaction, or none: `Some(wait)` when a budget
/// is spent (and the transaction rolled back).
async fn try_reserve(
    db: &Db,
    now: i64,
    keys: &[(String, Budget)],
) -> Result<Option<Duration>, sqlx::Error> {
    let greatest = db.backend().greatest();
    // A key's next free time moves one refill on from now or from where it was, whichever is
    // later, unless that lies beyond the whole budget's span: then no row is returned. The
    // upsert locks the row either way (PostgreSQL), so the transaction reads it unchanged.
    let take = format!(
        "INSERT INTO sign_in_budgets (key, next_free) VALUES ($1, $2 + $3) \
         ON CONFLICT (key) DO UPDATE SET next_free = {greatest}(sign_in_budgets.next_free, $2) + $3 \
         WHERE {greatest}(sign_in_budgets.next_free, $2) + $3 <= $2 + $4 \
         RETURNING next_free"
    );
    let mut tx = db.begin_writing().await?;
    let mut wait = 0_i64;
    for (key, budget) in keys {
        let (refill, span) = (budget.refill_ms(), budget.span_ms());
        let taken: Option<i64> = if span < refill {
            // No budget at all (a burst of 0).
            None
        } else {
            sqlx::query_scalar(&take)
                .bind(key.as_str())
                .bind(now)
                .bind(refill)
                .bind(span)
                .fetch_optional(&mut *tx)
                .await?
        };
        if taken.is_none() {
            let next_free: Option<i64> =
                sqlx::query_scalar("SELECT next_free FROM sign_in_budgets WHERE key = $1")
                    .bind(key.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let after = next_free.unwrap_or(now).max(now).saturating_add(refill);
            wait = wait.max(after.saturating_sub(now.saturating_add(span)).max(1));
        }
    }
    if wait > 0 {
        // Nothing counted: a refused attempt spends no budget.
        tx.rollback().await?;
        return Ok(Some(Duration::from_millis(wait.unsigned_abs())));
    }
    tx.commit().await?;
    Ok(None)
}

/// Deletes the budgets that are whole again (they behave exactly like unknown keys); answers
/// how many.
pub async fn prune(db: &Db) -> Result<u64, sqlx::Error> {
    prune_at(db, Timestamp::now().millis()).await
}

async fn prune_at(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    // PostgreSQL: a plain DELETE locks the rows it deletes in table order, so it could delete
    // an address row, then wait on the account row a reserve holds while that reserve waits on
    // the deleted address row (a deadlock, 40P01, and a sign-in answered 503). It leaves any
    // row a sign-in holds to the next prune instead. SQLite has one writer at a time.
    let statement = match db.backend() {
        Backend::Postgres => {
            "DELETE FROM sign_in_budgets WHERE key IN \
             (SELECT key FROM sign_in_budgets WHERE next_free <= $1 FOR UPDATE SKIP LOCKED)"
        }
        Backend::Sqlite => "DELETE FROM sign_in_budgets WHERE next_free <= $1",
    };
    let done = sqlx::query(statement).bind(now).execute(db.pool()).await?;
    Ok(done.rows_affected())
}

/// Prunes the budgets in `db` every `period`, for as long as the server runs (any instance
/// may: each deletes only what is whole again).
pub async fn prune_forever(db: Db, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        if let Err(error) = prune(&db).await {
            tracing::warn!(%error, "could not prune the sign-in budgets");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> Option<IpAddr> {
        Some(raw.parse().unwrap())
    }

    /// A migrated SQLite database in a file of its own (each connection of an in-memory pool
    /// would see a database of its own), removed when the test ends.
    struct TestDb {
        db: Db,
        dir: std::path::PathBuf,
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl std::ops::Deref for TestDb {
        type Target = Db;
        fn deref(&self) -> &Db {
            &self.db
        }
    }

    async fn test_db() -> TestDb {
        sqlx::any::install_default_drivers();
        let dir =
            std::env::temp_dir().join(format!("ta-throttle-{}", uuid::Uuid::new_v4().simple()));
        let db = Db::connect(&format!("sqlite://{}/test.db", dir.display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        TestDb { db, dir }
    }

    async fn rows(db: &Db) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM sign_in_budgets")
            .fetch_one(db.pool())
            .await
            .unwrap()
    }

    fn wait_of(refused: Result<Attempt, Refused>) -> Duration {
        match refused {
            Err(Refused::Wait(wait)) => wait,
            Err(Refused::Unavailable) => panic!("the database did not answer"),
            Ok(_) => panic!("the attempt was reserved"),
        }
    }

    #[tokio::test]
    async fn repeated_failures_block_the_account_only() {
        let db = test_db().await;
        let throttle = SignInThrottle::default();
        for _ in 0..ACCOUNT.burst {
            let _failed = throttle.reserve(&db, "a@x.io", None).await.unwrap();
        }
        let wait = wait_of(throttle.reserve(&db, "a@x.io", None).await);
        assert!(wait > Duration::ZERO && wait <= ACCOUNT.refill, "{wait:?}");
        assert!(
            throttle.reserve(&db, "b@x.io", None).await.is_ok(),
            "another account has its own budget"
        );
    }

    #[tokio::test]
    async fn a_spent_slot_comes_back_after_the_refill() {
        let db = test_db().await;
        let throttle = SignInThrottle::default();
        let start = Timestamp::now().millis();
        for _ in 0..ACCOUNT.burst {
            let _failed = throttle
                .reserve_at(&db, start, "a@x.io", None)
                .await
                .unwrap();
        }
        let wait = wait_of(throttle.reserve_at(&db, start, "a@x.io", None).await);
        assert_eq!(wait, ACCOUNT.refill);
        let later = start + ACCOUNT.refill_ms();
        let _one = throttle
            .reserve_at(&db, later, "a@x.io", None)
            .await
            .unwrap();
        assert!(throttle
            .reserve_at(&db, later, "a@x.io", None)
            .await
            .is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_attempts_get_at_most_the_budget() {
        let db = test_db().await;
        let throttle = SignInThrottle::default();
        let attempts: Vec<_> = (0..64)
            .map(|_| {
                let db = db.db.clone();
                tokio::spawn(async move {
                    throttle
                        .reserve(&db, "a@x.io", ip("10.0.0.1"))
                        .await
                        .map(drop)
                })
            })
            .collect();
        let mut reserved = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(()) => reserved += 1,
                Err(Refused::Wait(_)) => {}
                Err(Refused::Unavailable) => panic!("the database did not answer"),
            }
        }
        assert_eq!(reserved, ACCOUNT.burst);
    }

    #[tokio::test]
    async fn one_address_cannot_spray_many_accounts() {
        let db = test_db().await;
        let throttle = SignInThrottle::default();
        for n in 0..ADDRESS.burst {
            let _failed = throttle
                .reserve(&db, &format!("user{n}@x.io"), ip("10.0.0.1"))
                .await
                .unwrap();
        }
        assert!(throttle
            .reserve(&db, "fresh@x.io", ip("10.0.0.1"))
            .await
            .is_err());
        assert!(throttle
            .reserve(&db, "fresh@x.io", ip("10.0.0.2"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_refused_attempt_spends_nothing() {
        let db = test_db().await;
        let throttle = SignInThrottle::default();
        for n in 0..ADDRESS.burst {
            let _failed = throttle
                .reserve(&db, &format!("user{n}@x.io"), ip("10.0.0.1"))
                .await
                .unwrap();
        }
        // The address is spent: the account's budget must stay whole for its owner elsewhere.
        for _ in 0..10 {
            assert!(throttle
                .reserve(&db, "owner@x.io", ip("10.0.0.1"))
                .await
                .is_err());
        }
        for _ in 0..ACCOUNT.burst {
            let _failed = throttle
                .reserve(&db, "owner@x.io", ip("10.0.0.9"))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn refunded_attempts_cost_nothing() {
        let db = test_db().await;
        let throttle = SignInThrottle::default();
        for _ in 0..50 {
            throttle
                .reserve(&db, "busy@x.io", ip("10.0.0.3"))
                .await
                .unwrap()
                .refund()
                .await;
        }
        for _ in 0..ACCOUNT.burst {
            let _failed = throttle
                .reserve(&db, "busy@x.io", ip("10.0.0.3"))
                .await
                .unwrap();
        }
        assert!(throttle
            .reserve(&db, "busy@x.io", ip("10.0.0.3"))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn ipv6_clients_share_a_budget_per_64() {
        let db = test_db().await;
        let throttle = SignInThrottle::default();
        for n in 0..ADDRESS.burst {
            let address = format!("2001:db8:1:2:{n:x}::1");
            let _failed = throttle
                .reserve(&db, &format!("user{n}@x.io"), ip(&address))
                .await
                .unwrap();
        }
        assert!(throttle
            .reserve(&db, "fresh@x.io", ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
            .await
            .is_err());
        assert!(throttle
            .reserve(&db, "fresh@x.io", ip("2001:db8:1:3::1"))
            .await
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
        assert_eq!(
            address_row("2001:db8:1:2:aaaa::1".parse().unwrap()),
            "address:2001:db8:1:2::"
        );
        assert_eq!(account_row("a@x.io"), "account:a@x.io");
    }

    #[tokio::test]
    async fn pruning_drops_every_key_whose_budget_is_back() {
        let db = test_db().await;
        let throttle = SignInThrottle::default();
        let start = Timestamp::now().millis();
        for n in 0..200u32 {
            let address = IpAddr::from(n.to_be_bytes());
            let _failed = throttle
                .reserve_at(&db, start, &format!("spray{n}@x.io"), Some(address))
                .await
                .unwrap();
        }
        assert_eq!(rows(&db).await, 400, "one key per account and per address");
        assert_eq!(prune_at(&db, start).await.unwrap(), 0);
        prune_at(&db, start + ADDRESS.refill_ms()).await.unwrap();
        assert_eq!(rows(&db).await, 200, "the addresses' slots are back");
        prune_at(&db, start + ACCOUNT.refill_ms()).await.unwrap();
        assert_eq!(rows(&db).await, 0);
    }

    #[tokio::test]
    async fn the_timer_prunes_the_store() {
        let db = test_db().await;
        let budget = Budget {
            burst: 2,
            refill: Duration::from_millis(10),
        };
        let throttle = SignInThrottle::new(budget, budget);
        for n in 0..100 {
            let _failed = throttle
                .reserve(&db, &format!("spray{n}@x.io"), None)
                .await
                .unwrap();
        }
        assert_eq!(rows(&db).await, 100);
        tokio::spawn(prune_forever(db.db.clone(), Duration::from_millis(20)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rows(&db).await, 0);
    }

    #[tokio::test]
    async fn a_database_that_does_not_answer_refuses_the_attempt() {
        let db = test_db().await;
        let throttle = SignInThrottle::default();
        db.close().await;
        assert!(matches!(
            throttle.reserve(&db, "a@x.io", ip("10.0.0.1")).await,
            Err(Refused::Unavailable)
        ));
    }
}
