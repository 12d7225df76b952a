//! The export of a backup set (`/t/{tenant}/backup-sets/{id}/export.zip`), read back by a real
//! ZIP reader (Python's `zipfile`, which checks every entry's CRC and that each local header
//! names the same file as the central directory): the entries and their safe names, the
//! manifest, byte-exact payloads, the README's settings tables, paging through sets larger
//! than a page, and who may download it.

use crate::common;

use std::collections::BTreeMap;

use common::{insert_snapshot, TestApp, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER, READONLY};
use serde::Deserialize;
use serde_json::{json, Value};
use tenantatlas::server::panics;

both_backends!(TestApp:
    exports_each_item_with_its_manifest_and_readme,
    pages_through_sets_larger_than_a_page,
    an_empty_set_exports_an_empty_manifest,
    a_version_that_is_not_json_is_exported_as_stored,
    refuses_sets_larger_than_a_zip_holds,
    only_members_get_it,
    head_checks_access_without_exporting,
);

/// A policy to put into a set: type, name, graph id, stored payload.
struct Policy {
    policy_type: &'static str,
    name: String,
    graph_id: String,
    payload: Value,
}

impl Policy {
    fn new(policy_type: &'static str, name: &str, graph_id: &str, payload: Value) -> Self {
        Self {
            policy_type,
            name: name.to_owned(),
            graph_id: graph_id.to_owned(),
            payload,
        }
    }
}

/// What the set holds of one policy.
struct Stored {
    policy_id: i64,
    version_id: i64,
    captured_at: i64,
}

/// A Contoso backup set holding `policies` (each with one stored version, as a capture stores
/// it). Returns the set id and each policy's ids, in the given order.
async fn set_with(app: &TestApp, name: &str, policies: &[Policy]) -> (i64, Vec<Stored>) {
    let operator = app.sign_in(OPERATOR).await;
    let set = common::backup_set(app, &operator, CONTOSO, name).await;
    let tenant_id = common::tenant_id(&app.db, CONTOSO).await;
    let mut stored = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        let policy_id: i64 = sqlx::query_scalar(
            "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
             VALUES ($1, $2, $3, $4, 'windows10', 0) RETURNING id",
        )
        .bind(tenant_id)
        .bind(&policy.graph_id)
        .bind(policy.policy_type)
        .bind(&policy.name)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        let captured_at = 1_764_750_902_000 + i as i64 * 1_000;
        let version_id = insert_snapshot(
            &app.db,
            CONTOSO,
            policy_id,
            &policy.payload,
            'c',
            captured_at,
        )
        .await;
        sqlx::query(
            "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant_id)
        .bind(set)
        .bind(policy_id)
        .bind(version_id)
        .bind(captured_at)
        .execute(app.db.pool())
        .await
        .unwrap();
        stored.push(Stored {
            policy_id,
            version_id,
            captured_at,
        });
    }
    (set, stored)
}

fn export_path(tenant: &str, set: i64) -> String {
    format!("/t/{tenant}/backup-sets/{set}/export.zip")
}

/// An archive as a ZIP reader sees it (and `read_zip`'s reader prints it).
#[derive(Debug, Deserialize)]
struct Archive {
    /// Entry names in archive order.
    names: Vec<String>,
    /// Each entry's text.
    files: BTreeMap<String, String>,
}

impl Archive {
    fn manifest(&self) -> Value {
        serde_json::from_str(&self.files["manifest.json"]).expect("the manifest is JSON")
    }

    fn readme(&self) -> &str {
        &self.files["README.md"]
    }
}

/// Reads `bytes` with Python's `zipfile`: every entry's CRC is checked (`testzip`), every local
/// header must name its central directory entry, and each entry must be deflated.
fn read_zip(bytes: &[u8]) -> Archive {
    let dir = common::TempDir::new();
    let path = dir.0.join("export.zip");
    std::fs::write(&path, bytes).unwrap();
    let script = r#"
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    assert bad is None, f"bad CRC in {bad}"
    entries = z.infolist()
    assert all(e.compress_type == zipfile.ZIP_DEFLATED for e in entries)
    print(json.dumps({
        "names": [e.filename for e in entries],
        "files": {e.filename: z.read(e).decode("utf-8") for e in entries},
    }))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "zipfile refused the archive: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the reader prints the archive")
}

/// Downloads a set's export as `cookie`, as a browser does (it accepts gzip), and reads it.
async fn download(app: &TestApp, cookie: &str, set: i64) -> Archive {
    let response = app
        .http
        .get(app.url(&export_path(CONTOSO, set)))
        .header("Cookie", cookie)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/zip");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers.get("content-encoding").is_none(),
        "a ZIP is not gzipped again"
    );
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"backup-set-{set}.zip\"").as_str()
    );
    read_zip(&response.bytes().await.unwrap())
}

const GUID_A: &str = "0f6a3d2e-1b7c-4e5f-9a8b-7c6d5e4f3a21";
const GUID_B: &str = "0f6a3d2e-1b7c-4e5f-9a8b-7c6d5e4f3a22";
const GUID_C: &str = "0f6a3d2e-1b7c-4e5f-9a8b-7c6d5e4f3a23";
const GUID_D: &str = "0f6a3d2e-1b7c-4e5f-9a8b-7c6d5e4f3a24";
const GUID_E: &str = "0f6a3d2e-1b7c-4e5f-9a8b-7c6d5e4f3a25";
const GUID_F: &str = "0f6a3d2e-1b7c-4e5f-9a8b-7c6d5e4f3a26";
const GUID_G: &str = "0f6a3d2e-1b7c-4e5f-9a8b-7c6d5e4f3a27";

fn policies() -> Vec<Policy> {
    vec![
        Policy::new(
            "device_configuration",
            "Baseline | Windows\n10",
            GUID_A,
            json!({"policyType": "device_configuration", "policy": {
                "@odata.type": "#microsoft.graph.windows10GeneralConfiguration",
                "displayName": "Baseline | Windows\n10", "passwordMinimumLength": 8,
                "passwordRequired": true, "description": "Ünïcödé ✓"}}),
        ),
        Policy::new(
            "compliance",
            "../../etc/passwd",
            GUID_B,
            json!({"policyType": "compliance", "policy": {"displayName": "../../etc/passwd",
                "osMinimumVersion": "10.0.19045"}}),
        ),
        Policy::new(
            "compliance",
            "CON",
            GUID_C,
            json!({"policyType": "compliance", "policy": {"displayName": "CON"}}),
        ),
        Policy::new(
            "settings_catalog",
            "Same name",
            GUID_D,
            json!({"policyType": "settings_catalog", "policy": {"name": "Same name"},
            "settings": [{"id": "0", "settingInstance": {
                "@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
                "settingDefinitionId": "device_vendor_msft_policy_config_defender_allowarchivescanning",
                "choiceSettingValue": {"value": "device_vendor_msft_policy_config_defender_allowarchivescanning_1"}},
                "settingDefinitions": [{"id": "device_vendor_msft_policy_config_defender_allowarchivescanning",
                    "displayName": "Allow Archive Scanning",
                    "options": [{"itemId": "device_vendor_msft_policy_config_defender_allowarchivescanning_1",
                        "displayName": "Allowed"}]}]}]}),
        ),
        Policy::new(
            "settings_catalog",
            "Same name",
            GUID_E,
            json!({"policyType": "settings_catalog", "policy": {"name": "Same name", "description": "the other one"}}),
        ),
        Policy::new(
            "administrative_template",
            &"Long name ".repeat(40),
            GUID_F,
            json!({"policyType": "administrative_template", "policy": {"displayName": "Long name ".repeat(40)},
            "definitionValues": [{"id": "v1", "enabled": true,
                "definition": {"id": "d1", "displayName": "Configure the home page URL"}}]}),
        ),
        Policy::new(
            "compliance",
            "evil\u{202e}fdp.exe\u{1b}",
            GUID_G,
            json!({"policyType": "compliance", "policy": {"displayName": "evil\u{202e}fdp.exe\u{1b}"}}),
        ),
    ]
}

async fn exports_each_item_with_its_manifest_and_readme(app: TestApp) {
    let policies = policies();
    let (set, stored) = set_with(&app, "Before the | rollout", &policies).await;
    // Any member may export: readonly is the least role.
    let readonly = app.sign_in(READONLY).await;
    let archive = download(&app, &readonly, set).await;

    // The entries: each policy under its type, with a safe name and its graph id, and no two
    // alike; then the manifest and the README.
    // The long name is cut at 96 bytes, never right after a separator.
    let mut cut = vec!["Long_name"; 40].join("_");
    cut.truncate(96);
    let cut = cut.trim_end_matches('_');
    let expected = [
        format!("policies/device_configuration/Baseline_Windows_10__{GUID_A}.json"),
        format!("policies/compliance/etc_passwd__{GUID_B}.json"),
        format!("policies/compliance/_CON__{GUID_C}.json"),
        format!("policies/settings_catalog/Same_name__{GUID_D}.json"),
        format!("policies/settings_catalog/Same_name__{GUID_E}.json"),
        format!("policies/administrative_template/{cut}__{GUID_F}.json"),
        format!("policies/compliance/evil_fdp_exe__{GUID_G}.json"),
        "manifest.json".to_owned(),
        "README.md".to_owned(),
    ];
    assert_eq!(archive.names, expected);
    for name in &archive.names {
        assert!(
            !name.starts_with('/') && !name.contains('\\') && !name.contains(".."),
            "{name}"
        );
        assert!(name.split('/').all(|part| part.len() <= 170), "{name}");
    }

    // Each policy's file holds its stored version, byte for byte what the version's raw JSON
    // download serves.
    for ((policy, stored), path) in policies.iter().zip(&stored).zip(&expected) {
        let file = &archive.files[path];
        let parsed: Value = serde_json::from_str(file).unwrap();
        assert_eq!(parsed, policy.payload, "{path}");
        let raw = app
            .get(
                Some(&readonly),
                &format!(
                    "/t/{CONTOSO}/policies/{}/versions/{}/raw.json",
                    stored.policy_id, stored.version_id
                ),
            )
            .await;
        assert_eq!(raw.status(), 200);
        assert_eq!(file, &raw.text().await.unwrap(), "{path}");
    }

    // The manifest: tenant, set, export time, and each item as the database holds it.
    let manifest = archive.manifest();
    assert_eq!(manifest["format"], "tenantatlas.backup-set-export/1");
    assert_eq!(
        manifest["tenant"],
        json!({"id": CONTOSO, "name": "Contoso (demo)"})
    );
    assert_eq!(manifest["backup_set"]["id"], set);
    assert_eq!(manifest["backup_set"]["name"], "Before the | rollout");
    assert_eq!(manifest["backup_set"]["description"], "");
    assert!(manifest["backup_set"]["created_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let exported = manifest["exported_at"].as_str().unwrap();
    assert!(
        exported.starts_with("20") && exported.ends_with('Z'),
        "{exported}"
    );
    assert_eq!(manifest["item_count"], policies.len());
    let items = manifest["items"].as_array().unwrap();
    assert_eq!(items.len(), policies.len());
    for ((item, policy), (stored, path)) in items
        .iter()
        .zip(&policies)
        .zip(stored.iter().zip(&expected))
    {
        assert_eq!(
            item,
            &json!({
                "policy_id": stored.policy_id,
                "graph_id": policy.graph_id,
                "policy_type": policy.policy_type,
                "name": policy.name,
                "version_id": stored.version_id,
                "content_hash": "c".repeat(64),
                "captured_at": format!("2025-12-03T08:35:{:02}Z", 2 + (stored.captured_at - 1_764_750_902_000) / 1000),
                "file": path,
            })
        );
    }

    // The README: the set, then one section per policy with its settings as tables, every
    // text from Intune escaped.
    let readme = archive.readme();
    assert!(readme.starts_with("# Before the \\| rollout\n"), "{readme}");
    assert!(
        readme.contains(&format!("| Tenant | Contoso (demo) `{CONTOSO}` |")),
        "{readme}"
    );
    assert!(
        readme.contains("\n## Baseline \\| Windows 10\n"),
        "{readme}"
    );
    assert!(
        readme.contains("| Display name | Baseline \\| Windows<br>10 |"),
        "{readme}"
    );
    assert!(
        readme.contains("| Password minimum length | 8 |"),
        "{readme}"
    );
    assert!(readme.contains("| Password required | Yes |"), "{readme}");
    assert!(readme.contains("| Description | Ünïcödé ✓ |"), "{readme}");
    assert!(
        readme.contains("| Allow Archive Scanning | Allowed |"),
        "{readme}"
    );
    assert!(
        readme.contains("| Configure the home page URL | Enabled |"),
        "{readme}"
    );
    assert!(readme.contains("\n## ../../etc/passwd\n"), "{readme}");
    assert!(
        readme.contains("\n## evil\u{fffd}fdp.exe\u{fffd}\n"),
        "{readme}"
    );
    assert!(!readme.contains('\u{202e}') && !readme.contains('\u{1b}'));
    assert_eq!(readme.matches("\n## ").count(), policies.len());
    assert!(
        readme.contains(&format!("| File | `{}` |", expected[0])),
        "{readme}"
    );

    // The export is in the tenant's audit log.
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'backup_set.export' AND target = $1",
    )
    .bind(format!("backup_set:{set}"))
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(audited, 1);
    assert_eq!(panics::count(), 0);
}

async fn pages_through_sets_larger_than_a_page(app: TestApp) {
    // More than two pages of 50 items, so the keyset crosses pages.
    let policies: Vec<Policy> = (0..123)
        .map(|i| {
            Policy::new(
                "compliance",
                &format!("Policy {i:03}"),
                &format!("graph-{i:03}"),
                json!({"policyType": "compliance", "policy": {"displayName": format!("Policy {i:03}"),
                    "passwordMinimumLength": i}}),
            )
        })
        .collect();
    let (set, stored) = set_with(&app, "Big", &policies).await;
    let readonly = app.sign_in(READONLY).await;
    let archive = download(&app, &readonly, set).await;
    assert_eq!(archive.names.len(), 123 + 2);
    let manifest = archive.manifest();
    assert_eq!(manifest["item_count"], 123);
    let listed: Vec<i64> = manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["policy_id"].as_i64().unwrap())
        .collect();
    let ids: Vec<i64> = stored.iter().map(|s| s.policy_id).collect();
    assert_eq!(listed, ids, "every item once, by policy id");
    for (i, item) in manifest["items"].as_array().unwrap().iter().enumerate() {
        let file = &archive.files[item["file"].as_str().unwrap()];
        let parsed: Value = serde_json::from_str(file).unwrap();
        assert_eq!(parsed["policy"]["passwordMinimumLength"], i);
    }
    let readme = archive.readme();
    assert_eq!(readme.matches("\n## Policy ").count(), 123);
    assert!(readme.contains("| Password minimum length | 122 |"));

    // A HEAD request, and a download abandoned after its first bytes, stop the export without
    // a panic; the next download is whole.
    let url = app.url(&export_path(CONTOSO, set));
    let head = app
        .http
        .head(&url)
        .header("Cookie", &readonly)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "application/zip");
    let mut abandoned = app
        .http
        .get(&url)
        .header("Cookie", &readonly)
        .send()
        .await
        .unwrap();
    assert!(abandoned.chunk().await.unwrap().is_some());
    drop(abandoned);
    assert_eq!(download(&app, &readonly, set).await.names.len(), 125);
    assert_eq!(panics::count(), 0);
}

async fn an_empty_set_exports_an_empty_manifest(app: TestApp) {
    let (set, _) = set_with(&app, "Nothing yet", &[]).await;
    let operator = app.sign_in(OPERATOR).await;
    let archive = download(&app, &operator, set).await;
    assert_eq!(archive.names, ["manifest.json", "README.md"]);
    let manifest = archive.manifest();
    assert_eq!(manifest["items"], json!([]));
    assert_eq!(manifest["item_count"], 0);
    assert!(archive.readme().starts_with("# Nothing yet\n"));
    assert!(!archive.readme().contains("\n## "));
}

async fn a_version_that_is_not_json_is_exported_as_stored(app: TestApp) {
    let (set, stored) = set_with(
        &app,
        "Damaged",
        &[Policy::new("compliance", "Damaged", GUID_A, json!({}))],
    )
    .await;
    sqlx::query("UPDATE policy_snapshots SET payload = 'not JSON {' WHERE id = $1")
        .bind(stored[0].version_id)
        .execute(app.db.pool())
        .await
        .unwrap();
    let operator = app.sign_in(OPERATOR).await;
    let archive = download(&app, &operator, set).await;
    assert_eq!(
        archive.files[&format!("policies/compliance/Damaged__{GUID_A}.json")],
        "not JSON {"
    );
    assert!(archive.readme().contains("could not be read"));
    assert_eq!(archive.manifest()["item_count"], 1);
}

async fn refuses_sets_larger_than_a_zip_holds(app: TestApp) {
    let (set, _) = set_with(&app, "Huge", &[]).await;
    let tenant_id = common::tenant_id(&app.db, CONTOSO).await;
    // One more policy than an archive without ZIP64 lists beside the manifest and the README.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 65534) \
         INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
         SELECT $1, 'many-' || i, 'compliance', 'Many', 'android', 0 FROM n",
    )
    .bind(tenant_id)
    .execute(app.db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
         SELECT tenant_id, id, 'h', '{}', 0 FROM policies WHERE graph_id LIKE 'many-%'",
    )
    .execute(app.db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at) \
         SELECT tenant_id, $1, policy_id, id, 0 FROM policy_snapshots WHERE content_hash = 'h'",
    )
    .bind(set)
    .execute(app.db.pool())
    .await
    .unwrap();
    let readonly = app.sign_in(READONLY).await;
    let response = app.get(Some(&readonly), &export_path(CONTOSO, set)).await;
    assert_eq!(response.status(), 422);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("holds 65534 policies") && body.contains("at most 65533"),
        "{body}"
    );
    // One fewer fits.
    sqlx::query(
        "DELETE FROM backup_items WHERE id = (SELECT MAX(id) FROM backup_items WHERE backup_set_id = $1)",
    )
    .bind(set)
    .execute(app.db.pool())
    .await
    .unwrap();
    let response = app.get(Some(&readonly), &export_path(CONTOSO, set)).await;
    assert_eq!(response.status(), 200);
}

async fn only_members_get_it(app: TestApp) {
    let (set, _) = set_with(
        &app,
        "Secret set",
        &[Policy::new(
            "compliance",
            "Secret policy",
            GUID_A,
            json!({"policy": {}}),
        )],
    )
    .await;
    let path = export_path(CONTOSO, set);

    let outsider = app.sign_in(OUTSIDER).await;
    let refused = app.get(Some(&outsider), &path).await;
    assert_eq!(refused.status(), 403);
    let body = refused.text().await.unwrap();
    assert!(!body.contains("Secret") && !body.contains("PK"), "{body}");

    let anonymous = app.get(None, &path).await;
    assert!(
        anonymous.status().is_redirection(),
        "{}",
        anonymous.status()
    );
    assert!(anonymous.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/sign-in?next="));

    let readonly = app.sign_in(READONLY).await;
    assert_eq!(app.get(Some(&readonly), &path).await.status(), 200);
    // Another tenant's set, an unknown id and a malformed one are not found in Contoso.
    let admin = app.sign_in(common::ADMIN).await;
    let fabrikam_set = common::backup_set(&app, &admin, FABRIKAM, "Fabrikam's").await;
    for missing in [
        export_path(CONTOSO, fabrikam_set),
        export_path(CONTOSO, set + 1_000),
        format!("/t/{CONTOSO}/backup-sets/x/export.zip"),
    ] {
        let response = app.get(Some(&readonly), &missing).await;
        assert_eq!(response.status(), 404, "{missing}");
        assert!(!response.text().await.unwrap().contains("Fabrikam"));
    }
    // Fabrikam's set is Fabrikam's members' to export.
    assert_eq!(
        app.get(Some(&outsider), &export_path(FABRIKAM, fabrikam_set))
            .await
            .status(),
        200
    );
}

/// How many exports of `set` the audit log holds.
async fn exports_audited(app: &TestApp, set: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'backup_set.export' AND target = $1",
    )
    .bind(format!("backup_set:{set}"))
    .fetch_one(app.db.pool())
    .await
    .unwrap()
}

/// A HEAD asks whether the download is there: the same checks and headers as a GET, but no
/// archive is written and no export is recorded.
async fn head_checks_access_without_exporting(app: TestApp) {
    let (set, _) = set_with(
        &app,
        "Looked at",
        &[Policy::new(
            "compliance",
            "Head policy",
            GUID_A,
            json!({"policy": {"displayName": "Head policy"}}),
        )],
    )
    .await;
    let head = |cookie: String, path: String| {
        let request = app.http.head(app.url(&path)).header("Cookie", cookie);
        async move { request.send().await.unwrap() }
    };
    let readonly = app.sign_in(READONLY).await;
    let answer = head(readonly.clone(), export_path(CONTOSO, set)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/zip");
    assert_eq!(
        answer.headers()["content-disposition"],
        format!("attachment; filename=\"backup-set-{set}.zip\"").as_str()
    );
    assert_eq!(exports_audited(&app, set).await, 0, "a HEAD is no export");

    let outsider = app.sign_in(OUTSIDER).await;
    assert_eq!(
        head(outsider, export_path(CONTOSO, set)).await.status(),
        403
    );
    assert_eq!(
        head(readonly.clone(), export_path(CONTOSO, set + 1_000))
            .await
            .status(),
        404
    );
    assert_eq!(exports_audited(&app, set).await, 0);

    // The download itself is recorded.
    download(&app, &readonly, set).await;
    assert_eq!(exports_audited(&app, set).await, 1);
    assert_eq!(panics::count(), 0);
}

/// Exports of sets whose policies changed in Intune after the backup, through the real
/// capture and sync runs on the demo Graph.
mod after_intune_changed {
    use super::*;
    use common::{DemoApp, Form};

    both_backends!(local DemoApp:
        a_renamed_policy_is_exported_under_its_backed_up_name,
    );

    /// A policy renamed in Intune after its backup (and synced since, so the inventory has the
    /// new name) is exported as it was backed up: the manifest, the file name and the README
    /// name it as its JSON does.
    async fn a_renamed_policy_is_exported_under_its_backed_up_name(f: DemoApp) {
        let operator = f.app.sign_in(OPERATOR).await;
        let sync = [("tenant", CONTOSO)];
        f.run_as(&operator, "runs/sync-inventory", &sync).await;
        let sim = f.demo.sim.policies(CONTOSO).remove(0);
        let policy_id = f.policy_id(&sim.id).await;
        let set = common::backup_set(&f.app, &operator, CONTOSO, "Before the rename").await;
        let form = Form::tenant(CONTOSO)
            .field("backup_set_id", set)
            .list("policy_ids", &[policy_id]);
        f.run_as(&operator, "runs/add-policies", &form.pairs())
            .await;

        let renamed = "Renamed in Intune";
        assert!(f.demo.sim.rename_policy(CONTOSO, &sim.id, renamed));
        f.run_as(&operator, "runs/sync-inventory", &sync).await;
        let inventory: String =
            sqlx::query_scalar("SELECT display_name FROM policies WHERE id = $1")
                .bind(policy_id)
                .fetch_one(f.app.db.pool())
                .await
                .unwrap();
        assert_eq!(inventory, renamed, "the inventory has the new name");

        let archive = download(&f.app, &operator, set).await;
        let manifest = archive.manifest();
        let item = &manifest["items"][0];
        let file = item["file"].as_str().expect("the item's file");
        let snapshot: Value = serde_json::from_str(&archive.files[file]).unwrap();
        let backed_up = snapshot["policy"]
            .as_object()
            .and_then(|policy| policy.get("displayName").or_else(|| policy.get("name")))
            .and_then(Value::as_str)
            .expect("the snapshot names the policy");
        assert_eq!(backed_up, sim.name);
        assert_eq!(item["name"], backed_up, "{manifest}");
        assert!(!file.contains("Renamed"), "{file}");
        let readme = archive.readme();
        // The policy's heading, Markdown escapes removed.
        let heading = readme
            .lines()
            .find_map(|line| line.strip_prefix("## "))
            .expect("a section for the policy");
        assert_eq!(heading.replace('\\', ""), backed_up, "{readme}");
        assert!(!readme.contains(renamed), "{readme}");
    }
}
