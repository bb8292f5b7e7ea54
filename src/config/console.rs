//! The console's sign-in through an OpenID Connect provider (`COUNTERSIGN_OIDC_*`): the
//! standard settings of a public client using the authorization code flow with PKCE.

use anyhow::bail;

use super::Environment;
use super::operations::Vars;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcConfig {
    /// The provider's issuer URL; its discovery document is
    /// `{issuer}/.well-known/openid-configuration` (`COUNTERSIGN_OIDC_ISSUER`).
    pub issuer: String,
    /// The console's client id at the provider (`COUNTERSIGN_OIDC_CLIENT_ID`).
    pub client_id: String,
    /// Where the provider sends the browser back (`COUNTERSIGN_OIDC_REDIRECT_URI`);
    /// unset means the console's own address, `https://host/`.
    pub redirect_uri: Option<String>,
    /// `COUNTERSIGN_OIDC_SCOPE`, default `openid profile email`.
    pub scope: String,
    /// The RFC 8707 resource to ask an access token for (`COUNTERSIGN_OIDC_RESOURCE`), so
    /// its `aud` is this API; unset leaves the audience to the provider's configuration.
    pub resource: Option<String>,
}

impl OidcConfig {
    /// `scheme://host[:port]` of the issuer: the console's pages may fetch from it (the
    /// discovery document, the token endpoint), and nothing else outside this server.
    pub fn issuer_origin(&self) -> String {
        let (scheme, rest) = match self.issuer.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, self.issuer.as_str()),
        };
        let host = rest.split('/').next().unwrap_or_default();
        match scheme {
            Some(scheme) => format!("{scheme}://{host}"),
            None => host.to_owned(),
        }
    }
}

pub const DEFAULT_OIDC_SCOPE: &str = "openid profile email";

pub(super) fn oidc(vars: &Vars, environment: Environment) -> anyhow::Result<Option<OidcConfig>> {
    let Some(issuer) = vars.get("COUNTERSIGN_OIDC_ISSUER") else {
        if vars.get("COUNTERSIGN_OIDC_CLIENT_ID").is_some() {
            bail!("COUNTERSIGN_OIDC_CLIENT_ID is set but COUNTERSIGN_OIDC_ISSUER is not");
        }
        return Ok(None);
    };
    let issuer = issuer.trim().trim_end_matches('/').to_owned();
    let secure = issuer.starts_with("https://");
    if !secure && !issuer.starts_with("http://") {
        bail!("COUNTERSIGN_OIDC_ISSUER must be an http(s) URL, not `{issuer}`");
    }
    if environment == Environment::Production && !secure {
        bail!("production needs an https COUNTERSIGN_OIDC_ISSUER");
    }
    // It goes into the console's Content-Security-Policy: plain ASCII URL characters only.
    let url_char = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&()*+=%".contains(c);
    if !issuer.chars().all(url_char) || issuer.contains(['\'', ';', ',']) {
        bail!(
            "COUNTERSIGN_OIDC_ISSUER must be an ASCII URL (punycode for international \
             names), not `{issuer}`"
        );
    }
    let Some(client_id) = vars.get("COUNTERSIGN_OIDC_CLIENT_ID") else {
        bail!("COUNTERSIGN_OIDC_ISSUER is set; COUNTERSIGN_OIDC_CLIENT_ID must be too");
    };
    Ok(Some(OidcConfig {
        issuer,
        client_id: client_id.trim().to_owned(),
        redirect_uri: vars
            .get("COUNTERSIGN_OIDC_REDIRECT_URI")
            .map(|u| u.trim().to_owned()),
        scope: vars
            .get("COUNTERSIGN_OIDC_SCOPE")
            .map_or_else(|| DEFAULT_OIDC_SCOPE.to_owned(), |s| s.trim().to_owned()),
        resource: vars
            .get("COUNTERSIGN_OIDC_RESOURCE")
            .map(|r| r.trim().to_owned()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        pairs: &[(&str, &str)],
        environment: Environment,
    ) -> anyhow::Result<Option<OidcConfig>> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let var = move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        oidc(&Vars(&var), environment)
    }

    #[test]
    fn an_issuer_needs_a_client_and_production_needs_https() {
        assert_eq!(read(&[], Environment::Production).unwrap(), None);
        let config = read(
            &[
                (
                    "COUNTERSIGN_OIDC_ISSUER",
                    "https://id.example.com/realms/ops/",
                ),
                ("COUNTERSIGN_OIDC_CLIENT_ID", "console"),
            ],
            Environment::Production,
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.issuer, "https://id.example.com/realms/ops");
        assert_eq!(config.issuer_origin(), "https://id.example.com");
        assert_eq!(config.scope, DEFAULT_OIDC_SCOPE);
        assert!(
            read(
                &[("COUNTERSIGN_OIDC_ISSUER", "https://id.example.com")],
                Environment::Development
            )
            .is_err()
        );
        assert!(
            read(
                &[("COUNTERSIGN_OIDC_CLIENT_ID", "console")],
                Environment::Development
            )
            .is_err()
        );
        let plain = [
            ("COUNTERSIGN_OIDC_ISSUER", "http://127.0.0.1:9000"),
            ("COUNTERSIGN_OIDC_CLIENT_ID", "c"),
        ];
        assert!(read(&plain, Environment::Production).is_err());
        assert_eq!(
            read(&plain, Environment::Development)
                .unwrap()
                .unwrap()
                .issuer_origin(),
            "http://127.0.0.1:9000"
        );
        assert!(
            read(
                &[
                    (
                        "COUNTERSIGN_OIDC_ISSUER",
                        "https://a.example 'unsafe-inline'"
                    ),
                    ("COUNTERSIGN_OIDC_CLIENT_ID", "c")
                ],
                Environment::Development
            )
            .is_err()
        );
        let international = [
            ("COUNTERSIGN_OIDC_ISSUER", "https://idé.example"),
            ("COUNTERSIGN_OIDC_CLIENT_ID", "c"),
        ];
        assert!(read(&international, Environment::Development).is_err());
    }
}
