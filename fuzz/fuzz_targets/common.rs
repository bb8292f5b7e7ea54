//! What the targets share: a development configuration with a known secret, read the way
//! the server reads its environment.

use countersign::config::Config;

pub const SECRET: &str = "countersign-fuzz-secret-0123456789abcdef";

/// The server's configuration for a throwaway SQLite file, rates lifted (the fuzzer is one
/// caller sending thousands of requests a second).
pub fn config(database_url: &str) -> Config {
    let settings = [
        ("DATABASE_URL", database_url),
        ("COUNTERSIGN_BIND", "127.0.0.1:0"),
        ("COUNTERSIGN_DEMO", "1"),
        ("COUNTERSIGN_JWT_SECRET", SECRET),
        ("COUNTERSIGN_RATE_LIMIT", "1000000"),
        ("COUNTERSIGN_ANONYMOUS_RATE_LIMIT", "1000000"),
        ("RUST_LOG", "off"),
    ];
    let mut config = Config::from_lookup(|name| {
        settings
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    })
    .expect("a development configuration");
    // Expiry sweeps and webhook relays would only add noise between inputs.
    config.background_jobs = false;
    config
}
