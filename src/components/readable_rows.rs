//! A snapshot read as settings: one table per section, sub-rows indented by their depth.

use leptos::prelude::*;

use crate::domain::snapshot::{Coverage, ReadableSection, RowValue};

/// The sections of a readable snapshot. A section the snapshot was captured without says so; an
/// empty captured section says "None".
#[component]
pub fn ReadableSections(sections: Vec<ReadableSection>) -> impl IntoView {
    sections
        .into_iter()
        .enumerate()
        .map(|(index, section)| {
            let heading = format!("section-{index}");
            let body = match section.coverage {
                Coverage::NotCaptured => {
                    view! { <p class="muted">"Not captured in this version."</p> }.into_any()
                }
                Coverage::NotCapturedThen => view! {
                    <p class="muted">"Not captured by this version's capture format."</p>
                }
                .into_any(),
                Coverage::Captured if section.rows.is_empty() => {
                    view! { <p class="muted">"None"</p> }.into_any()
                }
                Coverage::Captured => view! {
                    <table class="data-table readable" aria-labelledby=heading.clone()>
                        <thead>
                            <tr>
                                <th scope="col">"Setting"</th>
                                <th scope="col">"Value"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {section
                                .rows
                                .into_iter()
                                .map(|row| {
                                    let indent = format!("padding-left: {}rem", 0.5 + f32::from(row.depth) * 1.25);
                                    let group = matches!(row.value, RowValue::Group);
                                    let secret = matches!(row.value, RowValue::Secret);
                                    view! {
                                        <tr class:group=group data-path=row.path>
                                            <th scope="row" style=indent>
                                                {row.label}
                                                {row.detail.map(|d| view! { <span class="muted detail">" " {d}</span> })}
                                            </th>
                                            <td class:muted=secret>{row.value.text().to_owned()}</td>
                                        </tr>
                                    }
                                })
                                .collect_view()}
                        </tbody>
                    </table>
                }
                .into_any(),
            };
            view! {
                <section class="readable-section" data-testid="readable-section">
                    <h3 id=heading>{section.title}</h3>
                    {body}
                </section>
            }
        })
        .collect_view()
}
