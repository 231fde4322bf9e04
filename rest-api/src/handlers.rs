//! One handler per endpoint; each turns the request into a [`Herder`](crate::Herder) call.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json_, json};
use sluice_connector_api::Props;

use crate::extract::ApiJson;
use crate::model::*;
use crate::{ApiError, AppState, OPENAPI};

type ApiResult<T> = Result<T, ApiError>;

/// Query parameters as (key, value) pairs; keys may repeat (`expand=status&expand=info`).
fn query_pairs(query: &Option<String>) -> Vec<(String, String)> {
    query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

fn bool_param(query: &Option<String>, name: &str) -> ApiResult<bool> {
    match query_pairs(query)
        .into_iter()
        .rev()
        .find(|(k, _)| k == name)
    {
        None => Ok(false),
        Some((_, v)) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some((_, v)) if v.eq_ignore_ascii_case("false") || v.is_empty() => Ok(false),
        Some((_, v)) => Err(ApiError::bad_request(format!(
            "Query parameter {name} must be true or false, got {v}"
        ))),
    }
}

/// Connector config values are strings; numbers and booleans are accepted and stringified.
fn config_props(config: BTreeMap<String, Json_>) -> ApiResult<Props> {
    config
        .into_iter()
        .map(|(k, v)| match v {
            Json_::String(s) => Ok((k, s)),
            Json_::Number(n) => Ok((k, n.to_string())),
            Json_::Bool(b) => Ok((k, b.to_string())),
            other => Err(ApiError::bad_request(format!(
                "Connector config value for key {k} must be a string, found {}",
                match other {
                    Json_::Null => "null",
                    Json_::Array(_) => "an array",
                    _ => "an object",
                }
            ))),
        })
        .collect()
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("Connector name must not be empty"));
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "Connector name {name:?} must not contain '/' or control characters"
        )));
    }
    Ok(())
}

/// Puts `name` into the config, or rejects a different one.
fn with_name(name: &str, mut config: Props) -> ApiResult<Props> {
    match config.get("name") {
        Some(n) if n != name => Err(ApiError::bad_request(format!(
            "Connector name configuration ({n}) doesn't match connector name in the URL ({name})"
        ))),
        _ => {
            config.insert("name".to_owned(), name.to_owned());
            Ok(config)
        }
    }
}

fn parse_task(task: &str) -> ApiResult<u32> {
    task.parse()
        .map_err(|_| ApiError::not_found(format!("Task {task} not found")))
}

pub(crate) async fn server_info(State(s): State<AppState>) -> Json<ServerInfo> {
    Json(s.herder.server_info())
}

pub(crate) async fn health(State(s): State<AppState>) -> Response {
    match s.herder.health().await {
        Ok(()) => Json(json!({"status": "healthy", "message": "Worker has completed startup and is ready to handle requests."})).into_response(),
        Err(reason) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"status": "unhealthy", "message": reason}))).into_response(),
    }
}

pub(crate) async fn redrive(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    ApiJson(request): ApiJson<RedriveRequest>,
) -> ApiResult<Json<RedriveResult>> {
    Ok(Json(s.herder.redrive(&topic, request).await?))
}

pub(crate) async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.herder.metrics(),
    )
        .into_response()
}

pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub(crate) async fn list_connectors(
    State(s): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let names = s.herder.connectors().await;
    let expand: Vec<String> = query_pairs(&query)
        .into_iter()
        .filter(|(k, _)| k == "expand")
        .map(|(_, v)| v)
        .collect();
    if expand.is_empty() {
        return Ok(Json(names).into_response());
    }
    let mut out = serde_json::Map::new();
    for name in names {
        let mut entry = serde_json::Map::new();
        for e in &expand {
            // A connector deleted meanwhile is simply left out.
            match e.as_str() {
                "status" => match s.herder.connector_status(&name).await {
                    Ok(st) => {
                        entry.insert("status".into(), json!(st));
                    }
                    Err(_) => continue,
                },
                "info" => match s.herder.connector_info(&name).await {
                    Ok(info) => {
                        entry.insert("info".into(), json!(info));
                    }
                    Err(_) => continue,
                },
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Unknown expand value {other}: use status or info"
                    )));
                }
            }
        }
        out.insert(name, Json_::Object(entry));
    }
    Ok(Json(Json_::Object(out)).into_response())
}

pub(crate) async fn create_connector(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CreateConnectorRequest>,
) -> ApiResult<Response> {
    let name = req.name.map(|n| n.trim().to_owned()).ok_or_else(|| {
        ApiError::bad_request("Connector name must be provided in the request body as \"name\"")
    })?;
    check_name(&name)?;
    let config = req.config.ok_or_else(|| {
        ApiError::bad_request("Connector config must be provided in the request body as \"config\"")
    })?;
    let config = with_name(&name, config_props(config)?)?;
    let info = s
        .herder
        .create_connector(&name, config, req.initial_state)
        .await?;
    let location = format!("/connectors/{name}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(info),
    )
        .into_response())
}

pub(crate) async fn get_connector(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ConnectorInfo>> {
    Ok(Json(s.herder.connector_info(&name).await?))
}

pub(crate) async fn delete_connector(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.herder.delete_connector(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn get_connector_config(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Props>> {
    Ok(Json(s.herder.connector_info(&name).await?.config))
}

pub(crate) async fn put_connector_config(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(config): ApiJson<BTreeMap<String, Json_>>,
) -> ApiResult<Response> {
    check_name(&name)?;
    let config = with_name(&name, config_props(config)?)?;
    let (created, info) = s.herder.put_connector_config(&name, config).await?;
    if created {
        let location = format!("/connectors/{name}");
        Ok((
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            Json(info),
        )
            .into_response())
    } else {
        Ok(Json(info).into_response())
    }
}

pub(crate) async fn connector_status(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ConnectorStateInfo>> {
    Ok(Json(s.herder.connector_status(&name).await?))
}

pub(crate) async fn restart_connector(
    State(s): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let include_tasks = bool_param(&query, "includeTasks")?;
    let only_failed = bool_param(&query, "onlyFailed")?;
    match s
        .herder
        .restart_connector(&name, include_tasks, only_failed)
        .await?
    {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(status) => Ok((StatusCode::ACCEPTED, Json(status)).into_response()),
    }
}

async fn target(s: AppState, name: String, state: TargetState) -> ApiResult<StatusCode> {
    s.herder.set_target_state(&name, state).await?;
    Ok(StatusCode::ACCEPTED)
}

pub(crate) async fn pause_connector(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    target(s, name, TargetState::Paused).await
}

pub(crate) async fn resume_connector(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    target(s, name, TargetState::Running).await
}

pub(crate) async fn stop_connector(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    target(s, name, TargetState::Stopped).await
}

pub(crate) async fn task_configs(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<TaskInfo>>> {
    Ok(Json(s.herder.task_configs(&name).await?))
}

pub(crate) async fn task_status(
    State(s): State<AppState>,
    Path((name, task)): Path<(String, String)>,
) -> ApiResult<Json<TaskStateInfo>> {
    let task = parse_task(&task)?;
    let status = s.herder.connector_status(&name).await?;
    status
        .tasks
        .into_iter()
        .find(|t| t.id == task)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("Task {name}-{task} not found")))
}

pub(crate) async fn restart_task(
    State(s): State<AppState>,
    Path((name, task)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let task = parse_task(&task)?;
    s.herder.restart_task(&name, task).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn connector_offsets(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Json_>> {
    Ok(Json(s.herder.connector_offsets(&name).await?))
}

pub(crate) async fn connector_topics(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Json_>> {
    let topics = s.herder.connector_topics(&name).await?;
    Ok(Json(json!({ name: { "topics": topics } })))
}

pub(crate) async fn reset_connector_topics(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.herder.reset_connector_topics(&name).await?;
    Ok(StatusCode::ACCEPTED)
}

pub(crate) async fn list_plugins(
    State(s): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<PluginInfo>>> {
    let all = match query_pairs(&query)
        .into_iter()
        .rev()
        .find(|(k, _)| k == "connectorsOnly")
    {
        Some((_, v)) if v.eq_ignore_ascii_case("false") => true,
        Some((_, v)) if v.eq_ignore_ascii_case("true") || v.is_empty() => false,
        Some((_, v)) => {
            return Err(ApiError::bad_request(format!(
                "Query parameter connectorsOnly must be true or false, got {v}"
            )));
        }
        None => false,
    };
    Ok(Json(s.herder.plugins(!all)))
}

pub(crate) async fn plugin_config(
    State(s): State<AppState>,
    Path(plugin): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.herder.plugin_config(&plugin)?).into_response())
}

pub(crate) async fn validate_config(
    State(s): State<AppState>,
    Path(plugin): Path<String>,
    ApiJson(config): ApiJson<BTreeMap<String, Json_>>,
) -> ApiResult<Json<ConfigInfos>> {
    let config = config_props(config)?;
    Ok(Json(s.herder.validate(&plugin, &config)?))
}

pub(crate) async fn list_loggers(State(s): State<AppState>) -> Json<Json_> {
    let levels = s.logs.levels();
    Json(Json_::Object(
        levels
            .into_iter()
            .map(|(k, v)| (k, json!({ "level": v })))
            .collect(),
    ))
}

pub(crate) async fn get_logger(
    State(s): State<AppState>,
    Path(logger): Path<String>,
) -> ApiResult<Json<Json_>> {
    s.logs
        .levels()
        .get(&logger)
        .map(|level| Json(json!({ "level": level })))
        .ok_or_else(|| ApiError::not_found(format!("Logger {logger} not found.")))
}

#[derive(serde::Deserialize)]
pub(crate) struct LevelRequest {
    level: String,
}

pub(crate) async fn set_logger(
    State(s): State<AppState>,
    Path(logger): Path<String>,
    ApiJson(req): ApiJson<LevelRequest>,
) -> ApiResult<Json<Vec<String>>> {
    s.logs
        .set_level(&logger, &req.level)
        .map(Json)
        .map_err(ApiError::bad_request)
}

pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("HTTP 404 Not Found: no endpoint at {}", uri.path()))
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "HTTP 405 Method Not Allowed",
    )
}
