//! Test support (feature `testing`): signing keys for every algorithm, their public JWKs, and builders for
//! the tokens the verifier must refuse (unsigned, HMAC). Never use these keys outside tests.
// Test helpers: a key that cannot be loaded or a token that cannot be signed is a broken test, so panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

use crate::jwt::Alg;

/// Two committed RSA-2048 test keys (see testdata/README.md).
const RSA_KEYS: [&[u8]; 2] = [
    include_bytes!("../testdata/rsa2048-0.pk8.der"),
    include_bytes!("../testdata/rsa2048-1.pk8.der"),
];

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private key and the algorithm it signs with.
pub struct TestKey {
    alg: Alg,
    pair: Pair,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    /// One of the two committed RSA keys (`which` 0 or 1) signing with `alg` (RS* or PS*).
    pub fn rsa(alg: Alg, which: usize) -> TestKey {
        assert!(
            matches!(
                alg,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ),
            "{alg} is not an RSA algorithm"
        );
        let pair = RsaKeyPair::from_pkcs8(RSA_KEYS[which]).expect("test RSA key");
        TestKey {
            alg,
            pair: Pair::Rsa(pair),
        }
    }

    fn ec(alg: Alg, signing: &'static sig::EcdsaSigningAlgorithm) -> TestKey {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(signing, &rng).expect("EC key generation");
        let pair = EcdsaKeyPair::from_pkcs8(signing, doc.as_ref(), &rng).expect("EC key");
        TestKey {
            alg,
            pair: Pair::Ec(pair),
        }
    }

    /// A fresh P-256 key for ES256.
    pub fn ec256() -> TestKey {
        TestKey::ec(Alg::ES256, &sig::ECDSA_P256_SHA256_FIXED_SIGNING)
    }

    /// A fresh P-384 key for ES384.
    pub fn ec384() -> TestKey {
        TestKey::ec(Alg::ES384, &sig::ECDSA_P384_SHA384_FIXED_SIGNING)
    }

    /// A fresh Ed25519 key for EdDSA.
    pub fn ed25519() -> TestKey {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("Ed25519 generation");
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("Ed25519 key");
        TestKey {
            alg: Alg::EdDSA,
            pair: Pair::Ed(pair),
        }
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The public key as ring holds it: DER `RSAPublicKey` (PKCS#1), the EC point `0x04||x||y`, or the
    /// 32 Ed25519 bytes (an algorithm confusion attacker's HMAC secrets).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(p) => p.public_key().as_ref().to_vec(),
            Pair::Ec(p) => p.public_key().as_ref().to_vec(),
            Pair::Ed(p) => p.public_key().as_ref().to_vec(),
        }
    }

    /// The public JWK: `kid`, `kty`, `alg`, `use: "sig"` and the key members.
    pub fn jwk(&self, kid: &str) -> Value {
        let mut k = match &self.pair {
            Pair::Rsa(p) => {
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(p.public());
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Pair::Ec(p) => {
                let point = p.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let crv = if self.alg == Alg::ES256 {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({"kty": "EC", "crv": crv, "x": b64(&point[1..1 + half]), "y": b64(&point[1 + half..])})
            }
            Pair::Ed(p) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(p.public_key().as_ref())})
            }
        };
        k["kid"] = json!(kid);
        k["alg"] = json!(self.alg.as_str());
        k["use"] = json!("sig");
        k
    }

    /// A compact JWS of `claims` with header `{"alg", "typ": "JWT", "kid"?}`.
    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": self.alg.as_str(), "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        self.sign_with_header(&header, claims)
    }

    /// A compact JWS with exactly this header (its `alg` is not looked at: the key's algorithm signs).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let rng = SystemRandom::new();
        let signature = match &self.pair {
            Pair::Rsa(p) => {
                let padding: &'static dyn sig::RsaEncoding = match self.alg {
                    Alg::RS256 => &sig::RSA_PKCS1_SHA256,
                    Alg::RS384 => &sig::RSA_PKCS1_SHA384,
                    Alg::RS512 => &sig::RSA_PKCS1_SHA512,
                    Alg::PS256 => &sig::RSA_PSS_SHA256,
                    Alg::PS384 => &sig::RSA_PSS_SHA384,
                    _ => &sig::RSA_PSS_SHA512,
                };
                let mut out = vec![0; p.public().modulus_len()];
                p.sign(padding, &rng, input.as_bytes(), &mut out)
                    .expect("RSA signing");
                out
            }
            Pair::Ec(p) => p
                .sign(&rng, input.as_bytes())
                .expect("ECDSA signing")
                .as_ref()
                .to_vec(),
            Pair::Ed(p) => p.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&signature))
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// `{"keys": [...]}`.
pub fn jwks(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

/// An unsigned token (`header.claims.`), for the `alg: none` tests.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

/// A token "signed" with HMAC-SHA256 under `secret`, for the algorithm confusion tests.
pub fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        input.as_bytes(),
    );
    format!("{input}.{}", b64(tag.as_ref()))
}
