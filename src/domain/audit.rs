//! The tenant's audit log as its page shows it.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// One audited event of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct AuditEntry {
    pub id: i64,
    pub action: String,
    /// The actor's e-mail; `None` for the CLI or a deleted account.
    #[cfg_attr(feature = "ssr", sqlx(rename = "email"))]
    pub actor: Option<String>,
    pub target: String,
    /// The small sanitized JSON object stored with the event.
    pub details: String,
    pub created_at: Timestamp,
}

/// One page of the audit log, newest first; `next_before` pages back (the `before` of the
/// next page), `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_before: Option<i64>,
}

/// The actions the app records in a tenant's log, offered as suggestions by the audit page's
/// action filter (the filter takes any action name).
pub const KNOWN_ACTIONS: &[&str] = &[
    "backup_set.export",
    "invitation.accept",
    "invitation.create",
    "invitation.revoke",
    "member.add",
    "member.change_role",
    "member.remove",
    "membership.grant",
    "restore.execute",
    "restore.item_written",
    "restore.preview",
    "run.cancel",
    "run.retry",
    "run.reuse",
    "run.start",
    "tenant.check_connection",
    "tenant.connect",
    "tenant.disconnect",
    "tenant.reconnect",
    "tenant.replace_secret",
];

#[cfg(test)]
mod tests {
    use super::KNOWN_ACTIONS;
    use std::path::Path;

    /// Actions recorded without a tenant (sign-ins, the admin CLI's account changes): no
    /// tenant's page lists them, so the filter does not suggest them.
    const INSTANCE_ACTIONS: &[&str] = &[
        "auth.sign_in",
        "auth.sign_in_failed",
        "auth.sign_out",
        "user.create_or_reset",
        "user.set_password",
    ];

    /// `word.word` literals in the files that record audit events which are not actions.
    const NOT_ACTIONS: &[&str] = &["manifest.json"];

    /// The `"word.word"` string literals of `source` (lowercase letters and underscores).
    fn dotted_literals(source: &str) -> Vec<&str> {
        source
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|literal| {
                literal.split_once('.').is_some_and(|(head, tail)| {
                    [head, tail].iter().all(|part| {
                        !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    })
                })
            })
            .collect()
    }

    fn visit(dir: &Path, found: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs")
                && !path.ends_with("domain/audit.rs")
            {
                let source = std::fs::read_to_string(&path).unwrap();
                if source.contains("AuditEvent") {
                    for literal in dotted_literals(&source) {
                        found.push((literal.to_owned(), path.display().to_string()));
                    }
                }
            }
        }
    }

    #[test]
    fn every_action_the_app_records_for_a_tenant_is_suggested() {
        let mut found = Vec::new();
        visit(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(
            found.iter().any(|(action, _)| action == "tenant.connect"),
            "the scan finds the recorded actions"
        );
        let missing: Vec<_> = found
            .iter()
            .filter(|(literal, _)| {
                !KNOWN_ACTIONS.contains(&literal.as_str())
                    && !INSTANCE_ACTIONS.contains(&literal.as_str())
                    && !NOT_ACTIONS.contains(&literal.as_str())
            })
            .collect();
        assert!(
            missing.is_empty(),
            "add these to KNOWN_ACTIONS (or INSTANCE_ACTIONS when recorded without a tenant): \
             {missing:?}"
        );
    }

    #[test]
    fn suggestions_are_sorted_and_unique() {
        assert!(KNOWN_ACTIONS.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
