//! Timestamps are stored as UTC milliseconds since the Unix epoch in both databases, so the
//! same SQL sorts and compares them and the browser formats them without a time-zone database.

use serde::{Deserialize, Serialize};
use time::{macros::format_description, OffsetDateTime};

/// A UTC instant with millisecond precision; on the server also a column type (a `BIGINT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::Type), sqlx(transparent))]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time (server side; the browser never creates timestamps).
    #[cfg(feature = "ssr")]
    pub fn now() -> Self {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self((nanos / 1_000_000) as i64)
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for Timestamp {
    /// `2026-11-26 16:57 UTC`; an out-of-range value prints as its raw number.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let formatted = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(format_description!(
                    "[year]-[month]-[day] [hour]:[minute] UTC"
                ))
                .ok()
            });
        match formatted {
            Some(text) => f.write_str(&text),
            None => write!(f, "{} ms", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_minutes() {
        // 2026-11-26T16:57:25Z
        assert_eq!(
            Timestamp(1_795_712_245_000).to_string(),
            "2026-11-26 16:57 UTC"
        );
    }

    #[test]
    fn out_of_range_values_do_not_panic() {
        assert_eq!(Timestamp(i64::MAX).to_string(), format!("{} ms", i64::MAX));
    }
}
