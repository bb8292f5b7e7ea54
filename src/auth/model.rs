//! The token claims Countersign reads: pure data, no I/O. The identity they establish
//! (`Viewer`, `Identity`) lives in `kernel::identity`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Clock skew tolerated on `exp`, `nbf` and `iat`. Kept small: a generous leeway extends
/// every token's life, revoked or not.
pub const LEEWAY_SECONDS: u64 = 30;
/// The same leeway, for comparing instants (`users::standing`).
pub const LEEWAY: chrono::TimeDelta = chrono::TimeDelta::seconds(LEEWAY_SECONDS as i64);

/// The claims Countersign reads from a token. `iss` and `aud` are checked by the verifier
/// itself and are not needed afterwards.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Seconds since the epoch. A string here fails deserialisation: never coerce it.
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// A string or a list of strings (identity providers send either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Everything else, where the roles claim is looked up (its place is configured).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Why a token's roles claim cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub struct MalformedRoles;

impl Claims {
    /// The roles at `path` (a dotted claim path, split). A token without the claim has no
    /// roles; one whose claim is not a list of strings is refused rather than guessed at.
    pub fn roles_at(&self, path: &[String]) -> Result<Vec<String>, MalformedRoles> {
        // A claim whose own name has dots (Auth0's `https://example.com/roles`) is found
        // by its whole name first.
        if path.len() > 1 {
            if let Some(value) = self.other.get(&path.join(".")) {
                return roles_in(value);
            }
        }
        let Some((first, rest)) = path.split_first() else {
            return Ok(Vec::new());
        };
        let mut value = match self.other.get(first) {
            Some(value) => value,
            None => return Ok(Vec::new()),
        };
        for segment in rest {
            match value {
                Value::Object(map) => match map.get(segment) {
                    Some(inner) => value = inner,
                    None => return Ok(Vec::new()),
                },
                _ => return Err(MalformedRoles),
            }
        }
        roles_in(value)
    }
}

fn roles_in(value: &Value) -> Result<Vec<String>, MalformedRoles> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(MalformedRoles))
            .collect(),
        _ => Err(MalformedRoles),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(other: Value) -> Claims {
        let mut value = serde_json::json!({ "sub": "u", "exp": 1 });
        if let (Value::Object(map), Value::Object(extra)) = (&mut value, other) {
            map.extend(extra);
        }
        serde_json::from_value(value).expect("claims")
    }

    fn path(dotted: &str) -> Vec<String> {
        dotted.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn roles_are_read_from_a_nested_claim() {
        let c = claims(serde_json::json!({ "realm_access": { "roles": ["finance", "ops"] } }));
        assert_eq!(
            c.roles_at(&path("realm_access.roles")),
            Ok(vec!["finance".into(), "ops".into()])
        );
        assert_eq!(c.roles_at(&path("roles")), Ok(vec![]));
    }

    #[test]
    fn a_missing_claim_means_no_roles_and_a_malformed_one_is_refused() {
        let c =
            claims(serde_json::json!({ "groups": "finance", "roles": [1], "a": { "b": null } }));
        assert_eq!(c.roles_at(&path("realm_access.roles")), Ok(vec![]));
        assert_eq!(c.roles_at(&path("a.b")), Ok(vec![]));
        assert_eq!(c.roles_at(&path("groups")), Err(MalformedRoles));
        assert_eq!(c.roles_at(&path("roles")), Err(MalformedRoles));
        assert_eq!(c.roles_at(&path("groups.x")), Err(MalformedRoles));
    }

    #[test]
    fn a_claim_named_with_dots_is_found_by_its_whole_name() {
        let c = claims(serde_json::json!({ "https://example.com/roles": ["finance"] }));
        assert_eq!(
            c.roles_at(&path("https://example.com/roles")),
            Ok(vec!["finance".into()])
        );
    }

    #[test]
    fn an_audience_may_be_a_list() {
        let c = claims(serde_json::json!({ "aud": ["countersign", "other"] }));
        assert!(c.aud.is_some());
    }
}
