//! The one canonical spelling of a human name (a tenant's, a backup set's, a user's), so that
//! names a reader cannot tell apart are stored, and compared, as the same text.

/// `raw` as a name is stored and compared: trimmed, every run of white space (a double space,
/// a no-break space U+00A0, a figure space U+2007, a narrow no-break space U+202F, …) one plain
/// space, and in Unicode's composed form (NFC: "e" + U+0301 becomes "é"). A page collapses a run
/// of spaces to one and draws a no-break space like a space, and "é" looks the same either way,
/// so byte for byte two such names would be different names that read as one. Parsers refuse
/// control characters (tabs, line breaks) before they get here; this only respells.
pub fn canonical_name(raw: &str) -> String {
    let mut spaced = String::with_capacity(raw.len());
    for word in raw.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !spaced.is_empty() {
            spaced.push(' ');
        }
        spaced.push_str(word);
    }
    nfc(&spaced)
}

/// The composed form (NFC) of `text`. On the server the `unicode-normalization` crate (already
/// built for sqlx); in the browser its own `String.prototype.normalize`, which adds nothing to
/// the bundle. The browser's only decides whether Execute is enabled: the server canonicalises
/// again before it stores or compares.
#[cfg(feature = "ssr")]
fn nfc(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfc().collect()
}

/// The composed form (NFC) of `text`, by the browser.
#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
fn nfc(text: &str) -> String {
    use leptos::web_sys::js_sys::JsString;
    JsString::from(text).normalize("NFC").into()
}

/// Without either feature nothing stores or compares names: the text stays as it is.
#[cfg(not(any(feature = "ssr", feature = "hydrate")))]
fn nfc(text: &str) -> String {
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_that_look_the_same_are_spelled_the_same() {
        for (raw, canonical) in [
            ("Contoso Ltd", "Contoso Ltd"),
            ("  Contoso  Ltd ", "Contoso Ltd"),
            ("Contoso\u{A0}Ltd", "Contoso Ltd"),
            ("Contoso\u{2007}\u{202F} Ltd", "Contoso Ltd"),
            ("Cafe\u{301}", "Café"),
            ("Q1\u{A0}\u{A0}baseline", "Q1 baseline"),
            ("Zoë Ødegård", "Zoë Ødegård"),
            ("", ""),
            (" \u{A0} ", ""),
        ] {
            assert_eq!(canonical_name(raw), canonical, "{raw:?}");
        }
    }

    proptest! {
        /// Canonical text is its own canonical form, and never starts, ends or doubles a space.
        #[test]
        fn canonicalising_is_idempotent_and_leaves_single_spaces(
            raw in "[a-e \u{A0}\u{2007}\u{202F}\u{3000}\u{301}\u{308}é]{0,16}",
        ) {
            let once = canonical_name(&raw);
            prop_assert_eq!(canonical_name(&once), once.clone());
            prop_assert!(!once.starts_with(' ') && !once.ends_with(' '), "{:?}", once);
            prop_assert!(!once.contains("  "), "{:?}", once);
            prop_assert!(once.chars().all(|c| c == ' ' || !c.is_whitespace()), "{:?}", once);
        }
    }
}
