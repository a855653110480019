//! The HTTP server: route table, middleware stack, handlers, auth and error responses. The only crate that
//! knows HTTP-server types.

pub mod client_credentials;
pub mod dispatch;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod health_checks;
pub mod jwt;
pub mod listener;
pub mod middleware;
pub mod observe;
pub mod record;
pub mod router;
pub mod routes;
pub mod state;

pub use listener::{ListenerOptions, serve};
pub use router::build_router;
pub use state::{AppState, Runtime};
