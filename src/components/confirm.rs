//! An action that asks first: the button, then a question with "Yes" and "No". Used where a
//! click changes something for other people (disconnect a tenant, remove a member).

use leptos::html;
use leptos::prelude::*;

use super::NeedsRole;

/// Keyboard focus for a confirmation that takes its button's place: when it opens, its safe
/// button ("No", `keep`) gets the focus, so a second Enter or a repeated key never confirms a
/// change for other people; when it closes, the button that opened it (`opener`) gets it back.
/// A confirmation rebuilt while open (a polled page) takes the focus again only when the
/// rebuild lost it. Returns the two refs to put on the buttons. Effects run only in the browser.
pub(super) fn use_confirm_focus(
    open: RwSignal<bool>,
) -> (NodeRef<html::Button>, NodeRef<html::Button>) {
    let opener = NodeRef::<html::Button>::new();
    let keep = NodeRef::<html::Button>::new();
    // Set when the focus should move, until the element to move it to is in the page.
    let wanted = StoredValue::new(false);
    Effect::new(move |was_open: Option<bool>| {
        let is_open = open.get();
        let target = if is_open { keep.get() } else { opener.get() };
        if was_open.is_some_and(|was| was != is_open)
            || (was_open.is_none() && is_open && focus_lost())
        {
            wanted.set_value(true);
        }
        if wanted.get_value() {
            if let Some(target) = target.filter(|target| target.is_connected()) {
                wanted.set_value(false);
                let _ = target.focus();
            }
        }
        is_open
    });
    (opener, keep)
}

/// Whether nothing on the page has the focus (it went back to the body with a removed element).
pub(super) fn focus_lost() -> bool {
    let document = document();
    match (document.active_element(), document.body()) {
        (None, _) => true,
        (Some(active), Some(body)) => active == *body.as_ref(),
        (Some(_), None) => false,
    }
}

/// Keeps Tab and Shift+Tab inside an open question (an `alertdialog` in the button's place):
/// they cycle between its enabled buttons instead of leaving it while it still asks. Call it
/// from the question's `keydown` handler; Escape is the way out. The question is not marked
/// `aria-modal`: the rest of the page stays usable (a click elsewhere, another row's question),
/// so a screen reader must not hide it. `current_target` is the question because Leptos'
/// event delegation is off (its `delegation` feature is not enabled).
pub(super) fn trap_tab(ev: &leptos::ev::KeyboardEvent) {
    use leptos::wasm_bindgen::JsCast;
    use leptos::web_sys::{Element, HtmlElement};
    if ev.key() != "Tab" {
        return;
    }
    let Some(question) = ev
        .current_target()
        .and_then(|target| target.dyn_into::<Element>().ok())
    else {
        return;
    };
    let all = question.get_elements_by_tag_name("button");
    let buttons: Vec<HtmlElement> = (0..all.length())
        .filter_map(|i| all.item(i))
        .filter(|button| !button.has_attribute("disabled"))
        .filter_map(|button| button.dyn_into::<HtmlElement>().ok())
        .collect();
    if buttons.is_empty() {
        // Nothing to go to: Tab keeps its usual way rather than doing nothing.
        return;
    }
    ev.prevent_default();
    let active = document().active_element();
    let at = buttons.iter().position(|button| {
        active
            .as_ref()
            .is_some_and(|active| active == AsRef::<Element>::as_ref(button))
    });
    let n = buttons.len();
    let next = match (at, ev.shift_key()) {
        (Some(i), false) => (i + 1) % n,
        (Some(i), true) => (i + n - 1) % n,
        (None, false) => 0,
        (None, true) => n - 1,
    };
    let _ = buttons[next].focus();
}

/// A button that asks `question` before it runs `on_confirm`. `refused` disables it with the
/// reason beside it; `pending` disables the confirmation while the change is on its way. The
/// question's "No" takes the focus when it opens; Escape or "No" closes it and gives the focus
/// back.
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
    let (opener, keep_button) = use_confirm_focus(asking);
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
                        node_ref=opener
                        on:click=move |_| asking.set(true)
                    >
                        {label}
                    </button>
                    {refused.map(|reason| view! { <NeedsRole id=needs_id reason /> })}
                }
            }
        >
            <p
                class="confirm"
                role="alertdialog"
                aria-label=label
                on:keydown=move |ev| {
                    trap_tab(&ev);
                    if ev.key() == "Escape" {
                        ev.stop_propagation();
                        asking.set(false);
                    }
                }
            >
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
                <button type="button" node_ref=keep_button on:click=move |_| asking.set(false)>
                    "No, keep it"
                </button>
            </p>
        </Show>
    }
}
