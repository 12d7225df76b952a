//! Timestamps are stored as UTC milliseconds since the Unix epoch in both databases, so the
//! same SQL sorts and compares them and the browser formats them without a time-zone database.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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
    /// `2026-11-26 16:57 UTC`; an out-of-range value prints as its raw number. Written by hand
    /// rather than with `time`'s format descriptions, whose formatter would add its weight to
    /// the browser bundle's main module (the shell shows timestamps); the same text, which a
    /// property test checks against them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
        else {
            return write!(f, "{} ms", self.0);
        };
        // Four digits, with a sign only before a negative year, as `[year]` writes it.
        let year = t.year();
        let width = if year < 0 { 5 } else { 4 };
        write!(
            f,
            "{year:0width$}-{:02}-{:02} {:02}:{:02} UTC",
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        )
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

    /// What `time`'s format description writes for the same instant.
    fn by_time(millis: i64) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute] UTC"
                ))
                .ok()
            })
            .unwrap_or_else(|| format!("{millis} ms"))
    }

    #[test]
    fn the_edges_of_the_range_read_as_time_writes_them() {
        // The first and last instants `time` represents, and one past each; year 0 and -1.
        for millis in [
            -377_705_116_800_000,
            -377_705_116_800_001,
            253_402_300_799_999,
            253_402_300_800_000,
            -62_167_219_200_000,
            -62_167_219_200_001,
            -1,
            0,
        ] {
            assert_eq!(Timestamp(millis).to_string(), by_time(millis), "{millis}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_instant_reads_as_time_writes_it(millis in proptest::num::i64::ANY) {
            proptest::prop_assert_eq!(Timestamp(millis).to_string(), by_time(millis));
        }

        #[test]
        fn any_instant_in_range_reads_as_time_writes_it(
            millis in -377_705_116_800_000i64..=253_402_300_799_999
        ) {
            proptest::prop_assert_eq!(Timestamp(millis).to_string(), by_time(millis));
        }
    }
}
