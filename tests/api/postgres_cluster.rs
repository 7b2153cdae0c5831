//! The throwaway PostgreSQL cluster the `api_pg` run stores its data in (support::postgres).

use crate::support::postgres;

#[test]
fn fresh_databases_are_distinct_and_answer() {
    let first = postgres::fresh_database_url();
    let second = postgres::fresh_database_url();
    assert_ne!(first, second);
    for url in [&first, &second] {
        assert!(url.starts_with("postgres://"), "{url}");
        assert_eq!(postgres::psql(url, "SELECT 1"), "1", "{url}");
    }
    let name = |url: &str| postgres::psql(url, "SELECT current_database()");
    assert_ne!(name(&first), name(&second));
    let listed = postgres::psql(
        &postgres::admin_url(),
        "SELECT datname FROM pg_database ORDER BY datname",
    );
    for url in [&first, &second] {
        assert!(listed.lines().any(|db| db == name(url)), "{listed}");
    }
}

#[test]
fn a_path_names_the_same_database_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let first = postgres::database_url_for(&a);
    assert_eq!(postgres::database_url_for(&a), first);
    assert_ne!(postgres::database_url_for(&b), first);
    assert_eq!(postgres::psql(&first, "SELECT 1"), "1");
}
