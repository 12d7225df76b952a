//! The one sanitizer for failure texts, notifications, audit details and log lines (SPEC Rule 8).
//!
//! A small hand-written scanner instead of a set of regular expressions: one pass over the
//! characters recognises `key=value` / `key: value` / JSON pairs whose key names a secret,
//! `Bearer` credentials, JWT-shaped words and long opaque tokens, and replaces the secret part with
//! [`REDACTED`]. Whitespace is collapsed first and the result is capped at [`MAX_CHARS`].
//!
//! The output is a fixed point: sanitizing it again changes nothing, so a message may safely pass
//! through the sanitizer at several layers.

/// What replaces every secret.
pub const REDACTED: &str = "[REDACTED]";

/// The longest sanitized text, in characters (the ellipsis included).
pub const MAX_CHARS: usize = 300;

/// Marks a text that was cut at [`MAX_CHARS`].
const ELLIPSIS: char = '…';

/// Input beyond this many characters is never looked at: the output keeps far less.
const SCAN_LIMIT: usize = 4096;

/// A word of at least this many characters that mixes letters and digits is treated as a secret.
const OPAQUE_MIN_CHARS: usize = 40;

/// Returns `input` with secrets redacted, whitespace collapsed and the length capped.
pub fn sanitize(input: &str) -> String {
    let collapsed = collapse_whitespace(input);
    let redacted = redact(&collapsed);
    truncate(&redacted)
}

/// Turns every run of whitespace or control characters into one space and trims both ends;
/// stops (at a word boundary) after [`SCAN_LIMIT`] characters.
fn collapse_whitespace(input: &str) -> Vec<char> {
    let mut out: Vec<char> = Vec::with_capacity(input.len().min(SCAN_LIMIT));
    for c in input.chars() {
        if c.is_whitespace() || c.is_control() {
            if out.len() >= SCAN_LIMIT {
                break;
            }
            if out.last().is_some_and(|last| *last != ' ') {
                out.push(' ');
            }
        } else {
            if out.len() >= SCAN_LIMIT {
                // A word straddles the limit: drop its visible head too, it may be half a secret.
                while out.last().is_some_and(|last| *last != ' ') {
                    out.pop();
                }
                break;
            }
            out.push(c);
        }
    }
    while out.last() == Some(&' ') {
        out.pop();
    }
    out
}

/// Characters of a key such as `client_secret` or `accessToken`.
fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Characters of a token-like word: base64url, JWT dots and the `~` of Entra client secrets.
fn is_token_char(c: char) -> bool {
    is_ident_char(c) || matches!(c, '.' | '~' | '+')
}

/// Where an unquoted value ends.
fn is_value_delimiter(c: char) -> bool {
    c == ' '
        || matches!(
            c,
            '&' | ',' | ';' | '"' | '\'' | '<' | '>' | '}' | ')' | ELLIPSIS
        )
}

/// How a key's value is introduced: `code` is only a secret as `code=` (an OAuth authorization
/// code), never as Graph's harmless `"code": "Forbidden"`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SecretKey {
    Any,
    EqualsOnly,
    Authorization,
}

/// Whether an identifier names a secret, after lower-casing and dropping `_` and `-`.
fn secret_key(ident: &[char]) -> Option<SecretKey> {
    let folded: String = ident
        .iter()
        .filter(|c| **c != '_' && **c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match folded.as_str() {
        "code" => Some(SecretKey::EqualsOnly),
        "authorization" => Some(SecretKey::Authorization),
        "sig" | "signature" | "assertion" | "clientassertion" | "pwd" | "passwd" | "apikey"
        | "privatekey" | "credential" | "credentials" => Some(SecretKey::Any),
        f if f.ends_with("secret") || f.ends_with("password") || f.ends_with("token") => {
            Some(SecretKey::Any)
        }
        _ => None,
    }
}

/// JWT-shaped (`eyJ…` with a dot) or a long opaque token mixing letters and digits.
fn is_secret_word(word: &[char]) -> bool {
    let jwt = word.starts_with(&['e', 'y', 'J']) && word.contains(&'.');
    let opaque = word.len() >= OPAQUE_MIN_CHARS
        && word.iter().any(|c| c.is_ascii_digit())
        && word.iter().any(|c| c.is_ascii_alphabetic());
    jwt || opaque
}

fn is_marker(chars: &[char]) -> bool {
    chars.iter().copied().eq(REDACTED.chars())
}

/// Pushes `value` unchanged when it is empty or already redacted, otherwise the marker.
fn push_redacted(out: &mut String, value: &[char]) {
    if value.is_empty() || is_marker(value) {
        out.extend(value);
    } else {
        out.push_str(REDACTED);
    }
}

/// End (exclusive) of the run of characters starting at `from` that satisfy `pred`.
fn run_end(s: &[char], from: usize, pred: impl Fn(char) -> bool) -> usize {
    let mut end = from;
    while end < s.len() && pred(s[end]) {
        end += 1;
    }
    end
}

/// One pass that replaces every recognised secret.
fn redact(s: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if !is_ident_char(s[i]) {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let ident_end = run_end(s, i, is_ident_char);
        let ident = &s[i..ident_end];
        if let Some(kind) = secret_key(ident) {
            if let Some(next) = redact_key_value(s, i, ident_end, kind, &mut out) {
                i = next;
                continue;
            }
        }
        if ident
            .iter()
            .copied()
            .map(|c| c.to_ascii_lowercase())
            .eq("bearer".chars())
        {
            let token_start = run_end(s, ident_end, |c| c == ' ');
            let token_end = run_end(s, token_start, |c| !is_value_delimiter(c));
            if token_start > ident_end && token_end > token_start {
                out.extend(&s[i..token_start]);
                push_redacted(&mut out, &s[token_start..token_end]);
                i = token_end;
                continue;
            }
        }
        let word_end = run_end(s, i, is_token_char);
        if is_secret_word(&s[i..word_end]) {
            out.push_str(REDACTED);
            i = word_end;
        } else {
            // Only the identifier is consumed: a key may follow a dot inside the word.
            out.extend(ident);
            i = ident_end;
        }
    }
    out
}

/// Redacts the value after a secret key if a separator follows; returns where scanning resumes,
/// or `None` when the identifier is not used as a key here.
fn redact_key_value(
    s: &[char],
    start: usize,
    ident_end: usize,
    kind: SecretKey,
    out: &mut String,
) -> Option<usize> {
    let mut k = ident_end;
    if k < s.len() && matches!(s[k], '"' | '\'') {
        k += 1;
    }
    k = run_end(s, k, |c| c == ' ');
    let separator = *s.get(k)?;
    let accepted = match kind {
        SecretKey::EqualsOnly => separator == '=',
        SecretKey::Any | SecretKey::Authorization => separator == '=' || separator == ':',
    };
    if !accepted {
        return None;
    }
    k = run_end(s, k + 1, |c| c == ' ');
    if k < s.len() && matches!(s[k], '"' | '\'') {
        let quote = s[k];
        let content_start = k + 1;
        let mut j = content_start;
        while j < s.len() && s[j] != quote {
            j += if s[j] == '\\' { 2 } else { 1 };
        }
        let closed = j < s.len();
        let mut content_end = j.min(s.len());
        // An unclosed quote that runs into our own truncation mark: the mark is not content.
        if !closed && content_end > content_start && s[content_end - 1] == ELLIPSIS {
            content_end -= 1;
        }
        out.extend(&s[start..content_start]);
        push_redacted(out, &s[content_start..content_end]);
        if closed {
            out.push(quote);
            return Some(j + 1);
        }
        out.extend(&s[content_end..]);
        return Some(s.len());
    }
    let mut value_end = run_end(s, k, |c| !is_value_delimiter(c));
    // `Authorization: Bearer abc`: the scheme and the credential go together.
    if kind == SecretKey::Authorization
        && value_end > k
        && s[k..value_end].iter().all(|c| c.is_ascii_alphabetic())
        && s.get(value_end) == Some(&' ')
    {
        let credential_end = run_end(s, value_end + 1, |c| !is_value_delimiter(c));
        if credential_end > value_end + 1 {
            value_end = credential_end;
        }
    }
    out.extend(&s[start..k]);
    push_redacted(out, &s[k..value_end]);
    Some(value_end)
}

/// Caps the text at [`MAX_CHARS`] characters, never cutting a redaction marker in half.
fn truncate(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= MAX_CHARS {
        return text.to_owned();
    }
    let mut cut = MAX_CHARS - 1;
    let marker: Vec<char> = REDACTED.chars().collect();
    for back in 1..marker.len() {
        if cut >= back && chars[cut - back..].starts_with(&marker) {
            cut -= back;
            break;
        }
    }
    let mut out: String = chars[..cut].iter().collect();
    out.truncate(out.trim_end().len());
    out.push(ELLIPSIS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_query_string_secrets_but_keeps_the_rest() {
        let out = sanitize("POST /token?client_id=abc&client_secret=s3cr3t&scope=x");
        assert_eq!(
            out,
            "POST /token?client_id=abc&client_secret=[REDACTED]&scope=x"
        );
    }

    #[test]
    fn redacts_json_secrets_and_keeps_graph_error_codes() {
        let out = sanitize(r#"{"error":{"code":"Forbidden","accessToken":"abc def","x":1}}"#);
        assert_eq!(
            out,
            r#"{"error":{"code":"Forbidden","accessToken":"[REDACTED]","x":1}}"#
        );
    }

    #[test]
    fn redacts_authorization_headers_and_bearer_tokens() {
        assert_eq!(
            sanitize("Authorization: Bearer abc.def"),
            "Authorization: [REDACTED]"
        );
        assert_eq!(
            sanitize("sent bearer   xyz, then"),
            "sent bearer [REDACTED], then"
        );
    }

    #[test]
    fn redacts_jwts_and_oauth_codes() {
        let out = sanitize("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln in text, code=0.AXYZ");
        assert_eq!(out, "token [REDACTED] in text, code=[REDACTED]");
    }

    #[test]
    fn collapses_whitespace_and_caps_length() {
        assert_eq!(sanitize("  a \n\t b\r\n"), "a b");
        let long = "word ".repeat(200);
        let out = sanitize(&long);
        assert_eq!(out.chars().count(), MAX_CHARS);
        assert!(out.ends_with(ELLIPSIS));
        assert_eq!(sanitize(&out), out);
    }

    #[test]
    fn never_cuts_a_marker_in_half() {
        let text = format!("{} password=hunter2 tail", "x".repeat(MAX_CHARS - 15));
        let out = sanitize(&text);
        assert!(!out.contains("hunter2"));
        assert!(out.ends_with("password=…"), "{out}");
        assert_eq!(sanitize(&out), out);
    }
}
