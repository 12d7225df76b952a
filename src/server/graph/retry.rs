//! When and how long to wait before trying a Graph request again: throttling and transient
//! failures are retried with `Retry-After` or backoff, errors the caller made never are.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// Retry budget and delays. 429, 503 and 504, transport failures and a 200 whose body is not valid
/// JSON (a transfer cut short) are retried; 400, 401, 403 and 404 never are, because asking again
/// cannot change the answer.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff step when Graph gives no `Retry-After`.
    pub base_delay: Duration,
    /// Cap of the exponential backoff.
    pub max_delay: Duration,
    /// Cap of a `Retry-After` we honour, so one odd header cannot park a worker for hours.
    pub max_retry_after: Duration,
    /// First pause of the tenant after a 429 without `Retry-After`, doubled with each attempt
    /// and capped by `max_retry_after`. Intune counts its limits over 20-second windows
    /// (learn.microsoft.com/graph/throttling-limits), so the retries must span more than one:
    /// 4 + 8 + 16 + 32 s with the default five attempts, not a transient failure's half-second
    /// steps (which would all land in the window that throttled).
    pub throttled_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            throttled_delay: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// Whether an HTTP status is worth another attempt.
    pub fn is_retryable(status: StatusCode) -> bool {
        matches!(status.as_u16(), 429 | 503 | 504)
    }

    /// How long to wait after failed attempt number `attempt` (1-based): the server's
    /// `Retry-After` when it sent a positive one, else exponential backoff with jitter; both
    /// capped. A zero `Retry-After` (`0`, or a date already passed) counts as none: Microsoft
    /// asks clients to avoid immediate retries, and one would land in the window that refused.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match honoured(retry_after) {
            Some(wait) => wait.min(self.max_retry_after),
            None => self.backoff(attempt),
        }
    }

    /// How long the tenant pauses after failed attempt number `attempt` (1-based) was answered
    /// with `retry_after` (`throttled`: the answer was a 429), capped by
    /// [`Self::max_retry_after`]: a positive `Retry-After` as given; for a 429 without one, or
    /// with a zero one (`Retry-After: 0`, a date already passed), [`Self::throttled_pause`], so
    /// the retries still outlast Intune's window; any other answer without a positive
    /// `Retry-After` does not pause the tenant (the request backs off, as [`Self::delay`] says,
    /// so a 503 with `Retry-After: 0` is not retried at once either).
    pub fn tenant_pause(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        throttled: bool,
    ) -> Option<Duration> {
        match honoured(retry_after) {
            Some(wait) => Some(wait.min(self.max_retry_after)),
            None if throttled => Some(self.throttled_pause(attempt)),
            None => None,
        }
    }

    /// How long the tenant pauses after failed attempt number `attempt` (1-based) was answered
    /// 429 without a positive `Retry-After`: [`Self::throttled_delay`] doubled per attempt,
    /// capped.
    pub fn throttled_pause(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        self.throttled_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_retry_after)
    }

    /// "Equal jitter": half the exponential step is fixed, the other half random, so retries of
    /// many concurrent requests spread out but never come back immediately.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let step = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = step / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=jitter_ms)
        };
        half + Duration::from_millis(extra)
    }
}

/// A `Retry-After` worth honouring: a zero one is read as none.
fn honoured(retry_after: Option<Duration>) -> Option<Duration> {
    retry_after.filter(|wait| !wait.is_zero())
}

/// The longest `Retry-After` read, a day; [`RetryPolicy::max_retry_after`] caps what is honoured.
const MAX_RETRY_AFTER_READ: Duration = Duration::from_secs(86_400);

/// Reads `Retry-After` as whole seconds or as an HTTP date (the whole seconds left until it,
/// zero when under a second is left or it has passed); anything else is no value. HTTP's delay-seconds are digits only (RFC 9110,
/// 10.2.3): a fraction (`0.001`) or a sign is ignored rather than rounded, since honouring it
/// would send a throttled request again within milliseconds, in the window that refused it.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// [`retry_after`] as read at `now`.
fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits: a number too large for u64 is past the cap anyway.
        Duration::from_secs(raw.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(raw).ok()?;
        // A date has whole seconds but `now` does not: a date one second ahead read at .999
        // leaves a millisecond, which would send the request again inside the window that
        // refused it. Round down, so under a second is zero, which is no value.
        let left = at.duration_since(now).unwrap_or(Duration::ZERO);
        Duration::from_secs(left.as_secs())
    };
    Some(wait.min(MAX_RETRY_AFTER_READ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn only_throttling_and_gateway_answers_are_retried() {
        for code in [429, 503, 504] {
            assert!(RetryPolicy::is_retryable(
                StatusCode::from_u16(code).expect("status")
            ));
        }
        for code in [200, 400, 401, 403, 404, 500] {
            assert!(!RetryPolicy::is_retryable(
                StatusCode::from_u16(code).expect("status")
            ));
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let policy = RetryPolicy {
            max_retry_after: Duration::from_secs(10),
            ..Default::default()
        };
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(600))),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn a_zero_retry_after_is_no_retry_after() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(10),
            throttled_delay: Duration::from_secs(4),
            ..Default::default()
        };
        for attempt in 1..5 {
            // A 429: the throttled pause, whether the header is missing or zero.
            let pause = policy.throttled_pause(attempt);
            assert_eq!(policy.tenant_pause(attempt, None, true), Some(pause));
            assert_eq!(
                policy.tenant_pause(attempt, Some(Duration::ZERO), true),
                Some(pause)
            );
            assert_eq!(policy.delay(attempt, Some(pause)), pause);
            // A 503: no pause of the tenant, and a backoff instead of an immediate retry.
            assert_eq!(
                policy.tenant_pause(attempt, Some(Duration::ZERO), false),
                None
            );
            assert!(policy.delay(attempt, Some(Duration::ZERO)) >= Duration::from_millis(50));
        }
        // A positive Retry-After is honoured as given, capped, on either answer.
        for throttled in [true, false] {
            assert_eq!(
                policy.tenant_pause(1, Some(Duration::from_secs(2)), throttled),
                Some(Duration::from_secs(2))
            );
            assert_eq!(
                policy.tenant_pause(1, Some(Duration::from_secs(600)), throttled),
                Some(Duration::from_secs(10))
            );
        }
    }

    #[test]
    fn a_throttle_without_retry_after_spans_more_than_intunes_window() {
        let policy = RetryPolicy::default();
        let waited: Duration = (1..policy.max_attempts)
            .map(|attempt| policy.throttled_pause(attempt))
            .sum();
        assert!(waited > Duration::from_secs(20), "{waited:?}");
        for attempt in 1..64 {
            assert!(policy.throttled_pause(attempt) <= policy.max_retry_after);
        }
    }

    #[test]
    fn backoff_grows_and_stays_capped() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Default::default()
        };
        for attempt in 1..40 {
            let step = Duration::from_millis(100)
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(Duration::from_secs(1));
            let delay = policy.delay(attempt, None);
            assert!(
                delay >= step / 2 && delay <= step,
                "attempt {attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn retry_after_header_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("99999999999999999999999"),
        );
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER_READ));
    }

    #[test]
    fn a_sub_second_retry_after_is_no_retry_after() {
        // Delay-seconds are whole seconds: a fraction is no value, so a 429 carrying one waits
        // the throttled pause instead of coming back within a millisecond.
        let policy = RetryPolicy::default();
        let mut headers = HeaderMap::new();
        for raw in ["0.001", "0.5", "1.5", "+3", "1e3", " 2 s"] {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(raw));
            let read = retry_after(&headers);
            assert_eq!(read, None, "{raw:?}");
            assert_eq!(
                policy.tenant_pause(1, read, true),
                Some(policy.throttled_pause(1)),
                "{raw:?}"
            );
        }
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 3 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
    }

    #[test]
    fn retry_after_as_an_http_date_is_the_time_left_until_it() {
        // Wed, 21 Oct 2015 07:28:00 GMT
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let mut headers = HeaderMap::new();
        // The three forms HTTP allows: IMF-fixdate, RFC 850 and asctime.
        for date in [
            "Wed, 21 Oct 2015 07:28:30 GMT",
            "Wednesday, 21-Oct-15 07:28:30 GMT",
            "Wed Oct 21 07:28:30 2015",
        ] {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(date));
            assert_eq!(
                retry_after_at(&headers, now),
                Some(Duration::from_secs(30)),
                "{date}"
            );
        }
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:27:00 GMT"),
        );
        assert_eq!(
            retry_after_at(&headers, now),
            Some(Duration::ZERO),
            "passed"
        );
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Fri, 21 Oct 2016 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after_at(&headers, now),
            Some(MAX_RETRY_AFTER_READ),
            "a year away reads as the cap"
        );
    }

    #[test]
    fn an_http_date_less_than_a_second_away_is_no_retry_after() {
        // The date has whole seconds, `now` milliseconds: a date one second ahead read at .999
        // leaves 1 ms, which is rounded down to zero, so a 429 waits the throttled pause.
        let policy = RetryPolicy::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(999_999);
        let mut headers = HeaderMap::new();
        let date = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).expect("header"));
        let read = retry_after_at(&headers, now);
        assert_eq!(read, Some(Duration::ZERO), "{date}");
        assert_eq!(
            policy.tenant_pause(1, read, true),
            Some(policy.throttled_pause(1))
        );
        // A second and a half away is one whole second.
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(998_500);
        assert_eq!(retry_after_at(&headers, now), Some(Duration::from_secs(1)));
    }
}
