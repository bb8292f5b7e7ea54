//! Limits on the shape of an operation that async-graphql does not set itself: how many
//! aliased fields and how many fields in all. Aliases are how one expensive field is asked
//! for hundreds of times in one request; depth and complexity are limited by the schema
//! (`MAX_DEPTH`, `MAX_COMPLEXITY`).

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerResult, Variables};

use crate::error::AppError;

/// Refuses an operation with more aliases or fields than configured, as QUERY_REJECTED,
/// before it is validated or run.
pub struct OperationLimits {
    pub max_aliases: usize,
    pub max_fields: usize,
}

impl ExtensionFactory for OperationLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationLimits {
            max_aliases: self.max_aliases,
            max_fields: self.max_fields,
        })
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for OperationLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let counts = Counts::of(&document);
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
        Ok(document)
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
