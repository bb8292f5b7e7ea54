//! The published contract: `schema.graphql` is exactly what `countersign schema` prints.

plain_tests!(schema_graphql_matches_the_code);

async fn schema_graphql_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    let generated = countersign::graphql::sdl();
    assert!(
        checked_in == generated,
        "schema.graphql is out of date with the code. Regenerate it with\n\n    \
         cargo run -- schema > schema.graphql\n\nand review the diff: it is the API contract."
    );
}
