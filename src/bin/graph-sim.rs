//! Graph simulator binary (issue 4).
fn main() {}
