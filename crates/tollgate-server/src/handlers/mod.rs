//! Request handlers, one module per family of routes.

pub mod health;
pub mod models;
pub mod openai;
