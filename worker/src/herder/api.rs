//! The herder as the REST API sees it: each Kafka Connect endpoint as one method.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sluice_connector_api::{ConfigKeyInfo, ConnectorType, Props, TaskId};
use sluice_rest_api::model::TaskErrors;
use sluice_rest_api::model::*;
use sluice_rest_api::{ApiError, Herder as HerderApi};

use super::{Herder, validate_for_create, validate_with};
use crate::cluster::raft::RestartRequest;
use crate::store::TargetState as StoredTarget;
use crate::store::status::{connector_key, task_key};

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("request failed: {e}");
    ApiError::internal(format!("The worker could not complete the request: {e}"))
}

impl Herder {
    fn kind_of(&self, config: &Props) -> ConnectorType {
        config
            .get("connector.class")
            .and_then(|c| self.registry.find(c).ok())
            .map_or(ConnectorType::Source, |p| p.kind)
    }

    fn info(&self, name: &str) -> Result<ConnectorInfo, ApiError> {
        let snapshot = self.configs.snapshot();
        let entry = snapshot
            .connectors
            .get(name)
            .ok_or_else(|| ApiError::no_connector(name))?;
        Ok(ConnectorInfo {
            name: name.to_owned(),
            config: entry.config.clone(),
            tasks: (0..entry.tasks.len() as u32)
                .map(|task| ConnectorTaskId {
                    connector: name.to_owned(),
                    task,
                })
                .collect(),
            kind: self.kind_of(&entry.config),
        })
    }

    fn state_info(&self, key: &str) -> StateInfo {
        // This worker's own view of a unit is authoritative only while the unit is assigned here;
        // otherwise the status topic (newest generation wins) says who runs it.
        let local = self.state_of(key).filter(|_| self.assigned_key(key));
        match local {
            Some((state, trace)) => StateInfo {
                state,
                worker_id: self.worker_id.clone(),
                trace,
            },
            None => match self.statuses.get(key) {
                Some(s) => StateInfo {
                    state: s.state,
                    worker_id: s.worker_id,
                    trace: s.trace,
                },
                None => StateInfo {
                    state: "UNASSIGNED".to_owned(),
                    worker_id: self.worker_id.clone(),
                    trace: None,
                },
            },
        }
    }

    /// A task's error summary: this worker's own while the task runs here, else the status
    /// topic's.
    fn errors_info(&self, key: &str) -> Option<TaskErrors> {
        if self.assigned_key(key) {
            self.local_errors(key)
        } else {
            self.statuses.get(key).and_then(|s| s.errors)
        }
    }

    fn status(&self, name: &str) -> Result<ConnectorStateInfo, ApiError> {
        let snapshot = self.configs.snapshot();
        let entry = snapshot
            .connectors
            .get(name)
            .ok_or_else(|| ApiError::no_connector(name))?;
        let stopped = snapshot.target_state(name) == StoredTarget::Stopped;
        Ok(ConnectorStateInfo {
            name: name.to_owned(),
            connector: self.state_info(&connector_key(name)),
            tasks: if stopped {
                Vec::new()
            } else {
                (0..entry.tasks.len() as u32)
                    .map(|id| TaskStateInfo {
                        id,
                        state: self.state_info(&task_key(name, id)),
                        errors: self.errors_info(&task_key(name, id)),
                    })
                    .collect()
            },
            kind: self.kind_of(&entry.config),
        })
    }

    fn exists(&self, name: &str) -> bool {
        self.configs.snapshot().connectors.contains_key(name)
    }

    async fn write_config(
        &self,
        name: &str,
        config: &Props,
        initial: Option<TargetState>,
    ) -> Result<(), ApiError> {
        validate_for_create(&self.registry, config, &self.worker)?;
        if let Some(state) = initial {
            self.configs
                .put_target_state(name, stored(state))
                .await
                .map_err(internal)?;
        }
        self.configs
            .put_connector_config(name, config)
            .await
            .map_err(internal)?;
        self.reconcile().await;
        Ok(())
    }
}

impl Herder {
    /// Asks the fleet to restart; each worker restarts what it runs of it.
    async fn request_restart(
        &self,
        name: &str,
        task: Option<u32>,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<(), ApiError> {
        let requested_at_ms = sluice_connector_api::now_ms();
        let request = RestartRequest {
            connector: name.to_owned(),
            task,
            include_connector: task.is_none(),
            include_tasks,
            only_failed,
            requested_at_ms,
        };
        self.cluster
            .restart(request)
            .await
            .map_err(|e| ApiError::conflict(e.to_string()))
    }
}

fn stored(state: TargetState) -> StoredTarget {
    match state {
        TargetState::Running => StoredTarget::Started,
        TargetState::Paused => StoredTarget::Paused,
        TargetState::Stopped => StoredTarget::Stopped,
    }
}

#[async_trait]
impl HerderApi for Herder {
    fn server_info(&self) -> ServerInfo {
        ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: option_env!("SLUICE_COMMIT").unwrap_or("unknown").to_owned(),
            kafka_cluster_id: self.kafka_cluster_id.clone(),
        }
    }

    async fn health(&self) -> Result<(), String> {
        if !self.ready.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("Worker is still starting up".to_owned());
        }
        if !self.cluster.view().borrow().live {
            return Err(
                "Worker is not in touch with the worker fleet (joining, or cut off from the leader)"
                    .to_owned(),
            );
        }
        match tokio::time::timeout(Duration::from_secs(10), self.running.lock()).await {
            Ok(_) => Ok(()),
            Err(_) => Err("Worker is busy and did not answer within 10 s".to_owned()),
        }
    }

    async fn connectors(&self) -> Vec<String> {
        self.configs.snapshot().connectors.keys().cloned().collect()
    }

    async fn connector_info(&self, name: &str) -> Result<ConnectorInfo, ApiError> {
        self.info(name)
    }

    async fn connector_status(&self, name: &str) -> Result<ConnectorStateInfo, ApiError> {
        self.status(name)
    }

    async fn create_connector(
        &self,
        name: &str,
        config: Props,
        initial_state: Option<TargetState>,
    ) -> Result<ConnectorInfo, ApiError> {
        if self.exists(name) {
            return Err(ApiError::conflict(format!(
                "Connector {name} already exists"
            )));
        }
        self.write_config(name, &config, initial_state).await?;
        self.info(name)
    }

    async fn put_connector_config(
        &self,
        name: &str,
        config: Props,
    ) -> Result<(bool, ConnectorInfo), ApiError> {
        let created = !self.exists(name);
        self.write_config(name, &config, None).await?;
        Ok((created, self.info(name)?))
    }

    async fn delete_connector(&self, name: &str) -> Result<(), ApiError> {
        if !self.exists(name) {
            return Err(ApiError::no_connector(name));
        }
        self.configs
            .remove_connector(name)
            .await
            .map_err(internal)?;
        self.reconcile().await;
        Ok(())
    }

    async fn task_configs(&self, name: &str) -> Result<Vec<TaskInfo>, ApiError> {
        let snapshot = self.configs.snapshot();
        let entry = snapshot
            .connectors
            .get(name)
            .ok_or_else(|| ApiError::no_connector(name))?;
        Ok(entry
            .tasks
            .iter()
            .enumerate()
            .map(|(n, config)| TaskInfo {
                id: ConnectorTaskId {
                    connector: name.to_owned(),
                    task: n as u32,
                },
                config: config.clone(),
            })
            .collect())
    }

    async fn restart_connector(
        &self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<Option<ConnectorStateInfo>, ApiError> {
        if !self.exists(name) {
            return Err(ApiError::no_connector(name));
        }
        self.request_restart(name, None, include_tasks, only_failed)
            .await?;
        if !(include_tasks || only_failed) {
            return Ok(None);
        }
        // As Kafka Connect answers: what is about to restart shows as RESTARTING.
        let mut status = self.status(name)?;
        let restarting = |s: &mut StateInfo| {
            if !only_failed || s.state == "FAILED" {
                s.state = "RESTARTING".to_owned();
                s.trace = None;
            }
        };
        restarting(&mut status.connector);
        if include_tasks {
            for t in &mut status.tasks {
                restarting(&mut t.state);
            }
        }
        Ok(Some(status))
    }

    async fn restart_task(&self, name: &str, task: u32) -> Result<(), ApiError> {
        let id = TaskId::new(name, task);
        if !self.exists(name) {
            return Err(ApiError::no_connector(name));
        }
        if !self.task_exists(&id) {
            return Err(ApiError::not_found(format!("Task {id} not found")));
        }
        self.request_restart(name, Some(task), false, false).await
    }

    async fn set_target_state(&self, name: &str, state: TargetState) -> Result<(), ApiError> {
        if !self.exists(name) {
            return Err(ApiError::no_connector(name));
        }
        self.configs
            .put_target_state(name, stored(state))
            .await
            .map_err(internal)?;
        self.reconcile().await;
        Ok(())
    }

    async fn connector_offsets(&self, name: &str) -> Result<serde_json::Value, ApiError> {
        let info = self.info(name)?;
        let offsets = match info.kind {
            ConnectorType::Source => self
                .offsets
                .connector_offsets(name)
                .into_iter()
                .map(|(partition, offset)| json!({"partition": partition, "offset": offset}))
                .collect::<Vec<_>>(),
            ConnectorType::Sink => {
                let topics = self.statuses.topics(name);
                self.clients
                    .committed_offsets(&format!("connect-{name}"), &topics)
                    .await
                    .map_err(internal)?
                    .into_iter()
                    .map(|(topic, partition, offset)| json!({"partition": {"kafka_topic": topic, "kafka_partition": partition}, "offset": {"kafka_offset": offset}}))
                    .collect()
            }
        };
        Ok(json!({ "offsets": offsets }))
    }

    async fn connector_topics(&self, name: &str) -> Result<Vec<String>, ApiError> {
        self.info(name)?;
        Ok(self.statuses.topics(name))
    }

    async fn reset_connector_topics(&self, name: &str) -> Result<(), ApiError> {
        self.info(name)?;
        self.statuses.reset_topics(name).await.map_err(internal)
    }

    fn plugins(&self, connectors_only: bool) -> Vec<PluginInfo> {
        let mut out: Vec<PluginInfo> = self
            .registry
            .plugins()
            .into_iter()
            .map(|p| PluginInfo {
                class: p.class.to_owned(),
                kind: p.kind.to_string(),
                version: Some(p.version.to_owned()),
            })
            .collect();
        if !connectors_only {
            let version = Some(env!("CARGO_PKG_VERSION").to_owned());
            for class in sluice_transforms::transform_classes() {
                out.push(PluginInfo {
                    class,
                    kind: "transformation".into(),
                    version: version.clone(),
                });
            }
            for class in sluice_transforms::predicate_classes() {
                out.push(PluginInfo {
                    class,
                    kind: "predicate".into(),
                    version: version.clone(),
                });
            }
            for (class, _) in sluice_connector_api::convert::CONVERTERS {
                out.push(PluginInfo {
                    class: (*class).to_owned(),
                    kind: "converter".into(),
                    version: version.clone(),
                });
            }
        }
        out
    }

    fn plugin_config(&self, plugin: &str) -> Result<Vec<ConfigKeyInfo>, ApiError> {
        let plugin = self
            .registry
            .find(plugin)
            .map_err(|e| ApiError::not_found(e.to_string()))?;
        Ok(plugin.create().config_def().describe())
    }

    fn metrics(&self) -> String {
        self.metrics.render()
    }

    async fn redrive(
        &self,
        topic: &str,
        request: RedriveRequest,
    ) -> Result<RedriveResult, ApiError> {
        use crate::redrive::{RedriveError, redrive};
        redrive(&self.clients, &self.source_producer, topic, &request)
            .await
            .map_err(|e| match e {
                RedriveError::NoTopic(m) => ApiError::not_found(m),
                RedriveError::Kafka(m) => internal(m),
            })
    }

    fn validate(&self, plugin: &str, config: &Props) -> Result<ConfigInfos, ApiError> {
        let found = self
            .registry
            .find(plugin)
            .map_err(|e| ApiError::not_found(e.to_string()))?;
        if let Some(class) = config.get("connector.class")
            && self.registry.find(class).map(|p| p.class) != Ok(found.class)
        {
            return Err(ApiError::bad_request(format!(
                "Included connector type {class} does not match request type {plugin}"
            )));
        }
        Ok(validate_with(found, config, &self.worker))
    }
}
