//! Limits on the shape of an operation that async-graphql does not set itself, checked in
//! [`super::prepare`], the one place every transport passes through, before anything runs:
//!
//! - the document's size and how deeply its brackets nest, read from the text **before the
//!   parser recurses** (a value literal nested a few thousand deep overflows its stack);
//! - how many fields and aliased fields it selects **with fragments expanded**: each
//!   fragment's count is computed once and multiplied by its spreads, so a document of a
//!   few hundred bytes that spreads fragments into millions of fields is refused in
//!   microseconds instead of being walked in full by validation and execution;
//! - text PostgreSQL cannot hold (U+0000), in variables and literals alike, so both
//!   databases take the same input;
//! - variables the library would only trip over while running (`variables.rs`).
//!
//! Depth and complexity are limited by the schema (`MAX_DEPTH`, `MAX_COMPLEXITY`).

use std::collections::HashMap;

use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Request, Value as ConstValue};

use crate::error::AppError;

/// The largest document accepted, in bytes (variables travel apart, within the body limit).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// How deeply `{`, `[` and `(` may nest in a document, strings and comments aside. A
/// selection is at most `MAX_DEPTH` deep anyway; a value literal (a payload) at most
/// `approvals::model::MAX_JSON_DEPTH`.
pub const MAX_NESTING: usize = 64;
/// How many selection sets (fields, spreads, inline fragments) the walk that expands
/// fragments may descend through; async-graphql refuses past `MAX_RECURSIVE_DEPTH` anyway,
/// and the bound keeps our own walk off the end of the stack.
const MAX_WALK_DEPTH: usize = 2 * super::MAX_RECURSIVE_DEPTH;

/// The most aliases and fields an operation may have (`COUNTERSIGN_MAX_ALIASES`,
/// `COUNTERSIGN_MAX_FIELDS`), fragments expanded.
pub struct Limits {
    pub max_aliases: usize,
    pub max_fields: usize,
}

impl Limits {
    /// Checks the text, parses it (once: the executor reuses the parsed document) and
    /// refuses it, as QUERY_REJECTED, when it has more aliases or fields than allowed; text
    /// with U+0000 is BAD_USER_INPUT. A syntax error comes back as async-graphql reports
    /// it.
    pub fn check(&self, request: &mut Request) -> Result<(), async_graphql::ServerError> {
        check_text(&request.query).map_err(refuse)?;
        let document = async_graphql::parser::parse_query(&request.query)
            .map_err(async_graphql::ServerError::from)?;
        self.check_parsed(request, &document)?;
        request.set_parsed_query(document);
        Ok(())
    }

    fn check_parsed(
        &self,
        request: &Request,
        document: &ExecutableDocument,
    ) -> Result<(), async_graphql::ServerError> {
        let counts = Counts::of(document).map_err(refuse)?;
        if counts.aliases > self.max_aliases {
            return Err(refuse(format!(
                "the operation has {} aliased fields, fragments expanded; at most {} are allowed",
                counts.aliases, self.max_aliases
            )));
        }
        if counts.fields > self.max_fields {
            return Err(refuse(format!(
                "the operation selects {} fields, fragments expanded; at most {} are allowed",
                counts.fields, self.max_fields
            )));
        }
        if let Some(field) = nul_in_literals(document) {
            return Err(nul(&field));
        }
        for (name, value) in request.variables.iter() {
            if has_nul(value) {
                return Err(nul(name));
            }
        }
        super::variables::check(request, document).map_err(|err| err.to_server_error())
    }
}

fn refuse(message: String) -> async_graphql::ServerError {
    AppError::QueryRejected(message).to_server_error()
}

fn nul(field: &str) -> async_graphql::ServerError {
    AppError::bad_input(field, "text may not contain the NUL character (U+0000)").to_server_error()
}

/// The size, and the nesting of brackets outside strings and comments, without parsing.
fn check_text(query: &str) -> Result<(), String> {
    if query.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "the document is {} bytes; at most {MAX_DOCUMENT_BYTES} are allowed",
            query.len()
        ));
    }
    let bytes = query.as_bytes();
    let (mut depth, mut at) = (0usize, 0usize);
    while at < bytes.len() {
        match bytes[at] {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!(
                        "the document nests brackets more than {MAX_NESTING} deep"
                    ));
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' && bytes[at] != b'\r' {
                    at += 1;
                }
            }
            b'"' if bytes[at..].starts_with(b"\"\"\"") => {
                at += 3;
                // A block string ends at the next `"""` not escaped as `\"""`.
                while at < bytes.len() && !bytes[at..].starts_with(b"\"\"\"") {
                    at += if bytes[at..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                at += 2;
            }
            b'"' => {
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' && bytes[at] != b'\n' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

/// Fields as they would run: every operation's selection with each spread replaced by its
/// fragment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    fields: usize,
    aliases: usize,
}

impl Counts {
    fn of(document: &ExecutableDocument) -> Result<Self, String> {
        let mut walk = Walk {
            fragments: &document.fragments,
            known: HashMap::new(),
        };
        let mut counts = Self::default();
        for (_, operation) in document.operations.iter() {
            counts = counts.plus(walk.set(&operation.node.selection_set.node, 0)?);
        }
        Ok(counts)
    }

    fn plus(self, other: Self) -> Self {
        Self {
            fields: self.fields.saturating_add(other.fields),
            aliases: self.aliases.saturating_add(other.aliases),
        }
    }
}

struct Walk<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    /// Each fragment's expanded counts, once known; `None` while it is being counted, so a
    /// spread that reaches it again is a cycle.
    known: HashMap<&'a str, Option<Counts>>,
}

impl<'a> Walk<'a> {
    fn set(&mut self, set: &'a SelectionSet, depth: usize) -> Result<Counts, String> {
        if depth > MAX_WALK_DEPTH {
            return Err(format!(
                "the operation nests selections more than {MAX_WALK_DEPTH} deep"
            ));
        }
        let mut counts = Counts::default();
        for item in &set.items {
            let inner = match &item.node {
                Selection::Field(field) => {
                    let own = Counts {
                        fields: 1,
                        aliases: usize::from(field.node.alias.is_some()),
                    };
                    own.plus(self.set(&field.node.selection_set.node, depth + 1)?)
                }
                Selection::InlineFragment(fragment) => {
                    self.set(&fragment.node.selection_set.node, depth + 1)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str(), depth + 1)?
                }
            };
            counts = counts.plus(inner);
        }
        Ok(counts)
    }

    fn fragment(&mut self, name: &'a str, depth: usize) -> Result<Counts, String> {
        match self.known.get(name) {
            Some(Some(counts)) => return Ok(*counts),
            Some(None) => return Err(format!("fragment {name} spreads itself")),
            None => {}
        }
        // An unknown fragment selects nothing here; validation says it is unknown.
        let Some(fragment) = self.fragments.get(name) else {
            return Ok(Counts::default());
        };
        self.known.insert(name, None);
        let counts = self.set(&fragment.node.selection_set.node, depth)?;
        self.known.insert(name, Some(counts));
        Ok(counts)
    }
}

/// The argument (or variable default) whose literal holds U+0000, if any.
fn nul_in_literals(document: &ExecutableDocument) -> Option<String> {
    let mut sets: Vec<&SelectionSet> = Vec::new();
    for (_, operation) in document.operations.iter() {
        for variable in &operation.node.variable_definitions {
            if let Some(default) = &variable.node.default_value {
                if has_nul(&default.node) {
                    return Some(variable.node.name.node.to_string());
                }
            }
        }
        sets.push(&operation.node.selection_set.node);
    }
    sets.extend(
        document
            .fragments
            .values()
            .map(|fragment| &fragment.node.selection_set.node),
    );
    // Each selection set as written, once: literals are not multiplied by spreads.
    while let Some(set) = sets.pop() {
        for item in &set.items {
            let (directives, inner) = match &item.node {
                Selection::Field(field) => {
                    for (name, value) in &field.node.arguments {
                        if literal_has_nul(&value.node) {
                            return Some(name.node.to_string());
                        }
                    }
                    (&field.node.directives, Some(&field.node.selection_set.node))
                }
                Selection::InlineFragment(fragment) => (
                    &fragment.node.directives,
                    Some(&fragment.node.selection_set.node),
                ),
                Selection::FragmentSpread(spread) => (&spread.node.directives, None),
            };
            for directive in directives {
                for (name, value) in &directive.node.arguments {
                    if literal_has_nul(&value.node) {
                        return Some(name.node.to_string());
                    }
                }
            }
            sets.extend(inner);
        }
    }
    None
}

/// A literal as written, its variables read as null (their values are checked apart).
fn literal_has_nul(value: &async_graphql_value::Value) -> bool {
    let literal = value
        .clone()
        .into_const_with(|_| Ok::<_, std::convert::Infallible>(ConstValue::Null));
    literal.is_ok_and(|literal| has_nul(&literal))
}

/// Whether a string (or an object's key) anywhere in the value holds U+0000.
fn has_nul(value: &ConstValue) -> bool {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            ConstValue::String(text) if text.contains('\0') => return true,
            ConstValue::List(items) => pending.extend(items),
            ConstValue::Object(map) => {
                if map.keys().any(|key| key.contains('\0')) {
                    return true;
                }
                pending.extend(map.values());
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(query: &str) -> Result<Counts, String> {
        Counts::of(&async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn counts_fields_and_aliases_with_fragments_expanded() {
        assert_eq!(
            counts(
                "query { a: viewer { subject } b: viewer { ...F } } fragment F on Viewer { roles c: subject }"
            ),
            Ok(Counts {
                fields: 5,
                aliases: 3
            })
        );
    }

    #[test]
    fn spreads_multiply_and_each_fragment_is_counted_once() {
        // 10 spreads of 10 spreads of 10 spreads of one field: a thousand fields.
        let mut query = String::from("{ ...A }");
        for (name, next) in [("A", "B"), ("B", "C"), ("C", "D")] {
            let spreads = format!("...{next} ").repeat(10);
            query += &format!(" fragment {name} on Query {{ {spreads} }}");
        }
        query += " fragment D on Query { __typename }";
        assert_eq!(counts(&query).map(|c| c.fields), Ok(1000));
    }

    #[test]
    fn a_fragment_cycle_is_refused() {
        assert!(
            counts("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }").is_err()
        );
    }

    #[test]
    fn nesting_is_read_outside_strings_and_comments() {
        let deep = format!("{{ f(a: {}1{}) }}", "[".repeat(100), "]".repeat(100));
        assert!(check_text(&deep).is_err());
        let quoted = format!(
            "{{ f(a: \"{}\", b: \"\"\"{}\\\"\"\"\"\"\") }} # {}",
            "[".repeat(100),
            "{".repeat(100),
            "(".repeat(100)
        );
        assert_eq!(check_text(&quoted), Ok(()));
        assert!(check_text(&"#".repeat(MAX_DOCUMENT_BYTES + 1)).is_err());
    }

    #[test]
    fn nul_is_found_in_literals_at_any_depth() {
        let document =
            async_graphql::parser::parse_query(r#"{ f(input: { a: [{ b: "x\u0000" }] }) }"#)
                .unwrap();
        assert_eq!(nul_in_literals(&document).as_deref(), Some("input"));
        let clean = async_graphql::parser::parse_query(r#"{ f(input: "x") }"#).unwrap();
        assert_eq!(nul_in_literals(&clean), None);
    }
}
