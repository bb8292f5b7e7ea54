//! Where webhooks may go. In production a URL must be https and must not reach loopback,
//! private, link-local, shared or metadata addresses, unless its host is allow-listed:
//! otherwise an admin's token (or a stolen one) could make the server probe its own
//! network. The address is judged when the endpoint is saved and again on every attempt,
//! by the resolver the HTTP client connects through, so a name that resolves to a public
//! address at registration and to 127.0.0.1 later (DNS rebinding) is still refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::WebhookConfig;
use crate::error::AppError;

const MAX_URL_CHARS: usize = 2048;

/// The destination rules of one server, from its configuration.
#[derive(Clone, Debug)]
pub struct Destinations {
    require_https: bool,
    allow_private: bool,
    allowed_hosts: Arc<Vec<String>>,
}

impl Destinations {
    pub fn new(config: &WebhookConfig) -> Self {
        Self {
            require_https: config.require_https,
            allow_private: config.allow_private,
            allowed_hosts: Arc::new(config.allowed_hosts.clone()),
        }
    }

    fn exempt(&self, host: &str) -> bool {
        self.allow_private || self.allowed_hosts.iter().any(|h| h == host)
    }

    /// Checks a URL an admin wants to save: its form, its scheme and, when its host is
    /// an address or resolves now, where it points.
    pub async fn check_new(&self, text: &str) -> Result<Url, AppError> {
        let url = self.parse(text)?;
        let host = host_of(&url);
        if !self.exempt(&host) {
            let port = url.port_or_known_default().unwrap_or(443);
            // A name that does not resolve yet is accepted: every attempt checks again.
            if let Ok(addrs) = tokio::net::lookup_host((host.as_str(), port)).await {
                for addr in addrs {
                    // The reason, never the address: saving a URL must not become a way
                    // to map internal names.
                    if let Some(why) = forbidden(addr.ip()) {
                        return Err(AppError::bad_input(
                            "url",
                            format!("{host} resolves to {why}; webhooks may not go there"),
                        ));
                    }
                }
            }
        }
        Ok(url)
    }

    /// The URL's form and scheme, and its host when the host is an address literal
    /// (which no resolver sees).
    pub fn parse(&self, text: &str) -> Result<Url, AppError> {
        let text = text.trim();
        if text.chars().count() > MAX_URL_CHARS {
            return Err(AppError::bad_input(
                "url",
                format!("a URL is at most {MAX_URL_CHARS} characters"),
            ));
        }
        let url = Url::parse(text)
            .map_err(|err| AppError::bad_input("url", format!("not a URL: {err}")))?;
        match url.scheme() {
            "https" => {}
            "http" if !self.require_https => {}
            "http" => return Err(AppError::bad_input("url", "webhook URLs must be https")),
            other => {
                return Err(AppError::bad_input(
                    "url",
                    format!("webhook URLs are http(s), not {other}"),
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(AppError::bad_input(
                "url",
                "put no credentials in a webhook URL; receivers check the signature",
            ));
        }
        let Some(host) = url.host() else {
            return Err(AppError::bad_input("url", "a webhook URL needs a host"));
        };
        let literal = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal {
            if let Some(why) = forbidden(ip).filter(|_| !self.exempt(&host_of(&url))) {
                return Err(AppError::bad_input(
                    "url",
                    format!("{ip} is {why}; webhooks may not go there"),
                ));
            }
        }
        Ok(url)
    }

    /// The resolver the relay's HTTP client connects through.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver {
            destinations: self.clone(),
        })
    }
}

/// The host as written in a URL, lower-cased, without IPv6 brackets.
fn host_of(url: &Url) -> String {
    url.host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Why an address is no place for a webhook, if it is not.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        // 169.254.169.254 is where clouds serve instance metadata and credentials.
        Some("a link-local (cloud metadata) address")
    } else if a == 100 && (64..128).contains(&b) {
        // Shared address space (RFC 6598); Alibaba's metadata lives at 100.100.100.200.
        Some("a shared (carrier-grade NAT) address")
    } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || a == 0 {
        Some("not a unicast address")
    } else if a >= 240
        || (a == 198 && (18..20).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
    {
        // Reserved, benchmarking and IETF protocol assignments: nothing public lives there.
        Some("a reserved address")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 one carries to an IPv4 host: NAT64 (64:ff9b::/96,
/// 64:ff9b:1::/48) and 6to4 (2002::/16).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x64, 0xff9b, 1, ..] => Some(v4(s[6], s[7])),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("not a unicast address")
    } else if first & 0xfe00 == 0xfc00 {
        // Unique local (fc00::/7), AWS's IPv6 metadata (fd00:ec2::254) among them.
        Some("a private address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if let Some(v4) = ip.to_ipv4() {
        // IPv4-compatible (::a.b.c.d) forms reach the IPv4 address on some stacks.
        forbidden_v4(v4)
    } else {
        None
    }
}

/// Resolves names for the relay's HTTP client and drops every address a webhook may not
/// reach; a name left with none fails the attempt with the reason.
#[derive(Debug)]
pub struct GuardedResolver {
    destinations: Destinations,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let destinations = self.destinations.clone();
        Box::pin(async move {
            let host = name.as_str().to_ascii_lowercase();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if destinations.exempt(&host) {
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| forbidden(addr.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                // The attempt's error is shown to auditors in `lastError`: it says what kind
                // of address the name has, as saving the URL does, never the address (a map
                // of internal DNS). The log keeps the address for operators.
                let Some((address, why)) = found
                    .first()
                    .and_then(|addr| forbidden(addr.ip()).map(|why| (addr.ip(), why)))
                else {
                    return Err(format!("{host} has no address").into());
                };
                tracing::warn!(%host, %address, "a webhook attempt was refused an internal address");
                return Err(format!("{host} resolves to {why}; webhooks may not go there").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_and_metadata_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::7f00:1",
            "2002:a00:1::",
            "240.0.0.1",
            "198.18.0.1",
        ] {
            assert!(forbidden(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(forbidden(ip.parse().unwrap()).is_none(), "{ip}");
        }
    }

    fn production() -> Destinations {
        Destinations::new(&WebhookConfig::defaults(
            crate::config::Environment::Production,
        ))
    }

    #[test]
    fn production_wants_https_to_a_public_host() {
        let guard = production();
        assert!(guard.parse("https://hooks.example.com/countersign").is_ok());
        assert!(guard.parse("http://hooks.example.com/").is_err());
        assert!(guard.parse("https://127.0.0.1/").is_err());
        assert!(guard.parse("https://[::1]:8443/").is_err());
        assert!(
            guard
                .parse("https://169.254.169.254/latest/meta-data")
                .is_err()
        );
        assert!(guard.parse("https://user:pw@hooks.example.com/").is_err());
        assert!(guard.parse("ftp://hooks.example.com/").is_err());
    }

    #[test]
    fn an_allow_listed_host_may_be_internal() {
        let mut config = WebhookConfig::defaults(crate::config::Environment::Production);
        config.allowed_hosts = vec!["10.0.0.7".into()];
        let guard = Destinations::new(&config);
        assert!(guard.parse("https://10.0.0.7/hook").is_ok());
        assert!(guard.parse("https://10.0.0.8/hook").is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused() {
        let err = production()
            .check_new("https://localhost/hook")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT");
        let resolved = production()
            .resolver()
            .resolve("localhost".parse().unwrap())
            .await;
        assert!(resolved.is_err());
    }
}
