//! Storing captured versions (`server::snapshots`) on both engines, with captures made by the
//! real client against the simulator: the hash rule across capture formats, capture options per
//! version, and setting definitions stored once per tenant and id apart from the content.

use crate::common;

use common::TestDb;
use serde_json::Value;
use tenantatlas::domain::snapshot::{compare, CaptureFormat, PolicyType, SettingNames};
use tenantatlas::domain::TenantExternalId;
use tenantatlas::graph_sim::{GraphSim, Kind, SimConfig, SimHandle, SimPolicy};
use tenantatlas::server::graph::{
    CaptureOptions, ClientSecret, GraphClient, GraphConfig, Snapshot, TenantCredentials,
};
use tenantatlas::server::snapshots::{
    definition_ids, definition_names, load_version, names_for, setting_names, store_snapshot,
    StoredSnapshot,
};

both_backends!(TestDb: an_unchanged_policy_is_not_a_new_version_across_capture_formats, a_capture_that_records_more_is_a_version_that_compares_unchanged, versions_record_their_format_and_options, setting_definitions_are_stored_once_and_names_never_change_the_content, the_current_version_follows_the_last_capture);

const TENANT: &str = "6f1c2a3b-0000-4000-8000-00000000c0de";
const FULL: CaptureOptions = CaptureOptions {
    include_assignments: true,
    include_scope_tags: true,
};

struct Fixture {
    t: TestDb,
    sim: SimHandle,
    client: GraphClient,
    tenant_id: i64,
}

impl Fixture {
    async fn new(t: TestDb) -> Self {
        let sim = GraphSim::start(SimConfig {
            policies_per_tenant: 8,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let client = GraphClient::new(GraphConfig::new(&sim.login_url, &sim.graph_url))
            .expect("client builds");
        let tenant_id: i64 = sqlx::query_scalar(
            "INSERT INTO tenants (external_id, display_name, created_at) VALUES ($1, 'Contoso', 0) RETURNING id",
        )
        .bind(TENANT)
        .fetch_one(t.db.pool())
        .await
        .expect("tenant");
        Self {
            t,
            sim,
            client,
            tenant_id,
        }
    }

    fn policy(&self, kind: Kind) -> SimPolicy {
        self.sim
            .policies(TENANT)
            .into_iter()
            .find(|p| p.kind == kind)
            .expect("the tenant has this kind")
    }

    async fn inventory(&self, policy: &SimPolicy, policy_type: PolicyType) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
             VALUES ($1, $2, $3, $4, 'windows10', 0) RETURNING id",
        )
        .bind(self.tenant_id)
        .bind(&policy.id)
        .bind(policy_type.as_str())
        .bind(&policy.name)
        .fetch_one(self.t.db.pool())
        .await
        .expect("policy")
    }

    async fn capture(&self, policy: &SimPolicy, policy_type: PolicyType) -> Snapshot {
        let creds = TenantCredentials {
            tenant_id: TenantExternalId::parse(TENANT).expect("tenant id"),
            client_id: "tenantatlas-app".into(),
            client_secret: ClientSecret::new("sim-secret"),
        };
        self.client
            .capture_policy(&creds, policy_type, &policy.id, FULL)
            .await
            .expect("capture succeeds")
    }

    async fn store(&self, policy_id: i64, snapshot: &Snapshot, now: i64) -> StoredSnapshot {
        let mut tx = self.t.db.pool().begin().await.expect("begin");
        let stored = store_snapshot(&mut tx, self.tenant_id, policy_id, snapshot, now)
            .await
            .expect("stores");
        tx.commit().await.expect("commit");
        stored
    }

    /// Stores `snapshot` as the first capture format stored it: its payload without what format 2
    /// added, under a hash of the raw JSON, with the columns' defaults.
    async fn store_as_format_1(&self, policy_id: i64, snapshot: &Snapshot) -> i64 {
        let mut payload: Value = serde_json::from_str(&snapshot.canonical_json).expect("parses");
        if let Value::Object(fields) = &mut payload {
            fields.remove("scheduledActionsForRule");
            if let Some(Value::Array(values)) = fields.get_mut("definitionValues") {
                for value in values {
                    if let Value::Object(value) = value {
                        value.remove("presentationValues");
                    }
                }
            }
        }
        sqlx::query_scalar(
            "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
             VALUES ($1, $2, $3, $4, 1) RETURNING id",
        )
        .bind(self.tenant_id)
        .bind(policy_id)
        .bind("1".repeat(64))
        .bind(payload.to_string())
        .fetch_one(self.t.db.pool())
        .await
        .expect("format-1 row")
    }

    async fn current(&self, policy_id: i64) -> Option<i64> {
        sqlx::query_scalar("SELECT current_snapshot_id FROM policies WHERE id = $1")
            .bind(policy_id)
            .fetch_one(self.t.db.pool())
            .await
            .expect("policy")
    }

    async fn versions(&self, policy_id: i64) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM policy_snapshots WHERE policy_id = $1")
            .bind(policy_id)
            .fetch_one(self.t.db.pool())
            .await
            .expect("count")
    }
}

async fn an_unchanged_policy_is_not_a_new_version_across_capture_formats(t: TestDb) {
    let f = Fixture::new(t).await;
    for (kind, policy_type) in [
        (Kind::DeviceConfiguration, PolicyType::DeviceConfiguration),
        (Kind::ConfigurationPolicy, PolicyType::SettingsCatalog),
    ] {
        let sim_policy = f.policy(kind);
        let policy_id = f.inventory(&sim_policy, policy_type).await;
        let snapshot = f.capture(&sim_policy, policy_type).await;
        let old = f.store_as_format_1(policy_id, &snapshot).await;
        let stored = f.store(policy_id, &snapshot, 2).await;
        assert_eq!(
            stored,
            StoredSnapshot {
                id: old,
                new_version: false
            },
            "{kind:?}: the format-1 version holds the same content"
        );
        // And a capture in the same format reuses its version by hash.
        let newer = f
            .store(policy_id, &f.capture(&sim_policy, policy_type).await, 3)
            .await;
        assert_eq!(newer.id, old);
        // A real change is a new version.
        assert!(f.sim.change_settings(TENANT, &sim_policy.id));
        let changed = f
            .store(policy_id, &f.capture(&sim_policy, policy_type).await, 4)
            .await;
        assert!(changed.new_version);
        assert_eq!(f.versions(policy_id).await, 2);
    }
}

async fn a_capture_that_records_more_is_a_version_that_compares_unchanged(t: TestDb) {
    let f = Fixture::new(t).await;
    for (kind, policy_type, family) in [
        (
            Kind::CompliancePolicy,
            PolicyType::Compliance,
            PolicyType::Compliance,
        ),
        (
            Kind::GroupPolicyConfiguration,
            PolicyType::AdministrativeTemplate,
            PolicyType::AdministrativeTemplate,
        ),
    ] {
        let sim_policy = f.policy(kind);
        let policy_id = f.inventory(&sim_policy, policy_type).await;
        let snapshot = f.capture(&sim_policy, policy_type).await;
        let old_id = f.store_as_format_1(policy_id, &snapshot).await;
        let stored = f.store(policy_id, &snapshot, 2).await;
        assert!(
            stored.new_version,
            "{kind:?}: format 2 holds what restore needs"
        );
        let old = load_version(f.t.db.pool(), f.tenant_id, old_id)
            .await
            .expect("reads")
            .expect("exists");
        let new = load_version(f.t.db.pool(), f.tenant_id, stored.id)
            .await
            .expect("reads")
            .expect("exists");
        assert_eq!(
            (old.format, new.format),
            (CaptureFormat::V1, CaptureFormat::V2)
        );
        let comparison = compare(
            &old.captured(family),
            &new.captured(family),
            &SettingNames::new(),
        );
        assert!(
            comparison.changes.is_empty(),
            "{kind:?}: what format 1 did not record is not captured then, not added: {:?}",
            comparison.changes
        );
        // The next capture of the unchanged policy reuses the format-2 version.
        let again = f
            .store(policy_id, &f.capture(&sim_policy, policy_type).await, 3)
            .await;
        assert_eq!(
            again,
            StoredSnapshot {
                id: stored.id,
                new_version: false
            }
        );
    }
}

async fn versions_record_their_format_and_options(t: TestDb) {
    let f = Fixture::new(t).await;
    let sim_policy = f.policy(Kind::CompliancePolicy);
    let policy_id = f.inventory(&sim_policy, PolicyType::Compliance).await;
    let stored = f
        .store(
            policy_id,
            &f.capture(&sim_policy, PolicyType::Compliance).await,
            1,
        )
        .await;
    let version = load_version(f.t.db.pool(), f.tenant_id, stored.id)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(version.format, CaptureFormat::LATEST);
    assert_eq!(version.options, FULL);
    // Another tenant cannot read it.
    assert!(load_version(f.t.db.pool(), f.tenant_id + 1, stored.id)
        .await
        .expect("reads")
        .is_none());
}

async fn setting_definitions_are_stored_once_and_names_never_change_the_content(t: TestDb) {
    let f = Fixture::new(t).await;
    let catalog: Vec<SimPolicy> = f
        .sim
        .policies(TENANT)
        .into_iter()
        .filter(|p| p.kind == Kind::ConfigurationPolicy)
        .collect();
    assert_eq!(catalog.len(), 2);
    let mut all_ids = std::collections::BTreeSet::new();
    for sim_policy in &catalog {
        let policy_id = f.inventory(sim_policy, PolicyType::SettingsCatalog).await;
        let snapshot = f.capture(sim_policy, PolicyType::SettingsCatalog).await;
        all_ids.extend(snapshot.setting_definitions.iter().map(|d| d.id.clone()));
        f.store(policy_id, &snapshot, 1).await;
        f.store(policy_id, &snapshot, 2).await;
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM setting_definitions WHERE tenant_id = $1")
            .bind(f.tenant_id)
            .fetch_one(f.t.db.pool())
            .await
            .expect("count");
    assert_eq!(
        stored as usize,
        all_ids.len(),
        "each definition once, shared by both policies"
    );

    let snapshot = f.capture(&catalog[0], PolicyType::SettingsCatalog).await;
    let payload: Value = serde_json::from_str(&snapshot.canonical_json).expect("parses");
    let ids = definition_ids(&payload);
    assert_eq!(ids.len(), 60);
    let names = definition_names(&f.t.db, f.tenant_id, &ids)
        .await
        .expect("names");
    assert_eq!(names.len(), 60);
    assert!(names.values().all(|name| name.starts_with("Simulated ")));
    let readable = setting_names(&f.t.db, f.tenant_id, &ids)
        .await
        .expect("names");
    let for_payload = names_for(&f.t.db, f.tenant_id, &[&payload])
        .await
        .expect("names");
    assert_eq!(
        for_payload, readable,
        "a format-2 payload's names all come from the table"
    );
    let choice = ids
        .iter()
        .find(|id| id.contains("setting"))
        .expect("a choice setting");
    assert!(readable.get(choice).is_some());
    assert_eq!(readable.get(&format!("{choice}_1")), Some("Enabled"));

    // Microsoft renames a definition: the name follows, the content (and so the version) does not.
    let mut renamed = snapshot.clone();
    renamed.setting_definitions[0].display_name = "Renamed by Microsoft".into();
    renamed.setting_definitions[0].json = renamed.setting_definitions[0]
        .json
        .replace("Simulated", "Renamed");
    let policy_id: i64 = sqlx::query_scalar("SELECT id FROM policies WHERE graph_id = $1")
        .bind(&catalog[0].id)
        .fetch_one(f.t.db.pool())
        .await
        .expect("policy");
    let stored = f.store(policy_id, &renamed, 3).await;
    assert!(!stored.new_version);
    let names = definition_names(
        &f.t.db,
        f.tenant_id,
        &[renamed.setting_definitions[0].id.clone()],
    )
    .await
    .expect("names");
    assert_eq!(
        names.values().next().map(String::as_str),
        Some("Renamed by Microsoft")
    );
}

/// A policy's current version is the one its last capture found or made, also when the content
/// went back to an earlier version (stored already, but not current), and stays put when
/// nothing changed.
async fn the_current_version_follows_the_last_capture(t: TestDb) {
    let f = Fixture::new(t).await;
    let policy_type = PolicyType::DeviceConfiguration;
    let sim_policy = f.policy(Kind::DeviceConfiguration);
    let policy_id = f.inventory(&sim_policy, policy_type).await;
    assert_eq!(f.current(policy_id).await, None);
    let first = f.capture(&sim_policy, policy_type).await;
    let v1 = f.store(policy_id, &first, 1).await;
    assert!(v1.new_version);
    assert_eq!(f.current(policy_id).await, Some(v1.id));
    assert!(f.sim.change_settings(TENANT, &sim_policy.id));
    let v2 = f
        .store(policy_id, &f.capture(&sim_policy, policy_type).await, 2)
        .await;
    assert!(v2.new_version);
    assert_eq!(f.current(policy_id).await, Some(v2.id));
    // The first content again (as if the change was undone in Intune): its version is current.
    let back = f.store(policy_id, &first, 3).await;
    assert_eq!(
        back,
        StoredSnapshot {
            id: v1.id,
            new_version: false
        }
    );
    assert_eq!(
        f.current(policy_id).await,
        Some(v1.id),
        "the content went back to v1"
    );
    // Unchanged: the same version stays current.
    let again = f.store(policy_id, &first, 4).await;
    assert_eq!(again.id, v1.id);
    assert_eq!(f.current(policy_id).await, Some(v1.id));
    assert_eq!(f.versions(policy_id).await, 2);
}

/// Setting definitions belong to the tenant whose capture stored them: a tenant's custom or
/// newer definition under an id another tenant also uses never renames that tenant's settings
/// in its version view or its backup set's ZIP.
mod tenant_definitions {
    use super::*;

    use common::{TestApp, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER};
    use serde_json::json;
    use tenantatlas::server::graph::SettingDefinition;
    use tenantatlas::server::snapshots::store_snapshot;

    both_backends!(TestApp: definitions_of_one_tenant_never_name_another_tenants_settings);

    const DEFINITION: &str = "device_vendor_msft_policy_config_custom_setting";

    /// A settings catalog capture using [`DEFINITION`], its definition and option named as
    /// `tenant` named them.
    fn capture(tenant: &str) -> Snapshot {
        let payload = json!({"policyType": "settings_catalog", "policy": {"name": "Baseline"},
            "settings": [{"id": "0", "settingInstance": {
                "@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
                "settingDefinitionId": DEFINITION,
                "choiceSettingValue": {"value": format!("{DEFINITION}_1")}}}]});
        let definition = json!({"id": DEFINITION, "displayName": format!("{tenant} name"),
            "options": [{"itemId": format!("{DEFINITION}_1"), "displayName": format!("{tenant} option")}]});
        Snapshot::new(
            PolicyType::SettingsCatalog,
            "0f6a3d2e-1b7c-4e5f-9a8b-7c6d5e4f3a21".into(),
            "Baseline".into(),
            &payload,
            FULL,
        )
        .with_definitions(vec![SettingDefinition {
            id: DEFINITION.into(),
            display_name: format!("{tenant} name"),
            json: definition.to_string(),
        }])
    }

    /// Stores `tenant`'s capture as a capturing run does and puts the version into a new backup
    /// set; returns (policy, version, set).
    async fn store_in(app: &TestApp, cookie: &str, tenant: &str, label: &str) -> (i64, i64, i64) {
        let tenant_id = common::tenant_id(&app.db, tenant).await;
        let policy_id: i64 = sqlx::query_scalar(
            "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
             VALUES ($1, '0f6a3d2e-1b7c-4e5f-9a8b-7c6d5e4f3a21', 'settings_catalog', 'Baseline', 'windows10', 0) \
             RETURNING id",
        )
        .bind(tenant_id)
        .fetch_one(app.db.pool())
        .await
        .expect("policy");
        let mut tx = app.db.pool().begin().await.expect("begin");
        let stored = store_snapshot(&mut tx, tenant_id, policy_id, &capture(label), 1_000)
            .await
            .expect("stores");
        tx.commit().await.expect("commit");
        let set = common::backup_set(app, cookie, tenant, "Baseline set").await;
        sqlx::query(
            "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at) \
             VALUES ($1, $2, $3, $4, 1000)",
        )
        .bind(tenant_id)
        .bind(set)
        .bind(policy_id)
        .bind(stored.id)
        .execute(app.db.pool())
        .await
        .expect("backup item");
        (policy_id, stored.id, set)
    }

    /// The README of `tenant`'s backup set export, read with Python's `zipfile`.
    async fn exported_readme(app: &TestApp, cookie: &str, tenant: &str, set: i64) -> String {
        let response = app
            .get(
                Some(cookie),
                &format!("/t/{tenant}/backup-sets/{set}/export.zip"),
            )
            .await;
        assert_eq!(response.status(), 200);
        let dir = common::TempDir::new();
        let path = dir.0.join("export.zip");
        std::fs::write(&path, response.bytes().await.expect("the archive")).expect("written");
        let output = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile; sys.stdout.write(zipfile.ZipFile(sys.argv[1]).read('README.md').decode())",
            ])
            .arg(&path)
            .output()
            .expect("python3 runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).expect("UTF-8")
    }

    /// What `tenant`'s member sees of its version and its set's README: both must name the
    /// setting and its choice as `label`'s capture did, and never as `other`'s.
    async fn assert_named(
        app: &TestApp,
        cookie: &str,
        tenant: &str,
        stored: (i64, i64, i64),
        label: &str,
        other: &str,
    ) {
        let (policy, version, set) = stored;
        let view = app
            .policy_version(cookie, tenant, policy, version)
            .await
            .expect("the version");
        let setting = view
            .readable
            .rows()
            .find(|row| row.detail.as_deref() == Some(DEFINITION))
            .expect("the setting's row");
        assert_eq!(setting.label, format!("{label} name"), "{view:#?}");
        assert_eq!(setting.value.text(), format!("{label} option"), "{view:#?}");
        let readme = exported_readme(app, cookie, tenant, set).await;
        assert!(
            readme.contains(&format!("{label} name"))
                && readme.contains(&format!("{label} option")),
            "{readme}"
        );
        assert!(!readme.contains(&format!("{other} ")), "{readme}");
    }

    async fn definitions_of_one_tenant_never_name_another_tenants_settings(app: TestApp) {
        let in_a = app.sign_in(OPERATOR).await;
        let in_b = app.sign_in(OUTSIDER).await;
        let a = store_in(&app, &in_a, CONTOSO, "Tenant A").await;
        let b = store_in(&app, &in_b, FABRIKAM, "Tenant B").await;
        assert_named(&app, &in_a, CONTOSO, a, "Tenant A", "Tenant B").await;
        assert_named(&app, &in_b, FABRIKAM, b, "Tenant B", "Tenant A").await;
    }
}
