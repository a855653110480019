//! JSON Web Keys (RFC 7517) for verification: parsing a key set, skipping keys we cannot or must not use.
//!
//! Kept: signature keys (`use` absent or `"sig"`, `key_ops` absent or with `"verify"`) of type RSA (2048 to
//! 8192 bits), EC P-256/P-384 and OKP Ed25519. Skipped with a log line, never failing the set: encryption
//! keys, symmetric (`oct`) keys, other curves (P-521, X25519, Ed448), keys whose `alg` we do not verify, and
//! keys carrying private parts (`d`: publishing them is a configuration mistake, warned about).

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

use crate::jwt::{Alg, JwtError};

/// Key sets longer than this are cut (with a warning): no identity provider publishes so many.
pub const MAX_KEYS: usize = 100;

/// JWK members are unpadded base64url (RFC 7515 §2); padding is tolerated since some providers emit it.
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An elliptic curve for ECDSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    /// The length of one coordinate in bytes.
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

/// The public key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The affine coordinates, each exactly [`Curve::coordinate_len`] bytes.
    Ec { crv: Curve, x: Vec<u8>, y: Vec<u8> },
    /// The 32-byte public key (OKP, `crv` Ed25519).
    Ed25519 { x: Vec<u8> },
}

/// A public verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The key's own `alg`: when present, the only algorithm it verifies.
    pub alg: Option<Alg>,
    pub kind: KeyKind,
}

impl Jwk {
    /// Whether this key may verify a token of `alg`: the type fits and the key's own `alg`, if any, agrees.
    pub fn accepts(&self, alg: Alg) -> bool {
        alg.fits(&self.kind) && self.alg.is_none_or(|a| a == alg)
    }

    /// Parse one JWK; `Err` says why it is not usable for verification.
    pub fn from_json(v: &Value) -> Result<Jwk, String> {
        let Value::Object(m) = v else {
            return Err("not a JSON object".into());
        };
        let text = |name: &str| match m.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("{name} is not a string")),
        };
        let kty = text("kty")?.ok_or("no kty")?;
        if let Some(u) = text("use")?
            && u != "sig"
        {
            return Err(format!("use is {u:?}, not \"sig\""));
        }
        if let Some(ops) = m.get("key_ops") {
            let verify = ops
                .as_array()
                .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
            if !verify {
                return Err("key_ops does not include \"verify\"".into());
            }
        }
        if m.contains_key("d") {
            return Err("it contains private key material (\"d\")".into());
        }
        let alg = match text("alg")? {
            None => None,
            Some(a) => Some(Alg::parse(a).ok_or_else(|| format!("alg {a:?} is not supported"))?),
        };
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            let s = text(name)?.ok_or_else(|| format!("no {name}"))?;
            JWK_B64
                .decode(s)
                .map_err(|_| format!("{name} is not base64url"))
        };
        let kind = match kty {
            "RSA" => {
                let n = strip_leading_zeros(bytes("n")?);
                let e = strip_leading_zeros(bytes("e")?);
                let bits = bit_len(&n);
                if !(2048..=8192).contains(&bits) {
                    return Err(format!(
                        "RSA modulus of {bits} bits (2048 to 8192 are accepted)"
                    ));
                }
                if e.is_empty() {
                    return Err("RSA exponent is zero".into());
                }
                KeyKind::Rsa { n, e }
            }
            "EC" => {
                let crv = match text("crv")?.ok_or("no crv")? {
                    "P-256" => Curve::P256,
                    "P-384" => Curve::P384,
                    other => return Err(format!("curve {other:?} is not supported")),
                };
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != crv.coordinate_len() || y.len() != crv.coordinate_len() {
                    return Err("EC coordinates have the wrong length".into());
                }
                KeyKind::Ec { crv, x, y }
            }
            "OKP" => match text("crv")?.ok_or("no crv")? {
                "Ed25519" => {
                    let x = bytes("x")?;
                    if x.len() != 32 {
                        return Err("Ed25519 key is not 32 bytes".into());
                    }
                    KeyKind::Ed25519 { x }
                }
                other => return Err(format!("curve {other:?} is not supported")),
            },
            "oct" => return Err("symmetric (oct) keys are not used".into()),
            other => return Err(format!("key type {other:?} is not supported")),
        };
        let jwk = Jwk {
            kid: text("kid")?.map(str::to_owned),
            alg,
            kind,
        };
        if let Some(a) = jwk.alg
            && !a.fits(&jwk.kind)
        {
            return Err(format!("alg {a} does not fit the key type {kty}"));
        }
        Ok(jwk)
    }
}

fn strip_leading_zeros(mut b: Vec<u8>) -> Vec<u8> {
    let zeros = b.iter().take_while(|&&x| x == 0).count();
    b.drain(..zeros);
    b
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(first) => (be.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// The keys of one or more JWK sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

impl KeySet {
    pub fn new(keys: Vec<Jwk>) -> KeySet {
        KeySet { keys }
    }

    /// Parse a JWK set (`{"keys": [...]}`) or a single JWK object. Unusable keys are skipped (logged, the
    /// ones with private parts as a warning); only a document that is not a key set at all is an error.
    pub fn parse(json: &[u8]) -> Result<KeySet, JwtError> {
        let invalid = |why: &str| JwtError::KeysUnavailable(format!("invalid key set: {why}"));
        let doc: Value = serde_json::from_slice(json).map_err(|_| invalid("not JSON"))?;
        let items: Vec<&Value> = match &doc {
            Value::Object(m) => match m.get("keys") {
                Some(Value::Array(keys)) => keys.iter().collect(),
                Some(_) => return Err(invalid("\"keys\" is not an array")),
                None if m.contains_key("kty") => vec![&doc],
                None => return Err(invalid("neither {\"keys\": [...]} nor a JWK")),
            },
            _ => return Err(invalid("not a JSON object")),
        };
        if items.len() > MAX_KEYS {
            tracing::warn!(target: "tollgate::auth", keys = items.len(), kept = MAX_KEYS,
                "JWT key set has too many keys; the rest are ignored");
        }
        let mut keys = Vec::new();
        for item in items.into_iter().take(MAX_KEYS) {
            match Jwk::from_json(item) {
                Ok(k) => keys.push(k),
                Err(why) => {
                    let kid = item.get("kid").and_then(Value::as_str).unwrap_or("");
                    if item.get("d").is_some() {
                        tracing::warn!(target: "tollgate::auth", kid,
                            "JWT key set publishes a private key; the key is ignored (publish public keys only)");
                    } else {
                        tracing::debug!(target: "tollgate::auth", kid, reason = %why, "JWK skipped");
                    }
                }
            }
        }
        Ok(KeySet { keys })
    }

    /// All keys of several sets, in order.
    pub fn merge(sets: impl IntoIterator<Item = KeySet>) -> KeySet {
        KeySet {
            keys: sets.into_iter().flat_map(|s| s.keys).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The first key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Jwk> {
        self.keys.iter()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::jwt::{Validation, verify_with};
    use crate::testing::{TestKey, jwks};
    use serde_json::json;

    fn parse(v: &Value) -> Result<KeySet, JwtError> {
        KeySet::parse(v.to_string().as_bytes())
    }

    #[test]
    fn usable_keys_are_kept_and_the_rest_skipped() {
        let (rsa, ec, ec384, ed) = (
            TestKey::rsa(Alg::RS256, 0),
            TestKey::ec256(),
            TestKey::ec384(),
            TestKey::ed25519(),
        );
        let mut enc = rsa.jwk("enc");
        enc["use"] = json!("enc");
        enc["alg"] = json!("RSA-OAEP");
        let mut enc_no_alg = rsa.jwk("enc2");
        enc_no_alg["use"] = json!("enc");
        enc_no_alg.as_object_mut().unwrap().remove("alg");
        let mut private = ec.jwk("private");
        private["d"] = json!("c2VjcmV0");
        let mut wrap_only = rsa.jwk("wrap");
        wrap_only["key_ops"] = json!(["wrapKey"]);
        let mut verify_op = ed.jwk("ops");
        verify_op["key_ops"] = json!(["verify"]);
        let mut ec_as_rsa = ec.jwk("ec-rs");
        ec_as_rsa["alg"] = json!("RS256");
        let weak: Value =
            serde_json::from_str(include_str!("../testdata/rsa1024-jwk.json")).unwrap();
        let mut short_x = ec.jwk("short");
        short_x["x"] = json!("AAAA");
        let set = parse(&jwks(&[
            rsa.jwk("rsa"),
            ec.jwk("p256"),
            ec384.jwk("p384"),
            ed.jwk("ed"),
            verify_op,
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": "AAAA"}),
            json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"}),
            json!({"kty": "RSA", "kid": "hs", "alg": "HS256", "n": "AQAB", "e": "AQAB"}),
            json!({"kid": "no-kty"}),
            json!("not an object"),
            enc,
            enc_no_alg,
            private,
            wrap_only,
            ec_as_rsa,
            weak,
            short_x,
        ]))
        .unwrap();
        let kids: Vec<_> = set.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["rsa", "p256", "p384", "ed", "ops"]);
        assert_eq!(set.len(), 5);
        assert_eq!(
            set.get("p384").unwrap().kind,
            parse(&ec384.jwk("p384"))
                .unwrap()
                .iter()
                .next()
                .unwrap()
                .kind
        );
        assert!(matches!(
            set.get("p256").unwrap().kind,
            KeyKind::Ec {
                crv: Curve::P256,
                ..
            }
        ));
        assert_eq!(set.get("rsa").unwrap().alg, Some(Alg::RS256));
        assert!(set.get("hmac").is_none());
    }

    #[test]
    fn a_single_jwk_and_tolerated_encodings() {
        let key = TestKey::rsa(Alg::RS256, 1);
        let set = parse(&key.jwk("one")).unwrap();
        assert_eq!(set.len(), 1);
        // A leading zero byte in n (seen in the wild) and padded base64 still verify.
        let mut jwk = key.jwk("z");
        let n = JWK_B64.decode(jwk["n"].as_str().unwrap()).unwrap();
        let mut padded_n = vec![0];
        padded_n.extend_from_slice(&n);
        jwk["n"] = json!(base64::engine::general_purpose::URL_SAFE.encode(&padded_n));
        let set = parse(&jwks(&[jwk])).unwrap();
        assert!(matches!(&set.get("z").unwrap().kind, KeyKind::Rsa { n: got, .. } if *got == n));
        let token = key.sign(Some("z"), &json!({"exp": 2_000_000_000}));
        assert!(verify_with(&token, &set, &Validation::default(), 1_900_000_000).is_ok());
    }

    #[test]
    fn documents_that_are_not_key_sets_are_errors() {
        for bad in [
            &b"nope"[..],
            b"[]",
            br#"{"keys": 5}"#,
            br#"{"issuer": "x"}"#,
            b"\"keys\"",
        ] {
            assert!(
                matches!(KeySet::parse(bad), Err(JwtError::KeysUnavailable(_))),
                "{bad:?}"
            );
        }
        assert!(KeySet::parse(br#"{"keys": []}"#).unwrap().is_empty());
    }

    #[test]
    fn too_many_keys_are_cut() {
        let key = TestKey::ed25519();
        let many: Vec<Value> = (0..MAX_KEYS + 5)
            .map(|i| key.jwk(&format!("k{i}")))
            .collect();
        let set = parse(&jwks(&many)).unwrap();
        assert_eq!(set.len(), MAX_KEYS);
        assert!(set.get("k0").is_some() && set.get(&format!("k{MAX_KEYS}")).is_none());
    }

    #[test]
    fn merge_keeps_order_and_get_finds_the_first() {
        let (a, b) = (TestKey::ec256(), TestKey::ed25519());
        let one = parse(&jwks(&[a.jwk("a"), a.jwk("same")])).unwrap();
        let two = parse(&jwks(&[b.jwk("b"), b.jwk("same")])).unwrap();
        let all = KeySet::merge([one, two]);
        assert_eq!(all.len(), 4);
        assert!(all.get("b").is_some());
        assert!(matches!(all.get("same").unwrap().kind, KeyKind::Ec { .. }));
        assert!(KeySet::merge(Vec::new()).is_empty());
    }
}
