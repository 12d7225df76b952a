//! Changes to a tenant's policies while the simulator runs, as admins make them in Intune:
//! drift for the app to find. `POST /_sim/mutate` takes a [`Mutation`] as JSON and answers a
//! [`MutationReport`]; [`super::SimHandle::mutate`] does the same in process.
//!
//! ```json
//! {"tenant": "6f1c2a3b-0000-4000-8000-00000000c0de",
//!  "change_settings": 3, "rename": true, "add_assignment": true, "delete": true,
//!  "policies": ["<graph id>", "…"]}
//! ```
//!
//! The changes go to distinct policies, picked in order from `policies` (default: every policy
//! of the tenant, in list order): the first `change_settings` get one setting changed, the next
//! is renamed (its name + " (renamed)"), the next gets an assignment to a group it did not
//! target, the next is deleted. Every change but the deletion moves the policy's
//! `lastModifiedDateTime` a day on; a settings change also moves `version` (where the type has
//! one). The same mutation on a freshly started simulator gives the same result.

use serde::{Deserialize, Serialize};

/// What to change in one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mutation {
    /// The tenant id (any case).
    pub tenant: String,
    /// How many policies get one setting changed.
    pub change_settings: usize,
    /// Rename one policy.
    pub rename: bool,
    /// Assign one policy to one more group.
    pub add_assignment: bool,
    /// Delete one policy.
    pub delete: bool,
    /// The Graph ids to pick from, in order; `None`: every policy of the tenant in list order.
    pub policies: Option<Vec<String>>,
}

/// What a mutation changed (Graph ids).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationReport {
    pub settings_changed: Vec<String>,
    pub renamed: Option<Renamed>,
    pub assignment_added: Option<String>,
    pub deleted: Option<String>,
}

/// A renamed policy and its new name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renamed {
    pub id: String,
    pub name: String,
}
