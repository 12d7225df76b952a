//! The order in which runs are claimed, checked against a model of the rule over random
//! sequences of submits, claims, ends and cancels by two workers: first a run whose owner is
//! gone, then the oldest queued run of the tenant that has waited longest (from its oldest queued
//! run, or from the end of its last run that started when that came later: a queued run
//! cancelled is no end) among the tenants without a run going in the lane. A worker claims from what its last look at the queue found, so these sequences
//! also check that nothing that happened since that look puts a run out of turn.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::TestDb;
use tenantatlas::domain::run::{Lane, OperationType};
use tenantatlas::server::db::Db;
use tenantatlas::server::engine::worker::Worker;

both_backends!(TestDb:
    claims_follow_the_fair_share_order_whatever_happens_between_them,
    a_released_run_is_claimed_before_the_runs_found_earlier,
    a_look_at_the_queue_beside_other_writers_never_fails_a_claim,
    a_cancelled_queued_run_does_not_send_its_tenant_to_the_back,
);

const TENANTS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    /// Running, with its lease given up: claimable first.
    Released,
    Ended,
}

#[derive(Debug, Clone)]
struct ModelRun {
    id: i64,
    tenant: i64,
    lane: Lane,
    created: i64,
    finished: Option<i64>,
    /// Whether a claim ever took it (the database's `started_at`).
    started: bool,
    state: State,
    attempt: i64,
    /// The worker (its id) whose claim holds the run while it is running.
    owner: Option<String>,
}

/// The queue as the claim rule sees it, and the database rows it mirrors.
struct Queue {
    db: Db,
    tenants: Vec<i64>,
    runs: Vec<ModelRun>,
    /// The logical clock of `created_at` and `finished_at`: every event gets its own time.
    clock: i64,
}

impl Queue {
    async fn new(db: &Db) -> Self {
        let mut tenants = Vec::new();
        for i in 0..TENANTS {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO tenants (external_id, display_name, created_at) \
                 VALUES ($1, $2, 0) RETURNING id",
            )
            .bind(format!("{:08}-0000-4000-8000-000000000000", 7000 + i))
            .bind(format!("Claim order {i}"))
            .fetch_one(db.pool())
            .await
            .unwrap();
            tenants.push(id);
        }
        Self {
            db: db.clone(),
            tenants,
            runs: Vec::new(),
            clock: 1_000,
        }
    }

    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    async fn submit(&mut self, tenant: i64, lane: Lane) {
        let created = self.tick();
        let operation = match lane {
            Lane::Bulk => OperationType::AddPolicies,
            Lane::Interactive => OperationType::CheckConnection,
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (tenant_id, operation_type, lane, resource, action, target_id, \
             input, idempotency_key, status, total_items, created_at) \
             VALUES ($1, $2, $3, 'test', 'claim_order', 0, '{}', $4, 'pending', 0, $5) RETURNING id",
        )
        .bind(tenant)
        .bind(operation.as_str())
        .bind(lane.as_str())
        .bind(format!("claim-order-{created}"))
        .bind(created)
        .fetch_one(self.db.pool())
        .await
        .unwrap();
        self.runs.push(ModelRun {
            id,
            tenant,
            lane,
            created,
            finished: None,
            started: false,
            state: State::Pending,
            attempt: 0,
            owner: None,
        });
    }

    /// The run the rule says comes next in `lane` for worker `me`: only runs of tenants no
    /// other worker holds a running run of, in either lane (tenant affinity). A tenant waits
    /// from its oldest queued run, or from the end of its last run that started when that came
    /// later.
    fn expected(&self, lane: Lane, me: &str) -> Option<i64> {
        let elsewhere = |tenant: i64| {
            self.runs.iter().any(|r| {
                r.tenant == tenant
                    && r.state == State::Running
                    && r.owner.as_deref().is_some_and(|owner| owner != me)
            })
        };
        let in_lane = || {
            self.runs
                .iter()
                .filter(move |r| r.lane == lane && !elsewhere(r.tenant))
        };
        if let Some(released) = in_lane()
            .filter(|r| r.state == State::Released)
            .min_by_key(|r| (r.created, r.id))
        {
            return Some(released.id);
        }
        let busy = |tenant| {
            in_lane()
                .any(|r| r.tenant == tenant && matches!(r.state, State::Running | State::Released))
        };
        self.tenants
            .iter()
            .filter(|&&tenant| !busy(tenant) && !elsewhere(tenant))
            .filter_map(|&tenant| {
                let oldest = in_lane()
                    .filter(|r| r.tenant == tenant && r.state == State::Pending)
                    .min_by_key(|r| (r.created, r.id))?;
                // Only runs that started served the tenant: a queued run cancelled before any
                // claim does not send it to the back.
                let last_end = in_lane()
                    .filter(|r| r.tenant == tenant && r.started)
                    .filter_map(|r| r.finished)
                    .max()
                    .unwrap_or(0);
                Some((oldest.created.max(last_end), oldest.created, oldest.id))
            })
            .min()
            .map(|(_, _, id)| id)
    }

    async fn claim(&mut self, worker: &Worker, lane: Lane, context: &str) {
        let expected = self.expected(lane, worker.id());
        let claimed = worker
            .claim(lane)
            .await
            .unwrap()
            .map(|c| (c.run.id, c.run.attempt));
        assert_eq!(
            claimed.map(|(id, _)| id),
            expected,
            "{context}: the {} lane's claim; the queue: {:?}",
            lane.as_str(),
            self.runs
                .iter()
                .filter(|r| r.state != State::Ended)
                .collect::<Vec<_>>()
        );
        if let Some((id, attempt)) = claimed {
            let run = self.run_mut(id);
            run.state = State::Running;
            run.attempt = attempt;
            run.started = true;
            run.owner = Some(worker.id().to_owned());
        }
    }

    fn run_mut(&mut self, id: i64) -> &mut ModelRun {
        self.runs.iter_mut().find(|r| r.id == id).unwrap()
    }

    /// Ends run `id` (running: it completes; pending: it is cancelled) at the next tick.
    async fn end(&mut self, id: i64) {
        let finished = self.tick();
        let status = match self.run_mut(id).state {
            State::Pending => "cancelled",
            _ => "completed",
        };
        sqlx::query(
            "UPDATE runs SET status = $1, finished_at = $2, lease_expires_at = NULL WHERE id = $3",
        )
        .bind(status)
        .bind(finished)
        .bind(id)
        .execute(self.db.pool())
        .await
        .unwrap();
        let run = self.run_mut(id);
        run.state = State::Ended;
        run.finished = Some(finished);
    }

    fn pick(&self, rng: &mut Rng, state: State) -> Option<i64> {
        let runs: Vec<i64> = self
            .runs
            .iter()
            .filter(|r| r.state == state)
            .map(|r| r.id)
            .collect();
        (!runs.is_empty()).then(|| runs[rng.below(runs.len())])
    }
}

/// xorshift64*: the sequences are the same on every machine, and a failure names its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

async fn claims_follow_the_fair_share_order_whatever_happens_between_them(t: TestDb) {
    let (_sim, client) = common::sim_and_client(0).await;
    let workers = [
        common::sim_worker(&t.db, &client, "first"),
        common::sim_worker(&t.db, &client, "second"),
    ];
    let mut queue = Queue::new(&t.db).await;
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for step in 0..60 {
            let context = format!("seed {seed}, step {step}");
            let lane = if rng.below(4) == 0 {
                Lane::Interactive
            } else {
                Lane::Bulk
            };
            match rng.below(20) {
                0..=7 => {
                    let tenant = queue.tenants[rng.below(TENANTS)];
                    queue.submit(tenant, lane).await;
                }
                8..=14 => {
                    let worker = &workers[rng.below(workers.len())];
                    queue.claim(worker, lane, &context).await;
                }
                15..=17 => {
                    if let Some(id) = queue.pick(&mut rng, State::Running) {
                        queue.end(id).await;
                    }
                }
                _ => {
                    if let Some(id) = queue.pick(&mut rng, State::Pending) {
                        queue.end(id).await;
                    }
                }
            }
        }
        // Drain: every queued run is claimed, in turn, and ended.
        loop {
            let worker = &workers[rng.below(workers.len())];
            let context = format!("seed {seed}, draining");
            let before = queue
                .runs
                .iter()
                .filter(|r| r.state == State::Running)
                .count();
            for lane in Lane::ALL {
                queue.claim(worker, lane, &context).await;
            }
            match queue.pick(&mut rng, State::Running) {
                Some(id) => queue.end(id).await,
                None if before == 0 => break,
                None => {}
            }
        }
        assert!(queue.runs.iter().all(|r| r.state == State::Ended));
    }
    let claimed_twice: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE attempt > 1")
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    assert_eq!(claimed_twice, 0, "no run is claimed twice");
}

/// A run this worker gives back (its work failed) is claimed again before the runs its last
/// look at the queue found.
async fn a_released_run_is_claimed_before_the_runs_found_earlier(t: TestDb) {
    let (_sim, client) = common::sim_and_client(0).await;
    let worker = common::sim_worker(&t.db, &client, "releasing");
    let mut queue = Queue::new(&t.db).await;
    for &tenant in &queue.tenants.clone() {
        queue.submit(tenant, Lane::Bulk).await;
    }
    // The first claim looks at the queue and finds the other tenants' runs too.
    queue.claim(&worker, Lane::Bulk, "first claim").await;
    let first = queue.runs[0].clone();
    assert_eq!(first.state, State::Running);
    assert_eq!(
        worker.release_lease(first.id, first.attempt).await.unwrap(),
        1
    );
    queue.run_mut(first.id).state = State::Released;
    queue.claim(&worker, Lane::Bulk, "after the release").await;
    assert_eq!(queue.run_mut(first.id).state, State::Running);
    assert_eq!(
        queue.run_mut(first.id).attempt,
        2,
        "the same run, claimed again"
    );
    // Then the others, in their turn.
    for i in 1..TENANTS {
        queue
            .claim(&worker, Lane::Bulk, &format!("claim {i}"))
            .await;
    }
    queue.claim(&worker, Lane::Bulk, "empty queue").await;
}

/// Cancelling a queued run does not send its tenant to the back of the queue: the cancel sets
/// the run's `finished_at`, but a run no claim ever took served the tenant nothing. One slot
/// busy (tenant A's run); tenant B queues B1 and B2, then tenant C queues C1; B1 is cancelled;
/// once A's run ends, B2 (queued before C1) is next.
async fn a_cancelled_queued_run_does_not_send_its_tenant_to_the_back(t: TestDb) {
    let (_sim, client) = common::sim_and_client(0).await;
    let worker = common::sim_worker(&t.db, &client, "fair");
    let mut queue = Queue::new(&t.db).await;
    let (a, b, c) = (queue.tenants[0], queue.tenants[1], queue.tenants[2]);
    queue.submit(a, Lane::Bulk).await;
    queue.claim(&worker, Lane::Bulk, "A's run").await;
    let a1 = queue.runs[0].id;
    // The slot is busy: nothing else is claimed until A's run ends.
    queue.submit(b, Lane::Bulk).await;
    queue.submit(b, Lane::Bulk).await;
    queue.submit(c, Lane::Bulk).await;
    let (b1, b2, c1) = (queue.runs[1].id, queue.runs[2].id, queue.runs[3].id);
    // Cancelled while queued, as `runs::cancel` does it: `finished_at` set, never started.
    queue.end(b1).await;
    let started: Option<i64> = sqlx::query_scalar("SELECT started_at FROM runs WHERE id = $1")
        .bind(b1)
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    assert_eq!(started, None, "B1 never started");
    queue.end(a1).await;
    assert_eq!(queue.expected(Lane::Bulk, worker.id()), Some(b2));
    let next = worker.claim(Lane::Bulk).await.unwrap().map(|c| c.run.id);
    assert_eq!(next, Some(b2), "B2 was queued before C1 (C1 is {c1})");
}

/// A claim that has to look at the queue first, while other connections keep writing: it never
/// fails. (On SQLite, a transaction that reads and then writes cannot take the write lock once
/// another writer has committed after its read; the look must not be that read.)
async fn a_look_at_the_queue_beside_other_writers_never_fails_a_claim(t: TestDb) {
    let (_sim, client) = common::sim_and_client(0).await;
    let mut queue = Queue::new(&t.db).await;
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (db, writing) = (t.db.clone(), Arc::clone(&writing));
        tokio::spawn(async move {
            let mut writes = 0u64;
            while writing.load(Ordering::Relaxed) {
                sqlx::query("UPDATE tenants SET display_name = $1 WHERE external_id = $2")
                    .bind(format!("Written {writes}"))
                    .bind(format!("{:08}-0000-4000-8000-000000000000", 7000))
                    .execute(db.pool())
                    .await
                    .expect("the other writer writes");
                writes += 1;
            }
            writes
        })
    };
    for i in 0..150 {
        let tenant = queue.tenants[i % TENANTS];
        queue.submit(tenant, Lane::Bulk).await;
        // A new worker has found nothing yet: its claim looks at the queue.
        let worker = common::sim_worker(&t.db, &client, &format!("looking-{i}"));
        let claimed = worker
            .claim(Lane::Bulk)
            .await
            .unwrap_or_else(|error| panic!("claim {i} failed: {error}"))
            .expect("the run just queued");
        queue.run_mut(claimed.run.id).state = State::Running;
        queue.end(claimed.run.id).await;
    }
    writing.store(false, Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0);
}
