//! URLs as they may be shown (headers, logs, `/health`, config summaries): without credentials or query.

/// `url` with any `user:password@` and the query string and fragment removed (query strings can carry keys,
/// e.g. `?api-key=`).
pub fn public_url(url: &str) -> String {
    let url = &url[..url.find(['?', '#']).unwrap_or(url.len())];
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_query_and_fragment_are_dropped() {
        assert_eq!(
            public_url("https://u:p@host:8443/v1?api-key=x#f"),
            "https://host:8443/v1"
        );
        assert_eq!(public_url("http://127.0.0.1:9/v1"), "http://127.0.0.1:9/v1");
        assert_eq!(public_url("http://localhost:8000"), "http://localhost:8000");
        assert_eq!(public_url("http://host/a@b"), "http://host/a@b");
    }
}
