//! Variables checked against the operation's declarations before it runs.
//!
//! async-graphql validates most variable values, but two mistakes reach execution, where
//! the argument fails to parse and the error, raised while running and without a code,
//! would be answered INTERNAL (found by the `graphql` fuzz target): a non-null variable
//! that was not sent, and a value that is not an object where an input object is declared
//! (`"input": "x"`), at any depth. Both are the caller's mistake: BAD_USER_INPUT, named.

use std::collections::HashMap;
use std::sync::LazyLock;

use async_graphql::parser::types::{BaseType, ExecutableDocument, Type};
use async_graphql::registry::{MetaType, Registry};
use async_graphql::{OutputType, Request, SubscriptionType, Value};

use super::{Mutation, Query, Subscription};
use crate::error::AppError;

/// Every input object of the schema with its fields' declared types (`"[StageInput!]!"`).
static INPUT_OBJECTS: LazyLock<HashMap<String, Vec<(String, String)>>> = LazyLock::new(|| {
    let mut registry = Registry::default();
    Query::create_type_info(&mut registry);
    Mutation::create_type_info(&mut registry);
    Subscription::create_type_info(&mut registry);
    registry
        .types
        .into_values()
        .filter_map(|ty| match ty {
            MetaType::InputObject {
                name, input_fields, ..
            } => Some((
                name,
                input_fields
                    .into_values()
                    .map(|field| (field.name, field.ty))
                    .collect(),
            )),
            _ => None,
        })
        .collect()
});

/// BAD_USER_INPUT for a required variable left out, or a non-object where an input object
/// belongs, in the operation that will run.
pub fn check(request: &Request, document: &ExecutableDocument) -> Result<(), AppError> {
    let operation = match &request.operation_name {
        Some(name) => document
            .operations
            .iter()
            .find(|(n, _)| n.map(|n| n.as_str()) == Some(name.as_str())),
        None => document.operations.iter().next(),
    };
    let Some((_, operation)) = operation else {
        return Ok(());
    };
    for definition in &operation.node.variable_definitions {
        let definition = &definition.node;
        let name = definition.name.node.as_str();
        match request.variables.get(&definition.name.node) {
            None | Some(Value::Null)
                if !definition.var_type.node.nullable && definition.default_value.is_none() =>
            {
                return Err(AppError::bad_input(
                    name,
                    format!("the variable ${name} is required"),
                ));
            }
            Some(value) => {
                if let Some(at) = misshapen(&definition.var_type.node, value, name) {
                    return Err(AppError::bad_input(&at, format!("{at} must be an object")));
                }
            }
            None => {}
        }
    }
    Ok(())
}

/// Where in `value` an input object was given something other than an object.
fn misshapen(ty: &Type, value: &Value, at: &str) -> Option<String> {
    match (&ty.base, value) {
        (_, Value::Null) => None,
        (BaseType::List(item), Value::List(items)) => items
            .iter()
            .enumerate()
            .find_map(|(i, item_value)| misshapen(item, item_value, &format!("{at}.{i}"))),
        // A single value where a list is declared is read as a list of one.
        (BaseType::List(item), _) => misshapen(item, value, at),
        (BaseType::Named(name), _) => named(name.as_str(), value, at),
    }
}

fn named(name: &str, value: &Value, at: &str) -> Option<String> {
    let fields = INPUT_OBJECTS.get(name)?;
    let Value::Object(map) = value else {
        return Some(at.to_owned());
    };
    fields.iter().find_map(|(field, declared)| {
        let given = map.get(field.as_str())?;
        let ty = Type::new(declared)?;
        misshapen(&ty, given, &format!("{at}.{field}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_query(query: &str, variables: serde_json::Value) -> Result<(), AppError> {
        let request = Request::new(query).variables(async_graphql::Variables::from_json(variables));
        let document = async_graphql::parser::parse_query(query).unwrap();
        check(&request, &document)
    }

    const SUBMIT: &str =
        "mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { replayed } }";

    #[test]
    fn a_required_variable_left_out_is_bad_input() {
        let missing = check_query(SUBMIT, serde_json::json!({}));
        assert!(matches!(missing, Err(AppError::BadUserInput { .. })));
        let optional = "query($n: Int) { requests(first: $n) { edges { node { id } } } }";
        assert!(check_query(optional, serde_json::json!({})).is_ok());
    }

    #[test]
    fn an_input_object_must_be_an_object_at_any_depth() {
        assert!(check_query(SUBMIT, serde_json::json!({ "input": "x" })).is_err());
        let upsert = "mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { key } } }";
        let stages = serde_json::json!({ "input": { "key": "k", "stages": ["x"] } });
        assert!(check_query(upsert, stages).is_err());
        let fine = serde_json::json!({ "input": { "key": "k", "stages": [{ "name": "n" }] } });
        assert!(check_query(upsert, fine).is_ok());
    }
}
