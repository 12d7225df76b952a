//! File names inside the export, made from what Intune admins (or anyone who can name a policy)
//! typed: `policies/<type>/<safe name>__<graph id>.json`.
//!
//! A name is untrusted input to whoever unzips the archive, so a safe name keeps only letters
//! and digits (any script) and inner dashes; every other run of characters becomes one `_`. That
//! leaves no path separator (`/`, `\`), no `.` (so no `..`, no hidden file, no trailing dot and
//! no Windows device name with an extension such as `CON.txt`), no control or formatting
//! character (bidirectional overrides included), no leading `-` that a shell tool would read as
//! an option, and never an empty name. Windows device names (`CON`, `NUL`, `COM1`, …) get a
//! leading `_` as well, although the `__<graph id>` suffix already keeps the file from being one.
//! The name is cut at 96 bytes of UTF-8 and the graph id at 64, so a file name stays far below
//! the 255 bytes file systems allow.
//!
//! Two policies never share a file: the graph id is unique per tenant and type, and the safe
//! name never contains `__`, so the suffix cannot be confused with the name. A graph id that is
//! not plain (letters, digits, `-`, `_`) is replaced by `id.<policy id>`, which no plain graph
//! id can equal (it has a dot).

use crate::domain::snapshot::PolicyType;

/// Bytes of a policy's name kept in its file name.
const NAME_MAX_BYTES: usize = 96;
/// The longest graph id used as it is (Graph's are 36-character GUIDs).
const GRAPH_ID_MAX_BYTES: usize = 64;

/// Device names Windows reserves in any folder, whatever the extension.
const WINDOWS_DEVICES: [&str; 4] = ["CON", "PRN", "AUX", "NUL"];

/// `policies/<type>/<safe name>__<graph id>.json` for one item of the export.
pub fn policy_path(policy_type: &str, name: &str, graph_id: &str, policy_id: i64) -> String {
    let folder = match PolicyType::parse(policy_type) {
        Some(family) => family.as_str().to_owned(),
        // The schema only holds the four families; anything else is still made safe.
        None => safe_name(policy_type),
    };
    format!(
        "policies/{folder}/{}__{}.json",
        safe_name(name),
        safe_graph_id(graph_id, policy_id)
    )
}

/// A policy name as a file name component (see the module documentation).
pub fn safe_name(name: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in name.chars() {
        let keep = c.is_alphanumeric() || (c == '-' && !out.is_empty() && !gap);
        if !keep {
            gap = true;
            continue;
        }
        let separator = usize::from(gap && !out.is_empty());
        if out.len() + separator + c.len_utf8() > NAME_MAX_BYTES {
            break;
        }
        if separator == 1 {
            out.push('_');
        }
        out.push(c);
        gap = false;
    }
    if out.is_empty() {
        return "policy".to_owned();
    }
    if is_windows_device(&out) {
        out.insert(0, '_');
    }
    out
}

/// The graph id when it is plain and short, else `id.<policy id>`.
fn safe_graph_id(graph_id: &str, policy_id: i64) -> String {
    let plain = !graph_id.is_empty()
        && graph_id.len() <= GRAPH_ID_MAX_BYTES
        && graph_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        graph_id.to_owned()
    } else {
        format!("id.{policy_id}")
    }
}

/// `CON`, `PRN`, `AUX`, `NUL`, and `COM`/`LPT` followed by a digit (superscript digits count
/// too), in any case.
fn is_windows_device(name: &str) -> bool {
    let upper = name.to_uppercase();
    if WINDOWS_DEVICES.contains(&upper.as_str()) {
        return true;
    }
    let Some(rest) = upper
        .strip_prefix("COM")
        .or_else(|| upper.strip_prefix("LPT"))
    else {
        return false;
    };
    let mut chars = rest.chars();
    matches!(
        (chars.next(), chars.next()),
        (Some('0'..='9' | '¹' | '²' | '³'), None)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GUID: &str = "0f6a3d2e-1b7c-4e5f-9a8b-7c6d5e4f3a2b";

    #[test]
    fn readable_names_stay_readable() {
        assert_eq!(
            policy_path("compliance", "Windows 10 - Baseline", GUID, 7),
            format!("policies/compliance/Windows_10_Baseline__{GUID}.json")
        );
        assert_eq!(safe_name("Edge (Stable) v2"), "Edge_Stable_v2");
        assert_eq!(safe_name("Grüne Geräte"), "Grüne_Geräte");
        assert_eq!(safe_name("端末の準拠ポリシー"), "端末の準拠ポリシー");
        assert_eq!(safe_name("BitLocker-required"), "BitLocker-required");
    }

    #[test]
    fn hostile_names_cannot_leave_their_folder_or_hide() {
        for (name, expected) in [
            ("../../etc/passwd", "etc_passwd"),
            ("/root/.ssh/authorized_keys", "root_ssh_authorized_keys"),
            ("..\\..\\Windows\\System32", "Windows_System32"),
            ("C:\\boot.ini", "C_boot_ini"),
            (".hidden", "hidden"),
            ("trailing dot.", "trailing_dot"),
            ("-rf", "rf"),
            ("--", "policy"),
            ("a\u{0}b\nc\td\u{1b}[31m", "a_b_c_d_31m"),
            ("evil\u{202e}fdp.exe", "evil_fdp_exe"),
            ("zero\u{200b}width", "zero_width"),
            ("", "policy"),
            ("....", "policy"),
            ("a__b", "a_b"),
        ] {
            assert_eq!(safe_name(name), expected, "{name:?}");
        }
    }

    #[test]
    fn windows_device_names_get_a_prefix() {
        for name in ["CON", "con", "Nul", "COM1", "lpt9", "COM¹", "AUX "] {
            assert!(safe_name(name).starts_with('_'), "{name:?}");
        }
        for name in ["CONFIG", "COM10", "Console"] {
            assert!(!safe_name(name).starts_with('_'), "{name:?}");
        }
    }

    #[test]
    fn odd_graph_ids_fall_back_to_the_policy_id() {
        assert_eq!(safe_graph_id(GUID, 3), GUID);
        assert_eq!(safe_graph_id("../x", 3), "id.3");
        assert_eq!(safe_graph_id("", 4), "id.4");
        assert_eq!(safe_graph_id(&"a".repeat(65), 5), "id.5");
        assert_eq!(
            policy_path("unknown/../type", "x", GUID, 1),
            format!("policies/unknown_type/x__{GUID}.json")
        );
    }

    proptest! {
        /// Whatever the name and graph id, the path is three plain segments under `policies/`,
        /// its file name is bounded, and the graph id suffix can be split off again.
        #[test]
        fn any_name_makes_a_safe_bounded_path(name in any::<String>(), graph_id in any::<String>(), id in 1i64..1_000_000) {
            let path = policy_path("settings_catalog", &name, &graph_id, id);
            let segments: Vec<&str> = path.split('/').collect();
            prop_assert_eq!(segments.len(), 3);
            prop_assert_eq!(segments[0], "policies");
            let file = segments[2];
            prop_assert!(file.len() <= NAME_MAX_BYTES + 2 + GRAPH_ID_MAX_BYTES + 5);
            prop_assert!(!file.starts_with(['.', '-']));
            prop_assert!(file.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.')));
            prop_assert!(!file.chars().any(char::is_control));
            let stem = file.strip_suffix(".json").expect("a .json file");
            let (safe, suffix) = stem.split_once("__").expect("a graph id suffix");
            prop_assert!(!safe.is_empty() && !safe.contains('.'));
            prop_assert!(!safe.contains("__"));
            prop_assert!(!is_windows_device(safe));
            let expected = if graph_id.is_empty()
                || graph_id.len() > GRAPH_ID_MAX_BYTES
                || !graph_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                format!("id.{id}")
            } else {
                graph_id.clone()
            };
            prop_assert_eq!(suffix, expected);
        }
    }
}
