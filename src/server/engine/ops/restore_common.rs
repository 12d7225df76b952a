//! What the restore's two operations share: `restore.preview` and `restore.execute` plan the
//! same items (the input's entries, each a policy and the version restored), record each item on
//! its own, restore a version's parts only as far as it recorded them, check that the groups,
//! assignment filters and scope tags a version refers to still exist (each looked up once per
//! claim, its answer kept a few minutes), and audit every policy written with the same `restore.item_written` row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::super::operation::{Run, Tx};
use crate::server::graph::write::PolicyWriter;
use crate::server::graph::{CaptureOptions, GraphError, TenantCredentials};
use crate::server::restore::refs::Reference;

/// Implements [`super::PlannedRestore`] for an input entry with `policy_id` and `snapshot_id`
/// fields (the policy, and the version restored).
macro_rules! planned_restore {
    ($entry:ty) => {
        impl super::PlannedRestore for $entry {
            fn policy_id(&self) -> i64 {
                self.policy_id
            }

            fn snapshot_id(&self) -> i64 {
                self.snapshot_id
            }
        }
    };
}
pub(crate) use planned_restore;

/// The `plan` and `record` of a restore operation: its items are the input's entries (`items`,
/// see [`super::planned_ids`]), and each processed item is recorded on its own by `$record`
/// (`tx, run, pending, output, now`), in order.
macro_rules! restore_items {
    ($input:ty, $record:ident) => {
        fn plan(&self, run: &Run<$input>) -> Vec<i64> {
            super::planned_ids(&run.input.items)
        }

        async fn record(
            &self,
            tx: &mut Tx,
            run: &Run<$input>,
            batch: &[(Pending<Self::Item>, Self::Output)],
            now: i64,
        ) -> Result<Vec<Recorded>, sqlx::Error> {
            let mut recorded = Vec::with_capacity(batch.len());
            for (pending, output) in batch {
                recorded.push($record(tx, run, pending, output, now).await?);
            }
            Ok(recorded)
        }
    };
}
pub(crate) use restore_items;

/// What a restore of a version captured with `recorded` writes when `asked` was asked for: each
/// part asked for, as far as the version recorded it (assignments a capture left out cannot be
/// restored).
pub(crate) fn restore_includes(asked: CaptureOptions, recorded: CaptureOptions) -> CaptureOptions {
    CaptureOptions {
        include_assignments: asked.include_assignments && recorded.include_assignments,
        include_scope_tags: asked.include_scope_tags && recorded.include_scope_tags,
    }
}

/// A reference a restore could not verify before writing what names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unverified {
    /// Graph says it no longer exists.
    Missing(Reference),
    /// Looking it up failed: it counts as missing (a restore must not write what it could not
    /// verify), and the next item asks again.
    Unchecked(Reference, GraphError),
}

/// How long an answer of a lookup is kept: when an item checks a reference, the answer it goes by
/// was asked less than this before (the clock is read for each reference, as the lookups of the
/// item's earlier references can wait minutes). A group deleted after it was looked up is taken
/// as existing no longer than this, and one restored from the recycle bin blocks no longer. The
/// write itself may then still wait out a Retry-After. A run of hundreds of throttled items lasts
/// hours; the preview's 15-minute freshness is not its bound.
pub(crate) const ANSWER_KEPT_FOR: Duration = Duration::from_secs(5 * 60);

/// Whether one directory object exists, and when the lookup that said so was asked.
#[derive(Debug, Clone, Copy)]
struct Answer {
    exists: bool,
    asked_at: Instant,
}

/// One directory object's lookup, once it has answered.
type Lookup = Arc<OnceCell<Answer>>;

/// Directory objects looked up by one claim of a run (built with its pending items, dropped
/// with them on every path the claim ends by): a hundred policies assigned to one group look it
/// up once, and items processed together wait for the one lookup in flight. An answer is kept
/// for [`ANSWER_KEPT_FOR`], a failed lookup never; a claim taking the run over asks afresh.
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    checked: Mutex<HashMap<Reference, Lookup>>,
}

impl Lookups {
    /// The `references` of an item that no longer exist or could not be looked up through
    /// `writer`, in order; empty when each exists.
    pub(crate) async fn unverified(
        &self,
        writer: &dyn PolicyWriter,
        creds: &TenantCredentials,
        references: &[Reference],
    ) -> Vec<Unverified> {
        self.unverified_as_of(writer, creds, references, Instant::now)
            .await
    }

    /// [`Self::unverified`] by `clock` (tokio's clock in production), read as each reference is
    /// checked: an answer asked [`ANSWER_KEPT_FOR`] or longer before it is asked again. One
    /// reading for the whole item would judge its later references by a time that the lookups
    /// of the earlier ones (throttled, or waiting on another item's) may have left minutes behind.
    async fn unverified_as_of(
        &self,
        writer: &dyn PolicyWriter,
        creds: &TenantCredentials,
        references: &[Reference],
        clock: impl Fn() -> Instant,
    ) -> Vec<Unverified> {
        let mut unverified = Vec::new();
        for reference in references {
            let now = clock();
            let lookup = self.lookup(reference, now);
            let exists = lookup
                .get_or_try_init(|| async {
                    let exists = writer
                        .object_exists(creds, reference.kind, &reference.id)
                        .await?;
                    Ok::<_, GraphError>(Answer {
                        exists,
                        asked_at: now,
                    })
                })
                .await
                .map(|answer| answer.exists);
            match exists {
                Ok(true) => {}
                Ok(false) => unverified.push(Unverified::Missing(reference.clone())),
                Err(error) => unverified.push(Unverified::Unchecked(reference.clone(), error)),
            }
        }
        unverified
    }

    /// The lookup of `reference` shared by the claim's items: a new one when its answer is too
    /// old at `now`.
    fn lookup(&self, reference: &Reference, now: Instant) -> Lookup {
        let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        let lookup = checked.entry(reference.clone()).or_default();
        let expired = lookup.get().is_some_and(|answer| {
            now.saturating_duration_since(answer.asked_at) >= ANSWER_KEPT_FOR
        });
        if expired {
            *lookup = Lookup::default();
        }
        Arc::clone(lookup)
    }
}

/// Records the `restore.item_written` audit row of policy `policy_id`, written to Intune by a
/// restore (`details` says which run, which action, and whether the write is complete), in the
/// run's tenant and by its initiator.
pub(crate) async fn audit_item_written<I>(
    tx: &mut Tx,
    run: &Run<I>,
    policy_id: i64,
    details: serde_json::Value,
    now: i64,
) -> Result<(), sqlx::Error> {
    crate::server::audit::record_in(
        &mut **tx,
        crate::server::audit::AuditEvent {
            tenant_id: Some(run.tenant_id),
            actor_user_id: run.initiated_by,
            action: "restore.item_written",
            target: format!("policy:{policy_id}"),
            details,
        },
        now,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::domain::reason_code::ReasonCode;
    use crate::domain::TenantExternalId;
    use crate::server::graph::write::{DirectoryKind, WriteFuture, WriteRequest};
    use crate::server::graph::{ClientSecret, GraphFuture};

    /// A directory holding the groups of `existing`: counts the lookups asked of it, and fails
    /// the first `failures`. A lookup of the `throttled` group takes its time: the test's clock
    /// ([`Directory::clock`] from a start) moves on by that much while it is answered.
    #[derive(Default)]
    struct Directory {
        existing: Mutex<Vec<&'static str>>,
        failures: AtomicUsize,
        asked: AtomicUsize,
        throttled: Option<(&'static str, Duration)>,
        elapsed: Mutex<Duration>,
    }

    impl Directory {
        /// The test's clock: `start`, plus the time the directory's lookups took and the test
        /// let pass ([`Directory::wait`]).
        fn clock(&self, start: Instant) -> impl Fn() -> Instant + '_ {
            move || start + *self.elapsed.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Lets `minutes` pass on the test's clock.
        fn wait(&self, minutes: u64) {
            *self.elapsed.lock().unwrap_or_else(PoisonError::into_inner) +=
                Duration::from_secs(minutes * 60);
        }
    }

    impl PolicyWriter for Directory {
        fn object_exists<'a>(
            &'a self,
            _creds: &'a TenantCredentials,
            _kind: DirectoryKind,
            id: &'a str,
        ) -> GraphFuture<'a, bool> {
            Box::pin(async move {
                self.asked.fetch_add(1, Ordering::SeqCst);
                if let Some((_, took)) = self.throttled.filter(|(group, _)| *group == id) {
                    *self.elapsed.lock().unwrap_or_else(PoisonError::into_inner) += took;
                }
                // Items processed together reach the lookup while it is in flight.
                tokio::task::yield_now().await;
                let failing = self
                    .failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    return Err(GraphError::new(
                        ReasonCode::GraphUnavailable,
                        format!("GET groups/{id} answered 503"),
                    ));
                }
                let existing = self.existing.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(existing.contains(&id))
            })
        }

        fn write_policy_reporting<'a>(
            &'a self,
            _creds: &'a TenantCredentials,
            _request: WriteRequest<'a>,
        ) -> WriteFuture<'a> {
            unreachable!("a lookup writes nothing")
        }
    }

    fn creds() -> TenantCredentials {
        TenantCredentials {
            tenant_id: TenantExternalId::parse("6f1c2a3b-0000-4000-8000-00000000c0de")
                .expect("a tenant id"),
            client_id: "tenantatlas-app".into(),
            client_secret: ClientSecret::new("secret"),
        }
    }

    fn group(id: &str) -> Reference {
        Reference {
            kind: DirectoryKind::Group,
            id: id.into(),
        }
    }

    /// A hundred items of a claim referring to the same two groups, processed together, cost
    /// one lookup of each; another claim (a takeover, a second run) looks them up again.
    #[tokio::test]
    async fn a_restore_claim_looks_each_reference_up_once() {
        let directory = Directory {
            existing: Mutex::new(vec!["g-1"]),
            ..Directory::default()
        };
        let (lookups, creds) = (Lookups::default(), creds());
        let references = [group("g-1"), group("g-2")];
        let items = (0..100).map(|_| lookups.unverified(&directory, &creds, &references));
        for unverified in futures::future::join_all(items).await {
            assert_eq!(unverified, vec![Unverified::Missing(group("g-2"))]);
        }
        assert_eq!(directory.asked.load(Ordering::SeqCst), 2, "once per group");
        let takeover = Lookups::default();
        takeover.unverified(&directory, &creds, &references).await;
        assert_eq!(directory.asked.load(Ordering::SeqCst), 4, "once per claim");
    }

    /// An answer is kept a few minutes, not for the claim: a group deleted after it was looked
    /// up is found missing once its answer is older than [`ANSWER_KEPT_FOR`], and one restored
    /// from the recycle bin is found again.
    #[tokio::test]
    async fn a_restore_lookups_answer_expires() {
        let directory = Directory {
            existing: Mutex::new(vec!["g-1"]),
            ..Directory::default()
        };
        let (lookups, creds) = (Lookups::default(), creds());
        let references = [group("g-1")];
        let t0 = Instant::now();
        let at = |minutes: u64| t0 + Duration::from_secs(minutes * 60);
        let unverified = lookups
            .unverified_as_of(&directory, &creds, &references, || t0)
            .await;
        assert!(unverified.is_empty(), "{unverified:?}");
        // An admin deletes g-1: within the answer's age, it is still taken as existing.
        directory.existing.lock().unwrap().clear();
        let unverified = lookups
            .unverified_as_of(&directory, &creds, &references, || at(4))
            .await;
        assert!(unverified.is_empty(), "{unverified:?}");
        assert_eq!(directory.asked.load(Ordering::SeqCst), 1);
        let unverified = lookups
            .unverified_as_of(&directory, &creds, &references, || at(6))
            .await;
        assert_eq!(unverified, vec![Unverified::Missing(group("g-1"))]);
        // Restored from the recycle bin: the "missing" expires as well.
        directory.existing.lock().unwrap().push("g-1");
        let unverified = lookups
            .unverified_as_of(&directory, &creds, &references, || at(12))
            .await;
        assert!(unverified.is_empty(), "{unverified:?}");
        assert_eq!(directory.asked.load(Ordering::SeqCst), 3);
    }

    /// Each reference is judged by the clock when the item reaches it, not when the item began:
    /// g-1's answer, 4 minutes old when the item starts, is 12 minutes old once the lookup of
    /// g-2 before it has been throttled 8 minutes, so g-1 is asked again and found deleted.
    #[tokio::test]
    async fn a_restore_judges_each_answer_when_its_reference_is_checked() {
        let directory = Directory {
            existing: Mutex::new(vec!["g-1"]),
            throttled: Some(("g-2", Duration::from_secs(8 * 60))),
            ..Directory::default()
        };
        let (lookups, creds) = (Lookups::default(), creds());
        let clock = directory.clock(Instant::now());
        let unverified = lookups
            .unverified_as_of(&directory, &creds, &[group("g-1")], &clock)
            .await;
        assert!(unverified.is_empty(), "{unverified:?}");
        // An admin deletes g-1; the next item starts 4 minutes after g-1 was looked up.
        directory.existing.lock().unwrap().clear();
        directory.wait(4);
        let unverified = lookups
            .unverified_as_of(&directory, &creds, &[group("g-2"), group("g-1")], &clock)
            .await;
        assert_eq!(
            unverified,
            vec![
                Unverified::Missing(group("g-2")),
                Unverified::Missing(group("g-1"))
            ]
        );
        assert_eq!(directory.asked.load(Ordering::SeqCst), 3, "g-1 asked again");
    }

    /// A lookup that failed counts as missing, with its error, and is asked again by the next
    /// item: only an answer is kept.
    #[tokio::test]
    async fn a_restore_lookup_that_failed_is_never_kept() {
        let directory = Directory {
            existing: Mutex::new(vec!["g-1"]),
            failures: AtomicUsize::new(1),
            ..Directory::default()
        };
        let (lookups, creds) = (Lookups::default(), creds());
        let references = [group("g-1")];
        let unverified = lookups.unverified(&directory, &creds, &references).await;
        match unverified.as_slice() {
            [Unverified::Unchecked(reference, error)] => {
                assert_eq!(reference, &group("g-1"));
                assert_eq!(error.reason_code(), ReasonCode::GraphUnavailable);
            }
            other => panic!("not one unchecked group: {other:?}"),
        }
        for _ in 0..2 {
            let unverified = lookups.unverified(&directory, &creds, &references).await;
            assert!(unverified.is_empty(), "{unverified:?}");
        }
        assert_eq!(directory.asked.load(Ordering::SeqCst), 2);
    }
}
