//! Notifications: what the bell in the header shows. The worker writes one for the initiator
//! of every run that ends; the DTOs here carry them to the browser.

use super::spelled::spelled_enum;
use serde::{Deserialize, Serialize};

use super::Timestamp;

spelled_enum! {
    /// How a notification is styled and announced. Stored as its snake_case spelling.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum NotificationLevel {
        Info => ("info", "Info"),
        Success => ("success", "Success"),
        Warning => ("warning", "Warning"),
        Error => ("error", "Error"),
    }
}

/// A link inside this app (`/t/…/runs/42`): a path on our own origin, never a URL elsewhere
/// nor a `javascript:` one, so a notification's link is always safe to put in an `href`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InternalLink(String);

impl InternalLink {
    /// Accepts an absolute path on this origin (`/…`, not `//host/…`).
    pub fn parse(raw: &str) -> Option<Self> {
        let is_path = raw.starts_with('/')
            && !raw.starts_with("//")
            && !raw.contains('\\')
            && !raw.chars().any(char::is_control);
        is_path.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InternalLink {
    type Error = &'static str;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw).ok_or("not a path inside the app")
    }
}

impl From<InternalLink> for String {
    fn from(link: InternalLink) -> Self {
        link.0
    }
}

/// One notification of the signed-in user in the current tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub level: NotificationLevel,
    pub title: String,
    pub body: String,
    /// Where **View run** leads (the run of a run notification).
    pub link: Option<InternalLink>,
    pub read_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl Notification {
    pub fn is_unread(&self) -> bool {
        self.read_at.is_none()
    }
}

/// What the bell shows: the newest notifications and how many of all are unread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationList {
    /// Newest first, at most a page of them.
    pub items: Vec<Notification>,
    /// Unread notifications in the tenant, including any older than `items`.
    pub unread: i64,
    /// The server's clock when the list was read: ages are measured from it, so the server
    /// render and the browser agree on "5 min ago".
    pub as_of: Timestamp,
}

/// How long ago `then` was, seen from `now`: "just now", "5 min ago", "3 h ago", "2 d ago".
pub fn age(then: Timestamp, now: Timestamp) -> String {
    let seconds = (now.millis() - then.millis()).max(0) / 1000;
    match seconds {
        0..=59 => "just now".to_owned(),
        60..=3_599 => format!("{} min ago", seconds / 60),
        3_600..=86_399 => format!("{} h ago", seconds / 3_600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_spelling_round_trips() {
        for level in NotificationLevel::ALL {
            assert_eq!(NotificationLevel::parse(level.as_str()), Some(level));
        }
        assert_eq!(NotificationLevel::parse("fatal"), None);
        assert_eq!(
            serde_json::to_string(&NotificationLevel::Warning).unwrap(),
            "\"warning\""
        );
    }

    #[test]
    fn only_paths_on_this_origin_are_links() {
        assert!(InternalLink::parse("/t/abc/runs/4").is_some());
        for bad in [
            "",
            "runs/4",
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/t/\nx",
        ] {
            assert_eq!(InternalLink::parse(bad), None, "{bad:?}");
        }
        assert!(serde_json::from_str::<InternalLink>("\"javascript:alert(1)\"").is_err());
        assert_eq!(
            serde_json::to_string(&InternalLink::parse("/t/a").unwrap()).unwrap(),
            "\"/t/a\""
        );
    }

    #[test]
    fn ages_read_naturally() {
        let now = Timestamp(10_000_000_000);
        let ago = |seconds: i64| age(Timestamp(now.millis() - seconds * 1000), now);
        assert_eq!(ago(0), "just now");
        assert_eq!(ago(59), "just now");
        assert_eq!(ago(60), "1 min ago");
        assert_eq!(ago(3_599), "59 min ago");
        assert_eq!(ago(7_200), "2 h ago");
        assert_eq!(ago(3 * 86_400), "3 d ago");
        // A clock a little ahead of the server's never shows a negative age.
        assert_eq!(ago(-30), "just now");
    }
}
