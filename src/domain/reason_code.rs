//! Stable reason codes (issue 4).
