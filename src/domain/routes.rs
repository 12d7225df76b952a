//! Every path of the app's pages, built in one place. Links in pages and components go through
//! these functions, and so does the link the worker stores in a notification: a route renamed
//! here changes every link, including the ones written from now on, and a test below pins the
//! shapes that stored notifications already hold.
//!
//! `tenant` is the tenant's external id as it stands in the URL (`/t/{tenant}/…`); `query` is
//! an already-encoded query string, empty or starting with `?`.

/// The first page of a tenant: its backup sets.
pub fn tenant_home(tenant: &str) -> String {
    backup_sets(tenant)
}

/// `/t/{tenant}/backup-sets`
pub fn backup_sets(tenant: &str) -> String {
    format!("/t/{tenant}/backup-sets")
}

/// `/t/{tenant}/backup-sets/{id}`
pub fn backup_set(tenant: &str, id: i64) -> String {
    format!("/t/{tenant}/backup-sets/{id}")
}

/// `/t/{tenant}/backup-sets/{id}/export.zip`, the set as a ZIP (manifest, README, versions).
pub fn backup_set_export(tenant: &str, id: i64) -> String {
    format!("/t/{tenant}/backup-sets/{id}/export.zip")
}

/// `/t/{tenant}/runs`, with the Runs page's filters in `query`.
pub fn runs(tenant: &str, query: &str) -> String {
    format!("/t/{tenant}/runs{query}")
}

/// `/t/{tenant}/runs/{id}`, with the run detail's outcome filter and page in `query`.
pub fn run(tenant: &str, id: i64, query: &str) -> String {
    format!("/t/{tenant}/runs/{id}{query}")
}

/// `/t/{tenant}/runs/{id}/items.csv`, the run's items as CSV, filtered by `outcome` when it is
/// not empty (the run detail page's filter).
pub fn run_items_csv(tenant: &str, id: i64, outcome: &str) -> String {
    if outcome.is_empty() {
        format!("/t/{tenant}/runs/{id}/items.csv")
    } else {
        format!("/t/{tenant}/runs/{id}/items.csv?outcome={outcome}")
    }
}

/// `/t/{tenant}/restore/new?source=set-12` (or `version-40`): the restore wizard, with its
/// source chosen; `preview` names a preview run to continue from.
pub fn restore_new(tenant: &str, source: crate::domain::restore::RestoreSource) -> String {
    format!("/t/{tenant}/restore/new?source={}", source.to_param())
}

/// The restore wizard at the preview `preview_run` of `source` (its plan and confirmation).
pub fn restore_preview(
    tenant: &str,
    source: crate::domain::restore::RestoreSource,
    preview_run: i64,
) -> String {
    format!(
        "/t/{tenant}/restore/new?source={}&preview={preview_run}",
        source.to_param()
    )
}

/// `/tenants/connect`: the form that connects a tenant (instance admins).
pub fn connect_tenant() -> String {
    "/tenants/connect".to_owned()
}

/// `/t/{tenant}/settings`: the tenant's connection (client id, secret, disconnect).
pub fn tenant_settings(tenant: &str) -> String {
    format!("/t/{tenant}/settings")
}

/// `/t/{tenant}/members`
pub fn members(tenant: &str) -> String {
    format!("/t/{tenant}/members")
}

/// `/t/{tenant}/audit`, with the audit page's filters and cursor in `query`.
pub fn audit(tenant: &str, query: &str) -> String {
    format!("/t/{tenant}/audit{query}")
}

/// `/invite`: where an invitation link leads (the token follows in the fragment).
pub const INVITE: &str = "/invite";

/// The link an invitation hands out: the public URL, the accept page, and the token in the
/// fragment (`#token=…`). Browsers never send a fragment to a server, so the token stays out of
/// request lines, proxy logs and `Referer` headers; the page posts it in a request body.
pub fn invite_link(public_url: &str, token: &str) -> String {
    format!("{}{INVITE}#token={token}", public_url.trim_end_matches('/'))
}

/// `/t/{tenant}/policies`, with the inventory's search, type and page in `query`.
pub fn policies(tenant: &str, query: &str) -> String {
    format!("/t/{tenant}/policies{query}")
}

/// `/t/{tenant}/policies/{id}`
pub fn policy(tenant: &str, id: i64) -> String {
    format!("/t/{tenant}/policies/{id}")
}

/// `/t/{tenant}/policies/{id}/versions/{version}`
pub fn policy_version(tenant: &str, id: i64, version: i64) -> String {
    format!("/t/{tenant}/policies/{id}/versions/{version}")
}

/// `/t/{tenant}/policies/{id}/versions/{version}/raw.json`, the stored version as a download.
pub fn policy_version_json(tenant: &str, id: i64, version: i64) -> String {
    format!("/t/{tenant}/policies/{id}/versions/{version}/raw.json")
}

/// `/t/{tenant}/policies/{id}/diff?from={from}&to={to}`
pub fn policy_diff(tenant: &str, id: i64, from: i64, to: i64) -> String {
    format!("/t/{tenant}/policies/{id}/diff?from={from}&to={to}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Notifications already stored hold links of this shape; a change here must keep them
    /// working (with a redirect) or migrate them.
    #[test]
    fn stored_link_shapes_stay() {
        let t = "6f1c2a3b-0000-4000-8000-00000000c0de";
        assert_eq!(run(t, 42, ""), format!("/t/{t}/runs/42"));
        assert_eq!(backup_set(t, 7), format!("/t/{t}/backup-sets/7"));
        assert_eq!(
            runs(t, "?status=failed"),
            format!("/t/{t}/runs?status=failed")
        );
        assert_eq!(tenant_home(t), format!("/t/{t}/backup-sets"));
    }

    #[test]
    fn invitation_links_carry_the_token_in_the_fragment() {
        let link = invite_link("https://atlas.example/", "ab12");
        assert_eq!(link, "https://atlas.example/invite#token=ab12");
        assert!(!link.contains('?'));
    }
}
