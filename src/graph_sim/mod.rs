//! Graph simulator (issue 4).
