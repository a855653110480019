//! Middleware: request context (id, timing, response headers) and authentication.

pub mod auth;
pub mod context;
