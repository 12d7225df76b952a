//! `README.md` of the export: the backup set documented for a reader without the app, one
//! section per policy with its settings as the version viewer shows them (the readable view).
//!
//! Every text from Intune or from users is escaped before it is written: Markdown punctuation
//! is backslash-escaped (so a name cannot open emphasis, a link, raw HTML or a table cell), line
//! breaks become `<br>` inside a table, spaces in a heading and `<br>` with a line break in a
//! paragraph, where no line can start a list, a heading or a code block, and control and
//! bidirectional formatting characters become U+FFFD (so no text can hide or reorder what
//! follows it). Ids, hashes and paths are shown as code spans, which need only pipes escaped.

use crate::domain::snapshot::{Coverage, ReadableSection, ReadableSnapshot, RowValue};

use super::{iso_8601, ExportItem, SetInfo};

/// The top of the README: the set, its tenant and when it was exported.
pub fn heading(set: &SetInfo, tenant_name: &str, tenant_id: &str, exported_at: i64) -> String {
    let mut out = format!("# {}\n\n", heading_text(&set.name));
    if !set.description.trim().is_empty() {
        out.push_str(&paragraph(&set.description));
        out.push_str("\n\n");
    }
    out.push_str("| | |\n|---|---|\n");
    row2(
        &mut out,
        "Tenant",
        &format!("{} {}", cell(tenant_name), code(tenant_id)),
    );
    row2(&mut out, "Backup set", &code(&set.id.to_string()));
    row2(&mut out, "Created", &iso_8601(set.created_at));
    row2(&mut out, "Exported", &iso_8601(exported_at));
    out.push_str(
        "\nEach policy below lists its settings as captured in this backup. `manifest.json` \
         lists every policy with its version and content hash; `policies/` holds each \
         captured version as JSON.\n",
    );
    out
}

/// One policy: what was captured, and its settings section by section. `view` is `None` when
/// the stored version could not be read.
pub fn policy_section(item: &ExportItem, path: &str, view: Option<&ReadableSnapshot>) -> String {
    let mut out = format!("\n## {}\n\n| | |\n|---|---|\n", heading_text(&item.name));
    row2(&mut out, "Type", &cell(item.policy_type.label()));
    row2(&mut out, "Graph id", &code(&item.graph_id));
    row2(&mut out, "Version", &code(&item.version_id.to_string()));
    row2(
        &mut out,
        "Content hash (SHA-256)",
        &code(&item.content_hash),
    );
    row2(&mut out, "Captured", &iso_8601(item.captured_at));
    row2(&mut out, "File", &code(path));
    let Some(view) = view else {
        out.push_str("\nThe stored version could not be read; the file holds it as stored.\n");
        return out;
    };
    for note in &view.notes {
        out.push_str(&format!("\n> {}\n", paragraph(note)));
    }
    for section in &view.sections {
        out.push_str(&format!("\n### {}\n\n", heading_text(&section.title)));
        section_body(&mut out, section);
    }
    out
}

fn section_body(out: &mut String, section: &ReadableSection) {
    match section.coverage {
        Coverage::NotCaptured => out.push_str("_Not captured in this version._\n"),
        Coverage::NotCapturedThen => {
            out.push_str("_Not captured by this version's capture format._\n")
        }
        Coverage::Captured if section.rows.is_empty() => out.push_str("_None_\n"),
        Coverage::Captured => {
            let details = section.rows.iter().any(|row| row.detail.is_some());
            out.push_str(if details {
                "| Setting | Value | Details |\n|---|---|---|\n"
            } else {
                "| Setting | Value |\n|---|---|\n"
            });
            for row in &section.rows {
                let value = match &row.value {
                    RowValue::Group => String::new(),
                    RowValue::Secret => format!("_{}_", cell(row.value.text())),
                    RowValue::Text(text) => cell(text),
                };
                out.push_str(&format!(
                    "| {}{} | {value} |",
                    indent(row.depth),
                    cell(&row.label)
                ));
                if details {
                    let detail = row.detail.as_deref().map(code).unwrap_or_default();
                    out.push_str(&format!(" {detail} |"));
                }
                out.push('\n');
            }
        }
    }
}

/// A sub-row's mark: non-breaking spaces (table cells trim ordinary ones) and an arrow.
fn indent(depth: u16) -> String {
    match depth {
        0 => String::new(),
        depth => format!("{}↳ ", "\u{a0}\u{a0}\u{a0}".repeat(usize::from(depth - 1))),
    }
}

fn row2(out: &mut String, label: &str, value: &str) {
    out.push_str(&format!("| {label} | {value} |\n"));
}

/// Characters Markdown (CommonMark and GitHub's tables) could read as syntax.
fn is_markdown_punctuation(c: char) -> bool {
    matches!(
        c,
        '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '&' | '!'
    )
}

/// Controls (other than line breaks) and the bidirectional formatting characters (Unicode's
/// Bidi_Control set: the Arabic letter mark, the marks, embeddings, overrides and isolates).
fn is_hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\r')
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Escapes inline text; `line_break` replaces each line break.
fn escape(text: &str, line_break: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str(line_break);
            }
            '\n' => out.push_str(line_break),
            '\t' => out.push(' '),
            c if is_hidden(c) => out.push('\u{fffd}'),
            c if is_markdown_punctuation(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text inside a table cell.
fn cell(text: &str) -> String {
    escape(text, "<br>")
}

/// Text of a heading (one line).
fn heading_text(text: &str) -> String {
    let escaped = escape(text, " ");
    if escaped.trim().is_empty() {
        "(no name)".to_owned()
    } else {
        escaped
    }
}

/// A paragraph of its own (a description, a note): line breaks stay line breaks, shown as `<br>`
/// and kept in the file so it reads as the text did. No line may start a block of its own (a
/// list item, a heading or setext underline, an indented code block, raw HTML): each line's
/// leading spaces go (Markdown drops them in a paragraph anyway), and a leading `-`, `+`, `=` or
/// the `.` / `)` after leading digits is escaped, as `escape` does the other markers. Blank
/// lines around the text go too, so the first line is text.
fn paragraph(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<String> = text
        .trim()
        .split('\n')
        .map(|line| line_start_escaped(escape(line.trim_start_matches([' ', '\t']), "")))
        .collect();
    lines.join("<br>\n")
}

/// An escaped line with its first character escaped too when Markdown could read it as the
/// start of a list item, a setext underline or a thematic break.
fn line_start_escaped(line: String) -> String {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if line.starts_with(['-', '+', '=']) {
        format!("\\{line}")
    } else if digits > 0 && line[digits..].starts_with(['.', ')']) {
        format!("{}\\{}", &line[..digits], &line[digits..])
    } else {
        line
    }
}

/// A code span inside a table cell: a fence longer than any run of backticks in the text,
/// pipes escaped (GitHub splits cells before it reads code spans), line breaks as spaces.
fn code(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let mut inner = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => inner.push_str("\\|"),
            '\r' | '\n' | '\t' => inner.push(' '),
            c if is_hidden(c) => inner.push('\u{fffd}'),
            c => inner.push(c),
        }
    }
    // A space on each side when the text touches the fence with a backtick.
    let pad = if inner.starts_with('`') || inner.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{inner}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::snapshot::{
        readable, CaptureFormat, CapturedPolicy, PolicyType, SettingNames,
    };
    use proptest::prelude::*;
    use serde_json::json;

    /// Splits a table row into its cells the way GitHub does: at every pipe that does not
    /// directly follow a backslash (whatever precedes that backslash).
    fn cells(row: &str) -> Vec<String> {
        let inner = row
            .trim()
            .strip_prefix('|')
            .unwrap()
            .strip_suffix('|')
            .unwrap();
        let mut cells = vec![String::new()];
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'|') => {
                    chars.next();
                    cells.last_mut().unwrap().push('|');
                }
                '|' => cells.push(String::new()),
                c => cells.last_mut().unwrap().push(c),
            }
        }
        cells.iter().map(|c| c.trim().to_owned()).collect()
    }

    fn item(name: &str) -> ExportItem {
        ExportItem {
            policy_id: 7,
            graph_id: "g|1".into(),
            policy_type: PolicyType::DeviceConfiguration,
            name: name.into(),
            version_id: 12,
            content_hash: "ab".repeat(32),
            captured_at: 1_764_750_902_123,
            payload: String::new(),
            format: 1,
        }
    }

    /// Every character of Unicode's Bidi_Control set (PropList.txt) is replaced wherever text
    /// is written, so none can reorder what follows it in a bidi-aware viewer.
    #[test]
    fn every_bidirectional_control_is_replaced() {
        let bidi_controls = ['\u{061c}', '\u{200e}', '\u{200f}']
            .into_iter()
            .chain('\u{202a}'..='\u{202e}')
            .chain('\u{2066}'..='\u{2069}');
        for c in bidi_controls {
            let text = format!("Prod{c} 123 (old)");
            for (how, written) in [
                ("cell", cell(&text)),
                ("heading", heading_text(&text)),
                ("paragraph", paragraph(&text)),
                ("code", code(&text)),
            ] {
                assert!(
                    !written.contains(c) && written.contains('\u{fffd}'),
                    "{how} kept U+{:04X}: {written:?}",
                    c as u32
                );
            }
        }
    }

    #[test]
    fn a_policy_reads_as_a_settings_table_with_hostile_text_escaped() {
        let payload = json!({"policyType": "device_configuration", "policy": {
            "displayName": "A | B\nC", "passwordMinimumLength": 8,
            "description": "<script>alert(1)</script> **bold** [x](javascript:y)",
            "edgeSearchEngine": {"edgeSearchEngineType": "bing"}}});
        let view = readable(
            &CapturedPolicy::new(PolicyType::DeviceConfiguration, CaptureFormat::V1, &payload),
            &SettingNames::new(),
        );
        let text = policy_section(
            &item("Evil | name\n## injected"),
            "policies/x.json",
            Some(&view),
        );
        assert!(
            text.starts_with("\n## Evil \\| name \\#\\# injected\n"),
            "{text}"
        );
        assert!(text.contains("| Graph id | `g\\|1` |"), "{text}");
        assert!(text.contains("| Type | Device configuration |"), "{text}");
        assert!(text.contains("| Password minimum length | 8 |"), "{text}");
        assert!(text.contains("| Display name | A \\| B<br>C |"), "{text}");
        assert!(
            text.contains(
                "\\<script\\>alert(1)\\</script\\> \\*\\*bold\\*\\* \\[x\\](javascript:y)"
            ),
            "{text}"
        );
        assert!(
            text.contains("| Edge search engine |  |\n| ↳ Edge search engine type | bing |"),
            "{text}"
        );
        // Every table row has as many cells as its header.
        for line in text.lines().filter(|l| l.starts_with('|')) {
            assert_eq!(cells(line).len(), 2, "{line}");
        }
    }

    #[test]
    fn sections_without_rows_say_why() {
        let payload = json!({"policy": {"displayName": "C"}});
        let view = readable(
            &CapturedPolicy::new(PolicyType::Compliance, CaptureFormat::V1, &payload),
            &SettingNames::new(),
        );
        let text = policy_section(&item("C"), "p", Some(&view));
        assert!(
            text.contains("_Not captured by this version's capture format._"),
            "{text}"
        );
        assert!(
            text.contains("> Actions for noncompliance: not captured"),
            "{text}"
        );
        assert!(policy_section(&item("C"), "p", None).contains("could not be read"));
    }

    #[test]
    fn code_spans_survive_backticks_and_pipes() {
        assert_eq!(code("plain"), "`plain`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x`"), "`` `x` ``");
        assert_eq!(code("a|b\nc"), "`a\\|b c`");
    }

    /// A line of a paragraph that Markdown could read as the start of a block: a list item, a
    /// heading, a setext underline or thematic break, a quote, a fence, raw HTML, an indented
    /// code block. `<br>` alone is the paragraph's own empty line.
    fn opens_a_block(line: &str) -> bool {
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        line.starts_with([' ', '\t', '-', '+', '=', '*', '_', '#', '>', '`', '~', '|'])
            || (line.starts_with('<') && line != "<br>")
            || (digits > 0 && line[digits..].starts_with(['.', ')']))
    }

    #[test]
    fn a_description_stays_one_paragraph_of_plain_lines() {
        let set = SetInfo {
            id: 3,
            name: "Set".into(),
            description: "Baseline\n===\nnotes\nintro\n- a\n+ b\n  2. c\n10) d\n    code\n---"
                .into(),
            created_at: 0,
        };
        let text = heading(&set, "Contoso", "t", 0);
        assert!(
            text.contains(
                "# Set\n\nBaseline<br>\n\\===<br>\nnotes<br>\nintro<br>\n\\- a<br>\n\\+ b<br>\n\
                 2\\. c<br>\n10\\) d<br>\ncode<br>\n\\---\n\n|"
            ),
            "{text}"
        );
        // A note in a quote: its lines stay the quote's paragraph, and a first line of spaces
        // and breaks cannot open raw HTML or code.
        assert_eq!(paragraph("\n \n    1. x\r\n- y \n"), "1\\. x<br>\n\\- y");
    }

    proptest! {
        /// Whatever the text, a cell stays one cell on one line, and hides nothing.
        #[test]
        fn any_text_stays_in_its_cell(text in any::<String>()) {
            for escaped in [cell(&text), code(&text)] {
                let row = format!("| {escaped} | x |");
                prop_assert!(!row.contains('\n') && !row.contains('\r'));
                prop_assert_eq!(cells(&row).len(), 2, "{:?}", row);
                prop_assert!(!row.chars().any(is_hidden));
            }
            prop_assert!(!heading_text(&text).contains(['\n', '\r']));
        }

        /// Whatever the lines, no line of a paragraph can start a block of its own: the text
        /// stays one paragraph, read as text.
        #[test]
        fn any_text_stays_one_paragraph(
            lines in prop::collection::vec(
                "[ \t]{0,5}([-+=*_#>`~|<]{0,3}|[0-9]{1,3}[.)])[ a-z]{0,4}|\\PC{0,6}",
                0..6,
            ),
            crlf in any::<bool>(),
        ) {
            let text = lines.join(if crlf { "\r\n" } else { "\n" });
            let escaped = paragraph(&text);
            for line in escaped.split('\n') {
                let line = line.strip_suffix("<br>").unwrap_or(line);
                prop_assert!(
                    line.is_empty() || !opens_a_block(line),
                    "{:?} in {:?}",
                    line,
                    escaped
                );
            }
            prop_assert!(!escaped.starts_with("<br>"), "{:?}", escaped);
            prop_assert!(!escaped.contains('\r') && !escaped.chars().any(is_hidden));
        }
    }
}
