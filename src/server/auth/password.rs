//! Password hashing with argon2id (PHC strings). Hashing is deliberately slow, so it runs on the
//! blocking pool, never on the async workers. Each check or hash takes about 19 MiB and a core
//! for its duration, so the server's (sign-in's checks, an accepted invitation's new password)
//! go through one [`Checker`] that runs at most one per core and turns the rest away after a
//! short wait instead of queueing them without bound.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, SaltString};
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::invitation::PASSWORD_MAX_CHARS;

/// Shortest accepted password for new accounts.
pub const MIN_CHARS: usize = 12;

/// A hash with the default parameters of a password nobody has: verifying against it costs the
/// same as a real check, so an unknown e-mail takes as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0tdfZ1yTlGgHRf3TW1bVyyRHxWyCvGEFxyz4dU6lqHo";

/// Hashes a new password (argon2id, random salt). Unbounded: the server hashes through a
/// [`Checker`]; the commands and the seed call this.
pub async fn hash(password: String) -> Result<String, argon2::password_hash::Error> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .unwrap_or(Err(argon2::password_hash::Error::Crypto))
}

fn hash_now(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
}

/// Whether `password` matches `stored` (a PHC string). `None` — no such user — still does the
/// full amount of work and answers `false`. Unbounded: the server checks through a [`Checker`].
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || verify_now(&password, stored))
        .await
        .unwrap_or(false)
}

/// Whether `password` is longer than any account's can be ([`PASSWORD_MAX_CHARS`], the bound
/// of a new password). Sign-in refuses such a password as a wrong one, before argon2 reads it:
/// a request body may hold megabytes of it.
fn too_long(password: &str) -> bool {
    password.chars().nth(PASSWORD_MAX_CHARS).is_some()
}

fn verify_now(password: &str, stored: Option<String>) -> bool {
    if too_long(password) {
        return false;
    }
    let known = stored.is_some();
    let phc = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
    let Ok(parsed) = PasswordHash::new(&phc) else {
        return false;
    };
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    known && matches
}

/// How long a sign-in waits for a free core before it is answered "busy".
pub const CHECK_WAIT: Duration = Duration::from_secs(2);

/// Every core is checking a password and none came free within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// When to try again.
    pub retry_after: Duration,
}

/// Why a new password was not hashed through a [`Checker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashError {
    /// No core came free in time: nothing was hashed.
    Busy(Busy),
    /// argon2 refused (it does not for a bounded password), or the hashing thread died.
    Failed,
}

/// Runs password checks and hashes, at most `permits` at a time; the others wait up to `wait`.
#[derive(Debug, Clone)]
pub struct Checker {
    permits: Arc<Semaphore>,
    wait: Duration,
}

impl Checker {
    /// `permits` checks at once (0 turns every check away, for tests of the busy answer).
    pub fn new(permits: usize, wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits)),
            wait,
        }
    }

    /// One check per core, each waiting up to [`CHECK_WAIT`].
    pub fn per_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores, CHECK_WAIT)
    }

    /// [`verify`] once a core is free; `Busy` when none came free in time. A password longer
    /// than [`PASSWORD_MAX_CHARS`] matches no account: `false` at once, without a core or a
    /// hash, whether the account exists or not (the same answer as a wrong password).
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        if too_long(&password) {
            return Ok(false);
        }
        let permit = self.permit().await?;
        // The permit moves into the blocking task: a caller that goes away mid-check does not
        // free the core before the hash is done.
        tokio::task::spawn_blocking(move || {
            let matches = verify_now(&password, stored);
            drop(permit);
            matches
        })
        .await
        .map_err(|_| self.busy())
    }

    /// [`hash`] once a core is free, under the same limit as the checks (so that requests
    /// which make a password, such as accepting an invitation, cannot queue hashes without
    /// bound either); `Busy` when none came free in time.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let permit = self.permit().await.map_err(HashError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let hashed = hash_now(&password);
            drop(permit);
            hashed
        })
        .await
        .map_err(|_| HashError::Failed)?
        .map_err(|_| HashError::Failed)
    }

    /// A core for one check or hash, waited for up to `wait`.
    async fn permit(&self) -> Result<OwnedSemaphorePermit, Busy> {
        tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| self.busy())?
            .map_err(|_| self.busy())
    }

    fn busy(&self) -> Busy {
        Busy {
            retry_after: self.wait.max(Duration::from_secs(1)),
        }
    }
}

impl Default for Checker {
    fn default() -> Self {
        Self::per_core()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ_by_salt() {
        let a = hash("correct horse battery".into()).await.unwrap();
        let b = hash("correct horse battery".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "a random salt per hash");
        assert!(verify("correct horse battery".into(), Some(a.clone())).await);
        assert!(!verify("wrong horse battery".into(), Some(a)).await);
    }

    #[tokio::test]
    async fn checks_beyond_the_permits_wait_then_are_turned_away() {
        let checker = Checker::new(1, Duration::from_millis(50));
        let stored = hash("correct horse battery".into()).await.unwrap();
        let held = checker.permits.clone().acquire_owned().await.unwrap();
        let started = std::time::Instant::now();
        let busy = checker
            .verify("correct horse battery".into(), Some(stored.clone()))
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50), "it waited");
        assert!(busy.retry_after >= Duration::from_secs(1));
        drop(held);
        assert_eq!(
            checker
                .verify("correct horse battery".into(), Some(stored))
                .await,
            Ok(true)
        );
    }

    /// Hashes share the checks' permits: with every permit held a hash is turned away, and
    /// however many hashes are asked for at once, no more than the permits run together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_share_the_permits_of_the_checks() {
        let checker = Checker::new(2, Duration::from_millis(50));
        let held = checker.permits.clone().acquire_many_owned(2).await.unwrap();
        assert!(matches!(
            checker.hash("correct horse battery".into()).await,
            Err(HashError::Busy(_))
        ));
        drop(held);
        let checker = Checker::new(2, Duration::from_secs(60));
        let hashes: Vec<_> = (0..8)
            .map(|i| {
                let checker = checker.clone();
                tokio::spawn(async move { checker.hash(format!("password number {i}")).await })
            })
            .collect();
        let mut lowest = 2;
        while hashes.iter().any(|h| !h.is_finished()) {
            lowest = lowest.min(checker.permits.available_permits());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for (i, hashed) in hashes.into_iter().enumerate() {
            let stored = hashed.await.unwrap().expect("hashed");
            assert!(verify(format!("password number {i}"), Some(stored)).await);
        }
        assert_eq!(lowest, 0, "the hashes used the permits");
        assert_eq!(checker.permits.available_permits(), 2, "and gave them back");
    }

    #[tokio::test]
    async fn unknown_users_never_verify_and_the_dummy_hash_parses() {
        assert!(
            PasswordHash::new(DUMMY_HASH).is_ok(),
            "the dummy must cost a real verification"
        );
        assert!(!verify("anything".into(), None).await);
        assert!(!verify("anything".into(), Some("not a phc string".into())).await);
    }

    /// A password longer than any account's is a wrong one, known account or not, without a
    /// core (none is free here) or a hash; one of the longest allowed length is still checked.
    #[tokio::test]
    async fn an_over_long_password_is_wrong_without_a_hash() {
        let longest = "p".repeat(PASSWORD_MAX_CHARS);
        let stored = hash(longest.clone()).await.unwrap();
        let no_cores = Checker::new(0, Duration::from_millis(20));
        let over = format!("{longest}p");
        assert_eq!(
            no_cores.verify(over.clone(), Some(stored.clone())).await,
            Ok(false)
        );
        assert_eq!(no_cores.verify(over.clone(), None).await, Ok(false));
        assert!(!verify(over, Some(stored.clone())).await);
        assert!(no_cores
            .verify(longest.clone(), Some(stored.clone()))
            .await
            .is_err());
        assert!(verify(longest, Some(stored)).await);
    }
}
