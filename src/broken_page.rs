//! What the browser shows when the page's code stops: a panic aborts the whole wasm module, so
//! nothing on the page answers any more. The likeliest cause is a chunk of the split bundle that
//! could not be fetched (the network dropped during a navigation, or a deployment removed the
//! folder an open page loads from); a reload fetches the page from the server with the bundle it
//! links now. The link reloads the page a link click was going to when the panic came within
//! [`NAVIGATION_WINDOW_MS`] of it (the router changes the address only once the next page's code
//! is there), else the page shown. Built with the DOM directly: the reactive system cannot run
//! after the panic.

use std::cell::RefCell;

use leptos::web_sys;
use wasm_bindgen::{closure::Closure, JsCast};

/// The id of the banner, so a second panic does not add a second one.
const BANNER_ID: &str = "page-stopped";

/// How long after a link click a panic is taken for that navigation's.
const NAVIGATION_WINDOW_MS: f64 = 30_000.0;

thread_local! {
    /// The `href` of the last link clicked, with the time of the click.
    static LAST_LINK: RefCell<Option<(String, f64)>> = const { RefCell::new(None) };
}

/// Logs panics to the console, as before, and then puts the banner at the top of the page.
pub fn report_panics() {
    remember_link_clicks();
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        show_banner();
    }));
}

fn show_banner() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Some(document) = window.document() else {
        return;
    };
    let (Some(body), None) = (document.body(), document.get_element_by_id(BANNER_ID)) else {
        return;
    };
    let here =
        going_to().unwrap_or_else(|| window.location().href().unwrap_or_else(|_| "/".into()));
    let (Ok(banner), Ok(text), Ok(link)) = (
        document.create_element("div"),
        document.create_element("span"),
        document.create_element("a"),
    ) else {
        return;
    };
    banner.set_id(BANNER_ID);
    banner.set_class_name("error-message page-stopped");
    let _ = banner.set_attribute("role", "alert");
    text.set_text_content(Some(
        "This page stopped working, so what you do here is not saved. ",
    ));
    // A plain link: it needs no script, which has stopped. `rel="external"` keeps the router's
    // click handler (which a trap does not unregister) from taking it for a client-side
    // navigation: the browser loads the page from the server.
    let _ = link.set_attribute("href", &here);
    let _ = link.set_attribute("rel", "external");
    link.set_text_content(Some("Reload the page"));
    let _ = banner.append_child(&text);
    let _ = banner.append_child(&link);
    let _ = body.prepend_with_node_1(&banner);
}

/// Notes the `href` of every link to one of the app's pages that is clicked (in the capture
/// phase, before the router handles it).
fn remember_link_clicks() {
    let Some(document) = web_sys::window().and_then(|window| window.document()) else {
        return;
    };
    let listener = Closure::<dyn Fn(web_sys::Event)>::new(|event: web_sys::Event| {
        let link = event
            .target()
            .and_then(|target| target.dyn_into::<web_sys::Element>().ok())
            .and_then(|element| element.closest("a[href]").ok().flatten())
            .and_then(|link| link.get_attribute("href"))
            // The app's own pages; a link elsewhere was not a navigation of the router.
            .filter(|href| href.starts_with('/') && !href.starts_with("//"));
        if let Some(href) = link {
            LAST_LINK.set(Some((href, web_sys::js_sys::Date::now())));
        }
    });
    let _ = document.add_event_listener_with_callback_and_bool(
        "click",
        listener.as_ref().unchecked_ref(),
        true,
    );
    // Lives as long as the page.
    listener.forget();
}

/// The link clicked just before the panic, if any.
fn going_to() -> Option<String> {
    LAST_LINK.with_borrow(|last| {
        last.as_ref()
            .filter(|(_, at)| web_sys::js_sys::Date::now() - at < NAVIGATION_WINDOW_MS)
            .map(|(href, _)| href.clone())
    })
}
