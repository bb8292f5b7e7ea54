//! Limits on the shape of an operation that async-graphql does not set itself: how many
//! aliased fields and how many fields in all. Aliases are how one expensive field is asked
//! for hundreds of times in one request; depth and complexity are limited by the schema
//! (`MAX_DEPTH`, `MAX_COMPLEXITY`).

use async_graphql::Request;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

use crate::error::AppError;

/// The most aliases and fields an operation may have (`COUNTERSIGN_MAX_ALIASES`,
/// `COUNTERSIGN_MAX_FIELDS`).
pub struct Limits {
    pub max_aliases: usize,
    pub max_fields: usize,
}

impl Limits {
    /// Parses the operation (once: the executor reuses the parsed document) and refuses
    /// it, as QUERY_REJECTED, when it has more aliases or fields than allowed. A syntax
    /// error comes back as async-graphql reports it.
    pub fn check(&self, request: &mut Request) -> Result<(), async_graphql::ServerError> {
        let counts = Counts::of(request.parsed_query()?);
        if counts.aliases > self.max_aliases {
            return Err(refuse(format!(
                "the operation has {} aliased fields; at most {} are allowed",
                counts.aliases, self.max_aliases
            )));
        }
        if counts.fields > self.max_fields {
            return Err(refuse(format!(
                "the operation selects {} fields; at most {} are allowed",
                counts.fields, self.max_fields
            )));
        }
        Ok(())
    }
}

fn refuse(message: String) -> async_graphql::ServerError {
    AppError::QueryRejected(message).to_server_error()
}

/// Fields as written: each operation and each fragment definition once.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    fields: usize,
    aliases: usize,
}

impl Counts {
    fn of(document: &ExecutableDocument) -> Self {
        let mut counts = Self::default();
        for (_, operation) in document.operations.iter() {
            counts.add(&operation.node.selection_set.node);
        }
        for fragment in document.fragments.values() {
            counts.add(&fragment.node.selection_set.node);
        }
        counts
    }

    fn add(&mut self, set: &SelectionSet) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    self.fields += 1;
                    if field.node.alias.is_some() {
                        self.aliases += 1;
                    }
                    self.add(&field.node.selection_set.node);
                }
                Selection::InlineFragment(fragment) => {
                    self.add(&fragment.node.selection_set.node);
                }
                Selection::FragmentSpread(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fields_and_aliases_in_operations_and_fragments() {
        let document = async_graphql::parser::parse_query(
            "query { a: viewer { subject } b: viewer { ...F } } fragment F on Viewer { roles c: subject }",
        )
        .unwrap();
        assert_eq!(
            Counts::of(&document),
            Counts {
                fields: 5,
                aliases: 3
            }
        );
    }
}
