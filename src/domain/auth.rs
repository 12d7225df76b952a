//! Who the user is and what they may do in a tenant.

use serde::{Deserialize, Serialize};

use super::spelled::spelled_enum;
use super::{AppError, Capability, TenantSummary};

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
    /// The user's role in the tenant with this external id, if a member.
    pub fn role_in(&self, tenant_external_id: &str) -> Option<Role> {
        self.memberships
            .iter()
            .find(|m| m.tenant.external_id == tenant_external_id)
            .map(|m| m.role)
    }
}

/// An e-mail address as typed at sign-in: trimmed, lower-cased, plausibly shaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Longest accepted address (RFC 5321's limit).
    pub const MAX_CHARS: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let email = raw.trim().to_lowercase();
        let shaped = email.len() <= Self::MAX_CHARS
            && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.'))
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
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
        for bad in [
            "",
            "avery",
            "@contoso.example",
            "avery@localhost",
            "a b@c.d",
            &format!("{}@x.io", "a".repeat(260)),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
