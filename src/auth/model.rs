//! The token claims Countersign reads: pure data, no I/O. The identity they establish
//! (`Viewer`, `Identity`) lives in `kernel::identity`.

use serde::{Deserialize, Serialize};

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}
