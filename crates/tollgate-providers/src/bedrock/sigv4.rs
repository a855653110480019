//! AWS Signature Version 4 for Bedrock requests: URI encoding, canonical request, string to sign, signing key
//! chain and the `Authorization` header (header-based signing, HMAC-SHA256).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tollgate_config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The signing algorithm name, first line of the string to sign and start of the `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An AWS access key pair (plus a session token for temporary credentials). The secret never prints.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// What one signature covers. `headers` are the headers to sign: lowercase names, values as sent.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (already URI-encoded once); it is encoded again for the canonical
    /// request, as SigV4 requires for every service but S3.
    pub path: &'a str,
    /// The canonical query string (`""` when there is none).
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    /// Lowercase hex SHA-256 of the payload.
    pub payload_hash: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ` (the `x-amz-date` header).
    pub amz_date: &'a str,
}

/// URI-encode `s` as SigV4 does: unreserved characters (`A-Z a-z 0-9 - _ . ~`) stay, every other byte
/// becomes `%XX` (uppercase hex); `/` is encoded too.
pub fn uri_encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// The canonical URI of a path as sent: each segment URI-encoded again (so `%3A` becomes `%253A`), `/` kept.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let mut out = String::with_capacity(path.len() + 16);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        uri_encode(segment, &mut out);
    }
    out
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// A header value as SigV4 canonicalizes it: trimmed, inner runs of spaces collapsed to one.
fn canonical_value(v: &str, out: &mut String) {
    let mut space = false;
    for c in v.trim().chars() {
        if c == ' ' || c == '\t' {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
}

/// The canonical request and the signed-headers list.
pub fn canonical_request(r: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(&str, &str)> = r.headers.to_vec();
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let mut canonical = String::with_capacity(256);
    canonical.push_str(r.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(r.path));
    canonical.push('\n');
    canonical.push_str(r.query);
    canonical.push('\n');
    let mut signed = String::new();
    for (i, (name, value)) in headers.iter().enumerate() {
        canonical.push_str(name);
        canonical.push(':');
        canonical_value(value, &mut canonical);
        canonical.push('\n');
        if i > 0 {
            signed.push(';');
        }
        signed.push_str(name);
    }
    canonical.push('\n');
    canonical.push_str(&signed);
    canonical.push('\n');
    canonical.push_str(r.payload_hash);
    (canonical, signed)
}

/// `AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hex sha256(canonical request)}`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The `Authorization` header value for `r`.
pub fn authorization(creds: &Credentials, r: &Request<'_>) -> String {
    let date = r.amz_date.get(..8).unwrap_or(r.amz_date);
    let scope = format!("{date}/{}/{}/aws4_request", r.region, r.service);
    let (canonical, signed_headers) = canonical_request(r);
    let to_sign = string_to_sign(r.amz_date, &scope, &canonical);
    let key = signing_key(creds.secret_access_key.expose(), date, r.region, r.service);
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    )
}

/// The current time as `YYYYMMDDTHHMMSSZ`.
pub fn amz_date_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    amz_date(secs)
}

/// `secs` since the Unix epoch as `YYYYMMDDTHHMMSSZ` (UTC).
pub fn amz_date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) date in the proleptic Gregorian calendar.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: None,
        }
    }

    /// AWS's published example: `GET https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08`
    /// signed at 20150830T123600Z in us-east-1 for iam.
    #[test]
    fn aws_published_iam_list_users_example() {
        let r = Request {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &[
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
                ("host", "iam.amazonaws.com"),
                ("x-amz-date", "20150830T123600Z"),
            ],
            payload_hash: &sha256_hex(b""),
            region: "us-east-1",
            service: "iam",
            amz_date: "20150830T123600Z",
        };
        let (canonical, signed) = canonical_request(&r);
        assert_eq!(signed, "content-type;host;x-amz-date");
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        assert_eq!(
            authorization(&example_creds(), &r),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn canonical_uri_encodes_each_segment_again() {
        let mut enc = String::new();
        uri_encode("anthropic.claude-3-5-sonnet-20240620-v1:0", &mut enc);
        assert_eq!(enc, "anthropic.claude-3-5-sonnet-20240620-v1%3A0");
        let path = format!("/model/{enc}/converse");
        assert_eq!(
            canonical_uri(&path),
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse"
        );
        let mut arn = String::new();
        uri_encode(
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku",
            &mut arn,
        );
        assert_eq!(
            arn,
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-haiku"
        );
        assert!(canonical_uri(&format!("/model/{arn}/invoke")).contains("%252F"));
        let mut misc = String::new();
        uri_encode("a b~_-.@=,é", &mut misc);
        assert_eq!(misc, "a%20b~_-.%40%3D%2C%C3%A9");
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        let mut s = String::new();
        canonical_value("  a   b \t c  ", &mut s);
        assert_eq!(s, "a b c");
    }

    #[test]
    fn dates_format_as_amz_date() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date_now().len(), 16);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let mut c = example_creds();
        c.session_token = Some(Secret::new("TOKEN-SECRET"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("wJalr") && !shown.contains("TOKEN-SECRET"),
            "{shown}"
        );
        assert!(shown.contains("AKIDEXAMPLE"));
    }
}
