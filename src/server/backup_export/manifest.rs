//! `manifest.json` of the export, written piece by piece as the items stream past: the head
//! (format, export time, tenant, set), one object per item, then the tail with the count.
//! Together the pieces are one pretty-printed JSON document (two-space indents, as
//! `serde_json` writes them).

use serde::Serialize;

use super::{iso_8601, ExportItem, SetInfo};

/// Names this layout, so a reader can tell later versions apart.
pub const FORMAT: &str = "tenantatlas.backup-set-export/1";

#[derive(Serialize)]
struct Tenant<'a> {
    id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct BackupSet<'a> {
    id: i64,
    name: &'a str,
    description: &'a str,
    created_at: String,
}

/// One item, as the manifest lists it.
#[derive(Serialize)]
struct Item<'a> {
    policy_id: i64,
    graph_id: &'a str,
    policy_type: &'a str,
    name: &'a str,
    version_id: i64,
    content_hash: &'a str,
    captured_at: String,
    /// The item's file in the archive.
    file: &'a str,
}

/// Everything up to and including the opening of the `items` list.
pub fn head(set: &SetInfo, tenant_name: &str, tenant_id: &str, exported_at: i64) -> String {
    let tenant = Tenant {
        id: tenant_id,
        name: tenant_name,
    };
    let backup_set = BackupSet {
        id: set.id,
        name: &set.name,
        description: &set.description,
        created_at: iso_8601(set.created_at),
    };
    format!(
        "{{\n  \"format\": {},\n  \"exported_at\": {},\n  \"tenant\": {},\n  \"backup_set\": {},\n  \"items\": [",
        json(&FORMAT, 1),
        json(&iso_8601(exported_at), 1),
        json(&tenant, 1),
        json(&backup_set, 1),
    )
}

/// One item of the `items` list; `first` leaves out the separating comma.
pub fn item(first: bool, item: &ExportItem, file: &str) -> String {
    let listed = Item {
        policy_id: item.policy_id,
        graph_id: &item.graph_id,
        policy_type: item.policy_type.as_str(),
        name: &item.name,
        version_id: item.version_id,
        content_hash: &item.content_hash,
        captured_at: iso_8601(item.captured_at),
        file,
    };
    let comma = if first { "" } else { "," };
    format!("{comma}\n    {}", json(&listed, 2))
}

/// The end of the `items` list and of the document.
pub fn tail(count: u64) -> String {
    let close = if count == 0 { "]" } else { "\n  ]" };
    format!("{close},\n  \"item_count\": {count}\n}}\n")
}

/// `value` pretty-printed, its inner lines indented `level` steps further. JSON strings never
/// hold a raw line break, so every line break in the text is the printer's.
fn json(value: &impl Serialize, level: usize) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
    text.replace('\n', &format!("\n{}", "  ".repeat(level)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn set() -> SetInfo {
        SetInfo {
            id: 4,
            name: "Before \"rollout\"\n".into(),
            description: "All baselines".into(),
            created_at: 0,
        }
    }

    fn export_item(id: i64) -> ExportItem {
        ExportItem {
            policy_id: id,
            graph_id: format!("g-{id}"),
            policy_type: crate::domain::PolicyType::Compliance,
            name: format!("Policy {id}"),
            version_id: id * 10,
            content_hash: "0".repeat(64),
            captured_at: 1_764_750_902_123,
            payload: String::new(),
            format: 1,
        }
    }

    fn document(count: i64) -> String {
        let mut text = head(&set(), "Contoso", "6f1c", 1_764_750_902_123);
        for id in 1..=count {
            text.push_str(&item(
                id == 1,
                &export_item(id),
                &format!("policies/x/{id}.json"),
            ));
        }
        text.push_str(&tail(count as u64));
        text
    }

    #[test]
    fn the_pieces_make_one_pretty_json_document() {
        let text = document(2);
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            parsed,
            json!({
                "format": FORMAT,
                "exported_at": "2025-12-03T08:35:02.123Z",
                "tenant": {"id": "6f1c", "name": "Contoso"},
                "backup_set": {"id": 4, "name": "Before \"rollout\"\n", "description": "All baselines",
                    "created_at": "1970-01-01T00:00:00Z"},
                "items": (1..=2).map(|id| json!({
                    "policy_id": id, "graph_id": format!("g-{id}"), "policy_type": "compliance",
                    "name": format!("Policy {id}"), "version_id": id * 10, "content_hash": "0".repeat(64),
                    "captured_at": "2025-12-03T08:35:02.123Z", "file": format!("policies/x/{id}.json")}))
                    .collect::<Vec<_>>(),
                "item_count": 2
            })
        );
        // Laid out as serde_json lays out a document: two spaces per level.
        let expected_item =
            "\n  \"items\": [\n    {\n      \"policy_id\": 1,\n      \"graph_id\": \"g-1\",\n";
        assert!(text.contains(expected_item), "{text}");
        assert!(
            text.contains("\n    },\n    {\n      \"policy_id\": 2,"),
            "{text}"
        );
        assert!(
            text.ends_with("\n    }\n  ],\n  \"item_count\": 2\n}\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\n  \"tenant\": {\n    \"id\": \"6f1c\",\n    \"name\": \"Contoso\"\n  },"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_empty_set_has_an_empty_list() {
        let parsed: Value = serde_json::from_str(&document(0)).expect("valid JSON");
        assert_eq!(parsed["items"], json!([]));
        assert_eq!(parsed["item_count"], 0);
    }
}
