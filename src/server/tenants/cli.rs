//! The admin commands for tenants and secret keys: `create-tenant`, `rotate-secret-key`,
//! `new-secret-key`, and the key ring check every command makes at start.

use std::io::BufRead;
use std::sync::Arc;

use super::connection::{self, SecretInput};
use super::keyring::{self, KeyRing};
use crate::domain::{Day, Email, NewTenant};
use crate::server::config::{CreateTenantArgs, NewSecretKeyArgs};
use crate::server::db::Db;
use crate::server::StartError;

/// Loads the key file, if one is configured, and checks it against the database: a key that
/// does not match its stored check value, or a stored secret whose key is missing, stops the
/// command with a clear message before any secret is read.
pub async fn load_keys(
    db: &Db,
    path: Option<&std::path::Path>,
) -> Result<Option<Arc<KeyRing>>, StartError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let keys = KeyRing::load(path).map_err(|error| StartError::Invalid(error.to_string()))?;
    keys.verify(db)
        .await
        .map_err(|error| StartError::Invalid(error.to_string()))?;
    tracing::info!(newest = keys.newest_id(), "secret key file checked");
    Ok(Some(Arc::new(keys)))
}

/// `create-tenant`: connects a tenant from the command line. The `--owner` account must be one
/// whose password the admin set: an account whose password was chosen through an invitation
/// link may belong to whoever held the link (no address is verified), so it is refused, before
/// anything is written, until `set-password` or `create-user` gives it a password of the admin's.
pub async fn create_tenant(
    db: &Db,
    keys: Option<&KeyRing>,
    args: CreateTenantArgs,
) -> Result<(), StartError> {
    let input = NewTenant::parse(&args.tenant, &args.name, &args.client_id)?;
    let expires_on = args
        .secret_expires_on
        .as_deref()
        .map(Day::parse)
        .transpose()?;
    let owner = match args.owner.as_deref() {
        Some(raw) => {
            let email = Email::parse(raw)?;
            let account = crate::server::auth::users::credentials(db, &email)
                .await?
                .ok_or_else(|| {
                    StartError::Invalid(format!(
                        "no account has the e-mail {}: create it with create-user",
                        email.as_str()
                    ))
                })?;
            if crate::server::auth::users::password_via_invitation(db, account.user_id).await? {
                return Err(StartError::Invalid(format!(
                    "the account {0} was made through an invitation link, whose holder chose its \
                     password (the address was never verified): give it a password with \
                     `set-password --email {0}` (or `create-user`), hand that to the address's \
                     owner, then run create-tenant again",
                    email.as_str()
                )));
            }
            Some((account.user_id, email))
        }
        None => None,
    };
    let secret = match args.secret_ref.as_deref() {
        Some(reference) => SecretInput::Reference(connection::parse_reference(reference)?),
        None => {
            if keys.is_none() {
                return Err(StartError::Invalid(
                    "the client secret is stored encrypted, which needs --secret-key-file \
                     (or TENANTATLAS_SECRET_KEY_FILE); or pass --secret-ref env:NAME"
                        .into(),
                ));
            }
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            SecretInput::Clear(connection::parse_secret(
                line.trim_end_matches(['\r', '\n']),
            )?)
        }
    };
    let owner = owner.as_ref().map(|(id, email)| (*id, email));
    let (id, tenant) =
        connection::connect_from_cli(db, keys, owner, &input, secret, expires_on).await?;
    println!(
        "tenant {} ({}) connected (id {id})",
        tenant.display_name, tenant.external_id
    );
    Ok(())
}

/// `rotate-secret-key`: re-encrypts every stored secret with the newest key.
pub async fn rotate_secret_key(db: &Db, keys: Option<&KeyRing>) -> Result<(), StartError> {
    let keys = keys
        .ok_or_else(|| StartError::Invalid("rotate-secret-key needs --secret-key-file".into()))?;
    let rotated = connection::rotate(db, keys)
        .await
        .map_err(|error| StartError::Invalid(error.to_string()))?;
    println!(
        "{} client secrets re-encrypted with the key {:?}",
        rotated.reencrypted,
        keys.newest_id()
    );
    if rotated.replaced_meanwhile > 0 {
        println!(
            "{} client secrets were replaced while this ran and are already under that key",
            rotated.replaced_meanwhile
        );
    }
    Ok(())
}

/// `new-secret-key`: prints a fresh key line to append to the key file.
pub fn new_secret_key(args: &NewSecretKeyArgs) -> Result<(), StartError> {
    let line = keyring::new_key_line(args.id.trim());
    // Parsed back, so an id the file would refuse is refused here.
    KeyRing::parse(&line).map_err(|_| {
        StartError::Invalid("a key id is letters, digits, '-', '_' or '.' (at most 32)".into())
    })?;
    println!("{line}");
    Ok(())
}
