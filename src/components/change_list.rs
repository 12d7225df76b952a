//! Two versions' differences: added, removed and changed settings with old → new values.

use leptos::prelude::*;

use super::{or_absent, RegionName, ScrollRegion};
use crate::domain::snapshot::{Change, ChangeKind, NotCompared};

/// One row per change: kind, the setting's readable label path, old and new values.
#[component]
pub fn ChangeList(changes: Vec<Change>) -> impl IntoView {
    view! {
        <ScrollRegion name=RegionName::Label("Changes".into())>
        <table class="data-table" data-testid="changes">
            <thead>
                <tr>
                    <th scope="col">"Change"</th>
                    <th scope="col">"Setting"</th>
                    <th scope="col">"Before"</th>
                    <th scope="col">"After"</th>
                </tr>
            </thead>
            <tbody>
                {changes
                    .into_iter()
                    .map(|change| {
                        let kind = change.kind;
                        let label = change.label_path();
                        let text = |v: Option<crate::domain::snapshot::ChangeValue>| {
                            or_absent(v.map(|v| v.text))
                        };
                        view! {
                            <tr class=change_class(kind) data-testid="change">
                                <td>{kind.label()}</td>
                                <th scope="row">{label}</th>
                                <td>{text(change.old)}</td>
                                <td>{text(change.new)}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
        </ScrollRegion>
    }
}

fn change_class(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "change-added",
        ChangeKind::Removed => "change-removed",
        ChangeKind::Changed => "change-changed",
    }
}

/// Parts that were not compared, and why.
#[component]
pub fn NotComparedNotes(notes: Vec<NotCompared>) -> impl IntoView {
    (!notes.is_empty()).then(|| {
        view! {
            <ul class="notes" data-testid="not-compared">
                {notes
                    .into_iter()
                    .map(|note| {
                        let what = note.labels.iter().filter(|l| !l.is_empty()).cloned().collect::<Vec<_>>().join(" › ");
                        view! { <li>{what} ": " {note.reason.label()}</li> }
                    })
                    .collect_view()}
            </ul>
        }
    })
}
