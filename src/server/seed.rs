//! Demo data for the embedded default: two tenants, a demo admin and a policy inventory.
//! Idempotent: a tenant that already exists is left as it is.

use sqlx::Row;

use super::db::Db;
use crate::domain::Timestamp;

/// The demo tenants: (external id, display name).
pub const DEMO_TENANTS: [(&str, &str); 2] = [
    ("6f1c2a3b-0000-4000-8000-00000000c0de", "Contoso (demo)"),
    ("9a7d4e21-0000-4000-8000-0000000fab01", "Fabrikam (demo)"),
];

/// The demo admin's e-mail address.
pub const DEMO_ADMIN_EMAIL: &str = "admin@contoso.example";

const POLICY_KINDS: [(&str, &str, &[&str]); 4] = [
    (
        "settings_catalog",
        "windows10",
        &[
            "BitLocker baseline",
            "Defender antivirus",
            "Edge security",
            "Windows Hello",
            "Firewall rules",
            "OneDrive known folders",
        ],
    ),
    (
        "device_configuration",
        "iOS",
        &[
            "Wi-Fi corporate",
            "VPN always-on",
            "Restrictions",
            "Email profile",
        ],
    ),
    (
        "compliance",
        "android",
        &[
            "Minimum OS",
            "Device encryption",
            "Jailbreak detection",
            "Password policy",
        ],
    ),
    (
        "administrative_template",
        "windows10",
        &[
            "Office macros",
            "Internet Explorer mode",
            "Start menu layout",
        ],
    ),
];

/// Creates the demo tenants, admin and inventory if they are missing. Returns how many tenants it created.
pub async fn seed_demo(db: &Db) -> Result<usize, sqlx::Error> {
    let now = Timestamp::now().millis();
    let mut tx = db.pool().begin().await?;
    let admin_id: i64 = match sqlx::query("SELECT id FROM users WHERE email = $1")
        .bind(DEMO_ADMIN_EMAIL)
        .fetch_optional(&mut *tx)
        .await?
    {
        Some(row) => row.try_get("id")?,
        None => sqlx::query(
            "INSERT INTO users (email, display_name, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(DEMO_ADMIN_EMAIL)
        .bind("Avery Admin")
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?,
    };

    let mut created = 0;
    for (tenant_index, (external_id, name)) in DEMO_TENANTS.into_iter().enumerate() {
        let exists = sqlx::query("SELECT id FROM tenants WHERE external_id = $1")
            .bind(external_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if exists {
            continue;
        }
        let tenant_id: i64 = sqlx::query(
            "INSERT INTO tenants (external_id, display_name, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(external_id)
        .bind(name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        sqlx::query(
            "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES ($1, $2, 'owner', $3)",
        )
        .bind(admin_id)
        .bind(tenant_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (kind_index, (policy_type, platform, names)) in POLICY_KINDS.iter().enumerate() {
            for (name_index, policy_name) in names.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, \
                     last_modified_at, synced_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(tenant_id)
                .bind(fixture_guid(tenant_index, kind_index, name_index))
                .bind(*policy_type)
                .bind(format!("{} - {policy_name}", platform_label(platform)))
                .bind(*platform)
                .bind(now - 86_400_000 * (name_index as i64 + 1))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        created += 1;
    }
    tx.commit().await?;
    Ok(created)
}

fn platform_label(platform: &str) -> &str {
    match platform {
        "windows10" => "Windows",
        "iOS" => "iOS",
        "android" => "Android",
        other => other,
    }
}

/// A stable GUID per (tenant, kind, name) so demo data looks like Graph's.
fn fixture_guid(tenant: usize, kind: usize, name: usize) -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        0xd3a0_0000_u32 + tenant as u32,
        kind * 1000 + name
    )
}
