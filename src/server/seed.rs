//! Demo data for the embedded default: two tenants, a user of every role, and an in-process
//! Graph simulator the tenants' inventory is synced from through the real client. Idempotent:
//! tenants and users that already exist are left as they are (except that a demo tenant without
//! Graph credentials gets the simulator's).

use super::auth::password;
use super::db::Db;
use super::engine::ops::drift_check::DriftCheckInput;
use super::graph::credentials::{load_credentials, DEMO_SECRET_REF};
use super::graph::{
    CaptureOptions, ClientSecret, GraphAccess, GraphClient, GraphConfig, PolicyType, SecretResolver,
};
use super::inventory::{self, SyncReport};
use super::runs::key::IdempotencyKey;
use super::runs::submit::{self, NewRun};
use super::snapshots::store_snapshot;
use super::StartError;
use crate::domain::run::OperationType;
use crate::domain::Timestamp;
use crate::graph_sim::{GraphSim, Knobs, SimConfig, SimHandle};

/// The demo tenants: (external id, display name).
pub const DEMO_TENANTS: [(&str, &str); 2] = [
    ("6f1c2a3b-0000-4000-8000-00000000c0de", "Contoso (demo)"),
    ("9a7d4e21-0000-4000-8000-0000000fab01", "Fabrikam (demo)"),
];

/// The app registration the demo tenants use in the simulator.
pub const DEMO_CLIENT_ID: &str = "tenantatlas-demo";

/// Policies per demo tenant: enough for the picker's search, filters and pages to mean
/// something, few enough that the start-up sync takes a fraction of a second.
pub const DEMO_POLICIES_PER_TENANT: usize = 96;

/// The demo simulator's seed: every demo start serves the same policies, so a restart finds
/// the inventory unchanged.
const DEMO_SIM_SEED: u64 = 20_240_501;

/// The demo admin's e-mail address (owner of both demo tenants).
pub const DEMO_ADMIN_EMAIL: &str = "admin@contoso.example";

/// Every demo user's password. Demo data only: real accounts come from `create-user`.
pub const DEMO_PASSWORD: &str = "tenantatlas-demo";

/// A demo user: e-mail, name, and (index into [`DEMO_TENANTS`], role) memberships.
pub type DemoUser = (&'static str, &'static str, &'static [(usize, &'static str)]);

/// The demo users, one of every role.
pub const DEMO_USERS: [DemoUser; 5] = [
    (
        DEMO_ADMIN_EMAIL,
        "Avery Admin",
        &[(0, "owner"), (1, "owner")],
    ),
    (
        "manager@contoso.example",
        "Morgan Manager",
        &[(0, "manager")],
    ),
    (
        "operator@contoso.example",
        "Oli Operator",
        &[(0, "operator")],
    ),
    (
        "readonly@contoso.example",
        "Riley Readonly",
        &[(0, "readonly")],
    ),
    (
        "operator@fabrikam.example",
        "Frankie Fabrikam",
        &[(1, "operator")],
    ),
];

/// Creates whatever of the demo data is missing. Returns how many tenants it created.
pub async fn seed_demo(db: &Db) -> Result<usize, StartError> {
    let now = Timestamp::now().millis();
    // One hash for every demo user: they share the demo password, and hashing is slow on purpose,
    // so it is only computed when a demo user is missing (not at every start).
    let mut demo_hash: Option<String> = None;
    let mut tx = db.pool().begin().await?;

    let mut tenant_ids = Vec::with_capacity(DEMO_TENANTS.len());
    let mut created = 0;
    for (external_id, name) in DEMO_TENANTS {
        if let Some(tenant_id) =
            sqlx::query_scalar::<_, i64>("SELECT id FROM tenants WHERE external_id = $1")
                .bind(external_id)
                .fetch_optional(&mut *tx)
                .await?
        {
            // Demo databases from before the simulator have tenants without credentials.
            sqlx::query(
                "UPDATE tenants SET graph_client_id = $2, graph_secret_ref = $3 \
                 WHERE id = $1 AND graph_client_id IS NULL AND graph_secret_ref IS NULL",
            )
            .bind(tenant_id)
            .bind(DEMO_CLIENT_ID)
            .bind(DEMO_SECRET_REF)
            .execute(&mut *tx)
            .await?;
            tenant_ids.push(tenant_id);
            continue;
        }
        let tenant_id: i64 = sqlx::query_scalar(
            "INSERT INTO tenants (external_id, display_name, graph_client_id, graph_secret_ref, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(external_id)
        .bind(name)
        .bind(DEMO_CLIENT_ID)
        .bind(DEMO_SECRET_REF)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tenant_ids.push(tenant_id);
        created += 1;
    }

    for (email, name, memberships) in DEMO_USERS {
        let exists = sqlx::query("SELECT id FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if exists {
            continue;
        }
        let hash = match &demo_hash {
            Some(hash) => hash.clone(),
            None => {
                let hash = password::hash(DEMO_PASSWORD.to_owned())
                    .await
                    .map_err(|_| StartError::Invalid("could not hash the demo password".into()))?;
                demo_hash.insert(hash).clone()
            }
        };
        let user_id: i64 = sqlx::query_scalar(
            "INSERT INTO users (email, display_name, password_hash, created_at, is_admin) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(email)
        .bind(name)
        .bind(&hash)
        .bind(now)
        // The demo admin may connect tenants, as the first account of a deployment may.
        .bind(email == DEMO_ADMIN_EMAIL)
        .fetch_one(&mut *tx)
        .await?;
        for (tenant_index, role) in memberships {
            sqlx::query("INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES ($1, $2, $3, $4)")
                .bind(user_id)
                .bind(tenant_ids[*tenant_index])
                .bind(*role)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(created)
}

/// The demo's Microsoft Graph: an in-process simulator and the client pointed at it. The
/// simulator stops when this is dropped, so the server holds it for its lifetime.
pub struct DemoGraph {
    pub sim: SimHandle,
    pub access: GraphAccess,
}

/// Starts the demo simulator on 127.0.0.1 (a free port) and a client that talks to it.
pub async fn start_demo_graph(port: u16) -> Result<DemoGraph, StartError> {
    start_demo_graph_with_secret(port, None).await
}

/// [`start_demo_graph`], accepting `secret` (when given) as the app registration's secret.
pub async fn start_demo_graph_with_secret(
    port: u16,
    secret: Option<ClientSecret>,
) -> Result<DemoGraph, StartError> {
    // By default a fresh random secret per process: the demo tenants' `demo:simulator`
    // reference resolves to it here and nowhere else, so no usable secret is ever stored or
    // configured. A secret given by the operator lets tenants connected in the UI in too.
    let secret = match secret {
        Some(secret) => secret.expose().to_owned(),
        None => format!("demo-{:032x}", rand::random::<u128>()),
    };
    let sim = GraphSim::start(SimConfig {
        port,
        seed: DEMO_SIM_SEED,
        policies_per_tenant: DEMO_POLICIES_PER_TENANT,
        client_secret: secret.clone(),
        // A little latency, so runs in the demo take visible time as they do against Intune.
        knobs: Knobs {
            latency_ms: 30,
            latency_jitter_ms: 40,
            ..Knobs::default()
        },
    })
    .await?;
    let client = GraphClient::new(GraphConfig::new(&sim.login_url, &sim.graph_url))?;
    Ok(DemoGraph {
        access: GraphAccess {
            client,
            secrets: SecretResolver::with_demo_secret(ClientSecret::new(secret)),
        },
        sim,
    })
}

/// Syncs every demo tenant's inventory from the demo simulator through the client.
pub async fn sync_demo_inventory(
    db: &Db,
    graph: &DemoGraph,
) -> Result<Vec<(&'static str, SyncReport)>, StartError> {
    let mut reports = Vec::with_capacity(DEMO_TENANTS.len());
    for (external_id, name) in DEMO_TENANTS {
        let tenant_id: i64 = sqlx::query_scalar("SELECT id FROM tenants WHERE external_id = $1")
            .bind(external_id)
            .fetch_one(db.pool())
            .await?;
        let report = inventory::load_and_sync(db, &graph.access, tenant_id).await?;
        reports.push((name, report));
    }
    Ok(reports)
}

/// The demo's backup set, captured "a week ago", so a newcomer finds versions, a diff and a
/// drift result without typing anything.
pub const DEMO_BASELINE_SET: &str = "Baseline (demo)";

/// Policies in the demo's baseline: the first few of each type.
const BASELINE_PER_TYPE: usize = 3;

const DAY_MS: i64 = 86_400_000;

/// One change an admin made in the demo's Intune.
enum DemoEdit {
    Rename(String, String),
    ChangeSettings(String),
    AddAssignment(String),
}

impl DemoEdit {
    fn policy(&self) -> &str {
        match self {
            Self::Rename(id, _) | Self::ChangeSettings(id) | Self::AddAssignment(id) => id,
        }
    }

    fn apply(&self, sim: &SimHandle, external_id: &str) {
        match self {
            Self::Rename(id, name) => sim.rename_policy(external_id, id, name),
            Self::ChangeSettings(id) => sim.change_settings(external_id, id),
            Self::AddAssignment(id) => sim.add_assignment(external_id, id),
        };
    }
}

/// What changed in the demo's Intune since the baseline, in stages, read off the unedited
/// simulator: one policy renamed twice (its page shows three versions), another with changed
/// settings and then a new assignment. The simulator starts from its seed at every start, so the
/// edits are applied again each time ([`replay_demo_edits`]); the history in the database is
/// written once.
fn demo_edits(sim: &SimHandle, external_id: &str) -> Vec<Vec<DemoEdit>> {
    let policies = sim.policies(external_id);
    let [first, second, ..] = &policies[..] else {
        return Vec::new();
    };
    vec![
        vec![
            DemoEdit::Rename(first.id.clone(), format!("{} (edited)", first.name)),
            DemoEdit::ChangeSettings(second.id.clone()),
        ],
        vec![
            DemoEdit::Rename(first.id.clone(), format!("{} (edited twice)", first.name)),
            DemoEdit::AddAssignment(second.id.clone()),
        ],
    ]
}

/// Applies one stage of the demo's edits to the simulator.
fn apply_demo_stage(sim: &SimHandle, external_id: &str, stage: &[DemoEdit]) {
    for edit in stage {
        edit.apply(sim, external_id);
    }
}

/// Whether the demo's history was written (by an earlier start).
pub async fn demo_history_written(db: &Db) -> Result<bool, StartError> {
    let (external_id, _) = DEMO_TENANTS[0];
    Ok(sqlx::query(
        "SELECT b.id FROM backup_sets b JOIN tenants t ON t.id = b.tenant_id \
         WHERE t.external_id = $1 AND b.name = $2",
    )
    .bind(external_id)
    .bind(DEMO_BASELINE_SET)
    .fetch_optional(db.pool())
    .await?
    .is_some())
}

/// Applies every demo edit to a freshly started simulator (on starts after the first).
pub fn replay_demo_edits(graph: &DemoGraph) {
    let (external_id, _) = DEMO_TENANTS[0];
    for stage in demo_edits(&graph.sim, external_id) {
        apply_demo_stage(&graph.sim, external_id, &stage);
    }
}

/// Writes the demo's history, on the first start, from the unedited simulator (whose inventory
/// was just synced): it captures the baseline set as of a week ago, then applies the edits
/// stage by stage and captures what each changed (three versions of one policy in all, dated
/// over the last week), and queues a drift check of the set.
pub async fn write_demo_history(db: &Db, graph: &DemoGraph) -> Result<(), StartError> {
    let (external_id, _) = DEMO_TENANTS[0];
    let tenant_id: i64 = sqlx::query_scalar("SELECT id FROM tenants WHERE external_id = $1")
        .bind(external_id)
        .fetch_one(db.pool())
        .await?;
    let edits = demo_edits(&graph.sim, external_id);
    let creds = load_credentials(db, tenant_id, &graph.access.secrets)
        .await
        .map_err(|error| StartError::Invalid(format!("demo credentials: {error}")))?;
    let now = Timestamp::now().millis();
    let week_ago = now - 7 * DAY_MS;
    let admin: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(DEMO_ADMIN_EMAIL)
        .fetch_optional(db.pool())
        .await?;

    // The baseline: the first policies of each type, as Intune held them a week ago.
    let sims = graph.sim.policies(external_id);
    let mut picked: Vec<&crate::graph_sim::SimPolicy> = Vec::new();
    for kind_index in 0..PolicyType::ALL.len() {
        picked.extend(
            sims.iter()
                .filter(|p| kind_rank(p.kind) == kind_index)
                .take(BASELINE_PER_TYPE),
        );
    }
    // The edited policies are in the baseline too.
    for sim in sims.iter().take(2) {
        if !picked.iter().any(|p| p.id == sim.id) {
            picked.push(sim);
        }
    }
    let mut tx = db.pool().begin().await?;
    let set_id: i64 = sqlx::query_scalar(
        "INSERT INTO backup_sets (tenant_id, name, description, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(tenant_id)
    .bind(DEMO_BASELINE_SET)
    .bind("Captured by the demo a week ago; some policies changed in Intune since.")
    .bind(admin)
    .bind(week_ago)
    .fetch_one(&mut *tx)
    .await?;
    let mut added = 0_i64;
    for sim in &picked {
        let Some((policy_id, policy_type)) = demo_policy(&mut tx, tenant_id, &sim.id).await? else {
            continue;
        };
        let snapshot = graph
            .access
            .client
            .capture_policy(&creds, policy_type, &sim.id, DEMO_CAPTURE)
            .await
            .map_err(|error| StartError::Invalid(format!("demo capture: {error}")))?;
        let stored = store_snapshot(&mut tx, tenant_id, policy_id, &snapshot, week_ago).await?;
        sqlx::query(
            "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant_id)
        .bind(set_id)
        .bind(policy_id)
        .bind(stored.id)
        .bind(week_ago)
        .execute(&mut *tx)
        .await?;
        added += 1;
    }
    sqlx::query("UPDATE backup_sets SET item_count = $1 WHERE id = $2")
        .bind(added)
        .bind(set_id)
        .execute(&mut *tx)
        .await?;

    // Each stage of edits, then a capture of what it changed: later versions of those policies.
    for (index, stage) in edits.iter().enumerate() {
        apply_demo_stage(&graph.sim, external_id, stage);
        let at = now - (3 - index as i64 * 2) * DAY_MS;
        for graph_id in stage.iter().map(DemoEdit::policy) {
            let Some((policy_id, policy_type)) = demo_policy(&mut tx, tenant_id, graph_id).await?
            else {
                continue;
            };
            let snapshot = graph
                .access
                .client
                .capture_policy(&creds, policy_type, graph_id, DEMO_CAPTURE)
                .await
                .map_err(|error| StartError::Invalid(format!("demo capture: {error}")))?;
            store_snapshot(&mut tx, tenant_id, policy_id, &snapshot, at).await?;
        }
    }
    tx.commit().await?;

    // A drift check of the baseline, run by the engine once the server is up.
    let policy_ids: Vec<i64> = sqlx::query_scalar(
        "SELECT policy_id FROM backup_items WHERE backup_set_id = $1 ORDER BY policy_id",
    )
    .bind(set_id)
    .fetch_all(db.pool())
    .await?;
    let operation = OperationType::DriftCheck;
    let run = NewRun {
        operation,
        target_id: set_id,
        input: serde_json::to_string(&DriftCheckInput {
            backup_set_id: set_id,
            policy_ids: policy_ids.clone(),
        })
        .map_err(|_| StartError::Invalid("demo drift check input".into()))?,
        key: IdempotencyKey::of(operation, tenant_id, &[("backup_set", set_id)]),
        total: policy_ids.len() as i64,
        retry_of: None,
    };
    submit::queue(db, tenant_id, None, &run).await?;
    Ok(())
}

/// The demo captures everything a restore needs.
const DEMO_CAPTURE: CaptureOptions = CaptureOptions {
    include_assignments: true,
    include_scope_tags: true,
};

/// The simulator's kinds in the registry's type order.
fn kind_rank(kind: crate::graph_sim::Kind) -> usize {
    use crate::graph_sim::Kind;
    match kind {
        Kind::ConfigurationPolicy => 0,
        Kind::DeviceConfiguration => 1,
        Kind::CompliancePolicy => 2,
        Kind::GroupPolicyConfiguration => 3,
    }
}

/// The inventory row of a demo policy: its id and type.
async fn demo_policy(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant_id: i64,
    graph_id: &str,
) -> Result<Option<(i64, PolicyType)>, sqlx::Error> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT id, policy_type FROM policies WHERE tenant_id = $1 AND graph_id = $2",
    )
    .bind(tenant_id)
    .bind(graph_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.and_then(|(id, raw)| Some((id, PolicyType::parse(&raw)?))))
}
