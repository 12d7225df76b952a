//! One file per route.

pub mod audit;
pub mod backup_set;
pub mod backup_sets;
pub mod connect_tenant;
pub mod home;
pub mod invite;
pub mod members;
pub mod not_found;
pub mod policies;
pub mod policy;
pub mod policy_diff;
pub mod policy_version;
pub mod restore;
pub mod run_detail;
pub mod runs;
pub mod sign_in;
pub mod tenant_layout;
pub mod tenant_settings;
