//! An action that asks first: the button, then a question with "Yes" and "No". Used where a
//! click changes something for other people (disconnect a tenant, remove a member).

use leptos::prelude::*;

use super::NeedsRole;

/// A button that asks `question` before it runs `on_confirm`. `refused` disables it with the
/// reason beside it; `pending` disables the confirmation while the change is on its way.
#[component]
pub fn ConfirmButton(
    /// The button's text.
    label: &'static str,
    /// What the confirmation asks, e.g. "Remove Ada from this tenant?".
    #[prop(into)]
    question: String,
    /// The text of the button that goes ahead.
    confirm: &'static str,
    /// The buttons' class: `danger` for what takes something away.
    #[prop(default = "danger")]
    class: &'static str,
    /// A test id for the button (the confirmation's is `{testid}-confirm`).
    testid: &'static str,
    #[prop(optional)] refused: Option<&'static str>,
    #[prop(into)] pending: Signal<bool>,
    #[prop(into)] on_confirm: Callback<()>,
) -> impl IntoView {
    let asking = RwSignal::new(false);
    let needs_id = format!("{testid}-needs");
    let confirm_id = format!("{testid}-confirm");
    // The question closes once the change went through (or failed, shown by the caller).
    Effect::new(move |was_pending: Option<bool>| {
        let now = pending.get();
        if was_pending == Some(true) && !now {
            asking.set(false);
        }
        now
    });
    view! {
        <Show
            when=move || asking.get()
            fallback=move || {
                let needs_id = needs_id.clone();
                view! {
                    <button
                        type="button"
                        class=class
                        class:refused=refused.is_some()
                        data-testid=testid
                        disabled=refused.is_some()
                        aria-describedby=refused.map(|_| needs_id.clone())
                        on:click=move |_| asking.set(true)
                    >
                        {label}
                    </button>
                    {refused.map(|reason| view! { <NeedsRole id=needs_id reason /> })}
                }
            }
        >
            <p class="confirm" role="alertdialog" aria-label=label>
                {question.clone()} " "
                <button
                    type="button"
                    class=class
                    data-testid=confirm_id.clone()
                    disabled=move || pending.get()
                    on:click=move |_| on_confirm.run(())
                >
                    {confirm}
                </button>
                " "
                <button type="button" on:click=move |_| asking.set(false)>
                    "No, keep it"
                </button>
            </p>
        </Show>
    }
}
