//! Fuzz target `jwt_parse`: `tollgate_auth::verify_with` on arbitrary tokens (even first byte) and on tokens
//! signed with a key of the set over arbitrary claims (odd first byte), which must never fail a key check.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tollgate_auth::testing::{TestKey, jwks};
use tollgate_auth::{Alg, JwtError, KeySet, Validation, verify_with};

/// What the JWT verifier accepts at most (tollgate-auth's `MAX_TOKEN_BYTES`).
const MAX_TOKEN: usize = 16 * 1024;
const NOW: i64 = 1_700_000_000;

struct Fixture {
    ec: TestKey,
    set: KeySet,
    validation: Validation,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ec = TestKey::ec256();
        let doc = jwks(&[
            ec.jwk("k1"),
            TestKey::rsa(Alg::RS256, 0).jwk("r1"),
            TestKey::ed25519().jwk("o1"),
        ]);
        let set = KeySet::parse(doc.to_string().as_bytes()).expect("the fixture key set parses");
        Fixture {
            ec,
            set,
            validation: Validation {
                audiences: vec!["tollgate".into()],
                issuer: Some("https://idp.test".into()),
                leeway: Duration::from_secs(30),
            },
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(token) = std::str::from_utf8(rest) {
            let _ = verify_with(token, &f.set, &f.validation, NOW);
        }
        return;
    }
    // Claims from the input (JSON when it parses), signed with a key of the set: only claim checks (or the
    // size cap) may refuse it.
    let claims = serde_json::from_slice::<serde_json::Value>(rest)
        .unwrap_or_else(|_| serde_json::json!({"sub": String::from_utf8_lossy(rest)}));
    if !claims.is_object() {
        return;
    }
    let token = f.ec.sign(Some("k1"), &claims);
    match verify_with(&token, &f.set, &f.validation, NOW) {
        Err(
            e @ (JwtError::BadSignature
            | JwtError::UnknownKid(_)
            | JwtError::NoMatchingKey
            | JwtError::KeyAlgMismatch { .. }
            | JwtError::AlgNone
            | JwtError::UnsupportedAlg(_)),
        ) => panic!("a token signed with a key of the set failed a key check: {e}"),
        // Claims of the wrong type (`"nbf": "x"`) are Malformed, as is a token over the size cap.
        Err(JwtError::Malformed(m)) if token.len() <= MAX_TOKEN && m.contains("three parts") => {
            panic!("a signed token lost its shape: {m}")
        }
        _ => {}
    }
});
