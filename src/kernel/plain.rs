//! The fast path for fields whose values are already in memory.
//!
//! async-graphql resolves every field as its own boxed future, polled in a
//! `FuturesUnordered` per object, and merges the answers one by one: about 1 µs a field,
//! which on a page of 50 requests (some 2,000 fields) was half the server's CPU. A type
//! that implements [`Plain`] answers the fields it can straight from rows it holds, in one
//! synchronous walk of the selection (aliases, fragments, `__typename`, repeated fields
//! merged), and hands the rest to its derived resolvers ([`resolve`]). The schema comes
//! from the derived type as before, so the fast path changes no type, field or error.
//!
//! `@skip` and `@include` need nothing here: async-graphql removes skipped selections
//! before execution starts. No field of such an object runs an extension hook, the ones
//! handed to the derived resolvers included (they are called directly), so the `Tracing`
//! extension (on only when traces are exported) shows no span for them; their SQL still
//! shows beneath the operation.

use std::collections::HashSet;
use std::future::Future;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::{
    Context, ContextSelectionSet, Name, Positioned, ServerError, ServerResult, Value,
};

use crate::error::AppError;

/// A field's answer from memory: `None` when this type cannot give it here (the data is
/// not loaded, or the field needs I/O), and the derived resolver must.
pub type Answer = Option<Result<Value, AppError>>;

/// An object that answers some of its fields from memory. `E` is what the rows around it
/// were loaded into (a page's related rows, for example).
pub trait Plain<E>: Send + Sync {
    /// The object's name in the schema (what `__typename` says).
    const TYPE_NAME: &'static str;

    /// The value of the field `ctx.item`, whose own selection (for an object or a list of
    /// them) is `ctx.item.node.selection_set`: build it with [`object`] or [`list`].
    fn field(&self, env: &E, ctx: &Context<'_>, errors: &mut Errors) -> Answer;
}

/// Errors met on the way, kept until the walk knows it will not fall back (so that a
/// field resolved again the slow way does not report its errors twice).
#[derive(Default)]
pub struct Errors(Vec<ServerError>);

/// An object answered from memory, or `None` if any of its selected fields cannot be.
pub fn object<E, T: Plain<E>>(
    env: &E,
    item: &T,
    ctx: &Context<'_>,
    errors: &mut Errors,
) -> Option<Value> {
    let selection = ctx.with_selection_set(&ctx.item.node.selection_set);
    walk(env, item, &selection, errors)
}

/// A list of objects answered from memory, or `None` if any of them cannot be.
pub fn list<'i, E, T: Plain<E> + 'i>(
    env: &E,
    items: impl IntoIterator<Item = &'i T>,
    ctx: &Context<'_>,
    errors: &mut Errors,
) -> Option<Value> {
    let selection = ctx.with_selection_set(&ctx.item.node.selection_set);
    let mut values = Vec::new();
    for (idx, item) in items.into_iter().enumerate() {
        values.push(walk(env, item, &selection.with_index(idx), errors)?);
    }
    Some(Value::List(values))
}

/// A scalar or enum field's value, as its output type writes it.
pub fn scalar<T: async_graphql::InputType>(value: &T) -> Answer {
    Some(Ok(value.to_value()))
}

/// Resolves `item` for `ctx`: the fields [`Plain`] answers from memory, the others through
/// `derived` (the type's `#[Object]` resolvers), concurrently as async-graphql would.
pub async fn resolve<E, T, D>(
    env: &E,
    item: &T,
    derived: &D,
    ctx: &ContextSelectionSet<'_>,
) -> ServerResult<Value>
where
    T: Plain<E>,
    D: async_graphql::ContainerType,
{
    let mut fields = Vec::new();
    collect(ctx, T::TYPE_NAME, &ctx.item.node, &mut fields)?;
    let mut results: IndexMap<Name, Value> = IndexMap::with_capacity(fields.len());
    let mut errors = Errors::default();
    let mut slow = Vec::new();
    // Keys whose place is held for a slow answer (a real null is never taken for one).
    let mut waiting: HashSet<Name> = HashSet::new();
    for field in fields {
        let key = field.node.response_key().node.clone();
        if field.node.name.node == "__typename" {
            insert(&mut results, key, Value::String(T::TYPE_NAME.to_owned()));
            continue;
        }
        let field_ctx = ctx.with_field(field);
        let mark = errors.0.len();
        match answer(env, item, &field_ctx, &mut errors) {
            Some(Some(value)) => insert(&mut results, key, value),
            Some(None) => {}
            None => {
                errors.0.truncate(mark);
                if !results.contains_key(&key) {
                    // Keeps the selection's order: the slow answer takes this place.
                    results.insert(key.clone(), Value::Null);
                    waiting.insert(key.clone());
                }
                slow.push((key, field));
            }
        }
    }
    let answers = slow_fields(ctx, derived, &slow).await;
    for ((key, _), answer) in slow.into_iter().zip(answers) {
        let placeholder = waiting.remove(&key);
        match answer {
            Ok(value) if placeholder => {
                results.insert(key, value);
            }
            Ok(value) => insert(&mut results, key, value),
            Err(err) => {
                // As async-graphql does: a failed field is reported and left out.
                if placeholder {
                    results.shift_remove(&key);
                }
                ctx.add_error(err);
            }
        }
    }
    for err in errors.0 {
        ctx.add_error(err);
    }
    Ok(if results.is_empty() {
        Value::Null
    } else {
        Value::Object(results)
    })
}

fn slow_fields<'a, D: async_graphql::ContainerType>(
    ctx: &'a ContextSelectionSet<'a>,
    derived: &'a D,
    slow: &'a [(Name, &'a Positioned<Field>)],
) -> impl Future<Output = Vec<ServerResult<Value>>> + Send + 'a {
    futures_util::future::join_all(slow.iter().map(move |(_, field)| async move {
        let field_ctx = ctx.with_field(field);
        derived
            .resolve_field(&field_ctx)
            .await
            .map(Option::unwrap_or_default)
    }))
}

/// One field: `None` to fall back, `Some(None)` for an error already recorded.
fn answer<E, T: Plain<E>>(
    env: &E,
    item: &T,
    ctx: &Context<'_>,
    errors: &mut Errors,
) -> Option<Option<Value>> {
    match item.field(env, ctx, errors)? {
        Ok(value) => Some(Some(value)),
        Err(err) => {
            let err = async_graphql::Error::from(err).into_server_error(ctx.item.pos);
            errors.0.push(ctx.set_error_path(err));
            Some(None)
        }
    }
}

fn walk<E, T: Plain<E>>(
    env: &E,
    item: &T,
    ctx: &ContextSelectionSet<'_>,
    errors: &mut Errors,
) -> Option<Value> {
    let mut fields = Vec::new();
    if let Err(err) = collect(ctx, T::TYPE_NAME, &ctx.item.node, &mut fields) {
        errors.0.push(err);
        return Some(Value::Null);
    }
    let mut results = IndexMap::with_capacity(fields.len());
    for field in fields {
        let key = field.node.response_key().node.clone();
        if field.node.name.node == "__typename" {
            insert(&mut results, key, Value::String(T::TYPE_NAME.to_owned()));
            continue;
        }
        if let Some(value) = answer(env, item, &ctx.with_field(field), errors)? {
            insert(&mut results, key, value);
        }
    }
    Some(if results.is_empty() {
        Value::Null
    } else {
        Value::Object(results)
    })
}

/// The fields a selection asks of an object named `type_name`, fragments expanded.
fn collect<'a>(
    ctx: &ContextSelectionSet<'a>,
    type_name: &str,
    set: &'a SelectionSet,
    out: &mut Vec<&'a Positioned<Field>>,
) -> ServerResult<()> {
    for selection in &set.items {
        let (condition, inner) = match &selection.node {
            Selection::Field(field) => {
                out.push(field);
                continue;
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                let Some(fragment) = ctx.query_env.fragments.get(name) else {
                    return Err(ServerError::new(
                        format!(r#"Unknown fragment "{name}"."#),
                        Some(spread.pos),
                    ));
                };
                (
                    Some(fragment.node.type_condition.node.on.node.as_str()),
                    &fragment.node.selection_set,
                )
            }
            Selection::InlineFragment(fragment) => (
                fragment
                    .node
                    .type_condition
                    .as_ref()
                    .map(|c| c.node.on.node.as_str()),
                &fragment.node.selection_set,
            ),
        };
        let applies = condition.is_none_or(|condition| {
            condition == type_name
                || ctx
                    .schema_env
                    .registry
                    .implements
                    .get(type_name)
                    .is_some_and(|interfaces| interfaces.contains(condition))
        });
        if applies {
            collect(ctx, type_name, &inner.node, out)?;
        }
    }
    Ok(())
}

/// Adds a field's value; a response key asked twice merges its objects (GraphQL's field
/// merging), as async-graphql does.
fn insert(target: &mut IndexMap<Name, Value>, key: Name, value: Value) {
    match (target.get_mut(&key), value) {
        (Some(Value::Object(into)), Value::Object(from)) => {
            for (k, v) in from {
                insert(into, k, v);
            }
        }
        (Some(Value::List(into)), Value::List(from)) => {
            for (into, from) in into.iter_mut().zip(from) {
                if let (Value::Object(into), Value::Object(from)) = (into, from) {
                    for (k, v) in from {
                        insert(into, k, v);
                    }
                }
            }
        }
        (Some(_), _) => {}
        (None, value) => {
            target.insert(key, value);
        }
    }
}
