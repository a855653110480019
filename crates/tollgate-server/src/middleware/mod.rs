//! Middleware: request context (id, timing, response headers), authentication, the concurrency limit and CORS.

pub mod auth;
pub mod concurrency;
pub mod context;
pub mod cors;
