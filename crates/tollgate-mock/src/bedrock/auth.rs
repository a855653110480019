//! Bedrock authentication as the mock checks it: a Bedrock API key (`Authorization: Bearer`) or a SigV4
//! `Authorization` header whose access key id is the mock's key. The SigV4 check is structural (algorithm,
//! credential scope for service `bedrock`, signed `host` and `x-amz-date`, a 64-hex signature, a date within
//! 15 minutes, the payload hash when `x-amz-content-sha256` is sent). When the mock knows the secret access
//! key, [`check_request`] also recomputes the signature from the request ([`signature`]) and compares.

use http::header::AUTHORIZATION;
use http::header::HOST;
use http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

use crate::router::Req;

/// How far `x-amz-date` may be from the mock's clock.
const MAX_SKEW_SECS: u64 = 15 * 60;

/// Why a request is refused: status, Bedrock error type (`x-amzn-errortype`) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied {
    pub(crate) status: StatusCode,
    pub(crate) error_type: &'static str,
    pub(crate) message: String,
}

fn denied(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Denied {
    Denied {
        status,
        error_type,
        message: message.into(),
    }
}

fn incomplete(message: impl Into<String>) -> Denied {
    denied(
        StatusCode::BAD_REQUEST,
        "IncompleteSignatureException",
        message,
    )
}

fn invalid_signature(message: impl Into<String>) -> Denied {
    denied(StatusCode::FORBIDDEN, "InvalidSignatureException", message)
}

/// The parts of a SigV4 `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SigV4<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) date: &'a str,
    pub(crate) region: &'a str,
    pub(crate) service: &'a str,
    pub(crate) signed_headers: Vec<&'a str>,
    pub(crate) signature: &'a str,
}

/// Parse `AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=a;b,
/// Signature=hex`.
pub(crate) fn parse_sigv4(value: &str) -> Result<SigV4<'_>, Denied> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        incomplete("Unsupported AWS 'algorithm': only AWS4-HMAC-SHA256 is supported.")
    })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').unwrap_or((part.trim(), ""));
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let need = |name: &str| {
        incomplete(format!(
            "Authorization header requires '{name}' parameter. Authorization={value}"
        ))
    };
    let credential = credential.ok_or_else(|| need("Credential"))?;
    let signed = signed.ok_or_else(|| need("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| need("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(format!(
            "Credential should have exactly 5 parts separated by '/': {credential}"
        )));
    };
    if terminator != "aws4_request" {
        return Err(incomplete(format!(
            "Credential should have terminator 'aws4_request', not '{terminator}'."
        )));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!("Invalid credential date '{date}'.")));
    }
    if signature.len() != 64
        || !signature
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(incomplete(
            "Signature must be 64 lowercase hexadecimal characters.",
        ));
    }
    Ok(SigV4 {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYMMDDTHHMMSSZ` as seconds since the Unix epoch.
pub(crate) fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok()
}

/// Seconds since the Unix epoch as `YYYYMMDDTHHMMSSZ` (tests sign with the current time).
#[cfg(test)]
pub(crate) fn format_amz_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days (the inverse of `days_from_civil`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `Ok` when the request may pass, else why not. `now` is seconds since the Unix epoch.
pub(crate) fn check(key: &str, headers: &HeaderMap, body: &[u8], now: u64) -> Result<(), Denied> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(denied(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| incomplete("The Authorization header is not valid text."))?;
    let bad_key = || {
        denied(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    };
    if let Some(token) = value
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("bearer "))
        .map(|_| value[7..].trim())
    {
        return if token == key { Ok(()) } else { Err(bad_key()) };
    }
    let sig = parse_sigv4(value)?;
    if sig.access_key_id != key {
        return Err(bad_key());
    }
    if sig.service != "bedrock" {
        return Err(invalid_signature(format!(
            "Credential should be scoped to correct service: 'bedrock', not '{}'.",
            sig.service
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !sig.signed_headers.contains(&required) {
            return Err(incomplete(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    for name in &sig.signed_headers {
        if *name != "host" && !headers.contains_key(*name) {
            return Err(incomplete(format!(
                "The signed header '{name}' is not in the request."
            )));
        }
    }
    if headers.contains_key("x-amz-security-token")
        && !sig.signed_headers.contains(&"x-amz-security-token")
    {
        return Err(incomplete(
            "'x-amz-security-token' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let when = parse_amz_date(amz_date)
        .ok_or_else(|| incomplete(format!("Invalid X-Amz-Date '{amz_date}'.")))?;
    if amz_date.get(..8) != Some(sig.date) {
        return Err(invalid_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
             '{}' != '{}', from '{amz_date}'.",
            sig.date,
            amz_date.get(..8).unwrap_or_default()
        )));
    }
    if when.abs_diff(now) > MAX_SKEW_SECS {
        return Err(invalid_signature(format!(
            "Signature expired: {amz_date} is now outside the 15 minutes allowed around the server's time."
        )));
    }
    if let Some(sent) = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        && sent != "UNSIGNED-PAYLOAD"
        && sent != hex(&Sha256::digest(body))
    {
        return Err(denied(
            StatusCode::BAD_REQUEST,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    Ok(())
}

/// [`check`], then, when `secret` is set and the request is SigV4-signed, the signature itself: it is
/// recomputed from the request (method, path as received, query, the signed headers' values, the payload
/// hash, `x-amz-date`, the credential scope) and compared in constant time; a mismatch is a 403
/// `InvalidSignatureException`.
pub(crate) fn check_request(
    key: &str,
    secret: Option<&str>,
    req: &Req<'_>,
    now: u64,
) -> Result<(), Denied> {
    check(key, req.headers, req.body, now)?;
    let Some(secret) = secret else {
        return Ok(());
    };
    let Some(value) = req.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    if !value.starts_with("AWS4-HMAC-SHA256 ") {
        return Ok(()); // a Bedrock API key, already checked
    }
    let sig = parse_sigv4(value)?;
    let mismatch = || {
        denied(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your \
             AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )
    };
    let text = |v: &http::HeaderValue| v.to_str().map_err(|_| mismatch()).map(str::to_owned);
    let mut values: Vec<(&str, String)> = Vec::with_capacity(sig.signed_headers.len());
    for name in &sig.signed_headers {
        let value = if *name == "host" {
            match (req.headers.get(HOST), req.authority) {
                (Some(h), _) => text(h)?,
                (None, Some(a)) => a.to_owned(),
                (None, None) => return Err(mismatch()),
            }
        } else {
            // Repeated headers are signed as their values joined with `,`.
            let all = req
                .headers
                .get_all(*name)
                .iter()
                .map(|v| text(v).map(|s| s.trim().to_owned()))
                .collect::<Result<Vec<_>, _>>()?;
            all.join(",")
        };
        values.push((name, value));
    }
    let headers: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let payload_hash = match req
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        Some(sent) => sent.to_owned(),
        None => hex(&Sha256::digest(req.body)),
    };
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let query = canonical_query(req.query.unwrap_or_default());
    let expected = signature(
        secret,
        &Signed {
            method: req.method.as_str(),
            path: if req.path.is_empty() { "/" } else { req.path },
            query: &query,
            headers: &headers,
            payload_hash: &payload_hash,
            amz_date,
            region: sig.region,
            service: sig.service,
        },
    );
    if constant_time_eq(expected.as_bytes(), sig.signature.as_bytes()) {
        Ok(())
    } else {
        Err(mismatch())
    }
}

/// The canonical query string of a query as received (its parts already URI-encoded): `name=value` pairs
/// sorted, a bare name given an empty value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a SigV4 signature covers (header names lowercase).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signed<'a> {
    pub(crate) method: &'a str,
    /// The path as sent (already URI-encoded once).
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) payload_hash: &'a str,
    pub(crate) amz_date: &'a str,
    pub(crate) region: &'a str,
    pub(crate) service: &'a str,
}

/// The SigV4 signature of a request (header-based), given the secret: canonical request (each path
/// segment encoded again), string to sign, signing key chain. For full verification once the mock is given
/// the secret access key.
pub(crate) fn signature(secret: &str, r: &Signed<'_>) -> String {
    use hmac::{Hmac, Mac};
    let Signed {
        method,
        path,
        query,
        headers,
        payload_hash,
        amz_date,
        region,
        service,
    } = *r;
    fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
        match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    let mut canonical_path = String::new();
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            canonical_path.push('/');
        }
        for b in seg.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                canonical_path.push(char::from(b));
            } else {
                canonical_path.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut sorted = headers.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut canonical = format!("{method}\n{canonical_path}\n{query}\n");
    for (k, v) in &sorted {
        canonical.push_str(&format!(
            "{k}:{}\n",
            v.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    let signed: Vec<&str> = sorted.iter().map(|(k, _)| *k).collect();
    canonical.push_str(&format!("\n{}\n{payload_hash}", signed.join(";")));
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k = mac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = mac(&k, region.as_bytes());
    let k = mac(&k, service.as_bytes());
    let k = mac(&k, b"aws4_request");
    hex(&mac(&k, to_sign.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: u64 = 1_440_938_160; // 20150830T123600Z

    fn signed_headers(auth: &str, date: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h.insert("x-amz-date", HeaderValue::from_str(date).unwrap());
        h
    }

    fn auth(key: &str, service: &str, signed: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={key}/20150830/us-east-1/{service}/aws4_request, \
             SignedHeaders={signed}, Signature={}",
            "a".repeat(64)
        )
    }

    #[test]
    fn aws_published_example_signature() {
        let sig = signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            &Signed {
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
                payload_hash: &hex(&Sha256::digest(b"")),
                amz_date: "20150830T123600Z",
                region: "us-east-1",
                service: "iam",
            },
        );
        assert_eq!(
            sig,
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(NOW));
        assert_eq!(parse_amz_date("20000229T000000Z"), Some(951_782_400));
        assert_eq!(parse_amz_date("2015-08-30"), None);
        assert_eq!(format_amz_date(NOW), "20150830T123600Z");
        assert_eq!(
            parse_amz_date(&format_amz_date(1_700_000_000)),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn structural_checks() {
        let ok = signed_headers(
            &auth("AK", "bedrock", "host;x-amz-date"),
            "20150830T123600Z",
        );
        assert_eq!(check("AK", &ok, b"", NOW), Ok(()));
        let wrong_key = check("OTHER", &ok, b"", NOW).unwrap_err();
        assert_eq!(wrong_key.error_type, "UnrecognizedClientException");
        let h = signed_headers(&auth("AK", "iam", "host;x-amz-date"), "20150830T123600Z");
        assert_eq!(
            check("AK", &h, b"", NOW).unwrap_err().error_type,
            "InvalidSignatureException"
        );
        let h = signed_headers(&auth("AK", "bedrock", "x-amz-date"), "20150830T123600Z");
        assert_eq!(
            check("AK", &h, b"", NOW).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let expired = check("AK", &ok, b"", NOW + 16 * 60).unwrap_err();
        assert!(expired.message.contains("Signature expired"), "{expired:?}");
        let h = signed_headers(
            &auth("AK", "bedrock", "host;x-amz-date"),
            "20150831T123600Z",
        );
        assert!(check("AK", &h, b"", NOW).is_err());
        let mut h = ok.clone();
        h.insert("x-amz-content-sha256", HeaderValue::from_static("00"));
        assert_eq!(
            check("AK", &h, b"{}", NOW).unwrap_err().error_type,
            "XAmzContentSHA256Mismatch"
        );
        let mut h = signed_headers(
            &auth("AK", "bedrock", "host;x-amz-content-sha256;x-amz-date"),
            "20150830T123600Z",
        );
        h.insert(
            "x-amz-content-sha256",
            HeaderValue::from_str(&hex(&Sha256::digest(b"{}"))).unwrap(),
        );
        assert_eq!(check("AK", &h, b"{}", NOW), Ok(()));
        let mut bearer = HeaderMap::new();
        bearer.insert(AUTHORIZATION, HeaderValue::from_static("Bearer AK"));
        assert_eq!(check("AK", &bearer, b"", NOW), Ok(()));
        assert!(check("AK2", &bearer, b"", NOW).is_err());
        assert_eq!(
            check("AK", &HeaderMap::new(), b"", NOW)
                .unwrap_err()
                .error_type,
            "MissingAuthenticationTokenException"
        );
        assert!(
            parse_sigv4("AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=x")
                .is_err()
        );
    }
}
