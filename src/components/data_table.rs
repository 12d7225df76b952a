//! The app's tables: one markup for the header row, so every list looks and reads the same to a
//! screen reader (`scope="col"` headers, numbers right-aligned).

use leptos::prelude::*;

/// The placeholder shown where a value is absent (an unknown time, no initiator).
pub const ABSENT: &str = "—";

/// `value`, or [`ABSENT`] when there is none.
pub fn or_absent(value: Option<impl ToString>) -> String {
    value.map_or_else(|| ABSENT.to_owned(), |v| v.to_string())
}

/// A column heading; numeric columns are right-aligned.
#[derive(Clone, Copy)]
pub struct Column {
    pub label: &'static str,
    pub numeric: bool,
}

impl Column {
    pub const fn text(label: &'static str) -> Self {
        Self {
            label,
            numeric: false,
        }
    }

    pub const fn number(label: &'static str) -> Self {
        Self {
            label,
            numeric: true,
        }
    }
}

/// What names a [`ScrollRegion`] for a screen reader.
pub enum RegionName {
    /// The id of the element (a heading) that names it.
    LabelledBy(String),
    /// Its name in words.
    Label(String),
}

/// The scroll area around a table: a table wider than the screen (a phone) scrolls inside it.
/// It is a named region with a tab stop, so keyboard users can reach it and scroll it with the
/// arrow keys (axe: scrollable-region-focusable).
#[component]
pub fn ScrollRegion(name: RegionName, children: Children) -> impl IntoView {
    let (labelled_by, label) = match name {
        RegionName::LabelledBy(id) => (Some(id), None),
        RegionName::Label(label) => (None, Some(label)),
    };
    view! {
        <div
            class="table-scroll"
            role="region"
            tabindex="0"
            aria-labelledby=labelled_by
            aria-label=label
        >
            {children()}
        </div>
    }
}

/// What a table without a heading is called by its scroll region: its test id in words
/// ("backup-items" → "Backup items").
fn name_from_testid(testid: &str) -> String {
    let words = testid.replace('-', " ");
    let mut chars = words.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A table with `columns` as its header and `children` as its body rows, in its
/// [`ScrollRegion`]. `testid` names it for tests; `labelled_by` points at the heading that names
/// it, when there is one (else its region is named after `testid`).
#[component]
pub fn DataTable(
    columns: &'static [Column],
    testid: &'static str,
    #[prop(optional)] labelled_by: Option<&'static str>,
    children: Children,
) -> impl IntoView {
    let name = labelled_by.map_or_else(
        || RegionName::Label(name_from_testid(testid)),
        |id| RegionName::LabelledBy(id.to_owned()),
    );
    view! {
        <ScrollRegion name>
        <table class="data-table" data-testid=testid aria-labelledby=labelled_by>
            <thead>
                <tr>
                    {columns
                        .iter()
                        .map(|column| {
                            view! {
                                <th scope="col" class:num=column.numeric>
                                    {column.label}
                                </th>
                            }
                        })
                        .collect_view()}
                </tr>
            </thead>
            <tbody>{children()}</tbody>
        </table>
        </ScrollRegion>
    }
}

#[cfg(test)]
mod tests {
    use super::name_from_testid;

    #[test]
    fn a_table_without_a_heading_is_named_after_its_testid() {
        assert_eq!(name_from_testid("backup-items"), "Backup items");
        assert_eq!(name_from_testid("runs-table"), "Runs table");
        assert_eq!(name_from_testid(""), "");
    }
}

/// The links under a list paged back by a key ("older than …"): to the newest page when this is
/// not it, and to the next older page when there is one.
#[component]
pub fn KeysetPager(
    /// What the pages are of, for the screen reader ("Pages of runs").
    label: &'static str,
    newest: Option<String>,
    older: Option<String>,
    /// The links' words.
    #[prop(default = ("← Newest", "Older →"))]
    words: (&'static str, &'static str),
) -> impl IntoView {
    view! {
        <nav class="pager" aria-label=label>
            {newest.map(|href| view! { <a href=href>{words.0}</a> })}
            {older.map(|href| view! { <a href=href rel="next">{words.1}</a> })}
        </nav>
    }
}
