//! JWT authentication primitives: token verification (jwt), JSON Web Key sets (jwks), the key cache (cache).
//!
//! Tokens are verified with ring's primitives directly, so the algorithm policy is ours: asymmetric
//! algorithms only (RS*, PS*, ES256, ES384, EdDSA), never `none` or HMAC, the key's type must fit the
//! token's algorithm, and `exp` is required.

pub mod cache;
pub mod jwks;
pub mod jwt;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use cache::{CacheOptions, Fetch, FetchFuture, JwksCache};
pub use jwks::{Curve, Jwk, KeyKind, KeySet};
pub use jwt::{Alg, JwtError, Validation, Verified, claim, looks_like_jwt, verify_with};
