//! The key ring that encrypts tenants' client secrets at rest: AES-256-GCM with a random 96-bit
//! nonce per secret and the tenant's row id as associated data, so a ciphertext copied onto
//! another tenant's row does not decrypt.
//!
//! The key file (`--secret-key-file`) holds one key a line, `ID:HEX` (64 hex digits, 32 bytes);
//! blank lines and `#` comments are skipped. The last key is the newest: it encrypts, and every
//! key in the file decrypts what it encrypted. Each key's *check value* (a known text encrypted
//! under it) is stored in `secret_key_checks` the first time the key is used, so a later start
//! with a different key under the same id is refused before any secret is touched.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

use crate::domain::Timestamp;
use crate::server::db::Db;
use crate::server::graph::ClientSecret;

/// The text each key's check value encrypts.
const CHECK_TEXT: &[u8] = b"tenantatlas secret key check";
/// Nonce length of AES-GCM (96 bits).
const NONCE_LEN: usize = 12;
/// The longest key id accepted in the file.
const KEY_ID_MAX_CHARS: usize = 32;

/// Why the key file cannot be used, or a secret cannot be sealed or opened. No variant carries
/// a key or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the secret key file {path} cannot be read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("line {line} of the secret key file is not ID:HEX with a 64-digit hex key (32 bytes)")]
    Malformed { line: usize },
    #[error("the secret key file names the key id {0:?} twice")]
    DuplicateId(String),
    #[error(
        "the secret key file {path} can be changed by other users (mode {mode:04o}), who could \
         add a key of their own that then encrypts new secrets: run `chmod 600 {path}` (and \
         make it owned by the account the app runs as)"
    )]
    Writable { path: String, mode: u32 },
    #[error("the secret key file holds no key")]
    Empty,
    #[error(
        "the key {0:?} in the secret key file is not the key this database's secrets were \
         encrypted with (its stored check value does not decrypt): use the right key file"
    )]
    WrongKey(String),
    #[error(
        "tenant secrets are encrypted with the key {0:?}, which the secret key file does not \
         hold: add it back to the file"
    )]
    MissingKey(String),
    #[error("no secret key is configured (--secret-key-file or TENANTATLAS_SECRET_KEY_FILE)")]
    NotConfigured,
    #[error("the stored secret cannot be decrypted (wrong key, or it belongs to another tenant)")]
    Undecryptable,
}

/// One key of the ring.
struct SecretKey {
    id: String,
    cipher: Aes256Gcm,
}

/// The keys of the key file, oldest first. Never prints a key.
pub struct KeyRing {
    keys: Vec<SecretKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("ids", &ids).finish()
    }
}

/// Who besides its owner may use the key file, by its Unix permission bits (elsewhere:
/// [`FileAccess::OwnerOnly`], the platform's ACLs are the operator's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAccess {
    /// Only the owner (`0600`, `0400`): as it should be.
    OwnerOnly,
    /// Group or others may read it (`0644`, what `umask 022` gives a new file): they could
    /// decrypt every stored secret. Used, with a warning.
    ReadableByOthers { mode: u32 },
    /// Group or others may change it: they could put in a key of their own, which would then
    /// encrypt new secrets. Refused.
    WritableByOthers { mode: u32 },
}

impl FileAccess {
    /// The access `metadata`'s permission bits give.
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            Self::of_mode(metadata.permissions().mode())
        }
        #[cfg(not(unix))]
        {
            let _ = metadata;
            Self::OwnerOnly
        }
    }

    /// The access the Unix permission bits `mode` give.
    pub fn of_mode(mode: u32) -> Self {
        let mode = mode & 0o7777;
        if mode & 0o022 != 0 {
            Self::WritableByOthers { mode }
        } else if mode & 0o044 != 0 {
            Self::ReadableByOthers { mode }
        } else {
            Self::OwnerOnly
        }
    }
}

/// A sealed secret: which key sealed it and `hex(nonce || ciphertext)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub ciphertext: String,
}

impl KeyRing {
    /// Reads the key file at `path`. On Unix a file other users may change is refused, and one
    /// they may read is used with a warning ([`FileAccess`]).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let unreadable = |error: std::io::Error| KeyError::Unreadable {
            path: path.display().to_string(),
            reason: error.to_string(),
        };
        let access = FileAccess::of(&std::fs::metadata(path).map_err(unreadable)?);
        match access {
            FileAccess::OwnerOnly => {}
            FileAccess::ReadableByOthers { mode } => tracing::warn!(
                "the secret key file {} is readable by other users (mode {mode:04o}): anyone \
                 who can read it can decrypt the tenants' client secrets; run `chmod 600 {}`",
                path.display(),
                path.display()
            ),
            FileAccess::WritableByOthers { mode } => {
                return Err(KeyError::Writable {
                    path: path.display().to_string(),
                    mode,
                })
            }
        }
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        Self::parse(&text)
    }

    /// Parses the key file's text (see the module docs).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut keys: Vec<SecretKey> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = KeyError::Malformed { line: index + 1 };
            let (id, hex) = line.split_once(':').ok_or(malformed.clone())?;
            let id = id.trim();
            let id_ok = !id.is_empty()
                && id.len() <= KEY_ID_MAX_CHARS
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            let bytes = decode_hex(hex.trim()).filter(|b| b.len() == 32);
            let (true, Some(bytes)) = (id_ok, bytes) else {
                return Err(malformed);
            };
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyError::DuplicateId(id.to_owned()));
            }
            keys.push(SecretKey {
                id: id.to_owned(),
                cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
            });
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self { keys })
    }

    /// The id of the newest key, the one that encrypts.
    pub fn newest_id(&self) -> &str {
        &self.newest().id
    }

    fn newest(&self) -> &SecretKey {
        self.keys.last().expect("a key ring is never empty")
    }

    fn key(&self, id: &str) -> Option<&SecretKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Encrypts `secret` for the tenant row `tenant_id` with the newest key.
    pub fn seal(&self, tenant_id: i64, secret: &ClientSecret) -> Sealed {
        let key = self.newest();
        Sealed {
            key_id: key.id.clone(),
            ciphertext: encrypt(
                &key.cipher,
                secret.expose().as_bytes(),
                &tenant_aad(tenant_id),
            ),
        }
    }

    /// Decrypts a secret sealed for the tenant row `tenant_id`.
    pub fn open(&self, tenant_id: i64, sealed: &Sealed) -> Result<ClientSecret, KeyError> {
        let key = self
            .key(&sealed.key_id)
            .ok_or_else(|| KeyError::MissingKey(sealed.key_id.clone()))?;
        let clear = decrypt(&key.cipher, &sealed.ciphertext, &tenant_aad(tenant_id))
            .ok_or(KeyError::Undecryptable)?;
        String::from_utf8(clear)
            .map(ClientSecret::new)
            .map_err(|_| KeyError::Undecryptable)
    }

    /// Checks the ring against the database at start: every key whose check value is stored
    /// must open it, and every key a stored secret names must be in the ring. Keys seen for the
    /// first time get their check value stored.
    pub async fn verify(&self, db: &Db) -> Result<(), VerifyError> {
        let stored: Vec<(String, String)> =
            sqlx::query_as("SELECT key_id, check_value FROM secret_key_checks")
                .fetch_all(db.pool())
                .await?;
        let mut known = Vec::with_capacity(stored.len());
        for (id, check) in stored {
            if let Some(key) = self.key(&id) {
                match decrypt(&key.cipher, &check, &check_aad(&id)) {
                    Some(text) if text == CHECK_TEXT => {}
                    _ => return Err(KeyError::WrongKey(id).into()),
                }
            }
            known.push(id);
        }
        let used: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT graph_secret_key_id FROM tenants WHERE graph_secret_key_id IS NOT NULL",
        )
        .fetch_all(db.pool())
        .await?;
        if let Some(missing) = used.into_iter().find(|id| self.key(id).is_none()) {
            return Err(KeyError::MissingKey(missing).into());
        }
        self.record_checks(db, &known).await
    }

    /// Stores the check value of every key not in `known` (the ids whose check value was read),
    /// then reads back what is stored under each: another process that started at the same time
    /// with different material under the same id may have stored its own first, and then this
    /// key is the wrong one ([`KeyError::WrongKey`]).
    async fn record_checks(&self, db: &Db, known: &[String]) -> Result<(), VerifyError> {
        for key in self.keys.iter().filter(|k| !known.contains(&k.id)) {
            sqlx::query(
                "INSERT INTO secret_key_checks (key_id, check_value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id) DO NOTHING",
            )
            .bind(&key.id)
            .bind(encrypt(&key.cipher, CHECK_TEXT, &check_aad(&key.id)))
            .bind(Timestamp::now().millis())
            .execute(db.pool())
            .await?;
            let stored: String =
                sqlx::query_scalar("SELECT check_value FROM secret_key_checks WHERE key_id = $1")
                    .bind(&key.id)
                    .fetch_one(db.pool())
                    .await?;
            match decrypt(&key.cipher, &stored, &check_aad(&key.id)) {
                Some(text) if text == CHECK_TEXT => {}
                _ => return Err(KeyError::WrongKey(key.id.clone()).into()),
            }
        }
        Ok(())
    }
}

/// [`KeyRing::verify`]'s failure: the key file, or the database.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The associated data of a tenant's secret: its row id.
fn tenant_aad(tenant_id: i64) -> Vec<u8> {
    format!("tenantatlas tenant {tenant_id}").into_bytes()
}

fn check_aad(key_id: &str) -> Vec<u8> {
    format!("tenantatlas key check {key_id}").into_bytes()
}

fn encrypt(cipher: &Aes256Gcm, clear: &[u8], aad: &[u8]) -> String {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: clear, aad })
        .expect("AES-GCM encrypts any input shorter than 64 GiB");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    encode_hex(&out)
}

fn decrypt(cipher: &Aes256Gcm, stored: &str, aad: &[u8]) -> Option<Vec<u8>> {
    let bytes = decode_hex(stored)?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// A fresh key line for the key file (`ID:HEX`), from the operating system's randomness.
pub fn new_key_line(id: &str) -> String {
    let key: [u8; 32] = rand::random();
    format!("{id}:{}", encode_hex(&key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring(lines: &[&str]) -> KeyRing {
        KeyRing::parse(&lines.join("\n")).expect("a valid key file")
    }

    const K1: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "k2:ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff";

    #[test]
    fn only_the_owner_may_change_the_key_file_and_others_should_not_read_it() {
        for mode in [0o600, 0o400, 0o700, 0o100600] {
            assert_eq!(FileAccess::of_mode(mode), FileAccess::OwnerOnly, "{mode:o}");
        }
        for mode in [0o644, 0o640, 0o604, 0o444] {
            assert_eq!(
                FileAccess::of_mode(mode),
                FileAccess::ReadableByOthers { mode },
                "{mode:o}"
            );
        }
        for mode in [0o666, 0o664, 0o620, 0o602, 0o622, 0o777] {
            assert_eq!(
                FileAccess::of_mode(mode),
                FileAccess::WritableByOthers { mode },
                "{mode:o}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ta-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, K1).unwrap();
        let chmod =
            |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        chmod(0o600);
        assert_eq!(KeyRing::load(&path).unwrap().newest_id(), "k1");
        // Readable by others: used (with a warning in the log).
        chmod(0o644);
        assert_eq!(KeyRing::load(&path).unwrap().newest_id(), "k1");
        for mode in [0o664, 0o666, 0o622] {
            chmod(mode);
            let error = KeyRing::load(&path).unwrap_err();
            assert_eq!(
                error,
                KeyError::Writable {
                    path: path.display().to_string(),
                    mode
                }
            );
            let message = error.to_string();
            assert!(
                message.contains(&format!("chmod 600 {}", path.display())),
                "{message}"
            );
            assert!(!message.contains("0102030405"), "no key in the message");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_newest_key_seals_and_every_key_opens() {
        let old = ring(&[K1]);
        let both = ring(&["# rotated", K1, "", K2]);
        let sealed = old.seal(7, &ClientSecret::new("s3cret"));
        assert_eq!(sealed.key_id, "k1");
        assert_eq!(both.newest_id(), "k2");
        assert_eq!(both.open(7, &sealed).unwrap().expose(), "s3cret");
        let resealed = both.seal(7, &ClientSecret::new("s3cret"));
        assert_eq!(resealed.key_id, "k2");
        assert_eq!(
            old.open(7, &resealed).unwrap_err(),
            KeyError::MissingKey("k2".into())
        );
    }

    #[test]
    fn a_secret_opens_only_on_its_own_tenant_row() {
        let keys = ring(&[K1]);
        let sealed = keys.seal(7, &ClientSecret::new("s3cret"));
        assert_eq!(keys.open(8, &sealed).unwrap_err(), KeyError::Undecryptable);
    }

    #[test]
    fn malformed_key_files_are_refused_by_line() {
        for (text, error) in [
            ("", KeyError::Empty),
            ("# only a comment", KeyError::Empty),
            ("k1", KeyError::Malformed { line: 1 }),
            ("\nk1:abcd", KeyError::Malformed { line: 2 }),
            (":00", KeyError::Malformed { line: 1 }),
            (&format!("{K1}\n{K1}"), KeyError::DuplicateId("k1".into())),
            (
                &format!("bad id:{}", &K1[3..]),
                KeyError::Malformed { line: 1 },
            ),
        ] {
            assert_eq!(KeyRing::parse(text).unwrap_err(), error, "{text:?}");
        }
        let line = new_key_line("fresh");
        assert_eq!(ring(&[&line]).newest_id(), "fresh");
        assert!(!format!("{:?}", ring(&[K1])).contains("0001"));
    }

    /// Two processes starting at once with different material under one key id: the one whose
    /// read found no check value for the id, but whose insert came second, is refused.
    #[tokio::test]
    async fn a_check_value_stored_by_another_key_since_the_read_is_refused() {
        let dir = std::env::temp_dir().join(format!("ta-keyring-{}", uuid::Uuid::new_v4()));
        let db = Db::connect(&format!("sqlite://{}/test.db", dir.display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let other = ring(&[&format!("k1:{}", &K2[3..])]);
        other.verify(&db).await.unwrap();
        let mine = ring(&[K1]);
        // As if this process's read came before the other's insert.
        let refused = mine.record_checks(&db, &[]).await.unwrap_err();
        assert!(
            matches!(&refused, VerifyError::Key(KeyError::WrongKey(id)) if id == "k1"),
            "{refused}"
        );
        // The stored check value is the other's, which it still accepts.
        other.verify(&db).await.unwrap();
        assert!(mine.verify(&db).await.is_err());
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    proptest! {
        /// Whatever the secret, the stored text holds neither it nor its hex, and opens to it.
        #[test]
        fn sealing_round_trips_and_hides_the_secret(secret in "[ -~]{8,200}", tenant in 1i64..1_000_000) {
            let keys = ring(&[K1, K2]);
            let sealed = keys.seal(tenant, &ClientSecret::new(secret.clone()));
            prop_assert!(!sealed.ciphertext.contains(&secret));
            prop_assert!(!sealed.ciphertext.contains(&encode_hex(secret.as_bytes())));
            let opened = keys.open(tenant, &sealed).unwrap();
            prop_assert_eq!(opened.expose(), secret.as_str());
            prop_assert!(keys.open(tenant + 1, &sealed).is_err());
        }
    }
}
