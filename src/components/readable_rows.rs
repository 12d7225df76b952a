//! A snapshot read as settings: one table per section, sub-rows indented by their depth.

use leptos::prelude::*;

use super::{RegionName, ScrollRegion};
use crate::domain::snapshot::{Coverage, ReadableSection, RowValue};

/// The deepest indentation style/main.css has a class for; deeper rows share it.
const MAX_DEPTH_CLASS: u16 = 5;

/// The class that indents a row of `depth` (`depth-0` …): a class, not a `style` attribute,
/// which the pages' Content-Security-Policy (`style-src 'self'`) refuses.
fn depth_class(depth: u16) -> String {
    format!("depth-{}", depth.min(MAX_DEPTH_CLASS))
}

/// The sections of a readable snapshot. A section the snapshot was captured without says so; an
/// empty captured section says "None".
#[component]
pub fn ReadableSections(sections: Vec<ReadableSection>) -> impl IntoView {
    sections
        .into_iter()
        .enumerate()
        .map(|(index, section)| {
            let heading = format!("section-{index}");
            // The section's table and its scroll area are both named by the heading.
            let table_heading = heading.clone();
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
                    <ScrollRegion name=RegionName::LabelledBy(table_heading.clone())>
                    <table class="data-table readable" aria-labelledby=table_heading>
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
                                    let indent = depth_class(row.depth);
                                    let group = matches!(row.value, RowValue::Group);
                                    let secret = matches!(row.value, RowValue::Secret);
                                    view! {
                                        <tr class:group=group data-path=row.path>
                                            <th scope="row" class=indent>
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
                    </ScrollRegion>
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
