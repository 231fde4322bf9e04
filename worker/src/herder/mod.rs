//! The herder: makes the connectors and tasks running on this worker match the config topic.
//!
//! Every change (a REST write, a config record written by another worker, a connector asking for
//! new task configs, a task failing) ends in [`Herder::reconcile`], which runs under one lock and
//! compares what the config topic says with what runs here: it starts, restarts, pauses and stops
//! connector instances and tasks until they match. Writes go to the config topic first and are
//! applied only once read back from it, so a restarted worker, which reads the same topic,
//! reaches the same state.
//!
//! Which connectors and tasks run here is the fleet's decision ([`crate::cluster`]): the herder
//! runs exactly its current [`View`], applied only once the config topic has been read up to the
//! offset the assignment was computed from, and reports each applied generation back so the leader
//! can move work on. Status records carry this worker's id and the assignment generation.

mod api;
mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sluice_connector_api::{ConnectorContext, ConnectorInstance, PluginRegistry, Props, TaskId};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cluster::raft::RestartRequest;
use crate::cluster::{Cluster, View};
use crate::config::WorkerConfig;
use crate::connector_config::RuntimeSettings;
use crate::error::WorkerError;
use crate::kafka::KafkaClients;
use crate::metrics::Metrics;
use crate::store::status::{connector_key, task_key};
use crate::store::{ConfigStore, ConnectorStatus, OffsetStore, StatusStore, TargetState};
use crate::task::errors::ErrorHandler;
use crate::task::{
    Desired, Reporter, SinkTaskRunner, SourceTaskRunner, TaskEvent, TaskHandle, TaskReport,
    TaskSettings, TaskState,
};
use sluice_rest_api::model::TaskErrors;

pub use validate::{validate_for_create, validate_with};

/// How often changed error counts of local tasks are written to the status topic.
const ERRORS_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// A running connector instance.
struct RunningConnector {
    config: Props,
    /// The plugin it was made from.
    plugin: sluice_connector_api::Plugin,
    instance: ConnectorInstance,
    settings: Arc<RuntimeSettings>,
    /// Set when the connector asks for new task configs (and at start).
    reconfigure: Arc<AtomicBool>,
}

/// What runs on this worker.
#[derive(Default)]
struct Running {
    connectors: BTreeMap<String, RunningConnector>,
    /// Unstarted connector instances that create the tasks assigned here, by connector, with the
    /// config they were made from.
    factories: BTreeMap<String, RunningConnector>,
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
    configs: Arc<ConfigStore>,
    offsets: Arc<OffsetStore>,
    statuses: Arc<StatusStore>,
    cluster: Cluster,
    /// The view being applied (what the fleet assigned here).
    view: Mutex<View>,
    /// The last restart request handled.
    restart_seq: AtomicU64,
    kafka_cluster_id: String,
    /// One producer for every source task: librdkafka batches best with one producer per process,
    /// and each record's delivery is tracked on its own, so tasks stay independent.
    source_producer: crate::kafka::Producer,
    /// The assignment generation of the applied view, written into status records.
    generation: AtomicI64,
    running: tokio::sync::Mutex<Running>,
    /// Local view of connector and task states: (state, trace).
    states: Mutex<BTreeMap<String, (String, Option<String>)>>,
    /// Error counts of the tasks running here.
    metrics: Arc<Metrics>,
    /// The last error summary written to the status topic, by status key, with the metrics
    /// version it was taken at.
    published_errors: Mutex<BTreeMap<String, (u64, TaskErrors)>>,
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
        url: String,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Self>, tokio::task::JoinHandle<()>), WorkerError> {
        let worker_id = crate::cluster::http::worker_id(&url);
        let rf = worker.replication_factor;
        let configs =
            Arc::new(ConfigStore::open(&clients, &worker.config_storage_topic, rf).await?);
        let offsets = Arc::new(
            OffsetStore::open(
                &clients,
                &worker.offset_storage_topic,
                worker.offset_storage_partitions,
                rf,
            )
            .await?,
        );
        let statuses = Arc::new(
            StatusStore::open(
                &clients,
                &worker.status_storage_topic,
                worker.status_storage_partitions,
                rf,
            )
            .await?,
        );
        let kafka_cluster_id = clients.cluster_id().await.unwrap_or_default();
        let cluster = Cluster::start(
            worker.cluster.clone(),
            &worker.group_id,
            url,
            Arc::clone(&configs),
            Arc::clone(&statuses),
            shutdown.clone(),
        );
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
            cluster,
            view: Mutex::new(View::default()),
            restart_seq: AtomicU64::new(0),
            kafka_cluster_id,
            source_producer,
            generation: AtomicI64::new(0),
            running: tokio::sync::Mutex::new(Running::default()),
            states: Mutex::new(BTreeMap::new()),
            metrics: Arc::new(Metrics::new()),
            published_errors: Mutex::new(BTreeMap::new()),
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
        let mut views = self.cluster.view();
        let mut publish = tokio::time::interval(ERRORS_PUBLISH_INTERVAL);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = publish.tick() => self.publish_errors().await,
                Ok(()) = views.changed() => {
                    let view = views.borrow_and_update().clone();
                    self.apply_view(view).await;
                }
                Ok(()) = changes.changed() => self.reconcile().await,
                _ = self.wake.notified() => self.reconcile().await,
                Some(event) = events.recv() => self.on_task_event(event).await,
            }
        }
        self.stop_all().await;
    }

    /// The fleet handle.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Runs what `view` assigns here (once the config topic is read far enough), handles a new
    /// restart request, and reports the generation applied.
    async fn apply_view(&self, view: View) {
        if view.live
            && !self
                .configs
                .wait_applied(view.config_offset, Duration::from_secs(30))
                .await
        {
            tracing::warn!(
                offset = view.config_offset,
                "config topic not read up to the assignment's offset within 30 s; applying anyway"
            );
        }
        let restart = view.restart.clone();
        let (live, generation) = (view.live, view.generation);
        self.generation.store(generation, Ordering::SeqCst);
        *self.view.lock() = view;
        self.reconcile().await;
        if let Some((seq, request)) = restart
            && seq > self.restart_seq.swap(seq, Ordering::SeqCst)
        {
            self.on_restart(request).await;
        }
        if live {
            let cluster = self.cluster.clone();
            tokio::spawn(async move { cluster.applied(generation).await });
        }
    }

    async fn on_restart(&self, r: RestartRequest) {
        let now = sluice_connector_api::now_ms();
        if now - r.requested_at_ms > 30_000 {
            return; // an old request replayed to a worker that joined later
        }
        match r.task {
            Some(task) => {
                self.restart_one(&TaskId::new(r.connector.clone(), task))
                    .await;
            }
            None => {
                self.restart(
                    &r.connector,
                    r.include_connector,
                    r.include_tasks,
                    r.only_failed,
                )
                .await;
            }
        }
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
                let now = sluice_connector_api::now_ms();
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

    /// Writes the error summaries of local tasks whose counts changed since they were last
    /// written, so that every worker's status API shows them.
    async fn publish_errors(&self) {
        for (id, version) in self.metrics.versions() {
            let key = task_key(&id.connector, id.task);
            let fresh = self
                .published_errors
                .lock()
                .get(&key)
                .is_none_or(|(v, _)| *v != version);
            if !fresh || !self.task_assigned_here(&id) {
                continue;
            }
            let summary = self.metrics.task(&id).summary();
            self.published_errors
                .lock()
                .insert(key.clone(), (version, summary));
            if let Some((state, trace)) = self.state_of(&key) {
                self.write_status(&key, &state, trace).await;
            }
        }
    }

    /// The error summary of a task running here, as last published.
    fn local_errors(&self, key: &str) -> Option<TaskErrors> {
        self.published_errors
            .lock()
            .get(key)
            .map(|(_, summary)| summary.clone())
    }

    /// Writes a status as of the applied assignment generation (the status store keeps the
    /// newest generation's).
    async fn set_state(&self, key: &str, state: &str, trace: Option<String>) {
        {
            let mut states = self.states.lock();
            if states.get(key) == Some(&(state.to_owned(), trace.clone())) {
                return;
            }
            states.insert(key.to_owned(), (state.to_owned(), trace.clone()));
        }
        self.write_status(key, state, trace).await;
    }

    async fn write_status(&self, key: &str, state: &str, trace: Option<String>) {
        let generation = self.generation.load(Ordering::SeqCst);
        tracing::debug!(key, state, generation, "writing status");
        let status = ConnectorStatus {
            state: state.to_owned(),
            trace,
            worker_id: self.worker_id.clone(),
            generation,
            errors: self.local_errors(key),
        };
        if let Err(e) = self.statuses.put(key, Some(&status)).await {
            tracing::warn!(key, "writing status failed: {e}");
        }
    }

    async fn forget_state(&self, key: &str) {
        let known = self.states.lock().remove(key).is_some();
        if known || self.statuses.get(key).is_some() {
            let _ = self.statuses.put(key, None).await;
        }
    }

    fn state_of(&self, key: &str) -> Option<(String, Option<String>)> {
        self.states.lock().get(key).cloned()
    }

    /// Whether the fleet assigned the instance of `connector` here.
    fn assigned_here(&self, connector: &str) -> bool {
        self.view.lock().connectors.contains(connector)
    }

    /// Whether the fleet assigned task `id` here.
    fn task_assigned_here(&self, id: &TaskId) -> bool {
        self.view
            .lock()
            .tasks
            .contains(&(id.connector.clone(), id.task))
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

        // Stop connectors that were deleted, stopped, reconfigured or assigned elsewhere.
        let names: Vec<String> = running.connectors.keys().cloned().collect();
        for name in names {
            let entry = desired.connectors.get(&name);
            let keep = entry.is_some_and(|e| e.config == running.connectors[&name].config)
                && desired.target_state(&name) != TargetState::Stopped
                && self.assigned_here(&name);
            if !keep
                && let Some(mut c) = running.connectors.remove(&name)
                && let Err(e) = stop_instance(&mut c.instance).await
            {
                tracing::warn!(connector = name, "stopping connector failed: {}", e.trace());
            }
        }
        running.failed.retain(|name, config| {
            desired
                .connectors
                .get(name)
                .is_some_and(|e| &e.config == config)
        });
        running.factories.retain(|name, f| {
            desired
                .connectors
                .get(name)
                .is_some_and(|e| e.config == f.config)
        });

        // Stop tasks that no longer exist, whose config changed, or that moved to another worker.
        let task_ids: Vec<TaskId> = running.tasks.keys().cloned().collect();
        let mut stopping = Vec::new();
        for id in task_ids {
            let wanted = desired
                .connectors
                .get(&id.connector)
                .filter(|_| desired.target_state(&id.connector) != TargetState::Stopped)
                .and_then(|e| e.tasks.get(id.task as usize));
            let same = wanted.is_some_and(|w| *w == running.tasks[&id].config)
                && running.factories.contains_key(&id.connector)
                && self.task_assigned_here(&id);
            if !same && let Some(t) = running.tasks.remove(&id) {
                stopping.push(t.stop(timeout));
            }
        }
        // Concurrently: a reconfiguration waits for one graceful timeout, not one per task.
        futures::future::join_all(stopping).await;
        // As Kafka Connect does: revoked work shows UNASSIGNED until its new owner reports.
        if self.cluster.is_leader() {
            self.forget_removed_statuses(&desired).await;
        }

        let mut wrote = false;
        for (name, entry) in &desired.connectors {
            if self.assigned_here(name) {
                wrote |= self.run_connector(running, name, entry, &desired).await;
            }
        }
        for (name, entry) in &desired.connectors {
            self.run_tasks(running, name, entry, desired.target_state(name))
                .await;
        }
        self.retain_local_states();
        if wrote {
            let _ = self.configs.read_to_end().await;
        }
        wrote
    }

    /// Starts the connector instance assigned here, reports its state and writes its task configs
    /// when they changed; returns whether it wrote task configs.
    async fn run_connector(
        &self,
        running: &mut Running,
        name: &str,
        entry: &crate::store::ConnectorEntry,
        desired: &crate::store::ClusterConfig,
    ) -> bool {
        let target = desired.target_state(name);
        if target == TargetState::Stopped {
            self.set_state(&connector_key(name), "STOPPED", None).await;
            return false;
        }
        if running.failed.contains_key(name) {
            return false;
        }
        if !running.connectors.contains_key(name) {
            match self.start_connector(name, &entry.config).await {
                Ok(c) => {
                    running.connectors.insert(name.to_owned(), c);
                }
                Err(trace) => {
                    tracing::error!(connector = name, "connector failed to start: {trace}");
                    running.failed.insert(name.to_owned(), entry.config.clone());
                    self.set_state(&connector_key(name), "FAILED", Some(trace))
                        .await;
                    return false;
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
            return false;
        };
        // Task configs: regenerate when asked to (or at start) and submit them if they changed.
        if !connector.reconfigure.swap(false, Ordering::SeqCst) {
            return false;
        }
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
                if tasks == entry.tasks {
                    return false;
                }
                match self.cluster.put_task_configs(name, &tasks).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(
                            connector = name,
                            "submitting task configs failed: {e}; will retry"
                        );
                        connector.reconfigure.store(true, Ordering::SeqCst);
                        let wake = Arc::clone(&self.wake);
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            wake.notify_one();
                        });
                        false
                    }
                }
            }
            Err(e) => {
                self.set_state(
                    &connector_key(name),
                    "FAILED",
                    Some(format!("generating task configs failed: {}", e.trace())),
                )
                .await;
                false
            }
        }
    }

    /// Starts (or sets the target state of) every task of `name` assigned here.
    async fn run_tasks(
        &self,
        running: &mut Running,
        name: &str,
        entry: &crate::store::ConnectorEntry,
        target: TargetState,
    ) {
        if target == TargetState::Stopped {
            return;
        }
        let desired_task = if target == TargetState::Paused {
            Desired::Paused
        } else {
            Desired::Running
        };
        for (n, task_config) in entry.tasks.iter().enumerate() {
            let id = TaskId::new(name.to_owned(), n as u32);
            if !self.task_assigned_here(&id) {
                continue;
            }
            if let Some(t) = running.tasks.get(&id) {
                t.set_desired(desired_task);
                continue;
            }
            if !running.factories.contains_key(name) {
                match self.task_factory(&entry.config) {
                    Ok(f) => {
                        running.factories.insert(name.to_owned(), f);
                    }
                    Err(trace) => {
                        self.set_state(&task_key(name, n as u32), "FAILED", Some(trace))
                            .await;
                        continue;
                    }
                }
            }
            let Some(factory) = running.factories.get(name) else {
                continue;
            };
            let handle = self.spawn_task(id.clone(), task_config.clone(), factory, desired_task);
            running.tasks.insert(id, handle);
        }
    }

    /// Forgets the status of deleted connectors and of tasks beyond the current count (the
    /// leader does this for the fleet).
    async fn forget_removed_statuses(&self, desired: &crate::store::ClusterConfig) {
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
    }

    /// Whether the status `key` belongs to a connector or task assigned here.
    fn assigned_key(&self, key: &str) -> bool {
        let view = self.view.lock();
        view.connectors.iter().any(|c| connector_key(c) == key)
            || view.tasks.iter().any(|(c, n)| task_key(c, *n) == key)
    }

    /// Drops the local state of work no longer assigned here: its new owner reports it.
    fn retain_local_states(&self) {
        let keep: std::collections::BTreeSet<String> = {
            let view = self.view.lock();
            view.connectors
                .iter()
                .map(|c| connector_key(c))
                .chain(view.tasks.iter().map(|(c, n)| task_key(c, *n)))
                .collect()
        };
        self.states.lock().retain(|k, _| keep.contains(k));
    }

    /// An unstarted instance of the connector's plugin, to create its tasks.
    fn task_factory(&self, config: &Props) -> Result<RunningConnector, String> {
        let class = config.get("connector.class").cloned().unwrap_or_default();
        let plugin = self.registry.find(&class).map_err(|e| e.to_string())?;
        let settings =
            RuntimeSettings::resolve(plugin, config, &self.worker).map_err(|e| e.to_string())?;
        Ok(RunningConnector {
            config: config.clone(),
            plugin: plugin.clone(),
            instance: plugin.create(),
            settings: Arc::new(settings),
            reconfigure: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn start_connector(
        &self,
        name: &str,
        config: &Props,
    ) -> Result<RunningConnector, String> {
        let class = config.get("connector.class").cloned().unwrap_or_default();
        let plugin = self.registry.find(&class).map_err(|e| e.to_string())?;
        let settings =
            RuntimeSettings::resolve(plugin, config, &self.worker).map_err(|e| e.to_string())?;
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
            plugin: plugin.clone(),
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
        // Each task gets its own converters and transforms, as in Kafka Connect: they keep state
        // (the JSON converter's table of field names) that tasks must not contend for. The same
        // config resolved when the connector started, so this cannot fail differently.
        let settings = RuntimeSettings::resolve(&connector.plugin, &connector.config, &self.worker)
            .map_or_else(
                |_| Arc::clone(&connector.settings),
                |settings| Arc::new(settings.for_task(&config)),
            );
        let errors = Arc::new(ErrorHandler::new(
            id.clone(),
            settings.errors.clone(),
            self.metrics.task(&id),
            self.clients.clone(),
        ));
        tracing::info!(task = %id, "starting task");
        let join = match &connector.instance {
            ConnectorInstance::Source(c) => {
                let runner = SourceTaskRunner {
                    id,
                    task: c.task(),
                    props: config.clone(),
                    settings,
                    errors,
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
                    errors,
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
    async fn restart(
        &self,
        name: &str,
        include_connector: bool,
        include_tasks: bool,
        only_failed: bool,
    ) -> Vec<u32> {
        let mut restarted = Vec::new();
        {
            let mut running = self.running.lock().await;
            let connector_failed = self
                .state_of(&connector_key(name))
                .is_some_and(|(s, _)| s == "FAILED");
            if include_connector && (!only_failed || connector_failed) {
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
