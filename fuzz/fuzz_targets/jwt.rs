//! Bearer-token verification. Half the inputs are taken as the header value as sent; the
//! other half as a JWT header and claims (split at the first 0xFF byte) signed with the
//! configured secret, so the fuzzer reaches the claim checks behind the signature.

#![no_main]

mod common;

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign::auth::JwtVerifier;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static JwtVerifier {
    static VERIFIER: OnceLock<JwtVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let config = common::config("sqlite::memory:");
        JwtVerifier::new(&config.jwt).expect("a verifier")
    })
}

fn signed(header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(common::SECRET.as_bytes()).expect("any key");
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let header = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let (header, claims) = match rest.iter().position(|&b| b == 0xFF) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (br#"{"alg":"HS256","typ":"JWT"}"#.as_slice(), rest),
        };
        format!("Bearer {}", signed(header, claims))
    };
    if let Ok(countersign::kernel::Identity::Authenticated(viewer)) =
        verifier().authenticate(Some(&header))
    {
        assert!(!viewer.subject.is_empty(), "a viewer without a subject");
    }
});
