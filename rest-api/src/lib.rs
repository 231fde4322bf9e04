//! Sluice's REST API, compatible with Kafka Connect's: the same paths, JSON shapes, status codes and
//! error body `{"error_code", "message"}`.
//!
//! The API is a thin layer: every request becomes one call on a [`Herder`], which the worker
//! implements. [`router`] builds the routes from state without binding a socket, so tests and other
//! servers can mount it. Malformed JSON, wrong types, missing fields and oversized bodies get a 4xx
//! in the same error shape; unknown paths get 404 and wrong methods 405, never an HTML page.

mod error;
mod extract;
mod handlers;
pub mod model;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use sluice_connector_api::{ConfigKeyInfo, Props};

pub use error::ApiError;
use model::*;

/// The OpenAPI document of this API, served at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What the API asks of the worker (Kafka Connect's `Herder`).
#[async_trait]
pub trait Herder: Send + Sync + 'static {
    /// `GET /`.
    fn server_info(&self) -> ServerInfo;
    /// `GET /health`: `Err` with the reason when not healthy.
    async fn health(&self) -> Result<(), String>;
    /// Connector names, sorted.
    async fn connectors(&self) -> Vec<String>;
    /// A connector's config and tasks.
    async fn connector_info(&self, name: &str) -> Result<ConnectorInfo, ApiError>;
    /// A connector's and its tasks' states.
    async fn connector_status(&self, name: &str) -> Result<ConnectorStateInfo, ApiError>;
    /// Creates a connector; 409 if it exists, 400 if invalid.
    async fn create_connector(
        &self,
        name: &str,
        config: Props,
        initial_state: Option<TargetState>,
    ) -> Result<ConnectorInfo, ApiError>;
    /// Creates or updates a connector; returns whether it was created.
    async fn put_connector_config(
        &self,
        name: &str,
        config: Props,
    ) -> Result<(bool, ConnectorInfo), ApiError>;
    /// Deletes a connector.
    async fn delete_connector(&self, name: &str) -> Result<(), ApiError>;
    /// A connector's task configs.
    async fn task_configs(&self, name: &str) -> Result<Vec<TaskInfo>, ApiError>;
    /// Restarts a connector and, if asked, its (failed) tasks; returns the status when tasks were
    /// included.
    async fn restart_connector(
        &self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<Option<ConnectorStateInfo>, ApiError>;
    /// Restarts one task.
    async fn restart_task(&self, name: &str, task: u32) -> Result<(), ApiError>;
    /// Pauses, resumes or stops a connector.
    async fn set_target_state(&self, name: &str, state: TargetState) -> Result<(), ApiError>;
    /// `GET /connectors/{c}/offsets` body.
    async fn connector_offsets(&self, name: &str) -> Result<serde_json::Value, ApiError>;
    /// Topics a connector has used.
    async fn connector_topics(&self, name: &str) -> Result<Vec<String>, ApiError>;
    /// Forgets the topics a connector has used.
    async fn reset_connector_topics(&self, name: &str) -> Result<(), ApiError>;
    /// Installed plugins; with `connectors_only` false, also transforms, predicates and converters.
    fn plugins(&self, connectors_only: bool) -> Vec<PluginInfo>;
    /// A connector plugin's config definitions.
    fn plugin_config(&self, plugin: &str) -> Result<Vec<ConfigKeyInfo>, ApiError>;
    /// Validates a config against a plugin (no external calls).
    fn validate(&self, plugin: &str, config: &Props) -> Result<ConfigInfos, ApiError>;
    /// `GET /metrics`: this worker's metrics in the Prometheus text format.
    fn metrics(&self) -> String;
    /// Sends a range of a dead-letter topic back to the records' original topics.
    async fn redrive(
        &self,
        topic: &str,
        request: RedriveRequest,
    ) -> Result<RedriveResult, ApiError>;
}

/// Log levels, as `/admin/loggers` shows and changes them.
pub trait LogControl: Send + Sync + 'static {
    /// Every logger with an explicit level, and `root`.
    fn levels(&self) -> BTreeMap<String, String>;
    /// Sets a logger's level; returns the loggers affected.
    fn set_level(&self, logger: &str, level: &str) -> Result<Vec<String>, String>;
}

/// Everything the handlers need.
#[derive(Clone)]
pub struct AppState {
    /// The worker.
    pub herder: Arc<dyn Herder>,
    /// Log levels.
    pub logs: Arc<dyn LogControl>,
}

/// The API's routes, with bodies limited to `max_body_bytes`.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    use handlers::*;
    Router::new()
        .route("/", get(server_info))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/dead-letters/{topic}/redrive", post(redrive))
        .route("/openapi.json", get(openapi))
        .route("/connectors", get(list_connectors).post(create_connector))
        .route(
            "/connectors/{name}",
            get(get_connector).delete(delete_connector),
        )
        .route(
            "/connectors/{name}/config",
            get(get_connector_config).put(put_connector_config),
        )
        .route("/connectors/{name}/status", get(connector_status))
        .route("/connectors/{name}/restart", post(restart_connector))
        .route("/connectors/{name}/pause", put(pause_connector))
        .route("/connectors/{name}/resume", put(resume_connector))
        .route("/connectors/{name}/stop", put(stop_connector))
        .route("/connectors/{name}/tasks", get(task_configs))
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            post(restart_task),
        )
        .route("/connectors/{name}/offsets", get(connector_offsets))
        .route("/connectors/{name}/topics", get(connector_topics))
        .route(
            "/connectors/{name}/topics/reset",
            put(reset_connector_topics),
        )
        .route("/connector-plugins", get(list_plugins))
        .route("/connector-plugins/{plugin}/config", get(plugin_config))
        .route(
            "/connector-plugins/{plugin}/config/validate",
            put(validate_config),
        )
        .route("/admin/loggers", get(list_loggers))
        .route("/admin/loggers/{logger}", get(get_logger).put(set_logger))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::map_response(close_after_unread_body))
        .with_state(state)
}

/// A body rejected as too large was not read to its end, so the connection cannot carry another
/// request: tell the client to open a new one instead of failing on the next request.
async fn close_after_unread_body(
    mut response: axum::response::Response,
) -> axum::response::Response {
    if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_documents_every_route() {
        let doc: serde_json::Value =
            serde_json::from_str(super::OPENAPI).expect("openapi.json is JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let source = include_str!("lib.rs");
        // Every path literal inside `router()`, however rustfmt lays the calls out.
        let body = &source[source.find("Router::new()").expect("router")
            ..source.find(".fallback(").expect("fallback")];
        let routed: Vec<&str> = body
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|lit| lit.starts_with('/'))
            .collect();
        assert!(routed.len() > 20, "found {} routes", routed.len());
        for route in routed {
            assert!(paths.contains_key(route), "{route} is not in openapi.json");
        }
    }
}
