//! Demo data for the embedded default: two tenants with a policy inventory each, and a user of
//! every role. Idempotent: tenants and users that already exist are left as they are.

use sqlx::Row;

use super::auth::password;
use super::db::Db;
use super::StartError;
use crate::domain::Timestamp;

/// The demo tenants: (external id, display name).
pub const DEMO_TENANTS: [(&str, &str); 2] = [
    ("6f1c2a3b-0000-4000-8000-00000000c0de", "Contoso (demo)"),
    ("9a7d4e21-0000-4000-8000-0000000fab01", "Fabrikam (demo)"),
];

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

/// Creates whatever of the demo data is missing. Returns how many tenants it created.
pub async fn seed_demo(db: &Db) -> Result<usize, StartError> {
    let now = Timestamp::now().millis();
    // One hash for every demo user: they share the demo password, and hashing is slow on purpose.
    let demo_hash = password::hash(DEMO_PASSWORD.to_owned())
        .await
        .map_err(|_| StartError::Invalid("could not hash the demo password".into()))?;
    let mut tx = db.pool().begin().await?;

    let mut tenant_ids = Vec::with_capacity(DEMO_TENANTS.len());
    let mut created = 0;
    for (tenant_index, (external_id, name)) in DEMO_TENANTS.into_iter().enumerate() {
        if let Some(row) = sqlx::query("SELECT id FROM tenants WHERE external_id = $1")
            .bind(external_id)
            .fetch_optional(&mut *tx)
            .await?
        {
            tenant_ids.push(row.try_get::<i64, _>("id")?);
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
        let user_id: i64 = sqlx::query(
            "INSERT INTO users (email, display_name, password_hash, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id",
        )
        .bind(email)
        .bind(name)
        .bind(&demo_hash)
        .bind(now)
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
