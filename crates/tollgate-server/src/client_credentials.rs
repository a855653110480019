//! Client-side credentials (SSRF defence): request bodies carrying `api_key`, `api_base`/`base_url`, AWS keys or `vertex_credentials` are refused unless `general_settings.allow_client_side_credentials` (or the deployments' `configurable_clientside_auth_params`) allows them; when allowed they replace the deployment's for that one call, through an adapter built for it, and never go upstream in the body.

use std::sync::Arc;

use bytes::Bytes;
use tollgate_config::{CLIENT_SIDE_CREDENTIAL_FIELDS, Deployment, Env, Secret};
use tollgate_core::GatewayError;
use tollgate_core::wire::JsonObject;
use tollgate_providers::Provider;

use crate::state::{AppState, Runtime};

/// The deployment parameter listing the fields a model group lets clients send.
const PER_DEPLOYMENT_KEY: &str = "configurable_clientside_auth_params";

/// The credential fields of one request body (only built when at least one is present).
pub struct ClientCredentials {
    /// `(field, value)` in [`CLIENT_SIDE_CREDENTIAL_FIELDS`] order; `vertex_credentials` may be an object
    /// (kept as its JSON text).
    fields: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are secrets; names only.
        let names: Vec<&str> = self.fields.iter().map(|(k, _)| *k).collect();
        f.debug_struct("ClientCredentials")
            .field("fields", &names)
            .finish()
    }
}

fn refused(field: &str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: format!(
            "Rejected Request: {field} is not allowed in request body. Enable with general_settings::allow_client_side_credentials on proxy config.yaml"
        ),
        param: Some(field.to_owned()),
        code: Some("client_side_credentials_not_allowed".into()),
    }
}

impl ClientCredentials {
    /// The credential fields of `obj`; `None` (no allocation) when there are none. A field present with
    /// `null` counts as present (it is refused like any value), a non-string value (other than
    /// `vertex_credentials`) is a 400.
    pub fn read(obj: &JsonObject<'_>) -> Result<Option<ClientCredentials>, GatewayError> {
        if !obj
            .keys()
            .any(|k| CLIENT_SIDE_CREDENTIAL_FIELDS.contains(&k))
        {
            return Ok(None);
        }
        let mut fields = Vec::new();
        for &f in CLIENT_SIDE_CREDENTIAL_FIELDS {
            let Some(raw) = obj.get(f) else { continue };
            let value = match serde_json::from_str::<Option<String>>(raw.get()) {
                Ok(v) => v.unwrap_or_default(),
                Err(_) if f == "vertex_credentials" => raw.get().to_owned(),
                Err(_) => {
                    return Err(GatewayError::invalid_param(
                        f,
                        format!("`{f}` must be a string"),
                    ));
                }
            };
            fields.push((f, value));
        }
        Ok(Some(ClientCredentials { fields }))
    }

    /// Refuse the request unless every field is allowed: by `allow_client_side_credentials`, or by the
    /// `configurable_clientside_auth_params` of every deployment of the model group (`base_url` counts as
    /// `api_base`). The master key is no exemption.
    pub fn authorize(&self, rt: &Runtime, group: &[usize]) -> Result<(), GatewayError> {
        if rt.config.security.allow_client_side_credentials {
            return Ok(());
        }
        let entries = rt.router.entries();
        for (field, _) in &self.fields {
            let allowed = !group.is_empty()
                && group.iter().all(|&i| {
                    entries
                        .get(i)
                        .is_some_and(|e| deployment_allows(&e.deployment, field))
                });
            if !allowed {
                return Err(refused(field));
            }
        }
        Ok(())
    }

    /// The body without the credential fields (re-serialized; only called when one is present).
    pub fn strip(&self, body: &Bytes) -> Result<Bytes, GatewayError> {
        let mut v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
        for f in CLIENT_SIDE_CREDENTIAL_FIELDS {
            v.remove(*f);
        }
        serde_json::to_vec(&v)
            .map(Bytes::from)
            .map_err(|e| GatewayError::Internal(e.to_string()))
    }

    fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, v)| *k == field && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// `d` with this request's credentials in place of its own.
    pub fn apply(&self, d: &Deployment) -> Result<Deployment, GatewayError> {
        let mut d = d.clone();
        if let Some(base) = self.get("api_base").or_else(|| self.get("base_url")) {
            let lower = base.trim().to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://"))
                || base.trim().chars().any(char::is_whitespace)
            {
                let param = if self.get("api_base").is_some() {
                    "api_base"
                } else {
                    "base_url"
                };
                return Err(GatewayError::invalid_param(
                    param,
                    format!("`{param}` must be an http:// or https:// URL"),
                ));
            }
            d.api_base = Some(base.trim().to_owned());
        }
        if let Some(key) = self.get("api_key") {
            d.api_key = Some(Secret::new(key));
        }
        for f in [
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_session_token",
            "aws_region_name",
        ] {
            if let Some(v) = self.get(f) {
                d.extra_params
                    .insert(f.to_owned(), serde_json::Value::String(v.to_owned()));
            }
        }
        Ok(d)
    }

    /// An adapter for this one call: deployment `d` with the request's credentials.
    pub fn provider_for(
        &self,
        state: &AppState,
        rt: &Runtime,
        d: &Deployment,
    ) -> Result<Arc<dyn Provider>, GatewayError> {
        let d = self.apply(d)?;
        let base = state
            .reloader()
            .map_or_else(Env::process, |r| r.env.clone());
        let env = rt.config.layered_env(&base);
        tollgate_providers::build(
            &d,
            &tollgate_providers::BuildContext {
                env: &env,
                client: &state.shared().client,
                drop_params: rt.config.drop_params,
            },
        )
        .map_err(|e| GatewayError::invalid(format!("client-side credentials: {e}")))
    }
}

/// Whether `d`'s `configurable_clientside_auth_params` lists `field` (`base_url` and `api_base` are one).
fn deployment_allows(d: &Deployment, field: &str) -> bool {
    let Some(list) = d
        .extra_params
        .get(PER_DEPLOYMENT_KEY)
        .and_then(serde_json::Value::as_array)
    else {
        return false;
    };
    let same = |name: &str| {
        name == field
            || (matches!(field, "api_base" | "base_url") && matches!(name, "api_base" | "base_url"))
    };
    list.iter().filter_map(serde_json::Value::as_str).any(same)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn read(body: &str) -> Option<ClientCredentials> {
        ClientCredentials::read(&JsonObject::parse(body.as_bytes()).unwrap()).unwrap()
    }

    fn deployment(params: serde_json::Value) -> Deployment {
        let mut d = Deployment {
            id: "d".into(),
            model_name: "m".into(),
            provider: "openai".into(),
            model: "gpt".into(),
            api_base: Some("http://configured.test/v1".into()),
            api_key: Some(Secret::new("sk-configured")),
            ..Deployment::default()
        };
        if let serde_json::Value::Object(m) = params {
            d.extra_params = m;
        }
        d
    }

    #[test]
    fn fields_are_found() {
        assert!(read(r#"{"model":"m","messages":[]}"#).is_none());
        // Only top-level fields count.
        assert!(read(r#"{"model":"m","metadata":{"api_key":"x"}}"#).is_none());
        let c = read(r#"{"model":"m","base_url":"http://x","api_key":"sk-c"}"#).unwrap();
        assert_eq!(c.get("api_key"), Some("sk-c"));
        assert_eq!(c.get("base_url"), Some("http://x"));
        let c = read(r#"{"api_base":null}"#).unwrap();
        assert_eq!(c.fields.len(), 1);
        let c = read(r#"{"vertex_credentials":{"type":"service_account"}}"#).unwrap();
        assert_eq!(c.fields[0].0, "vertex_credentials");
        let e = ClientCredentials::read(&JsonObject::parse(br#"{"api_key":1}"#).unwrap())
            .err()
            .unwrap();
        assert_eq!(e.param(), Some("api_key"));
        // Debug shows names, never values.
        let c = read(r#"{"api_key":"sk-very-secret"}"#).unwrap();
        assert!(!format!("{c:?}").contains("sk-very-secret"));
    }

    #[test]
    fn per_deployment_params() {
        let d = deployment(serde_json::json!({PER_DEPLOYMENT_KEY: ["api_base"]}));
        assert!(deployment_allows(&d, "api_base"));
        assert!(deployment_allows(&d, "base_url"));
        assert!(!deployment_allows(&d, "api_key"));
        assert!(!deployment_allows(
            &deployment(serde_json::json!({})),
            "api_base"
        ));
        // Regex entries (unsupported) allow nothing.
        let d = deployment(serde_json::json!({PER_DEPLOYMENT_KEY: [{"api_base": ".*"}]}));
        assert!(!deployment_allows(&d, "api_base"));
    }

    #[test]
    fn apply_replaces_the_deployments_credentials() {
        let c = read(r#"{"base_url":"http://client.test/v1","api_key":"sk-client","aws_region_name":"eu-west-1"}"#)
            .unwrap();
        let d = c.apply(&deployment(serde_json::json!({}))).unwrap();
        assert_eq!(d.api_base.as_deref(), Some("http://client.test/v1"));
        assert_eq!(d.api_key.as_ref().map(Secret::expose), Some("sk-client"));
        assert_eq!(d.extra_params["aws_region_name"], "eu-west-1");
        let c = read(r#"{"api_base":"file:///etc/passwd"}"#).unwrap();
        let e = c.apply(&deployment(serde_json::json!({}))).err().unwrap();
        assert_eq!(e.param(), Some("api_base"));
        // Only the key: the deployment's base stays.
        let c = read(r#"{"api_key":"sk-client"}"#).unwrap();
        let d = c.apply(&deployment(serde_json::json!({}))).unwrap();
        assert_eq!(d.api_base.as_deref(), Some("http://configured.test/v1"));
    }

    #[test]
    fn strip_removes_every_credential_field() {
        let c =
            read(r#"{"model":"m","api_key":"k","api_base":"http://x","vertex_credentials":{}}"#)
                .unwrap();
        let out = c
            .strip(&Bytes::from_static(
                br#"{"model":"m","api_key":"k","api_base":"http://x","vertex_credentials":{}}"#,
            ))
            .unwrap();
        assert_eq!(&out[..], br#"{"model":"m"}"#);
    }

    #[test]
    fn refusal_names_the_field() {
        let e = refused("api_base");
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.param(), Some("api_base"));
        assert_eq!(e.code(), Some("client_side_credentials_not_allowed"));
        assert!(e.to_string().starts_with(
            "Rejected Request: api_base is not allowed in request body. Enable with general_settings::allow_client_side_credentials"
        ));
    }
}
