//! Types shared by the server and the browser: parsed inputs, statuses and the DTOs that cross
//! the wire. Nothing here touches the database or the network.

pub mod audit;
pub mod auth;
pub mod backup_set;
pub mod capability;
pub mod connection;
pub mod error;
pub mod graph_wait;
pub mod invitation;
pub mod notification;
pub mod policy_page;
pub mod policy_type;
pub mod reason_code;
pub mod restore;
pub mod routes;
pub mod run;
pub mod run_detail;
pub mod selection;
pub mod snapshot;
pub mod spelled;
pub mod tenant;
pub mod text;
pub mod time;
pub mod versions;

pub use auth::{CurrentUser, Email, Member, Membership, Role};
pub use backup_set::{BackupItemRow, BackupSetDetail, BackupSetSummary, NewBackupSet};
pub use capability::Capability;
pub use error::AppError;
pub use invitation::{AddMemberOutcome, InvitationPreview, PendingInvitation};
pub use notification::{Notification, NotificationLevel, NotificationList};
pub use policy_type::PolicyType;
pub use run::{RunStatus, RunSummary, RunsPage};
pub use selection::{AddPoliciesOptions, PolicyIds, PolicySelection, SubmittedRun};
pub use tenant::{Day, NewTenant, TenantExternalId, TenantSettings, TenantStatus, TenantSummary};
pub use time::Timestamp;
