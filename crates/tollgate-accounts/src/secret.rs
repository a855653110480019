//! Virtual key secrets: generation (`sk-` + 32 random base62 characters from the OS CSPRNG), the stored
//! hash (SHA-256, hex, as LiteLLM stores it) and the display name (`sk-...abcd`).

use sha2::{Digest, Sha256};

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new secret key. Fails only when the OS has no randomness to give.
pub fn generate() -> Result<String, String> {
    let mut raw = [0u8; 64];
    getrandom::fill(&mut raw).map_err(|e| format!("no randomness available: {e}"))?;
    let mut out = String::with_capacity(35);
    out.push_str("sk-");
    // Rejection sampling keeps the characters uniform (248 = 4 x 62).
    for b in raw {
        if b < 248 && out.len() < 35 {
            out.push(ALPHABET[(b % 62) as usize] as char);
        }
    }
    if out.len() < 35 {
        return generate();
    }
    Ok(out)
}

/// The hash a key is stored and looked up by. A value that is already a hash (64 hex digits, as
/// `/key/info?key=` may pass) is returned as is.
pub fn hash(key: &str) -> String {
    if is_hash(key) {
        return key.to_string();
    }
    hash_secret(key)
}

/// SHA-256 of the secret, hex.
pub fn hash_secret(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
    }
    s
}

pub fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `sk-...abcd`.
pub fn display_name(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashed() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("sk-") && a.len() == 35, "{a}");
        let h = hash(&a);
        assert!(is_hash(&h));
        assert_eq!(hash(&h), h);
        assert_eq!(
            hash_secret("sk-1234"),
            "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
        );
        assert_eq!(display_name("sk-abcdefgh"), "sk-...efgh");
    }
}
