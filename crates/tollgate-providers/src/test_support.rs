//! Helpers the adapters' tests share: a recording mock upstream and a deployment with only its names set.

use tollgate_config::Deployment;
use tollgate_mock::{MockOptions, MockServer};

/// A mock upstream on a free local port that requires `api_key` and records the requests it gets.
pub async fn recording_mock(api_key: &str) -> MockServer {
    MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            api_key: Some(api_key.into()),
            record: true,
            ..MockOptions::default()
        },
    )
    .await
    .unwrap()
}

/// A deployment `model_name` of `provider`/`model` with every other setting unset.
pub fn bare_deployment(provider: &str, model_name: &str, model: &str) -> Deployment {
    Deployment {
        id: "id".into(),
        model_name: model_name.into(),
        provider: provider.into(),
        model: model.into(),
        ..Deployment::default()
    }
}
