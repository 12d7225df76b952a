//! The notification bell of the header: a button with the unread count that opens a panel of
//! the user's notifications in the tenant, unread first, then newest (each run notification links to its run),
//! with **Mark all read** (of the unread ones it lists). Opening the panel, dismissing, and a timer every few seconds refresh
//! it. It loads in the browser only, so pages render without waiting for it.

use std::time::Duration;

use leptos::ev;
use leptos::prelude::*;
use leptos::wasm_bindgen::JsCast;

use super::{EmptyState, ErrorMessage, Loading};
use crate::api::notifications::{
    list_notifications, MarkAllNotificationsRead, MarkNotificationRead,
};
use crate::domain::notification::age;
use crate::domain::{AppError, Notification, Timestamp};

/// How often the bell asks for new notifications while the tab is visible.
const POLL_EVERY: Duration = Duration::from_secs(10);

/// The id of the panel, for the button's `aria-controls`.
const PANEL_ID: &str = "notification-panel";

/// What the panel shows; a memo of it re-renders the panel only when this changes, so a poll
/// that brings the same notifications does not rebuild the list (nor move the focus).
#[derive(Debug, Clone, PartialEq)]
enum PanelState {
    Loading,
    Failed(AppError),
    Empty,
    Items,
}

/// The button's accessible name: "Notifications, 3 unread".
fn bell_label(unread: Option<i64>) -> String {
    match unread {
        Some(n) if n > 0 => format!("Notifications, {n} unread"),
        _ => "Notifications".to_owned(),
    }
}

/// The bell and its panel, for the tenant `tenant`.
#[component]
pub fn NotificationBell(tenant: Memo<String>) -> impl IntoView {
    let open = RwSignal::new(false);
    let mark_one = ServerAction::<MarkNotificationRead>::new();
    let mark_all = ServerAction::<MarkAllNotificationsRead>::new();
    let list = LocalResource::new(move || {
        // Reload after every dismissal.
        mark_one.version().track();
        mark_all.version().track();
        list_notifications(tenant.get())
    });

    let unread = Memo::new(move |_| {
        list.with(|l| l.as_ref().and_then(|r| r.as_ref().ok()).map(|l| l.unread))
    });
    let items = Memo::new(move |_| {
        list.with(|l| {
            l.as_ref()
                .and_then(|r| r.as_ref().ok())
                .map(|l| l.items.clone())
        })
        .unwrap_or_default()
    });
    let as_of = Memo::new(move |_| {
        list.with(|l| l.as_ref().and_then(|r| r.as_ref().ok()).map(|l| l.as_of))
            .unwrap_or(Timestamp(0))
    });
    let state = Memo::new(move |_| {
        list.with(|l| match l {
            None => PanelState::Loading,
            Some(Err(error)) => PanelState::Failed(error.clone()),
            Some(Ok(l)) if l.items.is_empty() => PanelState::Empty,
            Some(Ok(_)) => PanelState::Items,
        })
    });

    // Effects only run in the browser: poll while the tab is visible and the user signed in.
    Effect::new(move |_| {
        let poll = move || {
            let signed_out = list.with_untracked(|l| {
                matches!(
                    l,
                    Some(Err(AppError::Unauthorized | AppError::Forbidden(_)))
                )
            });
            if !document().hidden() && !signed_out {
                list.refetch();
            }
        };
        if let Ok(handle) = set_interval_with_handle(poll, POLL_EVERY) {
            on_cleanup(move || handle.clear());
        }
    });

    let wrapper = NodeRef::<leptos::html::Div>::new();
    let button = NodeRef::<leptos::html::Button>::new();
    use_dismiss(open, wrapper, button);

    let toggle = Callback::new(move |()| {
        let opening = !open.get_untracked();
        open.set(opening);
        if opening {
            list.refetch();
        }
    });
    let on_read = Callback::new(move |id: i64| {
        mark_one.dispatch(MarkNotificationRead {
            tenant: tenant.get_untracked(),
            id,
        });
    });
    // Deferred to the next frame: the item's own click handler still runs (to mark it read)
    // before the panel and the item go away.
    let on_follow = Callback::new(move |()| {
        request_animation_frame(move || {
            let _ = open.try_set(false);
        })
    });
    let action_error = Signal::derive(move || {
        mark_one
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| mark_all.value().get().and_then(Result::err))
    });

    view! {
        <div
            class="notification-bell"
            node_ref=wrapper
        >
            <BellButton unread open button on_toggle=toggle />
            <Show when=move || open.get()>
                <NotificationPanel state items as_of mark_all action_error on_read on_follow tenant />
            </Show>
        </div>
    }
}

/// Closes the open panel on a click outside the bell (`wrapper`), or on Escape wherever the
/// focus is, which gives the focus back to the bell's `button`. The window listeners are
/// removed with the bell (and are a no-op on the server).
fn use_dismiss(
    open: RwSignal<bool>,
    wrapper: NodeRef<leptos::html::Div>,
    button: NodeRef<leptos::html::Button>,
) {
    let close = move |refocus: bool| {
        open.set(false);
        if refocus {
            if let Some(button) = button.get_untracked() {
                let _ = button.focus();
            }
        }
    };
    // A click anywhere outside the bell closes the panel (a no-op on the server).
    let outside = window_event_listener(ev::click, move |event| {
        if !open.get_untracked() {
            return;
        }
        let target = event.target();
        let node = target
            .as_ref()
            .and_then(|t| t.dyn_ref::<leptos::web_sys::Node>());
        let inside = wrapper
            .get_untracked()
            .is_some_and(|wrapper| wrapper.contains(node));
        if !inside {
            close(false);
        }
    });
    // Escape closes it wherever the focus is, and gives the focus back to the bell.
    let escape = window_event_listener(ev::keydown, move |event| {
        if event.key() == "Escape" && open.get_untracked() {
            close(true);
        }
    });
    on_cleanup(move || {
        outside.remove();
        escape.remove();
    });
}

/// The bell: its accessible name and badge give the unread count.
#[component]
fn BellButton(
    unread: Memo<Option<i64>>,
    open: RwSignal<bool>,
    button: NodeRef<leptos::html::Button>,
    on_toggle: Callback<()>,
) -> impl IntoView {
    view! {
        <button
            type="button"
            class="bell-button"
            node_ref=button
            data-testid="notification-bell"
            aria-label=move || bell_label(unread.get())
            aria-expanded=move || open.get().to_string()
            aria-controls=move || open.get().then_some(PANEL_ID)
            on:click=move |_| on_toggle.run(())
        >
            <svg class="bell-icon" viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">
                <path
                    fill="currentColor"
                    d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z"
                ></path>
            </svg>
            {move || {
                unread
                    .get()
                    .filter(|n| *n > 0)
                    .map(|n| {
                        let text = if n > 99 { "99+".to_owned() } else { n.to_string() };
                        view! {
                            <span class="bell-badge" aria-hidden="true" data-testid="notification-count">
                                {text}
                            </span>
                        }
                    })
            }}
        </button>
    }
}

/// The open panel: **Mark all read**, then the notifications, or why there are none.
#[component]
fn NotificationPanel(
    state: Memo<PanelState>,
    items: Memo<Vec<Notification>>,
    as_of: Memo<Timestamp>,
    mark_all: ServerAction<MarkAllNotificationsRead>,
    action_error: Signal<Option<AppError>>,
    on_read: Callback<i64>,
    on_follow: Callback<()>,
    tenant: Memo<String>,
) -> impl IntoView {
    // The unread ones the panel lists: **Mark all read** sends their ids and the server marks
    // those (see `MarkAll`), never one the list has not shown yet.
    let listed_unread = Memo::new(move |_| {
        items.with(|all| {
            all.iter()
                .filter(|n| n.is_unread())
                .map(|n| n.id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
    });
    let mark_all_read = move |_| {
        mark_all.dispatch(MarkAllNotificationsRead {
            tenant: tenant.get_untracked(),
            ids: listed_unread.get_untracked(),
            as_of: Some(as_of.get_untracked().millis()),
        });
    };
    view! {
        <section
            id=PANEL_ID
            class="notification-panel"
            aria-labelledby="notification-panel-title"
            data-testid="notification-panel"
        >
            <div class="notification-panel-head">
                <h2 id="notification-panel-title">"Notifications"</h2>
                <button
                    type="button"
                    class="link-button"
                    disabled=move || listed_unread.with(String::is_empty) || mark_all.pending().get()
                    on:click=mark_all_read
                >
                    "Mark all read"
                </button>
            </div>
            {move || action_error.get().map(|error| view! { <ErrorMessage error /> })}
            {move || match state.get() {
                PanelState::Loading => view! { <Loading what="notifications" /> }.into_any(),
                PanelState::Failed(error) => view! { <ErrorMessage error /> }.into_any(),
                PanelState::Empty => view! {
                    <EmptyState
                        title="No notifications yet"
                        hint="You are told here when a run you started finishes."
                    />
                }.into_any(),
                PanelState::Items => view! {
                    <ul class="notification-list">
                        // Keyed by id alone: marking one read restyles its item in place rather
                        // than replacing it, so the focus stays in it.
                        <For
                            each=move || items.get()
                            key=|n| n.id
                            let:notification
                        >
                            <NotificationItem notification items as_of on_read on_follow />
                        </For>
                    </ul>
                }.into_any(),
            }}
        </section>
    }
}

/// One notification: level, title, body, age and **View run**. Clicking it (the link, the
/// **Mark read** button or anywhere on it) marks it read. Whether it is unread comes from the
/// list (`items`), which the panel reloads after each dismissal.
#[component]
fn NotificationItem(
    notification: Notification,
    items: Memo<Vec<Notification>>,
    as_of: Memo<Timestamp>,
    on_read: Callback<i64>,
    on_follow: Callback<()>,
) -> impl IntoView {
    let id = notification.id;
    let unread =
        Memo::new(move |_| items.with(|all| all.iter().any(|n| n.id == id && n.is_unread())));
    let item = NodeRef::<leptos::html::Li>::new();
    let follow = NodeRef::<leptos::html::A>::new();
    // **Mark read** goes away once the item is read: the focus moves to the item's link first
    // (or the item itself), so a keyboard user stays in the panel.
    let keep_focus = move |_| {
        let kept = follow.get_untracked().map(|link| link.focus());
        if kept.is_none() {
            if let Some(item) = item.get_untracked() {
                let _ = item.focus();
            }
        }
    };
    let Notification {
        level,
        title,
        body,
        link,
        created_at,
        ..
    } = notification;
    let class = move || {
        format!(
            "notification notification-{}{}",
            level.as_str(),
            if unread.get() { " unread" } else { "" }
        )
    };
    view! {
        // The link and the button inside reach this handler as their clicks bubble up.
        <li
            class=class
            tabindex="-1"
            node_ref=item
            data-testid="notification"
            data-unread=move || unread.get().to_string()
            on:click=move |_| {
                if unread.get_untracked() {
                    on_read.run(id);
                }
            }
        >
            <p class="notification-head">
                <span class=format!("notification-level level-{}", level.as_str())>{level.label()}</span>
                <span class="notification-title">{title}</span>
                {move || unread.get().then(|| view! { <span class="visually-hidden">" (unread)"</span> })}
            </p>
            <p class="notification-body">{body}</p>
            <p class="notification-foot">
                <span class="muted small" title=created_at.to_string()>
                    {move || age(created_at, as_of.get())}
                </span>
                {link.map(|link| view! {
                    <a href=String::from(link) node_ref=follow on:click=move |_| on_follow.run(())>"View run"</a>
                })}
                {move || unread.get().then(|| view! {
                    <button type="button" class="link-button" on:click=keep_focus>"Mark read"</button>
                })}
            </p>
        </li>
    }
}
