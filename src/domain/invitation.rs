//! Invitations: how a tenant's owner adds someone who has no account yet. The owner gets a
//! one-time link to pass on (no e-mail server is assumed); the invitee opens it, chooses a name
//! and a password, and is a member from then on.

use serde::{Deserialize, Serialize};

use super::tenant::hides_characters;
use super::text::canonical_name;
use super::{AppError, Role, Timestamp};

/// How long an invitation link can be used.
pub const INVITATION_DAYS: i64 = 7;

/// Shortest accepted password for a new account.
pub const PASSWORD_MIN_CHARS: usize = 12;
/// Longest accepted password (hashing a megabyte would only cost the server).
pub const PASSWORD_MAX_CHARS: usize = 1_000;
/// Longest accepted display name of an account.
pub const DISPLAY_NAME_MAX_CHARS: usize = 100;

/// What adding a member by e-mail did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddMemberOutcome {
    /// The address has an account: it is a member now.
    Added,
    /// No account has the address (or one the owner may not add without its consent): an
    /// invitation was made. The link holds the only copy of its
    /// token (the database keeps a hash), so it is shown this once.
    Invited { link: String, expires_at: Timestamp },
}

/// An invitation not yet used, as the members page lists it (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct PendingInvitation {
    pub id: i64,
    pub email: String,
    pub role: Role,
    /// The inviter's e-mail; `None` once that account is gone.
    pub invited_by: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What the accept page shows before the invitee chooses a name and a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationPreview {
    pub tenant_name: String,
    /// The address the account is made for: its sign-in name.
    pub email: String,
    pub role: Role,
    pub expires_at: Timestamp,
    /// An account signs in with the address already: it joins by accepting while signed in as
    /// it, without a new name or password.
    pub existing_account: bool,
}

/// An invitation token as a link carries it: 32 random bytes in lower-case hex. It never
/// prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct InvitationToken(String);

impl InvitationToken {
    /// The length of a token's text.
    pub const CHARS: usize = 64;

    /// Accepts exactly what [`InvitationToken::new`] makes; anything else is a link that is not
    /// valid (it cannot match a stored token).
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let raw = raw.trim().to_ascii_lowercase();
        if raw.len() == Self::CHARS && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(raw))
        } else {
            Err(not_valid())
        }
    }

    /// Wraps a freshly drawn token (the server makes them from its randomness).
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The token's text, for the link and for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for InvitationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InvitationToken([REDACTED])")
    }
}

/// The answer to a link that matches no invitation.
pub fn not_valid() -> AppError {
    AppError::NotFound(
        "This invitation link is not valid. Check that it was copied whole, or ask the \
         tenant's owner for a new one."
            .into(),
    )
}

/// A new account's display name: non-empty, bounded, with no character a reader cannot see
/// ([`hides_characters`]) and in its canonical spelling ([`canonical_name`]), as for a tenant's
/// name: members lists and pickers show names, and neither "Ada\u{200B} Lovelace" nor
/// "Ada\u{A0}Lovelace" must pass for another member's "Ada Lovelace".
pub fn parse_display_name(raw: &str) -> Result<String, AppError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(AppError::invalid("name", "Enter your name."));
    }
    if hides_characters(name) {
        return Err(AppError::invalid(
            "name",
            "The name cannot contain control characters or invisible formatting characters.",
        ));
    }
    let name = canonical_name(name);
    if name.chars().count() > DISPLAY_NAME_MAX_CHARS {
        return Err(AppError::invalid(
            "name",
            format!("The name is too long: at most {DISPLAY_NAME_MAX_CHARS} characters."),
        ));
    }
    Ok(name)
}

/// A new account's password, as typed: between the bounds, nothing else is imposed.
pub fn check_new_password(raw: &str) -> Result<(), AppError> {
    let chars = raw.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        return Err(AppError::invalid(
            "password",
            format!("Choose a password of at least {PASSWORD_MIN_CHARS} characters."),
        ));
    }
    if chars > PASSWORD_MAX_CHARS {
        return Err(AppError::invalid(
            "password",
            format!("The password is too long: at most {PASSWORD_MAX_CHARS} characters."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_never_print() {
        let token = InvitationToken::new([0xab; 32]);
        assert_eq!(token.expose().len(), InvitationToken::CHARS);
        assert_eq!(
            InvitationToken::parse(&token.expose().to_uppercase()).unwrap(),
            token
        );
        assert!(!format!("{token:?}").contains("ab"));
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(65)] {
            assert!(InvitationToken::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_passwords_are_bounded() {
        assert_eq!(parse_display_name("  Ada  ").unwrap(), "Ada");
        // Blank, a control character, or one that hides: a zero-width space, a right-to-left
        // override (shows "Ada Lovelace" backwards), a soft hyphen.
        for bad in [
            "",
            "  ",
            "a\u{7}b",
            "Ada\u{200B} Lovelace",
            "\u{202E}ecalevoL adA",
            "Ada Love\u{AD}lace",
        ] {
            assert!(parse_display_name(bad).is_err(), "{bad:?}");
        }
        // Names in any script stay accepted, joiners inside a script that needs them included.
        for good in [
            "Ada Lovelace",
            "Zoë Ødegård",
            "محمد",
            "李小龙",
            "\u{0915}\u{094D}\u{200D}\u{0937}",
        ] {
            assert_eq!(parse_display_name(good).unwrap(), good);
        }
        assert!(parse_display_name(&"n".repeat(DISPLAY_NAME_MAX_CHARS + 1)).is_err());
        // Spellings that look like "Ada Lovelace" are stored as it.
        for looks_alike in [
            "Ada  Lovelace",
            "Ada\u{A0}Lovelace",
            " Ada \u{202F} Lovelace ",
        ] {
            assert_eq!(
                parse_display_name(looks_alike).unwrap(),
                "Ada Lovelace",
                "{looks_alike:?}"
            );
        }
        assert_eq!(parse_display_name("Zoe\u{308}").unwrap(), "Zo\u{EB}");
        assert!(parse_display_name("Ada\tLovelace").is_err());
        assert!(check_new_password("short").is_err());
        assert!(check_new_password(&"p".repeat(PASSWORD_MIN_CHARS)).is_ok());
        assert!(check_new_password(&"p".repeat(PASSWORD_MAX_CHARS + 1)).is_err());
    }
}
