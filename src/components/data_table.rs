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

/// A table with `columns` as its header and `children` as its body rows. `testid` names it for
/// tests; `labelled_by` points at the heading that names it, when there is one.
#[component]
pub fn DataTable(
    columns: &'static [Column],
    testid: &'static str,
    #[prop(optional)] labelled_by: Option<&'static str>,
    children: Children,
) -> impl IntoView {
    view! {
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
