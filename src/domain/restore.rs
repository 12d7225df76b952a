//! Defensive restore: what the wizard shows (the source, the items that may be restored, the
//! preview's plan) and the gates an execute must pass. The gates are one pure function
//! ([`check_gates`]) that the server applies to what it reads back from the database, so the UI's
//! disabled button is a courtesy, never the check.

use super::policy_type::PolicyType;
use super::spelled::spelled_enum;
use serde::{Deserialize, Serialize};

use super::run::RunStatus;
use super::run_detail::ItemOutcome;
use super::text::canonical_name;
use super::Timestamp;

/// How long a finished preview may be executed: an older one must be run again.
pub const PREVIEW_TTL_MS: i64 = 15 * 60 * 1_000;

/// The most items one restore takes (the picker's selection limit).
pub const MAX_RESTORE_ITEMS: usize = 10_000;

/// What is restored from: every chosen item of a backup set, or one version of a policy (which
/// may be in no backup set at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum RestoreSource {
    BackupSet(i64),
    Version(i64),
}

impl RestoreSource {
    /// The URL spelling: `set-12` or `version-40`.
    pub fn to_param(self) -> String {
        match self {
            Self::BackupSet(id) => format!("set-{id}"),
            Self::Version(id) => format!("version-{id}"),
        }
    }

    /// Parses the URL spelling.
    pub fn parse_param(raw: &str) -> Option<Self> {
        let (kind, id) = raw.split_once('-')?;
        let id: i64 = id.parse().ok().filter(|id| *id > 0)?;
        match kind {
            "set" => Some(Self::BackupSet(id)),
            "version" => Some(Self::Version(id)),
            _ => None,
        }
    }
}

/// One policy that the source can restore, at the version the source holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreCandidate {
    pub policy_id: i64,
    pub display_name: String,
    pub policy_type: PolicyType,
    /// The version that would be restored.
    pub snapshot_id: i64,
    pub captured_at: Timestamp,
    /// Whether the version recorded the assignments (and scope tags): what is not recorded cannot
    /// be restored.
    pub with_assignments: bool,
    pub with_scope_tags: bool,
    /// Set when the inventory no longer finds the policy in Intune (a restore creates it anew).
    pub gone_from_intune: bool,
}

/// Policies of one type in the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeCount {
    pub policy_type: PolicyType,
    pub count: i64,
}

/// The wizard's first step: what the source is, when its items were captured, and its items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSourceView {
    pub source: RestoreSource,
    /// The backup set's name, or the policy's name for a single version.
    pub title: String,
    /// The tenant's display name, which the confirmation asks to type.
    pub tenant_name: String,
    pub oldest_capture: Option<Timestamp>,
    pub newest_capture: Option<Timestamp>,
    pub counts: Vec<TypeCount>,
    pub candidates: Vec<RestoreCandidate>,
}

/// What a preview asks for: the source, the chosen policies and the options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewRequest {
    pub source: RestoreSource,
    pub policy_ids: Vec<i64>,
    pub include_assignments: bool,
    pub include_scope_tags: bool,
}

spelled_enum! {
    /// What the preview plans for one item.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum PlanAction {
        /// The policy was deleted in Intune: it is created anew, with a new id.
        Create => ("create", "Create"),
        /// The live policy differs from the backup: it is updated in place.
        Update => ("update", "Update"),
        /// The live policy already matches the backup: nothing is written.
        Unchanged => ("unchanged", "No change"),
        /// Something the item needs is missing; the whole restore waits until it is left out.
        Blocked => ("blocked", "Blocked"),
    }
}

spelled_enum! {
    /// What an execute did to one item (its outcome stays the engine's succeeded / failed / skipped).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum RestoreAction {
        Created => ("created", "Created"),
        Updated => ("updated", "Updated"),
        Unchanged => ("unchanged", "Unchanged"),
    }
}

/// What the safety checks found for one item, stored with it as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanNotes {
    /// Why the item is blocked ("Group 3f2a… no longer exists"), each reason once.
    pub blocked: Vec<String>,
    /// What to know before executing ("A policy named … already exists").
    pub warnings: Vec<String>,
    /// Settings (or assignments) present in Intune that the restore removes to match the backup.
    pub removals: Vec<String>,
}

/// One item of a preview or an execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanItem {
    pub policy_id: i64,
    pub display_name: String,
    pub policy_type: PolicyType,
    pub outcome: ItemOutcome,
    /// The version restored (the backup's).
    pub backup_snapshot_id: Option<i64>,
    /// The live policy as the run captured it (a version; `None` when it was deleted).
    pub live_snapshot_id: Option<i64>,
    /// The preview's plan; `None` until the item is processed, or when it failed.
    pub plan: Option<PlanAction>,
    /// What an execute did.
    pub action: Option<RestoreAction>,
    /// Settings that differ between the live policy and the backup.
    pub changed_settings: Option<i64>,
    /// The new Graph id of a policy an execute created.
    pub created_graph_id: Option<String>,
    pub notes: PlanNotes,
    /// Why the item failed (sanitized).
    pub message: Option<String>,
}

/// Why a preview cannot be executed now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GateFailure {
    /// The tenant name typed is not the tenant's display name (422).
    WrongTenantName,
    /// "I reviewed the impact" is not checked (422).
    NotReviewed,
    /// The preview is still queued or running (409).
    PreviewNotDone,
    /// The preview was cancelled: its items were skipped, and waiting never helps (409).
    PreviewCancelled,
    /// The preview failed as a whole, before it could read the policies (409).
    PreviewFailed,
    /// The preview ended, but this many policies could not be read: they have no plan (409).
    PoliciesUnread(usize),
    /// The preview is older than [`PREVIEW_TTL_MS`] (409).
    PreviewExpired,
    /// The backup changed since the preview: another version is now in the set (409).
    BackupChanged,
    /// The preview was executed already: what it saw has moved (409).
    AlreadyExecuted,
    /// An execute of the preview was cancelled, or failed, with no write recorded (none made, or
    /// an announced create that a later preview found never landed); the preview stays spent
    /// (one execute per preview), but nothing was restored that TenantAtlas knows of (409).
    ExecuteStoppedUnwritten,
    /// An execute of the preview was cancelled, but its claim still holds the run (it is not
    /// settled) and a write it announced has no result recorded: Graph may still take it or
    /// refuse it, so neither "no write" nor "run the preview again" holds yet (409). Its answer
    /// once recorded or settled is one of the two above. With no such write it is final at
    /// once: a cancelled run announces no write.
    ExecuteSettling,
    /// At least one item, or the whole restore, is blocked (409).
    Blocked,
}

impl GateFailure {
    /// Whether this is the request's own fault (422) rather than the state's (409).
    pub fn is_input(&self) -> bool {
        matches!(self, Self::WrongTenantName | Self::NotReviewed)
    }

    /// What the wizard and the 4xx answer say.
    pub fn message(&self) -> String {
        let fixed = match self {
            Self::WrongTenantName => "Type the tenant's display name exactly to confirm.",
            Self::NotReviewed => "Confirm that you reviewed the impact.",
            Self::PreviewNotDone => "The preview has not finished. Wait for it, or run it again.",
            Self::PreviewCancelled => "The preview was cancelled. Run it again.",
            Self::PreviewFailed => "The preview failed. Run it again.",
            Self::PoliciesUnread(1) => "1 policy could not be read: run the preview again.",
            Self::PoliciesUnread(n) => {
                return format!("{n} policies could not be read: run the preview again.")
            }
            Self::PreviewExpired => {
                "The preview is older than 15 minutes. Run the preview again before executing."
            }
            Self::BackupChanged => {
                "The backup changed since the preview. Run the preview again before executing."
            }
            Self::AlreadyExecuted => {
                "This preview was executed already. Run the preview again to restore again."
            }
            Self::ExecuteStoppedUnwritten => {
                "The execute of this preview was cancelled (or failed) with no write to Intune recorded. Run the preview again."
            }
            Self::ExecuteSettling => {
                "The execute of this preview was cancelled but has not stopped yet: what it had under way may still be written to Intune. Wait until it has stopped."
            }
            Self::Blocked => "Something blocks this restore. Leave the blocked items out and run the preview again.",
        };
        fixed.to_owned()
    }
}

/// What the gates look at: the preview as the database holds it, and what was typed.
#[derive(Debug, Clone)]
pub struct GateInput<'a> {
    pub preview_status: RunStatus,
    pub preview_finished_at: Option<Timestamp>,
    pub now: Timestamp,
    /// Items the preview could not read (failed), which have no plan.
    pub failed_items: usize,
    /// Items planned as blocked, and the restore-wide block (missing permissions), if any.
    pub blocked_items: usize,
    pub run_block: Option<&'a str>,
    /// Whether a backup item now holds another version than the preview restored.
    pub backup_moved: bool,
    /// Whether an execute of this preview has ended, and whether it wrote.
    pub executed: PastExecute,
    pub reviewed: bool,
    pub typed_name: &'a str,
    pub tenant_name: &'a str,
}

/// Whether an execute of a preview has ended, and what it left: the preview is spent either
/// way, but "executed already" would be wrong for one that never wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PastExecute {
    /// None has ended (none was started, or one is queued or running).
    None,
    /// One ended and wrote, or may have written, to Intune (or completed, every item unchanged).
    Ended,
    /// One was cancelled or failed before writing (or announcing a write of) any policy.
    StoppedUnwritten,
    /// One ended (cancelled) while its claim still holds it, not settled, with a write
    /// announced whose result is not recorded: whether it wrote is known only once that result
    /// is recorded or the claim let go.
    Settling,
}

/// Whether `typed` is the tenant's display name as the wizard shows it: both canonicalised
/// ([`canonical_name`]), since the page shows a run of spaces as one and a no-break space as a
/// space, and a name stored before names were canonicalised may still hold either. The case and
/// every visible character must match.
pub fn typed_name_matches(typed: &str, tenant_name: &str) -> bool {
    canonical_name(typed) == canonical_name(tenant_name)
}

/// Every gate of an execute, in order: the request's own (422) first, then the preview's state
/// (409). Intune moving since the preview is checked per item, right before it is written.
pub fn check_gates(input: &GateInput<'_>) -> Result<(), GateFailure> {
    if !typed_name_matches(input.typed_name, input.tenant_name) {
        return Err(GateFailure::WrongTenantName);
    }
    if !input.reviewed {
        return Err(GateFailure::NotReviewed);
    }
    match input.preview_status {
        RunStatus::Completed => {}
        RunStatus::Pending | RunStatus::Running => return Err(GateFailure::PreviewNotDone),
        RunStatus::Cancelled => return Err(GateFailure::PreviewCancelled),
        // Ended, but some policies could not be read: another preview may read them.
        RunStatus::CompletedWithErrors | RunStatus::Failed if input.failed_items > 0 => {
            return Err(GateFailure::PoliciesUnread(input.failed_items))
        }
        RunStatus::CompletedWithErrors | RunStatus::Failed => {
            return Err(GateFailure::PreviewFailed)
        }
    }
    // Before the gates that say "run the preview again": a new preview executed meanwhile
    // would write beside the claim still writing.
    if input.executed == PastExecute::Settling {
        return Err(GateFailure::ExecuteSettling);
    }
    match input.preview_finished_at {
        Some(at) if input.now.0.saturating_sub(at.0) <= PREVIEW_TTL_MS => {}
        _ => return Err(GateFailure::PreviewExpired),
    }
    if input.backup_moved {
        return Err(GateFailure::BackupChanged);
    }
    match input.executed {
        PastExecute::None | PastExecute::Settling => {}
        PastExecute::Ended => return Err(GateFailure::AlreadyExecuted),
        PastExecute::StoppedUnwritten => return Err(GateFailure::ExecuteStoppedUnwritten),
    }
    if input.blocked_items > 0 || input.run_block.is_some() {
        return Err(GateFailure::Blocked);
    }
    Ok(())
}

/// A preview with its plan, and whether (and why not) it can be executed now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePreview {
    pub run_id: i64,
    pub status: RunStatus,
    pub finished_at: Option<Timestamp>,
    pub source: RestoreSource,
    pub include_assignments: bool,
    pub include_scope_tags: bool,
    /// What blocks the whole restore (a missing permission, named).
    pub run_block: Option<String>,
    pub items: Vec<PlanItem>,
    /// Why it cannot be executed, ignoring the two confirmations (which the wizard asks for);
    /// `None` when only they are missing.
    pub not_executable: Option<GateFailure>,
    /// While it can be executed: how long it stays current from this answer on, by the
    /// server's clock (the wizard disables Execute when that has passed, whatever the
    /// browser's clock says).
    pub expires_in_ms: Option<i64>,
    /// The tenant's display name, which the confirmation asks to type.
    pub tenant_name: String,
    /// The execute of this preview, if any, whatever its status (one per preview): a page
    /// opened at the preview (a reload, a second tab) follows it instead of offering Execute,
    /// which would only get the same run back, until it settled (a cancelled execute is still
    /// written to until its claim let go), then shows how it ended.
    pub execute_run: Option<i64>,
}

/// "1 policy", "2 policies": a count of policies as the wizard states it.
pub fn policy_count(n: i64) -> String {
    if n == 1 {
        "1 policy".to_owned()
    } else {
        format!("{n} policies")
    }
}

/// "1 of 1 policy", "1 of 2 policies": a part of a number of policies (the noun follows the
/// whole).
pub fn policies_of(part: i64, whole: i64) -> String {
    format!("{part} of {}", policy_count(whole))
}

/// What an execute asks for: the preview it executes and the two confirmations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteRequest {
    pub preview_run_id: i64,
    pub reviewed: bool,
    pub tenant_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ready<'a>() -> GateInput<'a> {
        GateInput {
            preview_status: RunStatus::Completed,
            preview_finished_at: Some(Timestamp(1_000_000)),
            now: Timestamp(1_000_000 + 60_000),
            failed_items: 0,
            blocked_items: 0,
            run_block: None,
            backup_moved: false,
            executed: PastExecute::None,
            reviewed: true,
            typed_name: "Contoso",
            tenant_name: "Contoso",
        }
    }

    #[test]
    fn a_count_of_one_policy_is_singular() {
        assert_eq!(policy_count(0), "0 policies");
        assert_eq!(policy_count(1), "1 policy");
        assert_eq!(policy_count(2), "2 policies");
        assert_eq!(policies_of(1, 1), "1 of 1 policy");
        assert_eq!(policies_of(1, 12), "1 of 12 policies");
        assert_eq!(policies_of(0, 1), "0 of 1 policy");
    }

    #[test]
    fn a_current_unblocked_confirmed_preview_passes() {
        assert_eq!(check_gates(&ready()), Ok(()));
    }

    #[test]
    fn the_name_is_confirmed_as_the_page_shows_it() {
        // A name stored with two spaces (before names were canonicalised), or a no-break space,
        // shows as "Contoso Ltd", and is typed so.
        for (typed, stored) in [
            ("Contoso Ltd", "Contoso  Ltd"),
            ("Contoso Ltd", "Contoso\u{A0}Ltd"),
            ("Contoso  Ltd ", "Contoso Ltd"),
            ("Caf\u{E9}", "Cafe\u{301}"),
            ("Cafe\u{301}", "Caf\u{E9}"),
        ] {
            let input = GateInput {
                typed_name: typed,
                tenant_name: stored,
                ..ready()
            };
            assert_eq!(check_gates(&input), Ok(()), "{typed:?} for {stored:?}");
        }
        for (typed, stored) in [
            ("contoso ltd", "Contoso  Ltd"),
            ("ContosoLtd", "Contoso Ltd"),
        ] {
            let input = GateInput {
                typed_name: typed,
                tenant_name: stored,
                ..ready()
            };
            assert_eq!(
                check_gates(&input),
                Err(GateFailure::WrongTenantName),
                "{typed:?} for {stored:?}"
            );
        }
    }

    #[test]
    fn each_gate_refuses_on_its_own() {
        let cases: Vec<(GateInput, GateFailure)> = vec![
            (
                GateInput {
                    typed_name: "contoso",
                    ..ready()
                },
                GateFailure::WrongTenantName,
            ),
            (
                GateInput {
                    typed_name: "Contos",
                    ..ready()
                },
                GateFailure::WrongTenantName,
            ),
            (
                GateInput {
                    reviewed: false,
                    ..ready()
                },
                GateFailure::NotReviewed,
            ),
            (
                GateInput {
                    preview_status: RunStatus::Running,
                    ..ready()
                },
                GateFailure::PreviewNotDone,
            ),
            (
                GateInput {
                    preview_status: RunStatus::Pending,
                    ..ready()
                },
                GateFailure::PreviewNotDone,
            ),
            (
                GateInput {
                    preview_status: RunStatus::Cancelled,
                    ..ready()
                },
                GateFailure::PreviewCancelled,
            ),
            (
                GateInput {
                    preview_status: RunStatus::Cancelled,
                    failed_items: 1,
                    ..ready()
                },
                GateFailure::PreviewCancelled,
            ),
            (
                GateInput {
                    preview_status: RunStatus::Failed,
                    ..ready()
                },
                GateFailure::PreviewFailed,
            ),
            (
                GateInput {
                    preview_status: RunStatus::CompletedWithErrors,
                    ..ready()
                },
                GateFailure::PreviewFailed,
            ),
            (
                GateInput {
                    preview_status: RunStatus::CompletedWithErrors,
                    failed_items: 2,
                    ..ready()
                },
                GateFailure::PoliciesUnread(2),
            ),
            (
                GateInput {
                    preview_status: RunStatus::Failed,
                    failed_items: 1,
                    ..ready()
                },
                GateFailure::PoliciesUnread(1),
            ),
            (
                GateInput {
                    preview_status: RunStatus::Running,
                    failed_items: 1,
                    ..ready()
                },
                GateFailure::PreviewNotDone,
            ),
            (
                GateInput {
                    now: Timestamp(1_000_000 + PREVIEW_TTL_MS + 1),
                    ..ready()
                },
                GateFailure::PreviewExpired,
            ),
            (
                GateInput {
                    backup_moved: true,
                    ..ready()
                },
                GateFailure::BackupChanged,
            ),
            (
                GateInput {
                    executed: PastExecute::Ended,
                    ..ready()
                },
                GateFailure::AlreadyExecuted,
            ),
            (
                GateInput {
                    executed: PastExecute::StoppedUnwritten,
                    ..ready()
                },
                GateFailure::ExecuteStoppedUnwritten,
            ),
            (
                GateInput {
                    executed: PastExecute::Settling,
                    ..ready()
                },
                GateFailure::ExecuteSettling,
            ),
            (
                GateInput {
                    blocked_items: 1,
                    ..ready()
                },
                GateFailure::Blocked,
            ),
            (
                GateInput {
                    run_block: Some("Missing Group.Read.All"),
                    ..ready()
                },
                GateFailure::Blocked,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(check_gates(&input), Err(expected));
        }
    }

    #[test]
    fn a_preview_that_could_not_read_policies_says_how_many() {
        assert_eq!(
            GateFailure::PoliciesUnread(1).message(),
            "1 policy could not be read: run the preview again."
        );
        assert_eq!(
            GateFailure::PoliciesUnread(3).message(),
            "3 policies could not be read: run the preview again."
        );
        assert!(
            !GateFailure::PoliciesUnread(3).is_input(),
            "a 409, not a 422"
        );
        assert_ne!(
            GateFailure::PoliciesUnread(3).message(),
            GateFailure::PreviewNotDone.message()
        );
    }

    #[test]
    fn a_preview_that_ended_without_a_plan_is_never_waited_for() {
        for (status, expected) in [
            (RunStatus::Cancelled, GateFailure::PreviewCancelled),
            (RunStatus::Failed, GateFailure::PreviewFailed),
        ] {
            let input = GateInput {
                preview_status: status,
                ..ready()
            };
            let refusal = check_gates(&input).expect_err("an ended preview without a plan");
            assert_eq!(refusal, expected, "{status:?}");
            assert!(
                !refusal.message().contains("Wait"),
                "{status:?}: {}",
                refusal.message()
            );
            assert!(refusal.message().contains("Run it again"), "{status:?}");
            assert!(!refusal.is_input(), "a 409, not a 422");
        }
        assert_eq!(
            GateFailure::PreviewCancelled.message(),
            "The preview was cancelled. Run it again."
        );
    }

    #[test]
    fn an_execute_that_wrote_nothing_is_not_called_executed() {
        let input = GateInput {
            executed: PastExecute::StoppedUnwritten,
            ..ready()
        };
        let refusal = check_gates(&input).expect_err("the preview is spent");
        assert!(!refusal.is_input(), "a 409, not a 422");
        assert!(
            refusal
                .message()
                .contains("with no write to Intune recorded"),
            "{}",
            refusal.message()
        );
        assert_ne!(refusal, GateFailure::AlreadyExecuted);
    }

    #[test]
    fn an_execute_still_settling_is_waited_for_before_a_new_preview_is_asked_for() {
        let input = GateInput {
            executed: PastExecute::Settling,
            now: Timestamp(1_000_000 + PREVIEW_TTL_MS + 1),
            backup_moved: true,
            ..ready()
        };
        let refusal = check_gates(&input).expect_err("its claim may still write");
        assert_eq!(refusal, GateFailure::ExecuteSettling);
        assert!(!refusal.is_input(), "a 409, not a 422");
        assert!(refusal.message().contains("Wait"), "{}", refusal.message());
        assert!(
            !refusal.message().contains("no write"),
            "{}",
            refusal.message()
        );
    }

    #[test]
    fn a_preview_of_exactly_fifteen_minutes_still_passes() {
        let input = GateInput {
            now: Timestamp(1_000_000 + PREVIEW_TTL_MS),
            ..ready()
        };
        assert_eq!(check_gates(&input), Ok(()));
    }

    #[test]
    fn source_params_round_trip_and_refuse_junk() {
        for source in [RestoreSource::BackupSet(3), RestoreSource::Version(41)] {
            assert_eq!(RestoreSource::parse_param(&source.to_param()), Some(source));
        }
        for junk in [
            "",
            "set",
            "set-",
            "set-0",
            "set--1",
            "version-x",
            "policy-3",
            "set-1-2",
        ] {
            assert_eq!(RestoreSource::parse_param(junk), None, "{junk}");
        }
    }

    proptest! {
        /// Whatever the state, the gates pass only when every one of them holds, and a refusal
        /// names one of the gates that does not. Each gate holds most of the time (and the typed
        /// name is usually the tenant's), so every gate is often the only one failing, and all
        /// of them often hold together: a check that stopped after its first gate fails here.
        #[test]
        fn gates_pass_only_when_all_hold(
            status in prop_oneof![
                12 => Just(RunStatus::Completed),
                1 => Just(RunStatus::Pending),
                1 => Just(RunStatus::Running),
                1 => Just(RunStatus::Cancelled),
                1 => Just(RunStatus::Failed),
            ],
            age in prop_oneof![4 => 0i64..=PREVIEW_TTL_MS, 1 => (PREVIEW_TTL_MS + 1)..(2 * PREVIEW_TTL_MS)],
            blocked in prop_oneof![4 => Just(0usize), 1 => 1usize..3],
            run_block in proptest::bool::weighted(0.15),
            moved in proptest::bool::weighted(0.15),
            executed in prop_oneof![
                6 => Just(PastExecute::None),
                1 => Just(PastExecute::Ended),
                1 => Just(PastExecute::StoppedUnwritten),
                1 => Just(PastExecute::Settling),
            ],
            reviewed in proptest::bool::weighted(0.85),
            typed in prop_oneof![4 => Just("Contoso".to_string()), 1 => "[A-Za-z ]{0,9}"],
        ) {
            let input = GateInput {
                preview_status: status,
                preview_finished_at: Some(Timestamp(10)),
                now: Timestamp(10 + age),
                failed_items: 0,
                blocked_items: blocked,
                run_block: run_block.then_some("Missing permission"),
                backup_moved: moved,
                executed,
                reviewed,
                typed_name: &typed,
                tenant_name: "Contoso",
            };
            let failing: Vec<GateFailure> = [
                (typed.trim() != "Contoso", GateFailure::WrongTenantName),
                (!reviewed, GateFailure::NotReviewed),
                (status.is_active(), GateFailure::PreviewNotDone),
                (status == RunStatus::Cancelled, GateFailure::PreviewCancelled),
                (status == RunStatus::Failed, GateFailure::PreviewFailed),
                (age > PREVIEW_TTL_MS, GateFailure::PreviewExpired),
                (moved, GateFailure::BackupChanged),
                (executed == PastExecute::Ended, GateFailure::AlreadyExecuted),
                (
                    executed == PastExecute::StoppedUnwritten,
                    GateFailure::ExecuteStoppedUnwritten,
                ),
                (executed == PastExecute::Settling, GateFailure::ExecuteSettling),
                (blocked > 0 || run_block, GateFailure::Blocked),
            ]
            .into_iter()
            .filter_map(|(fails, gate)| fails.then_some(gate))
            .collect();
            match check_gates(&input) {
                Ok(()) => prop_assert!(failing.is_empty(), "passed although {failing:?} fail"),
                Err(refusal) => prop_assert!(
                    failing.contains(&refusal),
                    "refused with {refusal:?} although only {failing:?} fail"
                ),
            }
        }
    }
}
