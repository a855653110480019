//! The key set cache: fetch the JWKS URLs, keep the keys for a TTL, refresh on an unknown `kid` (single flight,
//! rate limited), and keep the last good keys when the identity provider cannot be reached.
//!
//! Fetching goes through [`Fetch`] so the HTTP client stays with the server crate. Every fetch is bounded
//! ([`FETCH_TIMEOUT`], [`MAX_JWKS_BYTES`]). Any number of concurrent verifications needing fresh keys cause
//! one fetch; fetches (after the first) happen at most once per [`CacheOptions::min_refresh_interval`], so
//! tokens with made-up `kid`s cannot make us hammer the identity provider. A token is parsed and its header
//! checked before the cache is touched, so garbage never causes a fetch.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::jwks::KeySet;
use crate::jwt::{self, JwtError, Validation, Verified};

/// The longest a key set fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest key set document accepted.
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// The body of a key set URL, or why it could not be had.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;

/// Fetches a key set document (the server implements it with its HTTP client).
pub trait Fetch: Send + Sync + 'static {
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// How long fetched keys are used before they are fetched again (LiteLLM's `public_key_ttl`).
    pub ttl: Duration,
    /// The least time between two fetches after the first (unknown `kid`, stale set, failures).
    pub min_refresh_interval: Duration,
}

impl Default for CacheOptions {
    fn default() -> CacheOptions {
        CacheOptions {
            ttl: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(10),
        }
    }
}

/// What verifications read: replaced whole on every fetch attempt.
#[derive(Debug)]
struct Current {
    /// The merged keys of `per_url`.
    keys: Arc<KeySet>,
    /// The last good set of each URL (same order as `urls`).
    per_url: Vec<Option<Arc<KeySet>>>,
    /// When every URL last answered with a usable set.
    fetched_at: Option<Instant>,
    /// Counts fetch attempts: a caller that saw generation g and finds g+1 knows someone fetched meanwhile.
    generation: u64,
}

/// Held while fetching (the single flight lock).
#[derive(Debug, Default)]
struct Attempts {
    last: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// No keys yet: wait for the fetch.
    Empty,
    /// Older than the TTL: one caller fetches, the others use the old keys meanwhile.
    Stale,
    /// Unknown `kid` (or no key of the token's family): wait for the fetch.
    Miss,
}

/// The JWKS URLs' keys, fetched on demand.
pub struct JwksCache {
    urls: Vec<String>,
    opts: CacheOptions,
    fetcher: Arc<dyn Fetch>,
    fetch_timeout: Duration,
    current: RwLock<Arc<Current>>,
    flight: tokio::sync::Mutex<Attempts>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("urls", &self.urls)
            .field("opts", &self.opts)
            .field("keys", &self.key_count())
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache of the keys at `urls` (nothing is fetched until the first verification or [`refresh`]).
    ///
    /// [`refresh`]: JwksCache::refresh
    pub fn new(urls: Vec<String>, opts: CacheOptions, fetcher: Arc<dyn Fetch>) -> JwksCache {
        let current = Current {
            keys: Arc::new(KeySet::default()),
            per_url: vec![None; urls.len()],
            fetched_at: None,
            generation: 0,
        };
        JwksCache {
            urls,
            opts,
            fetcher,
            fetch_timeout: FETCH_TIMEOUT,
            current: RwLock::new(Arc::new(current)),
            flight: tokio::sync::Mutex::new(Attempts::default()),
        }
    }

    /// Bound each fetch by `timeout` instead of [`FETCH_TIMEOUT`].
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> JwksCache {
        self.fetch_timeout = timeout;
        self
    }

    /// The number of keys held now.
    pub fn key_count(&self) -> usize {
        self.snapshot().keys.len()
    }

    /// The keys held now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.snapshot().keys.clone()
    }

    /// The whole verification: the header is checked first; then the key is picked by `kid` from the
    /// cached set (fetched when empty or older than the TTL; when the `kid` is unknown the set is fetched
    /// again, at most once per `min_refresh_interval`, else [`JwtError::UnknownKid`]); then the signature
    /// and the claims at the current time.
    pub async fn verify(&self, token: &str, v: &Validation) -> Result<Verified, JwtError> {
        let parsed = jwt::parse(token)?;
        let mut cur = self.snapshot();
        if cur.keys.is_empty() {
            cur = self.update(cur.generation, Why::Empty).await?;
        } else if cur
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.opts.ttl)
        {
            cur = self.update(cur.generation, Why::Stale).await?;
        }
        match jwt::verify_parsed(parsed, &cur.keys, v, unix_now()) {
            Err(JwtError::UnknownKid(_) | JwtError::NoMatchingKey) => {
                let seen = cur.generation;
                let fresh = self.update(seen, Why::Miss).await?;
                // Whether or not that fetched, answer from the newest keys.
                jwt::verify_with(token, &fresh.keys, v, unix_now())
            }
            other => other,
        }
    }

    /// Fetch every URL now and merge. A URL that fails keeps its previous keys (warned about); an error only
    /// when there are no keys at all afterwards.
    pub async fn refresh(&self) -> Result<(), JwtError> {
        let mut attempts = self.flight.lock().await;
        let cur = self.fetch_locked(&mut attempts).await;
        self.usable(&cur, &attempts).map(|_| ())
    }

    fn snapshot(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keys newer than generation `seen`, fetching if nobody did meanwhile and the rate limit allows.
    async fn update(&self, seen: u64, why: Why) -> Result<Arc<Current>, JwtError> {
        let mut attempts = match why {
            Why::Stale => match self.flight.try_lock() {
                Ok(guard) => guard,
                // Someone is fetching: the old keys serve until they are done.
                Err(_) => return Ok(self.snapshot()),
            },
            Why::Empty | Why::Miss => self.flight.lock().await,
        };
        let cur = self.snapshot();
        if cur.generation != seen {
            // Fetched while we waited for the lock: single flight.
            return self.usable(&cur, &attempts);
        }
        if attempts
            .last
            .is_some_and(|last| last.elapsed() < self.opts.min_refresh_interval)
        {
            return self.usable(&cur, &attempts);
        }
        let cur = self.fetch_locked(&mut attempts).await;
        self.usable(&cur, &attempts)
    }

    fn usable(&self, cur: &Arc<Current>, attempts: &Attempts) -> Result<Arc<Current>, JwtError> {
        if cur.keys.is_empty() {
            return Err(JwtError::KeysUnavailable(
                attempts
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no key set has been fetched".into()),
            ));
        }
        Ok(cur.clone())
    }

    /// One fetch of every URL; the caller holds the flight lock.
    async fn fetch_locked(&self, attempts: &mut Attempts) -> Arc<Current> {
        let old = self.snapshot();
        let mut per_url = old.per_url.clone();
        let mut errors = Vec::new();
        for (slot, url) in per_url.iter_mut().zip(&self.urls) {
            match self.fetch_one(url).await {
                Ok(set) => *slot = Some(Arc::new(set)),
                Err(why) => {
                    tracing::warn!(target: "tollgate::auth", url = %url, error = %why,
                        kept_keys = slot.as_ref().map_or(0, |s| s.len()),
                        "cannot refresh a JWT key set; keeping the previous keys");
                    errors.push(format!("{url}: {why}"));
                }
            }
        }
        if self.urls.is_empty() {
            errors.push("no key set URL is configured".into());
        }
        let keys = KeySet::merge(per_url.iter().flatten().map(|s| (**s).clone()));
        let now = Instant::now();
        attempts.last = Some(now);
        attempts.last_error = (!errors.is_empty()).then(|| errors.join("; "));
        let next = Arc::new(Current {
            keys: Arc::new(keys),
            per_url,
            fetched_at: if errors.is_empty() {
                Some(now)
            } else {
                old.fetched_at
            },
            generation: old.generation + 1,
        });
        if errors.is_empty() {
            tracing::debug!(target: "tollgate::auth", keys = next.keys.len(), "JWT key sets fetched");
        }
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next.clone();
        next
    }

    async fn fetch_one(&self, url: &str) -> Result<KeySet, String> {
        let body = tokio::time::timeout(self.fetch_timeout, self.fetcher.fetch(url))
            .await
            .map_err(|_| format!("no answer within {} ms", self.fetch_timeout.as_millis()))??;
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("the key set is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let set = KeySet::parse(&body).map_err(|e| e.to_string())?;
        if set.is_empty() {
            return Err("the key set has no usable verification key".into());
        }
        Ok(set)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Alg;
    use crate::testing::{TestKey, jwks, unsigned};
    use serde_json::{Value, json};
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The HTTP fetch's test double: a body (or an error) per URL, a delay, and a call counter.
    #[derive(Default)]
    struct Fake {
        bodies: Mutex<HashMap<String, Result<Vec<u8>, String>>>,
        delay: Mutex<Duration>,
        calls: AtomicUsize,
    }

    impl Fake {
        fn serve(&self, url: &str, keys: &[Value]) {
            self.serve_raw(url, Ok(jwks(keys).to_string().into_bytes()));
        }
        fn serve_raw(&self, url: &str, body: Result<Vec<u8>, String>) {
            self.bodies.lock().unwrap().insert(url.into(), body);
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Fetch for Fake {
        fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let delay = *self.delay.lock().unwrap();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let body = self.bodies.lock().unwrap().get(url).cloned();
                body.unwrap_or_else(|| Err("404 Not Found".into()))
            })
        }
    }

    const URL: &str = "https://idp.test/jwks";

    fn cache(fake: &Arc<Fake>, urls: &[&str]) -> JwksCache {
        JwksCache::new(
            urls.iter().map(|u| u.to_string()).collect(),
            CacheOptions::default(),
            fake.clone(),
        )
    }

    fn token(key: &TestKey, kid: &str) -> String {
        key.sign(Some(kid), &json!({"sub": kid, "exp": unix_now() + 3600}))
    }

    fn v() -> Validation {
        Validation::default()
    }

    #[tokio::test(start_paused = true)]
    async fn fetches_lazily_once_then_serves_from_memory() {
        let fake = Arc::new(Fake::default());
        let key = TestKey::ec256();
        fake.serve(URL, &[key.jwk("a")]);
        let c = cache(&fake, &[URL]);
        assert_eq!((c.key_count(), fake.calls()), (0, 0));
        for _ in 0..3 {
            let ok = c.verify(&token(&key, "a"), &v()).await.unwrap();
            assert_eq!(ok.claims["sub"], "a");
        }
        assert_eq!((c.key_count(), fake.calls()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn refused_headers_never_cause_a_fetch() {
        let fake = Arc::new(Fake::default());
        let c = cache(&fake, &[URL]);
        let claims = json!({"exp": unix_now() + 60});
        let none = unsigned(&json!({"alg": "none", "kid": "a"}), &claims);
        assert!(matches!(
            c.verify(&none, &v()).await,
            Err(JwtError::AlgNone)
        ));
        let hs = crate::testing::hs256(b"k", &json!({"alg": "HS256"}), &claims);
        assert!(matches!(
            c.verify(&hs, &v()).await,
            Err(JwtError::UnsupportedAlg(_))
        ));
        assert!(matches!(
            c.verify("a.b", &v()).await,
            Err(JwtError::Malformed(_))
        ));
        assert_eq!(fake.calls(), 0);
    }

    /// Twenty concurrent verifications of `kid`; all must pass.
    async fn twenty(c: &Arc<JwksCache>, key: &TestKey, kid: &str) {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (c, t) = (c.clone(), token(key, kid));
            set.spawn(async move { c.verify(&t, &v()).await.map(|_| ()) });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_verifications_fetch_once() {
        // No rate limit, so only the single flight can keep this to one fetch per need.
        let fake = Arc::new(Fake::default());
        *fake.delay.lock().unwrap() = Duration::from_millis(200);
        let (a, b) = (TestKey::ed25519(), TestKey::ec256());
        fake.serve(URL, &[a.jwk("a")]);
        let opts = CacheOptions {
            min_refresh_interval: Duration::ZERO,
            ..CacheOptions::default()
        };
        let c = Arc::new(JwksCache::new(vec![URL.into()], opts, fake.clone()));
        twenty(&c, &a, "a").await;
        assert_eq!(fake.calls(), 1, "first use");
        fake.serve(URL, &[a.jwk("a"), b.jwk("b")]);
        twenty(&c, &b, "b").await;
        assert_eq!(fake.calls(), 2, "unknown kid");
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kid_refreshes_once_and_at_most_once_per_interval() {
        let fake = Arc::new(Fake::default());
        *fake.delay.lock().unwrap() = Duration::from_millis(50);
        let (a, b) = (TestKey::rsa(Alg::RS256, 0), TestKey::rsa(Alg::RS256, 1));
        fake.serve(URL, &[a.jwk("a")]);
        let c = Arc::new(cache(&fake, &[URL]));
        c.verify(&token(&a, "a"), &v()).await.unwrap();
        fake.serve(URL, &[a.jwk("a"), b.jwk("b")]);
        // Within the interval since the last fetch: no fetch, unknown.
        let r = c.verify(&token(&b, "b"), &v()).await;
        assert!(matches!(r, Err(JwtError::UnknownKid(k)) if k == "b"));
        assert_eq!(fake.calls(), 1);

        tokio::time::advance(Duration::from_secs(10)).await;
        twenty(&c, &b, "b").await;
        assert_eq!(
            fake.calls(),
            2,
            "twenty verifications of a new kid, one fetch"
        );

        // Made-up kids cannot make us hammer the identity provider.
        for i in 0..5 {
            let r = c.verify(&token(&b, &format!("made-up-{i}")), &v()).await;
            assert!(matches!(r, Err(JwtError::UnknownKid(_))));
        }
        assert_eq!(fake.calls(), 2);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(matches!(
            c.verify(&token(&b, "x"), &v()).await,
            Err(JwtError::UnknownKid(_))
        ));
        assert_eq!(fake.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn rotation_retires_the_old_kid() {
        let fake = Arc::new(Fake::default());
        let (old, new) = (TestKey::rsa(Alg::PS256, 0), TestKey::rsa(Alg::PS256, 1));
        fake.serve(URL, &[old.jwk("old")]);
        let c = cache(&fake, &[URL]);
        c.verify(&token(&old, "old"), &v()).await.unwrap();
        fake.serve(URL, &[new.jwk("new")]);
        tokio::time::advance(Duration::from_secs(11)).await;
        c.verify(&token(&new, "new"), &v()).await.unwrap();
        assert_eq!((fake.calls(), c.key_count()), (2, 1));
        let r = c.verify(&token(&old, "old"), &v()).await;
        assert!(matches!(r, Err(JwtError::UnknownKid(k)) if k == "old"));
        // The old key signing under the new kid is a bad signature, not a pass.
        let r = c.verify(&token(&old, "new"), &v()).await;
        assert!(matches!(r, Err(JwtError::BadSignature)));
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_fetched_again_after_the_ttl() {
        let fake = Arc::new(Fake::default());
        let key = TestKey::ec384();
        fake.serve(URL, &[key.jwk("a")]);
        let c = cache(&fake, &[URL]);
        c.verify(&token(&key, "a"), &v()).await.unwrap();
        tokio::time::advance(Duration::from_secs(599)).await;
        c.verify(&token(&key, "a"), &v()).await.unwrap();
        assert_eq!(fake.calls(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        c.verify(&token(&key, "a"), &v()).await.unwrap();
        assert_eq!(fake.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_keeps_the_old_keys() {
        let fake = Arc::new(Fake::default());
        let (a, b) = (TestKey::ec256(), TestKey::ed25519());
        fake.serve(URL, &[a.jwk("a")]);
        let c = cache(&fake, &[URL]);
        c.verify(&token(&a, "a"), &v()).await.unwrap();
        for broken in [
            Err("connection refused".to_string()),
            Ok(b"<html>oops</html>".to_vec()),
            Ok(br#"{"keys": []}"#.to_vec()),
            Ok(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#.to_vec()),
        ] {
            fake.serve_raw(URL, broken);
            let before = fake.calls();
            tokio::time::advance(Duration::from_secs(601)).await;
            c.verify(&token(&a, "a"), &v()).await.unwrap();
            assert_eq!(fake.calls(), before + 1);
            assert_eq!(c.key_count(), 1);
            c.refresh().await.unwrap();
            assert_eq!(fake.calls(), before + 2);
            // Still stale, but failures are retried at most once per interval.
            c.verify(&token(&a, "a"), &v()).await.unwrap();
            assert_eq!(fake.calls(), before + 2);
        }
        fake.serve(URL, &[b.jwk("b")]);
        tokio::time::advance(Duration::from_secs(10)).await;
        c.verify(&token(&b, "b"), &v()).await.unwrap();
        assert!(matches!(
            c.verify(&token(&a, "a"), &v()).await,
            Err(JwtError::UnknownKid(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn keys_never_fetched_are_unavailable() {
        let fake = Arc::new(Fake::default());
        let key = TestKey::ec256();
        let c = cache(&fake, &[URL]);
        match c.verify(&token(&key, "a"), &v()).await {
            Err(JwtError::KeysUnavailable(why)) => assert!(why.contains("404"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Rate limited: the next one does not fetch.
        assert!(matches!(
            c.verify(&token(&key, "a"), &v()).await,
            Err(JwtError::KeysUnavailable(_))
        ));
        assert_eq!(fake.calls(), 1);
        assert!(matches!(
            c.refresh().await,
            Err(JwtError::KeysUnavailable(_))
        ));
        fake.serve(URL, &[key.jwk("a")]);
        tokio::time::advance(Duration::from_secs(10)).await;
        c.verify(&token(&key, "a"), &v()).await.unwrap();
        let none = JwksCache::new(Vec::new(), CacheOptions::default(), fake.clone());
        assert!(matches!(
            none.verify(&token(&key, "a"), &v()).await,
            Err(JwtError::KeysUnavailable(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_over_five_seconds_fails() {
        let key = TestKey::ec256();
        for (delay_ms, ok) in [(4_900, true), (5_100, false)] {
            let fake = Arc::new(Fake::default());
            fake.serve(URL, &[key.jwk("a")]);
            *fake.delay.lock().unwrap() = Duration::from_millis(delay_ms);
            let c = cache(&fake, &[URL]);
            match c.verify(&token(&key, "a"), &v()).await {
                Ok(_) => assert!(ok, "{delay_ms} ms"),
                Err(JwtError::KeysUnavailable(why)) => {
                    assert!(!ok && why.contains("no answer"), "{delay_ms} ms: {why}")
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn key_sets_over_one_mebibyte_are_refused() {
        let key = TestKey::ec256();
        let doc = jwks(&[key.jwk("a")]).to_string();
        for (len, ok) in [(MAX_JWKS_BYTES, true), (MAX_JWKS_BYTES + 1, false)] {
            let fake = Arc::new(Fake::default());
            let mut body = doc.clone().into_bytes();
            body.resize(len, b' ');
            fake.serve_raw(URL, Ok(body));
            let c = cache(&fake, &[URL]);
            assert_eq!(c.verify(&token(&key, "a"), &v()).await.is_ok(), ok, "{len}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn several_urls_merge_and_fail_separately() {
        const OTHER: &str = "https://other.test/keys";
        let fake = Arc::new(Fake::default());
        let (a, b, c2) = (
            TestKey::ec256(),
            TestKey::ed25519(),
            TestKey::rsa(Alg::RS512, 0),
        );
        fake.serve(URL, &[a.jwk("a")]);
        fake.serve(OTHER, &[b.jwk("b")]);
        let c = cache(&fake, &[URL, OTHER]);
        c.verify(&token(&a, "a"), &v()).await.unwrap();
        c.verify(&token(&b, "b"), &v()).await.unwrap();
        assert_eq!((c.key_count(), fake.calls()), (2, 2));
        // OTHER goes down; URL rotates: OTHER's keys stay, URL's new key arrives.
        fake.serve_raw(OTHER, Err("timeout".into()));
        fake.serve(URL, &[c2.jwk("c")]);
        tokio::time::advance(Duration::from_secs(10)).await;
        c.verify(&token(&c2, "c"), &v()).await.unwrap();
        c.verify(&token(&b, "b"), &v()).await.unwrap();
        assert!(matches!(
            c.verify(&token(&a, "a"), &v()).await,
            Err(JwtError::UnknownKid(_))
        ));
        assert_eq!(c.key_count(), 2);
    }
}
