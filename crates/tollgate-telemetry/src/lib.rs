//! Observability building blocks, free of HTTP-server and SQL types: the Prometheus registry and text
//! exposition (`metrics`), spans, W3C trace context, sampling and the OTLP exporter (`trace`, `otlp`), and
//! batched, retried delivery of JSON to webhooks (`webhook`). Sending goes through [`transport::Transport`],
//! which the server implements over its shared HTTP client.

pub mod metrics;
pub mod otlp;
pub mod trace;
pub mod transport;
pub mod webhook;
