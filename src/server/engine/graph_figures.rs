//! Writes a run's Graph activity to its row: the figures as they grow and the wait going on, at
//! most once a second while the run is worked on; what is left when the work stops goes with
//! the run's end (wait cleared). Only the claim that works on the run writes (lease owner and
//! attempt).
//!
//! The wait's end (`graph_wait_until`) is written by the lease clock ([`lease_now_sql`]) and the
//! runs API reads the time left by it too: on PostgreSQL the database's, since the worker that
//! writes it and the web process that counts it down may run on hosts whose clocks disagree; on
//! SQLite (one process) the process's.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tokio::time::Instant;

use super::operation::Tx;
use crate::domain::graph_wait::{GraphFigures, GraphWaitReason};
use crate::server::db::{Backend, Db};
use crate::server::graph::activity::GraphActivity;
use crate::server::runs::queries::{app_now, lease_now_sql};

/// How often the figures and the wait are written at most.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// The most time left of a wait that is written: a day.
const MAX_LEFT_MS: i64 = 24 * 60 * 60 * 1_000;

/// A wait whose expected end moved by less than this is not written again.
const UNTIL_SLACK_MS: i64 = 1_000;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Written {
    figures: GraphFigures,
    wait: Option<(GraphWaitReason, Option<i64>)>,
}

/// What was last written, and when (the writer's start before the first write).
#[derive(Debug, Clone, Copy)]
struct LastWrite {
    written: Written,
    at: Instant,
}

/// A write that is due: what grew since the last one and the wait going on.
struct Due {
    now: Written,
    grown: GraphFigures,
    /// The milliseconds left of the wait going on, when its end is known: written as the lease
    /// clock's now plus these ([`update_sql`]), not as this process's `until`.
    left: Option<i64>,
}

/// The writer of one claim of one run.
pub(super) struct FiguresWriter {
    db: Db,
    owner: String,
    run_id: i64,
    attempt: i64,
    activity: Arc<GraphActivity>,
    last: Mutex<LastWrite>,
}

impl FiguresWriter {
    pub(super) fn new(
        db: Db,
        owner: &str,
        run_id: i64,
        attempt: i64,
        activity: Arc<GraphActivity>,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            owner: owner.to_owned(),
            run_id,
            attempt,
            activity,
            last: Mutex::new(LastWrite {
                written: Written::default(),
                at: Instant::now(),
            }),
        })
    }

    /// Writes every [`WRITE_EVERY`] what changed, until `stop` is sent (then it returns
    /// between two writes, never inside one: a write cut after its UPDATE but before it noted
    /// what it wrote would be written again by the last write). A failed write is logged and
    /// tried again at the next tick: the figures are worth less than the run's progress.
    pub(super) async fn every_second(self: Arc<Self>, mut stop: watch::Receiver<()>) {
        // The first write a second in: a run that ends sooner writes its figures with its end.
        let mut every = tokio::time::interval_at(Instant::now() + WRITE_EVERY, WRITE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = every.tick() => {
                    if let Err(error) = self.write().await {
                        tracing::warn!(%error, "could not write the run's Graph figures");
                    }
                }
            }
        }
    }

    /// Writes the figures that grew since the last write and the wait going on, if anything
    /// changed and no batch of outcomes wrote them in the last second.
    async fn write(&self) -> Result<(), sqlx::Error> {
        let mut last = self.last.lock().await;
        self.write_with(&mut last, self.db.pool()).await
    }

    /// [`Self::write`] in a batch's transaction, so that a run busy with batches writes its
    /// figures with them instead of in a transaction of their own (on SQLite, one writer less
    /// waiting for the lock). Counted as written at once: if the transaction does not commit,
    /// the run has gone to another claim, whose figures are its own.
    ///
    /// Never waits for the periodic writer: that one may be waiting for the run's row, which
    /// this transaction holds until it commits (waiting here was a deadlock on PostgreSQL).
    pub(super) async fn write_in(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        let Ok(mut last) = self.last.try_lock() else {
            return Ok(());
        };
        self.write_with(&mut last, &mut **tx).await
    }

    /// Writes what is due with `executor` and notes it as `last`.
    async fn write_with<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
        &self,
        last: &mut LastWrite,
        executor: E,
    ) -> Result<(), sqlx::Error> {
        let Some(due) = self.due(last) else {
            return Ok(());
        };
        self.update(&due).execute(executor).await?;
        *last = LastWrite {
            written: due.now,
            at: Instant::now(),
        };
        Ok(())
    }

    /// What to write, if a second has passed since the last write and anything changed.
    fn due(&self, last: &LastWrite) -> Option<Due> {
        if last.at.elapsed() < WRITE_EVERY {
            return None;
        }
        let written = last.written;
        let figures = self.activity.figures();
        // This process's clock only tells whether the wait's end moved since the last write.
        let now = app_now();
        let current = self
            .activity
            .current_wait(Instant::now())
            .map(|(reason, left)| {
                // Capped so that the database's now plus it cannot overflow (waits are minutes).
                let left = left.map(|left| {
                    i64::try_from(left.as_millis()).map_or(MAX_LEFT_MS, |ms| ms.min(MAX_LEFT_MS))
                });
                (reason, left)
            });
        let left = current.and_then(|(_, left)| left);
        let wait =
            current.map(|(reason, left)| (reason, left.map(|left| now.saturating_add(left))));
        let same_wait = match (written.wait, wait) {
            (None, None) => true,
            (Some((was, was_until)), Some((is, until))) => {
                was == is
                    && match (was_until, until) {
                        (Some(a), Some(b)) => (a - b).abs() < UNTIL_SLACK_MS,
                        (a, b) => a == b,
                    }
            }
            _ => false,
        };
        if figures == written.figures && same_wait {
            return None;
        }
        Some(Due {
            now: Written { figures, wait },
            grown: grown(figures, written.figures),
            left,
        })
    }

    fn update(&self, due: &Due) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let (grown, wait) = (due.grown, due.now.wait);
        sqlx::query(update_sql(self.db.backend()))
            .bind(grown.requests)
            .bind(grown.throttled)
            .bind(grown.server_errors)
            .bind(grown.retries)
            .bind(grown.waited_ms)
            .bind(wait.map(|(reason, _)| reason.as_str()))
            .bind(due.left)
            .bind(self.run_id)
            .bind(self.owner.as_str())
            .bind(self.attempt)
            .bind(app_now())
    }

    /// What Graph did since the last write, marked written: the run's end (or the last batch's
    /// transaction) adds it to the row. Call it once the periodic writer has stopped.
    pub(super) async fn take_unwritten(&self) -> GraphFigures {
        let mut last = self.last.lock().await;
        let figures = self.activity.figures();
        let was = last.written.figures;
        *last = LastWrite {
            written: Written {
                figures,
                wait: None,
            },
            at: Instant::now(),
        };
        grown(figures, was)
    }
}

/// The UPDATE that writes a due write's figures and wait ([`FiguresWriter::update`]) on
/// `backend`: the wait's end is the lease clock's now ([`lease_now_sql`], `$11` the process's
/// clock on SQLite, unused on PostgreSQL) plus the milliseconds left (`$7`; none, no end).
fn update_sql(backend: Backend) -> &'static str {
    fn sql(backend: Backend) -> String {
        format!(
            "UPDATE runs SET graph_requests = graph_requests + $1, \
                 graph_throttled = graph_throttled + $2, \
                 graph_server_errors = graph_server_errors + $3, \
                 graph_retries = graph_retries + $4, graph_waited_ms = graph_waited_ms + $5, \
                 graph_wait_reason = $6, graph_wait_until = {} + $7 \
             WHERE id = $8 AND lease_owner = $9 AND attempt = $10",
            lease_now_sql(backend, "$11")
        )
    }
    static POSTGRES: LazyLock<String> = LazyLock::new(|| sql(Backend::Postgres));
    static SQLITE: LazyLock<String> = LazyLock::new(|| sql(Backend::Sqlite));
    match backend {
        Backend::Postgres => &POSTGRES,
        Backend::Sqlite => &SQLITE,
    }
}

/// What grew from `then` to `now`.
fn grown(now: GraphFigures, then: GraphFigures) -> GraphFigures {
    GraphFigures {
        requests: now.requests - then.requests,
        throttled: now.throttled - then.throttled,
        server_errors: now.server_errors - then.server_errors,
        retries: now.retries - then.retries,
        waited_ms: now.waited_ms - then.waited_ms,
    }
}

/// Adds `grown` to the Graph figures of claim `attempt` of `run_id` in `tx` and clears its
/// waiting state: for a run that stopped without its end being written (cancelled).
pub(super) async fn add_in(
    tx: &mut Tx,
    run_id: i64,
    owner: &str,
    attempt: i64,
    grown: GraphFigures,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE runs SET graph_requests = graph_requests + $1, \
             graph_throttled = graph_throttled + $2, \
             graph_server_errors = graph_server_errors + $3, \
             graph_retries = graph_retries + $4, graph_waited_ms = graph_waited_ms + $5, \
             graph_wait_reason = NULL, graph_wait_until = NULL \
         WHERE id = $6 AND lease_owner = $7 AND attempt = $8",
    )
    .bind(grown.requests)
    .bind(grown.throttled)
    .bind(grown.server_errors)
    .bind(grown.retries)
    .bind(grown.waited_ms)
    .bind(run_id)
    .bind(owner)
    .bind(attempt)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch's transaction never waits for the periodic writer: that one may be waiting for
    /// the run's row, which the transaction holds (this deadlocked a 10,000-item run on
    /// PostgreSQL).
    #[tokio::test]
    async fn a_batch_does_not_wait_for_the_periodic_writer() {
        sqlx::any::install_default_drivers();
        let db = Db::connect("sqlite::memory:").await.unwrap();
        let activity = Arc::new(GraphActivity::default());
        let writer = FiguresWriter::new(db.clone(), "worker", 1, 1, activity);
        let mut tx = db.pool().begin().await.unwrap();
        // The periodic writer is in the middle of a write.
        let writing = writer.last.lock().await;
        tokio::time::timeout(Duration::from_secs(5), writer.write_in(&mut tx))
            .await
            .expect("the batch went on without the figures")
            .unwrap();
        drop(writing);
    }
}
