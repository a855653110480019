//! Request handlers, one module per family of routes.

pub mod health;
pub mod manage;
pub mod metrics;
pub mod models;
pub mod openai;
pub mod reload;
