//! Where a browser may be sent on our behalf: the `next` page after sign-in, and the page the
//! guard sends an anonymous visitor back to. The value comes from the request, so it is read the
//! way the browser will read it (the WHATWG URL parser, against the app's public URL) and only a
//! page on the app's own origin survives. The `Location` header then carries the parser's own
//! serialisation of path and query, never the raw input, so it is always a valid header value.

use axum::http::HeaderValue;
use url::Url;

/// Where a refused, missing or unreadable target sends the browser.
const HOME: &str = "/";

/// A path (and query) on the app's own origin, safe to send in a `Location` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPath(String);

impl LocalPath {
    /// `raw` resolved against `public_origin`, or the start page when it leaves that origin,
    /// holds an ASCII control character or a backslash, or does not parse. Browsers drop tabs
    /// and line breaks and read `\` as `/` while parsing a URL, so such a value would take them
    /// somewhere other than where it seems to point: it is refused, not cleaned up.
    pub fn parse(raw: &str, public_origin: &str) -> Self {
        Self::same_origin(raw, public_origin).unwrap_or_else(|| Self(HOME.to_owned()))
    }

    fn same_origin(raw: &str, public_origin: &str) -> Option<Self> {
        if raw.chars().any(|c| c.is_ascii_control() || c == '\\') {
            return None;
        }
        let base = Url::parse(public_origin).ok()?;
        let target = base.join(raw).ok()?;
        if target.origin() != base.origin() {
            return None;
        }
        let mut local = target.path().to_owned();
        // A path that starts with `//` is another host to the browser (`/.//evil.example`
        // resolves to such a path).
        if !local.starts_with('/') || local.starts_with("//") {
            return None;
        }
        if let Some(query) = target.query() {
            local.push('?');
            local.push_str(query);
        }
        // The parser percent-encodes everything a header cannot hold; checked all the same,
        // because a failure here would otherwise surface as a panic in the redirect.
        HeaderValue::from_str(&local).ok()?;
        Some(Self(local))
    }

    /// The path and query, e.g. `/t/…/runs?status=failed`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path and query as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::LocalPath;

    const ORIGIN: &str = "http://127.0.0.1:3000";

    fn local(raw: &str) -> String {
        LocalPath::parse(raw, ORIGIN).into_string()
    }

    #[test]
    fn local_pages_keep_path_and_query() {
        assert_eq!(local("/t/x/runs?status=failed"), "/t/x/runs?status=failed");
        assert_eq!(local("/a b?q=<x>"), "/a%20b?q=%3Cx%3E");
        assert_eq!(local("/t/x/../y/./z#frag"), "/t/y/z");
        assert_eq!(local("http://127.0.0.1:3000/x"), "/x");
    }

    #[test]
    fn other_origins_and_browser_rewrites_go_home() {
        for outside in [
            "",
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "/\t/evil.example",
            "/\r\n",
            "/.//evil.example",
            "/%2e//evil.example",
            "javascript:alert(1)",
            "http://127.0.0.1:3001/",
        ] {
            assert_eq!(local(outside), "/", "{outside:?}");
        }
    }

    #[test]
    fn an_unreadable_public_origin_sends_everyone_home() {
        assert_eq!(LocalPath::parse("/x", "not a url").into_string(), "/");
    }
}
