//! Who the user is and what they may do in a tenant.

use serde::{Deserialize, Serialize};

use super::spelled::spelled_enum;
use super::tenant::{hides_characters, is_format_char};
use super::text::canonical_name;
use super::{AppError, Capability, TenantExternalId, TenantSummary};

spelled_enum! {
    /// A member's role in one tenant, most powerful first; what each may do is
    /// [`Capability::holders`]. The UI shows the stored word.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub enum Role {
        /// Everything, including the tenant's members and connection.
        Owner => ("owner", "owner"),
        /// Everything but members and the connection.
        Manager => ("manager", "manager"),
        /// Starts and cancels capture runs.
        Operator => ("operator", "operator"),
        /// Looks, changes nothing.
        Readonly => ("readonly", "readonly"),
    }
}

impl Role {
    /// Whether this role holds `capability` (the table is in [`super::capability`]).
    pub fn can(self, capability: Capability) -> bool {
        capability.holders().roles.contains(&self)
    }
}

/// One of the signed-in user's tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct Membership {
    #[cfg_attr(feature = "ssr", sqlx(flatten))]
    pub tenant: TenantSummary,
    pub role: Role,
}

/// A member of a tenant, as its Members page lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct Member {
    #[cfg_attr(feature = "ssr", sqlx(rename = "id"))]
    pub user_id: i64,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    /// When the membership was granted.
    #[cfg_attr(feature = "ssr", sqlx(rename = "created_at"))]
    pub added_at: super::Timestamp,
}

/// The signed-in user as the header shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub display_name: String,
    pub email: String,
    /// The instance-wide admin flag: may connect new tenants.
    pub is_admin: bool,
    pub memberships: Vec<Membership>,
}

impl CurrentUser {
    /// The user's role in the tenant with this external id (as a URL spells it: any case), if
    /// a member. The stored ids are canonical, so the id is parsed before it is compared.
    pub fn role_in(&self, tenant_external_id: &str) -> Option<Role> {
        let id = TenantExternalId::parse(tenant_external_id).ok()?;
        self.memberships
            .iter()
            .find(|m| m.tenant.external_id == id.as_str())
            .map(|m| m.role)
    }
}

/// An e-mail address as typed at sign-in: trimmed, in Unicode's composed form (NFC, as
/// [`canonical_name`] spells names: "andre\u{301}@…" and "andr\u{e9}@…" look the same, so they
/// are one address, one account), lower-cased, plausibly shaped: one `@`
/// between a non-empty local part and a domain of at least two non-empty dot-separated labels,
/// no spaces, at most [`Email::MAX_CHARS`] characters, and no character a reader cannot see:
/// members lists and invitations show the address, and "a\u{200B}@b.io" or one with a
/// right-to-left override must not pass for another. Unlike a name, an address has no use for a
/// joiner, so every format character ([`is_format_char`]) is refused, besides what
/// [`hides_characters`] refuses (control characters, blank letters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Longest accepted address (RFC 5321's limit), in characters.
    pub const MAX_CHARS: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, AppError> {
        // Composed first, so that spellings a reader cannot tell apart lower-case alike, and
        // composed again after: a lower-case letter may decompose (U+0130 becomes "i" U+0307).
        // `canonical_name` trims, and keeps any white space inside (one space), refused below.
        let email = canonical_name(&canonical_name(raw).to_lowercase());
        let shaped = email.chars().count() <= Self::MAX_CHARS
            && matches!(email.split_once('@'), Some((local, domain))
                if !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && domain.split('.').all(|label| !label.is_empty()))
            && !email
                .chars()
                .any(|c| c.is_whitespace() || is_format_char(c))
            && !hides_characters(&email);
        if shaped {
            Ok(Self(email))
        } else {
            Err(AppError::invalid("email", "Enter an e-mail address."))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_their_database_spelling() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Avery@Contoso.Example ").unwrap().as_str(),
            "avery@contoso.example"
        );
        // Spellings that look the same are one address: composed (NFC), whatever the case.
        for same in [
            "andr\u{E9}@contoso.example",
            "andre\u{301}@contoso.example",
            "ANDRE\u{301}@Contoso.Example",
            "Andr\u{C9}@contoso.example",
        ] {
            assert_eq!(
                Email::parse(same).unwrap().as_str(),
                "andr\u{E9}@contoso.example",
                "{same:?}"
            );
        }
        for bad in [
            "",
            "avery",
            "@contoso.example",
            "avery@localhost",
            "a b@c.d",
            "a@b@c.d",
            "a@.",
            "a@b.",
            "a@.b",
            "a@..b",
            "a@b..c",
            &format!("{}@x.io", "a".repeat(260)),
            "a\u{7}@b.io",
            // Invisible or steering: a zero-width space, a right-to-left override, a word
            // joiner, a soft hyphen, a joiner even between letters that are not ASCII, a blank.
            "a\u{200B}@b.io",
            "a@\u{202E}oi.b",
            "a\u{2060}b@c.io",
            "a\u{AD}b@c.io",
            "\u{E9}\u{200D}\u{E9}@b.io",
            "a\u{3164}@b.io",
        ] {
            let err = Email::parse(bad).unwrap_err();
            assert!(err.field_message("email").is_some(), "{bad:?}: {err:?}");
        }
        // The limit counts characters: 254 of them pass however many bytes they take.
        let at_limit = format!("{}@x.io", "é".repeat(Email::MAX_CHARS - 5));
        assert_eq!(at_limit.chars().count(), Email::MAX_CHARS);
        assert!(Email::parse(&at_limit).is_ok(), "{at_limit:?} was refused");
        let over = format!("{}@x.io", "é".repeat(Email::MAX_CHARS - 4));
        assert!(Email::parse(&over).is_err());
    }

    #[test]
    fn the_role_is_found_whatever_the_case_of_the_tenant_id() {
        let me = CurrentUser {
            display_name: "Avery".into(),
            email: "avery@contoso.example".into(),
            is_admin: false,
            memberships: vec![Membership {
                tenant: TenantSummary {
                    external_id: "6f1c2a3b-0000-4000-8000-00000000c0de".into(),
                    display_name: "Contoso".into(),
                },
                role: Role::Owner,
            }],
        };
        for id in [
            "6f1c2a3b-0000-4000-8000-00000000c0de",
            "6F1C2A3B-0000-4000-8000-00000000C0DE",
        ] {
            assert_eq!(me.role_in(id), Some(Role::Owner), "{id}");
        }
        assert_eq!(me.role_in("6f1c2a3b-0000-4000-8000-00000000c0df"), None);
        assert_eq!(me.role_in("not-a-guid"), None);
    }
}
