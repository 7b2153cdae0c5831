//! `sqlx::migrate!` embeds `migrations/` at compile time; without this, adding or editing a
//! migration would not rebuild the crate and the binary would carry the old set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
