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

use crate::domain::AppError;

/// A query parameter of the page's URL, as the page reads its filters ("" when absent).
pub(crate) fn query_param(name: &'static str) -> Memo<String> {
    let query = use_query_map();
    Memo::new(move |_| query.read().get(name).unwrap_or_default())
}

/// A number in the page's URL (`?page=2`, `?before=<id>`): `absent` when it is missing or
/// empty, else what `read` makes of it. `Err` — a 422 naming the parameter, which the page shows
/// instead of guessing another page, and the status of the page the server renders — when it is
/// no number or `read` refuses it (`None`).
pub(crate) fn query_number(
    name: &'static str,
    absent: i64,
    read: fn(i64) -> Option<i64>,
    reason: &'static str,
) -> Memo<Result<i64, AppError>> {
    let query = use_query_map();
    let number = Memo::new(
        move |_| match query.read().get(name).filter(|raw| !raw.is_empty()) {
            None => Ok(absent),
            Some(raw) => raw
                .parse()
                .ok()
                .and_then(read)
                .ok_or_else(|| AppError::invalid(name, reason)),
        },
    );
    #[cfg(feature = "ssr")]
    if let Err(error) = number.get_untracked() {
        crate::server::error::set_status(
            axum::http::StatusCode::from_u16(error.status())
                .unwrap_or(axum::http::StatusCode::UNPROCESSABLE_ENTITY),
        );
    }
    number
}

/// `?page=` of a list paged by number, counted from 1 (1 when absent).
pub(crate) fn query_page() -> Memo<Result<i64, AppError>> {
    query_number(
        "page",
        1,
        |page| (page >= 1).then_some(page),
        "Not a page number: pages count from 1.",
    )
}

/// `?before=<id>` of a list paged back by a key: the page older than that entry; 0 (or absent)
/// is the newest page.
pub(crate) fn query_before() -> Memo<Result<i64, AppError>> {
    query_number(
        "before",
        0,
        |id| (id >= 0).then_some(id),
        "Not an entry of this list: use the page's own links.",
    )
}
