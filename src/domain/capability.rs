//! What a member may do in a tenant. One table ([`Capability::holders`]) says which roles hold
//! each capability and what everyone else is told; the server's authorization point, the pages
//! (which show an action the role does not allow disabled, with that text beside it) and the
//! access-matrix test all read it, so they cannot disagree.

use super::Role;

/// Something a member may be allowed to do in a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// See the tenant's pages, runs, versions, diffs and exports.
    View,
    /// Create backup sets (the containers capture runs add policies to).
    EditBackupSets,
    /// Start capture runs (add policies, sync, capture now, drift check), retry and resume them.
    StartRuns,
    /// Cancel capture runs.
    CancelRuns,
    /// Preview and execute restores, and cancel them.
    Restore,
    /// Check the tenant's connection to Microsoft Graph.
    CheckConnection,
    /// Read the tenant's members and its audit log.
    ReadAuditLog,
    /// Add, change and remove members; change or disconnect the tenant's connection.
    ManageMembers,
}

/// The roles that hold a capability, and the text shown to a member whose role is not among
/// them (beside the disabled action, and as the reason of a 403 answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holders {
    /// The roles that hold it, most powerful first.
    pub roles: &'static [Role],
    /// "Needs … ": the least a member must be.
    pub label: &'static str,
}

const EVERY_MEMBER: Holders = Holders {
    roles: &Role::ALL,
    label: "Needs a role in this tenant",
};
const OPERATOR_OR_ABOVE: Holders = Holders {
    roles: &[Role::Owner, Role::Manager, Role::Operator],
    label: "Needs operator or above",
};
const MANAGER_OR_OWNER: Holders = Holders {
    roles: &[Role::Owner, Role::Manager],
    label: "Needs manager or owner",
};
const OWNER: Holders = Holders {
    roles: &[Role::Owner],
    label: "Needs owner",
};

/// What a user without the instance-wide admin flag is told when connecting a tenant.
pub const ADMIN_LABEL: &str = "Needs the instance admin flag (tenantatlas create-user --admin)";

impl Capability {
    /// Whether using this capability starts a run: refused while the tenant is disconnected.
    pub const fn starts_runs(self) -> bool {
        matches!(
            self,
            Self::StartRuns | Self::Restore | Self::CheckConnection
        )
    }

    /// Every capability.
    pub const ALL: [Capability; 8] = [
        Self::View,
        Self::EditBackupSets,
        Self::StartRuns,
        Self::CancelRuns,
        Self::Restore,
        Self::CheckConnection,
        Self::ReadAuditLog,
        Self::ManageMembers,
    ];

    /// The table: who holds each capability.
    pub const fn holders(self) -> Holders {
        match self {
            Self::View => EVERY_MEMBER,
            Self::EditBackupSets | Self::StartRuns | Self::CancelRuns => OPERATOR_OR_ABOVE,
            Self::Restore | Self::CheckConnection | Self::ReadAuditLog => MANAGER_OR_OWNER,
            Self::ManageMembers => OWNER,
        }
    }

    /// What the UI shows beside an action that needs this capability, to members without it.
    pub const fn label(self) -> &'static str {
        self.holders().label
    }

    /// The reason a member with `role` is refused this capability (a 403 answer's text).
    pub fn refusal(self, role: Role) -> String {
        format!(
            "{} (your role in this tenant is {}).",
            self.label(),
            role.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table written out role by role (owner, manager, operator, readonly), as the product
    /// states it, so a change to [`Capability::holders`] has to be made twice to pass.
    #[test]
    fn roles_hold_the_capabilities_the_product_gives_them() {
        use Capability::*;
        let expected = [
            (View, [true, true, true, true]),
            (EditBackupSets, [true, true, true, false]),
            (StartRuns, [true, true, true, false]),
            (CancelRuns, [true, true, true, false]),
            (Restore, [true, true, false, false]),
            (CheckConnection, [true, true, false, false]),
            (ReadAuditLog, [true, true, false, false]),
            (ManageMembers, [true, false, false, false]),
        ];
        assert_eq!(expected.len(), Capability::ALL.len());
        for (capability, held) in expected {
            let actual = Role::ALL.map(|role| role.can(capability));
            assert_eq!(actual, held, "{capability:?}");
        }
    }

    #[test]
    fn each_label_names_the_least_role_that_holds_it() {
        for capability in Capability::ALL {
            let least = capability.holders().roles.last().copied();
            let label = capability.label();
            match least {
                Some(Role::Readonly) => assert_eq!(label, "Needs a role in this tenant"),
                Some(Role::Operator) => assert_eq!(label, "Needs operator or above"),
                Some(Role::Manager) => assert_eq!(label, "Needs manager or owner"),
                Some(Role::Owner) => assert_eq!(label, "Needs owner"),
                None => panic!("{capability:?} is held by nobody"),
            }
        }
        assert_eq!(
            Capability::StartRuns.refusal(Role::Readonly),
            "Needs operator or above (your role in this tenant is readonly)."
        );
    }
}
