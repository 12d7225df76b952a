//! Inventory sync through the real Graph client against the simulator over real HTTP, on SQLite
//! and PostgreSQL: first sync, re-sync, renames and deletions in Intune, Graph failures that
//! must write nothing, tenant isolation, and demo mode's start-up sync.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{creds_with_secret, TestDb};
use tenantatlas::domain::reason_code::ReasonCode;
use tenantatlas::graph_sim::{GraphSim, Knobs, SimConfig, SimHandle};
use tenantatlas::server::db::Db;
use tenantatlas::server::graph::credentials::{load_credentials, CredentialsError};
use tenantatlas::server::graph::{GraphClient, GraphConfig, RetryPolicy, SecretResolver};
use tenantatlas::server::inventory::{sync_tenant, SyncError, SyncReport};
use tenantatlas::server::seed;

const CONTOSO: &str = "6f1c2a3b-0000-4000-8000-00000000c0de";
const FABRIKAM: &str = "9a7d4e21-0000-4000-8000-0000000fab01";
const SECRET: &str = "inventory-test-secret";
/// More than one list page (100) per policy type, so the sync follows nextLinks.
const POLICIES: usize = 450;

async fn start_sim() -> SimHandle {
    GraphSim::start(SimConfig {
        policies_per_tenant: POLICIES,
        client_secret: SECRET.into(),
        knobs: Knobs::default(),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// The client with short retry delays: a sync against an always-failing simulator retries each
/// request before it gives up, and the test should not wait seconds for that.
fn client(sim: &SimHandle) -> GraphClient {
    let mut config = GraphConfig::new(&sim.login_url, &sim.graph_url);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
        throttled_delay: Duration::from_millis(50),
    };
    GraphClient::new(config).expect("client builds")
}

async fn add_tenant(db: &Db, external_id: &str, secret_ref: Option<&str>) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "INSERT INTO tenants (external_id, display_name, graph_client_id, graph_secret_ref, created_at) \
         VALUES ($1, $2, $3, $4, 0) RETURNING id",
    )
    .bind(external_id)
    .bind(format!("Tenant {external_id}"))
    .bind(secret_ref.map(|_| "tenantatlas-test"))
    .bind(secret_ref)
    .fetch_one(db.pool())
    .await
    .expect("insert tenant")
}

/// A tenant's rows as (policy type, graph id) → (name, platform, last modified, gone at).
type Rows = BTreeMap<(String, String), (String, String, Option<i64>, Option<i64>)>;

async fn rows(db: &Db, tenant_id: i64) -> Rows {
    sqlx::query_as::<_, (String, String, String, String, Option<i64>, Option<i64>)>(
        "SELECT policy_type, graph_id, display_name, platform, last_modified_at, gone_from_intune_at \
         FROM policies WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_all(db.pool())
    .await
    .expect("read policies")
    .into_iter()
    .map(
        |(policy_type, graph_id, display_name, platform, last_modified_at, gone_from_intune_at)| {
            (
                (policy_type, graph_id),
                (display_name, platform, last_modified_at, gone_from_intune_at),
            )
        },
    )
    .collect()
}

fn report(added: usize, updated: usize, unchanged: usize, gone: usize) -> SyncReport {
    SyncReport {
        added,
        updated,
        unchanged,
        gone,
    }
}

async fn first_sync_adds_every_policy_and_a_second_changes_nothing(test: TestDb) {
    let sim = start_sim().await;
    let client = client(&sim);
    let tenant = add_tenant(&test.db, CONTOSO, Some("env:UNUSED")).await;
    let creds = creds_with_secret(CONTOSO, SECRET);

    let first = sync_tenant(&test.db, tenant, &client, &creds)
        .await
        .expect("first sync");
    let expected = sim.policies(CONTOSO);
    assert_eq!(first, report(expected.len(), 0, 0, 0));
    let stored = rows(&test.db, tenant).await;
    assert_eq!(stored.len(), expected.len());
    for policy in &expected {
        let (_, (name, platform, modified, gone)) = stored
            .iter()
            .find(|((_, id), _)| *id == policy.id)
            .expect("every simulated policy is stored");
        assert_eq!(name, &policy.name);
        assert_eq!(platform, policy.platform());
        assert!(modified.is_some(), "last modified is read from Graph");
        assert_eq!(*gone, None);
    }
    // Lists were paged: more list requests than policy types.
    let lists = sim
        .counters()
        .requests
        .iter()
        .filter(|r| r.endpoint.starts_with("list:"))
        .count();
    assert!(lists > 4, "{lists} list requests for {POLICIES} policies");

    let second = sync_tenant(&test.db, tenant, &client, &creds)
        .await
        .expect("second sync");
    assert_eq!(second, report(0, 0, expected.len(), 0));
    assert_eq!(rows(&test.db, tenant).await, stored);
}

async fn renamed_and_deleted_policies_show_up_as_updated_and_gone(test: TestDb) {
    let sim = start_sim().await;
    let client = client(&sim);
    let tenant = add_tenant(&test.db, CONTOSO, Some("env:UNUSED")).await;
    let creds = creds_with_secret(CONTOSO, SECRET);
    sync_tenant(&test.db, tenant, &client, &creds)
        .await
        .expect("first sync");
    let before = rows(&test.db, tenant).await;
    let policies = sim.policies(CONTOSO);
    let (renamed, deleted) = (&policies[5], &policies[6]);
    assert!(sim.rename_policy(CONTOSO, &renamed.id, "Renamed in Intune"));
    assert!(sim.remove_policy(CONTOSO, &deleted.id));

    let after_edit = sync_tenant(&test.db, tenant, &client, &creds)
        .await
        .expect("sync after the edit");
    assert_eq!(after_edit, report(0, 1, policies.len() - 2, 1));
    let after = rows(&test.db, tenant).await;
    assert_eq!(after.len(), policies.len(), "a gone policy keeps its row");
    let row = |rows: &Rows, id: &str| {
        rows.iter()
            .find(|((_, graph_id), _)| graph_id == id)
            .map(|(_, v)| v.clone())
            .expect("row exists")
    };
    let (name, _, modified, gone) = row(&after, &renamed.id);
    assert_eq!(name, "Renamed in Intune");
    assert!(
        modified > row(&before, &renamed.id).2,
        "last modified moved"
    );
    assert_eq!(gone, None);
    assert!(row(&after, &deleted.id).3.is_some(), "marked gone");
    for (key, value) in &after {
        if key.1 != renamed.id && key.1 != deleted.id {
            assert_eq!(Some(value), before.get(key), "{key:?} untouched");
        }
    }

    // Still gone on the next sync, but not counted again and not re-dated.
    let again = sync_tenant(&test.db, tenant, &client, &creds)
        .await
        .expect("third sync");
    assert_eq!(again, report(0, 0, policies.len() - 1, 0));
    assert_eq!(rows(&test.db, tenant).await, after);
}

/// `len` characters no compressor can shrink much: letters, digits and CJK ideographs from a
/// fixed-seed xorshift.
fn incompressible_name(len: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let pick = (state >> 32) as u32;
            if pick.is_multiple_of(2) {
                char::from(
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        [(pick as usize / 2) % 62],
                )
            } else {
                char::from_u32(0x4E00 + (pick / 2) % 0x5000).expect("a CJK ideograph")
            }
        })
        .collect()
}

async fn names_with_nul_or_too_long_for_the_index_are_stored_cleaned(test: TestDb) {
    let sim = start_sim().await;
    let client = client(&sim);
    let tenant = add_tenant(&test.db, CONTOSO, Some("env:UNUSED")).await;
    let creds = creds_with_secret(CONTOSO, SECRET);
    let policies = sim.policies(CONTOSO);
    // One of each type gets a hostile name: NUL (PostgreSQL refuses it in text), other control
    // characters, and names far longer than a B-tree index entry may be.
    let long = incompressible_name(4_000);
    let names = [
        "Base\u{0}line".to_owned(),
        "\u{0}Tab\tand\nnewline\u{1b}[31m".to_owned(),
        long.clone(),
        "\u{0}".repeat(50),
    ];
    // Spread over the list (the collections come in order): each name in another collection.
    let mut hostile = BTreeMap::new();
    for (n, name) in names.iter().enumerate() {
        let policy = &policies[n * policies.len() / names.len() + 1];
        assert!(sim.rename_policy(CONTOSO, &policy.id, name));
        hostile.insert(policy.id.clone(), name.clone());
    }

    let first = sync_tenant(&test.db, tenant, &client, &creds)
        .await
        .expect("the sync stores cleaned names");
    assert_eq!(first, report(policies.len(), 0, 0, 0));
    let stored = rows(&test.db, tenant).await;
    let name_of = |id: &str| {
        stored
            .iter()
            .find(|((_, graph_id), _)| graph_id == id)
            .map(|(_, (name, ..))| name.clone())
            .expect("stored")
    };
    let by_raw = |raw: &str| {
        let (id, _) = hostile
            .iter()
            .find(|(_, n)| n.as_str() == raw)
            .expect("renamed");
        name_of(id)
    };
    assert_eq!(by_raw("Base\u{0}line"), "Baseline");
    assert_eq!(
        by_raw("\u{0}Tab\tand\nnewline\u{1b}[31m"),
        "Tab and newline[31m"
    );
    assert_eq!(by_raw(&"\u{0}".repeat(50)), "(unnamed policy)");
    let cut = by_raw(&long);
    assert_eq!(cut.chars().count(), 500);
    let kept = cut.strip_suffix('…').expect("a cut name ends in …");
    assert!(long.starts_with(kept));

    // The cleaned names are what Graph lists, as far as the next sync can tell.
    let second = sync_tenant(&test.db, tenant, &client, &creds)
        .await
        .expect("second sync");
    assert_eq!(second, report(0, 0, policies.len(), 0));
}

async fn a_graph_failure_writes_nothing(test: TestDb) {
    let sim = start_sim().await;
    let client = client(&sim);
    let tenant = add_tenant(&test.db, CONTOSO, Some("env:UNUSED")).await;

    // Rejected credentials: no token, no rows.
    let wrong_secret = "wrong-secret-value-0123456789";
    let error = sync_tenant(
        &test.db,
        tenant,
        &client,
        &creds_with_secret(CONTOSO, wrong_secret),
    )
    .await
    .expect_err("the token endpoint refuses the secret");
    let SyncError::Graph(graph) = &error else {
        panic!("expected a Graph error, got {error:?}");
    };
    assert_eq!(graph.reason_code(), ReasonCode::AuthenticationFailed);
    assert!(!error.to_string().contains(wrong_secret));
    assert!(rows(&test.db, tenant).await.is_empty());

    // A failure after some lists succeeded: the earlier inventory stays exactly as it was.
    let creds = creds_with_secret(CONTOSO, SECRET);
    sync_tenant(&test.db, tenant, &client, &creds)
        .await
        .expect("a good sync");
    let before = rows(&test.db, tenant).await;
    let policies = sim.policies(CONTOSO);
    assert!(sim.rename_policy(CONTOSO, &policies[0].id, "Never stored"));
    assert!(sim.remove_policy(CONTOSO, &policies[1].id));
    sim.set_knobs(Knobs {
        rate_malformed: 1.0,
        ..Knobs::default()
    });
    let error = sync_tenant(&test.db, tenant, &client, &creds)
        .await
        .expect_err("Graph answers garbage");
    assert!(
        matches!(&error, SyncError::Graph(e) if e.reason_code() == ReasonCode::InvalidResponse),
        "{error:?}"
    );
    assert_eq!(rows(&test.db, tenant).await, before);
}

async fn another_tenants_rows_are_untouched(test: TestDb) {
    let sim = start_sim().await;
    let client = client(&sim);
    let contoso = add_tenant(&test.db, CONTOSO, Some("env:UNUSED")).await;
    let fabrikam = add_tenant(&test.db, FABRIKAM, Some("env:UNUSED")).await;
    sync_tenant(
        &test.db,
        fabrikam,
        &client,
        &creds_with_secret(FABRIKAM, SECRET),
    )
    .await
    .expect("fabrikam sync");
    let fabrikam_rows = rows(&test.db, fabrikam).await;
    assert_eq!(fabrikam_rows.len(), sim.policies(FABRIKAM).len());

    let creds = creds_with_secret(CONTOSO, SECRET);
    let first = sync_tenant(&test.db, contoso, &client, &creds)
        .await
        .expect("contoso sync");
    assert_eq!(first.added, sim.policies(CONTOSO).len());
    assert_eq!(first.gone, 0, "fabrikam's policies are not contoso's");
    let victim = &sim.policies(CONTOSO)[3];
    assert!(sim.remove_policy(CONTOSO, &victim.id));
    let second = sync_tenant(&test.db, contoso, &client, &creds)
        .await
        .expect("contoso re-sync");
    assert_eq!(second.gone, 1);
    assert_eq!(rows(&test.db, fabrikam).await, fabrikam_rows);

    // Contoso's credentials against Fabrikam's row would mix tenants: refused, nothing written.
    let error = sync_tenant(&test.db, fabrikam, &client, &creds)
        .await
        .expect_err("credentials of another tenant");
    assert!(matches!(error, SyncError::TenantMismatch), "{error:?}");
    assert_eq!(rows(&test.db, fabrikam).await, fabrikam_rows);
}

async fn credentials_come_from_the_tenant_row_and_never_hold_the_secret(test: TestDb) {
    let configured = add_tenant(&test.db, CONTOSO, Some("env:TA_TEST_SURELY_UNSET_VAR")).await;
    let bare = add_tenant(&test.db, FABRIKAM, None).await;
    let secrets = SecretResolver::default();
    let error = load_credentials(&test.db, configured, &secrets)
        .await
        .expect_err("the variable is not set");
    assert!(
        matches!(&error, CredentialsError::MissingEnvironment(name) if name == "TA_TEST_SURELY_UNSET_VAR"),
        "{error:?}"
    );
    assert!(matches!(
        load_credentials(&test.db, bare, &secrets).await,
        Err(CredentialsError::NotConfigured)
    ));
    assert!(matches!(
        load_credentials(&test.db, -1, &secrets).await,
        Err(CredentialsError::UnknownTenant)
    ));
    // No column of the tenant row holds a secret, only the reference.
    let stored: String =
        sqlx::query_scalar::<_, String>("SELECT graph_secret_ref FROM tenants WHERE id = $1")
            .bind(configured)
            .fetch_one(test.db.pool())
            .await
            .expect("tenant row");
    assert_eq!(stored, "env:TA_TEST_SURELY_UNSET_VAR");
}

async fn demo_start_up_syncs_both_demo_tenants_from_the_simulator(test: TestDb) {
    seed::seed_demo(&test.db).await.expect("seed demo data");
    let demo = seed::start_demo_graph(0)
        .await
        .expect("demo simulator starts");
    let reports = seed::sync_demo_inventory(&test.db, &demo)
        .await
        .expect("demo sync");
    assert_eq!(reports.len(), seed::DEMO_TENANTS.len());
    for ((external_id, name), (reported, report)) in seed::DEMO_TENANTS.iter().zip(&reports) {
        assert_eq!(name, reported);
        let served = demo.sim.policies(external_id).len();
        assert_eq!(served, seed::DEMO_POLICIES_PER_TENANT);
        assert_eq!(*report, self::report(served, 0, 0, 0));
    }
    assert_eq!(
        common::count(&test.db, "policies").await,
        (seed::DEMO_POLICIES_PER_TENANT * seed::DEMO_TENANTS.len()) as i64
    );
    // The sync went through the client: one token per tenant, lists only.
    let counters = demo.sim.counters();
    assert_eq!(counters.token_requests(), seed::DEMO_TENANTS.len());

    // A restart finds the same inventory; a process without the simulator cannot resolve the
    // demo tenants' secret reference.
    seed::seed_demo(&test.db).await.expect("seeding again");
    let again = seed::sync_demo_inventory(&test.db, &demo)
        .await
        .expect("demo sync again");
    for (_, r) in &again {
        assert_eq!(*r, report(0, 0, seed::DEMO_POLICIES_PER_TENANT, 0));
    }
    let contoso = common::tenant_id(&test.db, CONTOSO).await;
    assert!(matches!(
        load_credentials(&test.db, contoso, &SecretResolver::default()).await,
        Err(CredentialsError::DemoOnly)
    ));
}

both_backends!(TestDb:
    first_sync_adds_every_policy_and_a_second_changes_nothing,
    renamed_and_deleted_policies_show_up_as_updated_and_gone,
    names_with_nul_or_too_long_for_the_index_are_stored_cleaned,
    a_graph_failure_writes_nothing,
    another_tenants_rows_are_untouched,
    credentials_come_from_the_tenant_row_and_never_hold_the_secret,
    demo_start_up_syncs_both_demo_tenants_from_the_simulator,
);
