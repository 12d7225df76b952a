//! Password hashing with argon2id (PHC strings). Hashing is deliberately slow, so it runs on the
//! blocking pool, never on the async workers.

use argon2::password_hash::{rand_core::OsRng, SaltString};
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// Shortest accepted password for new accounts.
pub const MIN_CHARS: usize = 12;

/// A hash with the default parameters of a password nobody has: verifying against it costs the
/// same as a real check, so an unknown e-mail takes as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0tdfZ1yTlGgHRf3TW1bVyyRHxWyCvGEFxyz4dU6lqHo";

/// Hashes a new password (argon2id, random salt).
pub async fn hash(password: String) -> Result<String, argon2::password_hash::Error> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .unwrap_or(Err(argon2::password_hash::Error::Crypto))
}

/// Whether `password` matches `stored` (a PHC string). `None` — no such user — still does the
/// full amount of work and answers `false`.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await
    .unwrap_or(false)
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
    async fn unknown_users_never_verify_and_the_dummy_hash_parses() {
        assert!(
            PasswordHash::new(DUMMY_HASH).is_ok(),
            "the dummy must cost a real verification"
        );
        assert!(!verify("anything".into(), None).await);
        assert!(!verify("anything".into(), Some("not a phc string".into())).await);
    }
}
