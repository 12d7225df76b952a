//! The one sanitizer for failure texts (issue 4).
