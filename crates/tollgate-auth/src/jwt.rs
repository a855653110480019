//! Compact JWS tokens: parsing, the algorithm policy, signature verification with ring and claim validation.
//!
//! Policy, in the order it is applied:
//! 1. shape: at most [`MAX_TOKEN_BYTES`], exactly three `.`-separated parts, unpadded base64url (RFC 7515);
//!    header and claims are JSON objects;
//! 2. `alg`: one of [`Alg`]; `none` in any case is [`JwtError::AlgNone`]; HMAC (`HS*`) and anything else is
//!    [`JwtError::UnsupportedAlg`] — we hold public keys only, so an HMAC token "signed" with a public key
//!    can never verify;
//! 3. `crit` (no extension is understood) and `b64` other than `true` are [`JwtError::Malformed`];
//! 4. key: by `kid` when present, else every key of the algorithm's family is tried; the key type/curve must
//!    fit the algorithm and a JWK's own `alg`, when given, must equal the token's;
//! 5. signature, then the claims: `exp` is required (a token without expiry is refused), `nbf`/`iat` must not
//!    be in the future, all within [`Validation::leeway`]; `aud` and `iss` when configured.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use crate::jwks::{Curve, Jwk, KeyKind, KeySet};

/// The longest token accepted.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The longest `kid` accepted (it is echoed in errors).
const MAX_KID_CHARS: usize = 256;

/// A JWS algorithm we verify: asymmetric only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// The algorithm named `s` exactly as JWA (RFC 7518, RFC 8037) spells it.
    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Whether a key of this kind can verify this algorithm.
    pub fn fits(self, kind: &KeyKind) -> bool {
        match kind {
            KeyKind::Rsa { .. } => matches!(
                self,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ),
            KeyKind::Ec {
                crv: Curve::P256, ..
            } => self == Alg::ES256,
            KeyKind::Ec {
                crv: Curve::P384, ..
            } => self == Alg::ES384,
            KeyKind::Ed25519 { .. } => self == Alg::EdDSA,
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token was refused. The messages name no key material and echo no claim values.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("unsigned tokens (alg \"none\") are refused")]
    AlgNone,
    #[error(
        "algorithm {0:?} is not accepted (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA are)"
    )]
    UnsupportedAlg(String),
    #[error("unknown key id {0:?}")]
    UnknownKid(String),
    #[error("no key in the key set fits the token's algorithm")]
    NoMatchingKey,
    #[error("key {kid:?} cannot verify {alg} tokens")]
    KeyAlgMismatch { kid: String, alg: String },
    #[error("invalid signature")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no exp claim (tokens without an expiry are refused)")]
    MissingExp,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the key set is unavailable: {0}")]
    KeysUnavailable(String),
}

impl JwtError {
    /// A stable snake_case code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) => "malformed",
            JwtError::AlgNone => "alg_none",
            JwtError::UnsupportedAlg(_) => "unsupported_alg",
            JwtError::UnknownKid(_) => "unknown_kid",
            JwtError::NoMatchingKey => "no_matching_key",
            JwtError::KeyAlgMismatch { .. } => "key_alg_mismatch",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::MissingExp => "missing_exp",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::KeysUnavailable(_) => "keys_unavailable",
        }
    }
}

/// What the claims must satisfy besides the signature.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Accepted audiences; the token's `aud` (string or array) must name one. Empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// The exact `iss` required, if any.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

impl Default for Validation {
    fn default() -> Validation {
        Validation {
            audiences: Vec::new(),
            issuer: None,
            leeway: Duration::from_secs(30),
        }
    }
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
}

/// A token that passed the shape and header checks, not yet verified.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) alg: Alg,
    pub(crate) kid: Option<String>,
    signing_input: &'a [u8],
    signature: Vec<u8>,
    claims: Map<String, Value>,
}

/// Whether `token` has the shape of a compact JWS: three `.`-separated base64url segments, the first two
/// non-empty (an empty third one is an unsigned token, which the verifier then refuses by name). Cheap:
/// nothing is decoded. Virtual keys (`sk-...`) have no dots.
pub fn looks_like_jwt(token: &str) -> bool {
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(c), Some(s), None) => {
            !h.is_empty() && !c.is_empty() && b64url(h) && b64url(c) && b64url(s)
        }
        _ => false,
    }
}

/// A claim by dot path, as LiteLLM's `get_nested_value`: `"resource_access.my-client.roles"`. At every level
/// an exact key containing dots wins over splitting the path, so `{"a.b": 1}` answers `"a.b"`, and
/// `{"ra": {"my.client": {...}}}` answers `"ra.my.client.roles"`.
pub fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return None;
    }
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.match_indices('.').find_map(|(i, _)| {
        let (head, rest) = (&path[..i], &path[i + 1..]);
        match claims.get(head)? {
            Value::Object(inner) => claim(inner, rest),
            _ => None,
        }
    })
}

/// Verify `token` against `keys` at `now_unix` (seconds since the epoch). Pure: no I/O, no clock.
pub fn verify_with(
    token: &str,
    keys: &KeySet,
    v: &Validation,
    now_unix: i64,
) -> Result<Verified, JwtError> {
    verify_parsed(parse(token)?, keys, v, now_unix)
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(format!("the {what} is not unpadded base64url")))
}

fn object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, JwtError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(JwtError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
        Err(_) => Err(JwtError::Malformed(format!("the {what} is not JSON"))),
    }
}

/// The shape and header checks (steps 1–3), before any key is looked at.
pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed(format!(
            "longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed(
            "a signed JWT has three parts separated by '.'".into(),
        ));
    };
    if h.is_empty() || c.is_empty() {
        return Err(JwtError::Malformed("empty header or claims".into()));
    }
    let header = object(&b64(h, "header")?, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) if a.eq_ignore_ascii_case("none") => return Err(JwtError::AlgNone),
        Some(Value::String(a)) => {
            Alg::parse(a).ok_or_else(|| JwtError::UnsupportedAlg(a.chars().take(32).collect()))?
        }
        _ => return Err(JwtError::Malformed("the header has no alg".into())),
    };
    if header.contains_key("crit") {
        return Err(JwtError::Malformed(
            "critical header extensions (crit) are not supported".into(),
        ));
    }
    if header.get("b64").is_some_and(|b| *b != Value::Bool(true)) {
        return Err(JwtError::Malformed(
            "unencoded payloads (b64) are not supported".into(),
        ));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if k.chars().count() <= MAX_KID_CHARS => Some(k.clone()),
        Some(Value::String(_)) => return Err(JwtError::Malformed("the kid is too long".into())),
        Some(_) => return Err(JwtError::Malformed("the kid is not a string".into())),
    };
    let claims = object(&b64(c, "claims part")?, "claims part")?;
    if s.is_empty() {
        return Err(JwtError::Malformed("the signature is empty".into()));
    }
    let signature = b64(s, "signature")?;
    Ok(Parsed {
        alg,
        kid,
        signing_input: &token.as_bytes()[..h.len() + 1 + c.len()],
        signature,
        claims,
    })
}

/// Key selection, signature and claims (steps 4–5).
pub(crate) fn verify_parsed(
    t: Parsed<'_>,
    keys: &KeySet,
    v: &Validation,
    now_unix: i64,
) -> Result<Verified, JwtError> {
    let verifies = |k: &Jwk| check_signature(k, t.alg, t.signing_input, &t.signature);
    match &t.kid {
        Some(kid) => {
            let mut named = keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .peekable();
            if named.peek().is_none() {
                return Err(JwtError::UnknownKid(kid.clone()));
            }
            let mut fitting = named.filter(|k| k.accepts(t.alg)).peekable();
            if fitting.peek().is_none() {
                return Err(JwtError::KeyAlgMismatch {
                    kid: kid.clone(),
                    alg: t.alg.as_str().into(),
                });
            }
            if !fitting.any(verifies) {
                return Err(JwtError::BadSignature);
            }
        }
        None => {
            let mut fitting = keys.iter().filter(|k| k.accepts(t.alg)).peekable();
            if fitting.peek().is_none() {
                return Err(JwtError::NoMatchingKey);
            }
            if !fitting.any(verifies) {
                return Err(JwtError::BadSignature);
            }
        }
    }
    check_claims(&t.claims, v, now_unix)?;
    Ok(Verified {
        alg: t.alg,
        kid: t.kid,
        claims: t.claims,
    })
}

fn check_signature(key: &Jwk, alg: Alg, msg: &[u8], signature: &[u8]) -> bool {
    match &key.kind {
        KeyKind::Rsa { n, e } => {
            let params: &'static sig::RsaParameters = match alg {
                Alg::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                Alg::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                Alg::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                Alg::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                Alg::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                Alg::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
                Alg::ES256 | Alg::ES384 | Alg::EdDSA => return false,
            };
            RsaPublicKeyComponents { n, e }
                .verify(params, msg, signature)
                .is_ok()
        }
        KeyKind::Ec { crv, x, y } => {
            let algorithm: &'static dyn sig::VerificationAlgorithm = match (alg, crv) {
                (Alg::ES256, Curve::P256) => &sig::ECDSA_P256_SHA256_FIXED,
                (Alg::ES384, Curve::P384) => &sig::ECDSA_P384_SHA384_FIXED,
                _ => return false,
            };
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            UnparsedPublicKey::new(algorithm, &point)
                .verify(msg, signature)
                .is_ok()
        }
        KeyKind::Ed25519 { x } => {
            alg == Alg::EdDSA
                && UnparsedPublicKey::new(&sig::ED25519, x)
                    .verify(msg, signature)
                    .is_ok()
        }
    }
}

/// A NumericDate claim: an integer or a fraction (RFC 7519 §2). Absent is `None`; anything else is malformed.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| JwtError::Malformed(format!("{name} is not a number"))),
        Some(_) => Err(JwtError::Malformed(format!("{name} is not a number"))),
    }
}

fn check_claims(
    claims: &Map<String, Value>,
    v: &Validation,
    now_unix: i64,
) -> Result<(), JwtError> {
    // Seconds are far below 2^53, so f64 holds them exactly; fractions compare as written.
    let now = now_unix as f64;
    let leeway = v.leeway.as_secs_f64();
    let exp = numeric_date(claims, "exp")?.ok_or(JwtError::MissingExp)?;
    if exp <= now - leeway {
        return Err(JwtError::Expired);
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now + leeway) {
        return Err(JwtError::NotYetValid);
    }
    if numeric_date(claims, "iat")?.is_some_and(|iat| iat > now + leeway) {
        return Err(JwtError::NotYetValid);
    }
    if !v.audiences.is_empty() {
        let accepted = |a: &Value| {
            a.as_str()
                .is_some_and(|a| v.audiences.iter().any(|w| w == a))
        };
        let ok = match claims.get("aud") {
            Some(Value::Array(items)) => items.iter().any(accepted),
            Some(a) => accepted(a),
            None => false,
        };
        if !ok {
            return Err(JwtError::WrongAudience);
        }
    }
    if let Some(want) = &v.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(want.as_str())
    {
        return Err(JwtError::WrongIssuer);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::{TestKey, hs256, jwks, unsigned};
    use serde_json::json;

    const NOW: i64 = 1_750_000_000;

    fn set(keys: &[Value]) -> KeySet {
        KeySet::parse(jwks(keys).to_string().as_bytes()).unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({"sub": "u1", "exp": NOW + 300});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn check(token: &str, keys: &KeySet) -> Result<Verified, JwtError> {
        verify_with(token, keys, &Validation::default(), NOW)
    }

    fn all_keys() -> Vec<TestKey> {
        vec![
            TestKey::rsa(Alg::RS256, 0),
            TestKey::rsa(Alg::RS384, 1),
            TestKey::rsa(Alg::RS512, 0),
            TestKey::rsa(Alg::PS256, 1),
            TestKey::rsa(Alg::PS384, 0),
            TestKey::rsa(Alg::PS512, 1),
            TestKey::ec256(),
            TestKey::ec384(),
            TestKey::ed25519(),
        ]
    }

    #[test]
    fn every_algorithm_round_trips_with_and_without_kid() {
        for key in all_keys() {
            let alg = key.alg();
            let keys = set(&[key.jwk("k")]);
            let token = key.sign(Some("k"), &claims(json!({"n": 1})));
            let ok = check(&token, &keys).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(ok.alg, alg);
            assert_eq!(ok.kid.as_deref(), Some("k"));
            assert_eq!(ok.claims["sub"], "u1");
            assert_eq!(ok.claims["n"], 1);
            let ok = check(&key.sign(None, &claims(json!({}))), &keys).unwrap();
            assert_eq!((ok.alg, ok.kid), (alg, None));
            assert_eq!(Alg::parse(alg.as_str()), Some(alg));
        }
    }

    #[test]
    fn without_kid_every_key_of_the_family_is_tried() {
        let (a, b, ec) = (
            TestKey::rsa(Alg::RS256, 0),
            TestKey::rsa(Alg::RS256, 1),
            TestKey::ec256(),
        );
        let keys = set(&[a.jwk("a"), ec.jwk("e"), b.jwk("b")]);
        assert!(check(&b.sign(None, &claims(json!({}))), &keys).is_ok());
        let only_ec = set(&[ec.jwk("e")]);
        assert!(matches!(
            check(&a.sign(None, &claims(json!({}))), &only_ec),
            Err(JwtError::NoMatchingKey)
        ));
        // The same kid on two keys: the one fitting the algorithm verifies.
        let mut ec_jwk = ec.jwk("dup");
        ec_jwk["kid"] = json!("dup");
        let keys = set(&[ec_jwk, a.jwk("dup")]);
        assert!(check(&a.sign(Some("dup"), &claims(json!({}))), &keys).is_ok());
    }

    #[test]
    fn alg_none_in_any_case_is_refused() {
        let key = TestKey::rsa(Alg::RS256, 0);
        let keys = set(&[key.jwk("k")]);
        for none in ["none", "None", "NONE", "nOnE"] {
            let t = unsigned(&json!({"alg": none, "kid": "k"}), &claims(json!({})));
            assert!(matches!(check(&t, &keys), Err(JwtError::AlgNone)), "{none}");
            // Even with a (copied) signature attached.
            let signed = key.sign(Some("k"), &claims(json!({})));
            let t = format!("{t}{}", signed.rsplit('.').next().unwrap());
            assert!(matches!(check(&t, &keys), Err(JwtError::AlgNone)), "{none}");
        }
    }

    #[test]
    fn hmac_signed_with_the_public_key_is_refused() {
        let rsa = TestKey::rsa(Alg::RS256, 0);
        let jwk = rsa.jwk("k");
        let keys = set(std::slice::from_ref(&jwk));
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwk["n"].as_str().unwrap())
            .unwrap();
        let der = rsa.public_key_bytes();
        let pem = format!(
            "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        let text = jwk.to_string();
        let secrets: [&[u8]; 4] = [&der, pem.as_bytes(), &n, text.as_bytes()];
        for alg in ["HS256", "HS384", "HS512"] {
            for secret in secrets {
                let t = hs256(secret, &json!({"alg": alg, "kid": "k"}), &claims(json!({})));
                match check(&t, &keys) {
                    Err(JwtError::UnsupportedAlg(a)) => assert_eq!(a, alg),
                    other => panic!("{alg}: {other:?}"),
                }
            }
        }
        for alg in ["ES512", "RS1", "rs256", "PS256K", "Ed25519"] {
            let t = rsa.sign_with_header(&json!({"alg": alg, "kid": "k"}), &claims(json!({})));
            assert!(
                matches!(check(&t, &keys), Err(JwtError::UnsupportedAlg(_))),
                "{alg}"
            );
        }
    }

    #[test]
    fn the_key_must_fit_the_algorithm() {
        let (rsa, ec, ec384, ed) = (
            TestKey::rsa(Alg::RS256, 0),
            TestKey::ec256(),
            TestKey::ec384(),
            TestKey::ed25519(),
        );
        let keys = set(&[rsa.jwk("r"), ec.jwk("e"), ec384.jwk("e384"), ed.jwk("ed")]);
        let c = claims(json!({}));
        let mismatch = |t: &str, kid: &str, alg: &str| match check(t, &keys) {
            Err(JwtError::KeyAlgMismatch { kid: k, alg: a }) => {
                assert_eq!((k.as_str(), a.as_str()), (kid, alg))
            }
            other => panic!("{kid}: {other:?}"),
        };
        mismatch(&rsa.sign(Some("e"), &c), "e", "RS256");
        mismatch(&ec.sign(Some("e384"), &c), "e384", "ES256");
        mismatch(&ec.sign(Some("r"), &c), "r", "ES256");
        mismatch(&ed.sign(Some("e"), &c), "e", "EdDSA");
        // The JWK's own alg binds the key: the same RSA key published for RS256 verifies neither
        // PS256 nor RS384 tokens, though the key type fits.
        let ps = TestKey::rsa(Alg::PS256, 0);
        mismatch(&ps.sign(Some("r"), &c), "r", "PS256");
        mismatch(
            &TestKey::rsa(Alg::RS384, 0).sign(Some("r"), &c),
            "r",
            "RS384",
        );
        // Without the JWK alg the family is enough.
        let mut bare = rsa.jwk("r");
        bare.as_object_mut().unwrap().remove("alg");
        assert!(check(&ps.sign(Some("r"), &c), &set(&[bare])).is_ok());
        assert!(
            matches!(check(&rsa.sign(Some("zz"), &c), &keys), Err(JwtError::UnknownKid(k)) if k == "zz")
        );
    }

    #[test]
    fn crit_and_unencoded_payloads_are_malformed() {
        let key = TestKey::rsa(Alg::RS256, 0);
        let keys = set(&[key.jwk("k")]);
        let c = claims(json!({}));
        for header in [
            json!({"alg": "RS256", "kid": "k", "crit": ["exp"]}),
            json!({"alg": "RS256", "kid": "k", "crit": []}),
            json!({"alg": "RS256", "kid": "k", "b64": false}),
            json!({"alg": "RS256", "kid": "k", "b64": false, "crit": ["b64"]}),
        ] {
            let t = key.sign_with_header(&header, &c);
            assert!(
                matches!(check(&t, &keys), Err(JwtError::Malformed(_))),
                "{header}"
            );
        }
        let t = key.sign_with_header(&json!({"alg": "RS256", "kid": "k", "b64": true}), &c);
        assert!(check(&t, &keys).is_ok());
    }

    #[test]
    fn bad_signatures_are_refused() {
        let (a, b) = (TestKey::rsa(Alg::RS256, 0), TestKey::rsa(Alg::RS256, 1));
        let ec = TestKey::ec256();
        let keys = set(&[a.jwk("a"), ec.jwk("e")]);
        let c = claims(json!({}));
        // Signed by another key under this key's kid.
        assert!(matches!(
            check(&b.sign(Some("a"), &c), &keys),
            Err(JwtError::BadSignature)
        ));
        assert!(matches!(
            check(&TestKey::ec256().sign(Some("e"), &c), &keys),
            Err(JwtError::BadSignature)
        ));
        // Claims changed after signing.
        let good = a.sign(Some("a"), &c);
        let parts: Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims(json!({"sub": "admin"})).to_string());
        let t = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert!(matches!(check(&t, &keys), Err(JwtError::BadSignature)));
        // Truncated signature.
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let t = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(&sig[..sig.len() - 1])
        );
        assert!(matches!(check(&t, &keys), Err(JwtError::BadSignature)));
        assert!(check(&good, &keys).is_ok());
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_refused() {
        let token = include_str!("../testdata/rsa1024-token.txt").trim();
        let jwk: Value =
            serde_json::from_str(include_str!("../testdata/rsa1024-jwk.json")).unwrap();
        // The set parser skips the key...
        assert!(set(std::slice::from_ref(&jwk)).is_empty());
        // ...and ring refuses it when it is put there by hand, though the signature is genuine.
        let d = |f: &str| URL_SAFE_NO_PAD.decode(jwk[f].as_str().unwrap()).unwrap();
        let keys = KeySet::new(vec![Jwk {
            kid: Some("weak".into()),
            alg: Some(Alg::RS256),
            kind: KeyKind::Rsa {
                n: d("n"),
                e: d("e"),
            },
        }]);
        assert!(matches!(
            verify_with(token, &keys, &Validation::default(), 1_700_000_100),
            Err(JwtError::BadSignature)
        ));
    }

    #[test]
    fn exp_is_required_and_checked_with_leeway_at_the_boundary() {
        let key = TestKey::ed25519();
        let keys = set(&[key.jwk("k")]);
        let v = Validation::default(); // 30 s leeway
        let at = |c: Value| verify_with(&key.sign(Some("k"), &c), &keys, &v, NOW);
        assert!(matches!(at(json!({"sub": "u"})), Err(JwtError::MissingExp)));
        assert!(matches!(
            at(json!({"exp": "9999999999"})),
            Err(JwtError::Malformed(_))
        ));
        assert!(matches!(
            at(json!({"exp": null})),
            Err(JwtError::Malformed(_))
        ));
        assert!(matches!(
            at(json!({"exp": NOW - 30})),
            Err(JwtError::Expired)
        ));
        assert!(at(json!({"exp": NOW - 29})).is_ok());
        assert!(at(json!({"exp": (NOW - 30) as f64 + 0.5})).is_ok());
        assert!(matches!(
            at(json!({"exp": (NOW - 30) as f64 - 0.5})),
            Err(JwtError::Expired)
        ));
        let strict = Validation {
            leeway: Duration::ZERO,
            ..Validation::default()
        };
        let t = key.sign(Some("k"), &json!({"exp": NOW}));
        assert!(matches!(
            verify_with(&t, &keys, &strict, NOW),
            Err(JwtError::Expired)
        ));
        assert!(verify_with(&t, &keys, &strict, NOW - 1).is_ok());
    }

    #[test]
    fn nbf_and_iat_must_not_be_in_the_future() {
        let key = TestKey::ec384();
        let keys = set(&[key.jwk("k")]);
        let at = |extra: Value| check(&key.sign(Some("k"), &claims(extra)), &keys);
        assert!(at(json!({"nbf": NOW + 30})).is_ok());
        assert!(matches!(
            at(json!({"nbf": NOW + 31})),
            Err(JwtError::NotYetValid)
        ));
        assert!(at(json!({"iat": NOW + 30})).is_ok());
        assert!(matches!(
            at(json!({"iat": NOW + 31})),
            Err(JwtError::NotYetValid)
        ));
        assert!(matches!(
            at(json!({"nbf": "soon"})),
            Err(JwtError::Malformed(_))
        ));
        assert!(at(json!({"nbf": NOW - 1000, "iat": NOW - 1000})).is_ok());
    }

    #[test]
    fn audience_string_or_array() {
        let key = TestKey::rsa(Alg::PS256, 0);
        let keys = set(&[key.jwk("k")]);
        let v = Validation {
            audiences: vec!["a".into(), "b".into()],
            ..Validation::default()
        };
        let at = |extra: Value, v: &Validation| {
            verify_with(&key.sign(Some("k"), &claims(extra)), &keys, v, NOW)
        };
        assert!(at(json!({"aud": "a"}), &v).is_ok());
        assert!(at(json!({"aud": ["x", "b"]}), &v).is_ok());
        for bad in [
            json!({"aud": "x"}),
            json!({"aud": ["x", "y"]}),
            json!({"aud": []}),
            json!({"aud": [1]}),
            json!({}),
        ] {
            assert!(
                matches!(at(bad.clone(), &v), Err(JwtError::WrongAudience)),
                "{bad}"
            );
        }
        // Not configured: not checked.
        assert!(at(json!({"aud": "x"}), &Validation::default()).is_ok());
    }

    #[test]
    fn issuer_must_match_exactly() {
        let key = TestKey::ec256();
        let keys = set(&[key.jwk("k")]);
        let v = Validation {
            issuer: Some("https://idp.test".into()),
            ..Validation::default()
        };
        let at = |extra: Value| verify_with(&key.sign(Some("k"), &claims(extra)), &keys, &v, NOW);
        assert!(at(json!({"iss": "https://idp.test"})).is_ok());
        for bad in [
            json!({"iss": "https://idp.test/"}),
            json!({"iss": "https://IDP.test"}),
            json!({"iss": 1}),
            json!({}),
        ] {
            assert!(
                matches!(at(bad.clone()), Err(JwtError::WrongIssuer)),
                "{bad}"
            );
        }
        assert!(check(&key.sign(Some("k"), &claims(json!({"iss": "any"}))), &keys).is_ok());
    }

    #[test]
    fn shape_size_and_base64_rules() {
        let key = TestKey::rsa(Alg::RS256, 0);
        let keys = set(&[key.jwk("k")]);
        let malformed = |t: &str| matches!(check(t, &keys), Err(JwtError::Malformed(_)));
        // Just over the cap, validly signed: refused for its size.
        let mut pad = 11_500;
        let big = loop {
            let t = key.sign(Some("k"), &claims(json!({"pad": "x".repeat(pad)})));
            if t.len() > MAX_TOKEN_BYTES {
                break t;
            }
            pad += 16;
        };
        assert!(big.len() < MAX_TOKEN_BYTES + 64);
        assert!(malformed(&big));
        let fits = key.sign(Some("k"), &claims(json!({"pad": "x".repeat(pad - 48)})));
        assert!(fits.len() <= MAX_TOKEN_BYTES && check(&fits, &keys).is_ok());

        // Padding, or the standard alphabet, is not base64url as JWS requires.
        let mut t;
        loop {
            t = key.sign(Some("k"), &claims(json!({"r": fastrand_like()})));
            let sig = t.rsplit('.').next().unwrap();
            if sig.contains(['-', '_']) {
                break;
            }
        }
        assert!(check(&t, &keys).is_ok());
        assert!(malformed(&format!("{t}==")));
        let (input, sig) = t.rsplit_once('.').unwrap();
        assert!(malformed(&format!(
            "{input}.{}",
            sig.replace('-', "+").replace('_', "/")
        )));
        let (h, rest) = t.split_once('.').unwrap();
        assert!(malformed(&format!("{h}=.{rest}")));

        let parts: Vec<&str> = t.split('.').collect();
        for bad in [
            parts[..2].join("."),
            format!("{t}.x"),
            format!("{t}.x.y"),
            format!(".{}.{}", parts[1], parts[2]),
            format!("{}..{}", parts[0], parts[2]),
            format!("{}.{}.", parts[0], parts[1]),
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("[1]"),
                parts[1],
                parts[2]
            ),
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("{nope"),
                parts[1],
                parts[2]
            ),
            format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode("[]"), parts[2]),
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(r#"{"kid":"k"}"#),
                parts[1],
                parts[2]
            ),
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":7}"#),
                parts[1],
                parts[2]
            ),
        ] {
            assert!(malformed(&bad), "{bad}");
        }
        let long_kid = key.sign(Some(&"k".repeat(300)), &claims(json!({})));
        assert!(malformed(&long_kid));
    }

    /// Varying claims so signatures vary (no RNG dependency needed).
    fn fastrand_like() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn jwt_shape_detection() {
        let key = TestKey::ec256();
        assert!(looks_like_jwt(&key.sign(Some("k"), &claims(json!({})))));
        assert!(looks_like_jwt(&unsigned(
            &json!({"alg": "none"}),
            &json!({})
        )));
        for not in [
            "sk-1234",
            "sk-abc_DEF-123",
            "",
            "a.b",
            "a..c",
            ".b.c",
            "a.b.c.d",
            "a b.c.d",
            "a.b+.c",
            "a.b.c=",
        ] {
            assert!(!looks_like_jwt(not), "{not}");
        }
    }

    #[test]
    fn dot_path_claims() {
        let c: Map<String, Value> = serde_json::from_value(json!({
            "sub": "u",
            "resource_access": {"my-client": {"roles": ["r1"]}, "my.client": {"roles": ["r2"]}},
            "a.b": "exact",
            "a": {"b": "nested"},
            "list": [1, 2],
        }))
        .unwrap();
        assert_eq!(claim(&c, "sub"), Some(&json!("u")));
        assert_eq!(
            claim(&c, "resource_access.my-client.roles"),
            Some(&json!(["r1"]))
        );
        assert_eq!(
            claim(&c, "resource_access.my.client.roles"),
            Some(&json!(["r2"]))
        );
        assert_eq!(claim(&c, "a.b"), Some(&json!("exact")));
        assert_eq!(claim(&c, "a"), Some(&json!({"b": "nested"})));
        for none in [
            "",
            "missing",
            "sub.x",
            "list.0",
            "resource_access.other.roles",
            "a.b.c",
        ] {
            assert_eq!(claim(&c, none), None, "{none}");
        }
    }

    #[test]
    fn error_codes_are_distinct_snake_case() {
        let all = [
            JwtError::Malformed(String::new()),
            JwtError::AlgNone,
            JwtError::UnsupportedAlg(String::new()),
            JwtError::UnknownKid(String::new()),
            JwtError::NoMatchingKey,
            JwtError::KeyAlgMismatch {
                kid: String::new(),
                alg: String::new(),
            },
            JwtError::BadSignature,
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::MissingExp,
            JwtError::WrongAudience,
            JwtError::WrongIssuer,
            JwtError::KeysUnavailable(String::new()),
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(JwtError::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(
            codes
                .iter()
                .all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        assert_eq!(JwtError::Expired.code(), "expired");
    }
}
