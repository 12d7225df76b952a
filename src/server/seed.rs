//! Demo data for the embedded default: two tenants, a user of every role, and an in-process
//! Graph simulator the tenants' inventory is synced from through the real client. Idempotent:
//! tenants and users that already exist are left as they are (except that a demo tenant without
//! Graph credentials gets the simulator's).

use sqlx::Row;

use super::auth::password;
use super::db::Db;
use super::graph::credentials::DEMO_SECRET_REF;
use super::graph::{ClientSecret, GraphAccess, GraphClient, GraphConfig, SecretResolver};
use super::inventory::{self, SyncReport};
use super::StartError;
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
        if let Some(row) = sqlx::query("SELECT id FROM tenants WHERE external_id = $1")
            .bind(external_id)
            .fetch_optional(&mut *tx)
            .await?
        {
            let tenant_id: i64 = row.try_get("id")?;
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
        let tenant_id: i64 = sqlx::query(
            "INSERT INTO tenants (external_id, display_name, graph_client_id, graph_secret_ref, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(external_id)
        .bind(name)
        .bind(DEMO_CLIENT_ID)
        .bind(DEMO_SECRET_REF)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
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
        let user_id: i64 = sqlx::query(
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
        .await?
        .try_get("id")?;
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
        let tenant_id: i64 = sqlx::query("SELECT id FROM tenants WHERE external_id = $1")
            .bind(external_id)
            .fetch_one(db.pool())
            .await?
            .try_get("id")?;
        let report = inventory::load_and_sync(db, &graph.access, tenant_id).await?;
        reports.push((name, report));
    }
    Ok(reports)
}
