//! `sqlx::migrate!` embeds `migrations/` when the crate compiles, and cargo does not watch that
//! folder by itself: without this, a migration added or changed alone left a binary that lacked
//! it (and refused a database that had it).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
