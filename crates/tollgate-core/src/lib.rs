//! Core types shared by every tollgate crate: the gateway error and its HTTP mapping, OpenAI wire helpers, usage.
//!
//! This crate depends on no other tollgate crate and on no web framework.

pub mod error;
pub mod ids;
pub mod money;
pub mod pricing;
pub mod url;
pub mod usage;
pub mod wire;

pub use error::{ErrorBody, GatewayError, UpstreamFailure};
pub use money::Nanos;
pub use usage::Usage;
