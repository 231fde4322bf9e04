//! The herder: makes the connectors and tasks running on this worker match the config topic.
//!
//! Every change (a REST write, a config record written by another worker, a connector asking for
//! new task configs, a task failing) ends in [`Herder::reconcile`], which runs under one lock and
//! compares what the config topic says with what runs here: it starts, restarts, pauses and stops
//! connector instances and tasks until they match. Writes go to the config topic first and are
//! applied only once read back from it, so a restarted worker, which reads the same topic,
//! reaches the same state.
//!
//! On this single worker every connector and task is assigned here; the distributed assignment
//! replaces `assigned_here` without changing the rest.

mod api;
mod validate;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_connector_api::{ConnectorContext, ConnectorInstance, PluginRegistry, Props, TaskId};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::connector_config::RuntimeSettings;
use crate::error::WorkerError;
use crate::kafka::KafkaClients;
use crate::store::status::{connector_key, task_key};
use crate::store::{ConfigStore, ConnectorStatus, OffsetStore, StatusStore, TargetState};
use crate::task::{
    Desired, Reporter, SinkTaskRunner, SourceTaskRunner, TaskEvent, TaskHandle, TaskReport,
    TaskSettings, TaskState,
};

pub use validate::{validate_for_create, validate_with};

/// A running connector instance.
struct RunningConnector {
    config: Props,
    instance: ConnectorInstance,
    settings: Arc<RuntimeSettings>,
    /// Set when the connector asks for new task configs (and at start).
    reconfigure: Arc<AtomicBool>,
}

/// What runs on this worker.
#[derive(Default)]
struct Running {
    connectors: BTreeMap<String, RunningConnector>,
    tasks: BTreeMap<TaskId, TaskHandle>,
    /// Connectors whose instance failed to start, with the config that failed (not retried
    /// until the config changes or a restart is requested).
    failed: BTreeMap<String, Props>,
}

struct Context {
    reconfigure: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl ConnectorContext for Context {
    fn request_task_reconfiguration(&self) {
        self.reconfigure.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// The worker's connector orchestration.
pub struct Herder {
    worker_id: String,
    worker: Arc<WorkerConfig>,
    registry: PluginRegistry,
    clients: KafkaClients,
    configs: ConfigStore,
    offsets: Arc<OffsetStore>,
    statuses: StatusStore,
    kafka_cluster_id: String,
    /// One producer for every source task: librdkafka batches best with one producer per process,
    /// and each record's delivery is tracked on its own, so tasks stay independent.
    source_producer: rdkafka::producer::FutureProducer,
    generation: i64,
    running: tokio::sync::Mutex<Running>,
    /// Local view of connector and task states: (state, trace).
    states: Mutex<BTreeMap<String, (String, Option<String>)>>,
    events: mpsc::UnboundedSender<TaskEvent>,
    incarnations: AtomicU64,
    wake: Arc<Notify>,
    ready: AtomicBool,
}

impl Herder {
    /// Opens the internal topics, reads them, and returns the herder with its background loop running.
    pub async fn start(
        worker: Arc<WorkerConfig>,
        registry: PluginRegistry,
        clients: KafkaClients,
        worker_id: String,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Self>, tokio::task::JoinHandle<()>), WorkerError> {
        let rf = worker.replication_factor;
        let configs = ConfigStore::open(&clients, &worker.config_storage_topic, rf).await?;
        let offsets = Arc::new(
            OffsetStore::open(
                &clients,
                &worker.offset_storage_topic,
                worker.offset_storage_partitions,
                rf,
            )
            .await?,
        );
        let statuses = StatusStore::open(
            &clients,
            &worker.status_storage_topic,
            worker.status_storage_partitions,
            rf,
        )
        .await?;
        let kafka_cluster_id = clients.cluster_id().await.unwrap_or_default();
        let generation = statuses.max_generation() + 1;
        let source_producer = clients.producer(&[("client.id", "sluice-source-producer")])?;
        let (events, event_rx) = mpsc::unbounded_channel();
        let herder = Arc::new(Self {
            worker_id,
            worker,
            registry,
            clients,
            configs,
            offsets,
            statuses,
            kafka_cluster_id,
            source_producer,
            generation,
            running: tokio::sync::Mutex::new(Running::default()),
            states: Mutex::new(BTreeMap::new()),
            events,
            incarnations: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            ready: AtomicBool::new(false),
        });
        herder.reconcile().await;
        herder.ready.store(true, Ordering::SeqCst);
        let background = tokio::spawn(Arc::clone(&herder).background(event_rx, shutdown));
        Ok((herder, background))
    }

    /// Reacts to config records, task reports and reconfiguration requests until shut down.
    async fn background(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<TaskEvent>,
        shutdown: CancellationToken,
    ) {
        let mut changes: watch::Receiver<i64> = self.configs.changes();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Ok(()) = changes.changed() => self.reconcile().await,
                _ = self.wake.notified() => self.reconcile().await,
                Some(event) = events.recv() => self.on_task_event(event).await,
            }
        }
        self.stop_all().await;
    }

    /// Stops every task and connector, committing what they can, within the graceful timeout.
    pub async fn stop_all(&self) {
        let mut running = self.running.lock().await;
        let timeout = Duration::from_millis(self.worker.task_shutdown_graceful_timeout_ms);
        let tasks = std::mem::take(&mut running.tasks);
        futures::future::join_all(tasks.into_values().map(|t| t.stop(timeout))).await;
        for (name, mut c) in std::mem::take(&mut running.connectors) {
            if let Err(e) = stop_instance(&mut c.instance).await {
                tracing::warn!(connector = name, "stopping connector failed: {}", e.trace());
            }
        }
    }

    async fn on_task_event(&self, event: TaskEvent) {
        let current = {
            let running = self.running.lock().await;
            running.tasks.get(&event.id).map(|t| t.incarnation)
        };
        if current != Some(event.incarnation) {
            return; // a report from a task that has since been replaced
        }
        match event.report {
            TaskReport::State { state, trace } => {
                if state == TaskState::Unassigned {
                    return;
                }
                self.set_state(
                    &task_key(&event.id.connector, event.id.task),
                    state.as_str(),
                    trace,
                )
                .await;
            }
            TaskReport::TopicUsed(topic) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                if let Err(e) = self
                    .statuses
                    .put_topic(&topic, &event.id.connector, &event.id.to_string(), now)
                    .await
                {
                    tracing::warn!("recording topic {topic} failed: {e}");
                }
            }
        }
    }

    async fn set_state(&self, key: &str, state: &str, trace: Option<String>) {
        {
            let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            if states.get(key) == Some(&(state.to_owned(), trace.clone())) {
                return;
            }
            states.insert(key.to_owned(), (state.to_owned(), trace.clone()));
        }
        let status = ConnectorStatus {
            state: state.to_owned(),
            trace,
            worker_id: self.worker_id.clone(),
            generation: self.generation,
        };
        if let Err(e) = self.statuses.put(key, Some(&status)).await {
            tracing::warn!(key, "writing status failed: {e}");
        }
    }

    async fn forget_state(&self, key: &str) {
        let known = self
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
            .is_some();
        if known || self.statuses.get(key).is_some() {
            let _ = self.statuses.put(key, None).await;
        }
    }

    fn state_of(&self, key: &str) -> Option<(String, Option<String>)> {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Whether this worker runs `connector` (always, on a single worker).
    fn assigned_here(&self, _connector: &str) -> bool {
        true
    }

    /// Makes what runs here match the config topic. Idempotent.
    pub async fn reconcile(&self) {
        let mut running = self.running.lock().await;
        // Task configs written by this pass are applied by the next one.
        for _ in 0..3 {
            if !self.reconcile_once(&mut running).await {
                break;
            }
        }
    }

    /// One pass; returns whether it wrote task configs (so another pass is due).
    async fn reconcile_once(&self, running: &mut Running) -> bool {
        let desired = self.configs.snapshot();
        let timeout = Duration::from_millis(self.worker.task_shutdown_graceful_timeout_ms);

        // Stop connectors that were deleted, stopped or reconfigured.
        let names: Vec<String> = running.connectors.keys().cloned().collect();
        for name in names {
            let entry = desired.connectors.get(&name);
            let keep = entry.is_some_and(|e| e.config == running.connectors[&name].config)
                && desired.target_state(&name) != TargetState::Stopped
                && self.assigned_here(&name);
            if !keep {
                if let Some(mut c) = running.connectors.remove(&name) {
                    if let Err(e) = stop_instance(&mut c.instance).await {
                        tracing::warn!(
                            connector = name,
                            "stopping connector failed: {}",
                            e.trace()
                        );
                    }
                }
            }
        }
        running.failed.retain(|name, config| {
            desired
                .connectors
                .get(name)
                .is_some_and(|e| &e.config == config)
        });

        // Stop tasks that no longer exist, or whose config changed.
        let task_ids: Vec<TaskId> = running.tasks.keys().cloned().collect();
        let mut stopping = Vec::new();
        for id in task_ids {
            let wanted = desired
                .connectors
                .get(&id.connector)
                .filter(|_| desired.target_state(&id.connector) != TargetState::Stopped)
                .and_then(|e| e.tasks.get(id.task as usize));
            let same = wanted.is_some_and(|w| *w == running.tasks[&id].config)
                && running.connectors.contains_key(&id.connector);
            if !same && let Some(t) = running.tasks.remove(&id) {
                stopping.push(t.stop(timeout));
            }
        }
        // Concurrently: a reconfiguration waits for one graceful timeout, not one per task.
        futures::future::join_all(stopping).await;

        // Forget the status of deleted connectors and of tasks beyond the current count.
        let deleted: Vec<String> = self
            .statuses
            .keys_with_prefix("status-connector-")
            .into_iter()
            .filter_map(|k| k.strip_prefix("status-connector-").map(str::to_owned))
            .filter(|c| !desired.connectors.contains_key(c))
            .collect();
        for c in deleted {
            self.forget_state(&connector_key(&c)).await;
        }
        for key in self.statuses.keys_with_prefix("status-task-") {
            let rest = &key["status-task-".len()..];
            let Some((c, n)) = rest
                .rsplit_once('-')
                .and_then(|(c, n)| Some((c, n.parse::<usize>().ok()?)))
            else {
                continue;
            };
            let count = desired
                .connectors
                .get(c)
                .filter(|_| desired.target_state(c) != TargetState::Stopped)
                .map_or(0, |e| e.tasks.len());
            if n >= count {
                self.forget_state(&key).await;
            }
        }

        let mut wrote = false;
        for (name, entry) in &desired.connectors {
            if !self.assigned_here(name) {
                continue;
            }
            let target = desired.target_state(name);
            if target == TargetState::Stopped {
                self.set_state(&connector_key(name), "STOPPED", None).await;
                continue;
            }
            if running.failed.contains_key(name) {
                continue;
            }
            if !running.connectors.contains_key(name) {
                match self.start_connector(name, &entry.config).await {
                    Ok(c) => {
                        running.connectors.insert(name.clone(), c);
                    }
                    Err(trace) => {
                        tracing::error!(connector = name, "connector failed to start: {trace}");
                        running.failed.insert(name.clone(), entry.config.clone());
                        self.set_state(&connector_key(name), "FAILED", Some(trace))
                            .await;
                        continue;
                    }
                }
            }
            let connector_state = if target == TargetState::Paused {
                "PAUSED"
            } else {
                "RUNNING"
            };
            self.set_state(&connector_key(name), connector_state, None)
                .await;
            let Some(connector) = running.connectors.get(name) else {
                continue;
            };

            // Task configs: regenerate when asked to (or at start) and write them if they changed.
            if connector.reconfigure.swap(false, Ordering::SeqCst) {
                let max = entry
                    .config
                    .get("tasks.max")
                    .and_then(|m| m.trim().parse::<usize>().ok())
                    .unwrap_or(1)
                    .max(1);
                let generated = match &connector.instance {
                    ConnectorInstance::Source(c) => c.task_configs(max),
                    ConnectorInstance::Sink(c) => c.task_configs(max),
                };
                match generated {
                    Ok(mut tasks) => {
                        tasks.truncate(max);
                        if tasks != entry.tasks {
                            match self.configs.put_task_configs(name, &tasks).await {
                                Ok(()) => wrote = true,
                                Err(e) => tracing::error!(
                                    connector = name,
                                    "writing task configs failed: {e}"
                                ),
                            }
                            continue;
                        }
                    }
                    Err(e) => {
                        self.set_state(
                            &connector_key(name),
                            "FAILED",
                            Some(format!("generating task configs failed: {}", e.trace())),
                        )
                        .await;
                        continue;
                    }
                }
            }

            let desired_task = if target == TargetState::Paused {
                Desired::Paused
            } else {
                Desired::Running
            };
            for (n, task_config) in entry.tasks.iter().enumerate() {
                let id = TaskId::new(name.clone(), n as u32);
                match running.tasks.get(&id) {
                    Some(t) => t.set_desired(desired_task),
                    None => {
                        let handle = self.spawn_task(
                            id.clone(),
                            task_config.clone(),
                            connector,
                            desired_task,
                        );
                        running.tasks.insert(id, handle);
                    }
                }
            }
        }
        if wrote {
            let _ = self.configs.read_to_end().await;
        }
        wrote
    }

    async fn start_connector(
        &self,
        name: &str,
        config: &Props,
    ) -> Result<RunningConnector, String> {
        let class = config.get("connector.class").cloned().unwrap_or_default();
        let plugin = self.registry.find(&class).map_err(|e| e.to_string())?;
        let settings = RuntimeSettings::resolve(plugin.kind, config, &self.worker)
            .map_err(|e| e.to_string())?;
        let mut instance = plugin.create();
        let reconfigure = Arc::new(AtomicBool::new(true));
        let ctx: Arc<dyn ConnectorContext> = Arc::new(Context {
            reconfigure: Arc::clone(&reconfigure),
            wake: Arc::clone(&self.wake),
        });
        let started = match &mut instance {
            ConnectorInstance::Source(c) => c.start(ctx, config).await,
            ConnectorInstance::Sink(c) => c.start(ctx, config).await,
        };
        started.map_err(|e| e.trace())?;
        tracing::info!(connector = name, class = plugin.class, "connector started");
        Ok(RunningConnector {
            config: config.clone(),
            instance,
            settings: Arc::new(settings),
            reconfigure,
        })
    }

    fn spawn_task(
        &self,
        id: TaskId,
        config: Props,
        connector: &RunningConnector,
        desired: Desired,
    ) -> TaskHandle {
        let incarnation = self.incarnations.fetch_add(1, Ordering::SeqCst) + 1;
        let (desired_tx, desired_rx) = watch::channel(desired);
        let reporter = Reporter::new(id.clone(), incarnation, self.events.clone());
        let task_settings = TaskSettings {
            offset_flush_interval: Duration::from_millis(self.worker.offset_flush_interval_ms),
        };
        let settings = Arc::clone(&connector.settings);
        tracing::info!(task = %id, "starting task");
        let join = match &connector.instance {
            ConnectorInstance::Source(c) => {
                let runner = SourceTaskRunner {
                    id,
                    task: c.task(),
                    props: config.clone(),
                    settings,
                    producer: self.source_producer.clone(),
                    clients: self.clients.clone(),
                    offsets: Arc::clone(&self.offsets),
                    task_settings,
                    desired: desired_rx,
                    reporter,
                    topics: Default::default(),
                };
                tokio::spawn(runner.run())
            }
            ConnectorInstance::Sink(c) => {
                let runner = SinkTaskRunner {
                    id,
                    task: c.task(),
                    props: config.clone(),
                    settings,
                    clients: self.clients.clone(),
                    task_settings,
                    desired: desired_rx,
                    reporter,
                };
                tokio::spawn(runner.run())
            }
        };
        TaskHandle::new(config, incarnation, desired_tx, join)
    }

    /// Restarts a connector instance and, if asked, its tasks (all, or only failed ones).
    async fn restart(&self, name: &str, include_tasks: bool, only_failed: bool) -> Vec<u32> {
        let mut restarted = Vec::new();
        {
            let mut running = self.running.lock().await;
            let connector_failed = self
                .state_of(&connector_key(name))
                .is_some_and(|(s, _)| s == "FAILED");
            if !only_failed || connector_failed {
                running.failed.remove(name);
                if let Some(mut c) = running.connectors.remove(name) {
                    let _ = stop_instance(&mut c.instance).await;
                }
            }
            if include_tasks {
                let timeout = Duration::from_millis(self.worker.task_shutdown_graceful_timeout_ms);
                let ids: Vec<TaskId> = running
                    .tasks
                    .keys()
                    .filter(|id| id.connector == name)
                    .cloned()
                    .collect();
                for id in ids {
                    let failed = self
                        .state_of(&task_key(name, id.task))
                        .is_some_and(|(s, _)| s == "FAILED");
                    if (!only_failed || failed)
                        && let Some(t) = running.tasks.remove(&id)
                    {
                        self.set_state(&task_key(name, id.task), "RESTARTING", None)
                            .await;
                        t.stop(timeout).await;
                        restarted.push(id.task);
                    }
                }
            }
        }
        self.reconcile().await;
        restarted
    }

    /// Restarts one task.
    async fn restart_one(&self, id: &TaskId) -> bool {
        let found = {
            let mut running = self.running.lock().await;
            match running.tasks.remove(id) {
                Some(t) => {
                    t.stop(Duration::from_millis(
                        self.worker.task_shutdown_graceful_timeout_ms,
                    ))
                    .await;
                    true
                }
                None => false,
            }
        };
        self.reconcile().await;
        found
    }

    /// Whether the connector has a task with this number (used to answer 404s).
    fn task_exists(&self, id: &TaskId) -> bool {
        self.configs
            .snapshot()
            .connectors
            .get(&id.connector)
            .is_some_and(|e| (id.task as usize) < e.tasks.len())
    }
}

async fn stop_instance(
    instance: &mut ConnectorInstance,
) -> sluice_connector_api::ConnectResult<()> {
    match instance {
        ConnectorInstance::Source(c) => c.stop().await,
        ConnectorInstance::Sink(c) => c.stop().await,
    }
}
