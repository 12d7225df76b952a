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

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// A query parameter of the page's URL, as the page reads its filters ("" when absent).
pub(crate) fn query_param(name: &'static str) -> Memo<String> {
    let query = use_query_map();
    Memo::new(move |_| query.read().get(name).unwrap_or_default())
}

/// A number in the page's URL (`?page=2`, `?before=<id>`), read through `read`, which gets
/// `None` when it is absent or not a number.
pub(crate) fn query_number(name: &'static str, read: fn(Option<i64>) -> i64) -> Memo<i64> {
    let query = use_query_map();
    Memo::new(move |_| read(query.read().get(name).and_then(|raw| raw.parse().ok())))
}

/// `?before=<id>` of a list paged back by a key: the page older than that entry; 0 (also for
/// anything that is not a number) is the newest page.
pub(crate) fn query_before() -> Memo<i64> {
    query_number("before", Option::unwrap_or_default)
}
