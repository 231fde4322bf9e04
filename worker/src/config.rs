//! Worker configuration: Kafka Connect's names where they mean the same thing.
//!
//! Sources, later ones winning: built-in defaults, a properties file (`sluice worker.properties`, the
//! same format as `connect-distributed.properties`), then environment variables `SLUICE_<KEY>` where
//! the key is upper-cased with `.` as `_` (`SLUICE_BOOTSTRAP_SERVERS`, `SLUICE_REST_PORT`). Every
//! invalid setting is reported at once.
//!
//! librdkafka client settings pass through to every client the worker creates: keys starting with
//! `security.`, `ssl.`, `sasl.` and `client.` go to all clients; `producer.`, `consumer.` and `admin.`
//! prefixed keys go to that kind of client only, with the prefix removed.

use std::path::{Path, PathBuf};

use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, Importance, ParsedConfig, Props, Validator,
};

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Kafka to use; `None` starts the embedded broker.
    pub bootstrap_servers: Option<String>,
    /// The Connect cluster this worker belongs to.
    pub group_id: String,
    /// Compacted, single-partition topic holding connector and task configs and target states.
    pub config_storage_topic: String,
    /// Compacted topic holding source connectors' offsets.
    pub offset_storage_topic: String,
    /// Partitions of the offsets topic when the worker creates it.
    pub offset_storage_partitions: i32,
    /// Compacted topic holding connector and task status.
    pub status_storage_topic: String,
    /// Partitions of the status topic when the worker creates it.
    pub status_storage_partitions: i32,
    /// Replication factor of the internal topics when the worker creates them; -1 uses the broker's
    /// default.
    pub replication_factor: i32,
    /// How often source offsets are written and sink offsets committed.
    pub offset_flush_interval_ms: u64,
    /// How long a task may take to stop before it is abandoned.
    pub task_shutdown_graceful_timeout_ms: u64,
    /// Address the REST API listens on.
    pub rest_host: String,
    /// Port the REST API listens on (0 picks a free one).
    pub rest_port: u16,
    /// Host name other workers and clients use to reach this worker.
    pub rest_advertised_host_name: Option<String>,
    /// Largest accepted request body.
    pub rest_max_body_bytes: usize,
    /// Default converter for keys.
    pub key_converter: String,
    /// Default converter for values.
    pub value_converter: String,
    /// Directory of the embedded broker's data.
    pub embedded_data_dir: PathBuf,
    /// Port of the embedded broker.
    pub embedded_port: u16,
    /// Whether source connectors create missing destination topics (KIP-158).
    pub topic_creation_enable: bool,
    /// Settings of the worker fleet (membership, failover, the internal API).
    pub cluster: ClusterSettings,
    /// Every property as given, for pass-through and converter settings.
    pub originals: Props,
}

/// How this worker takes part in the fleet.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Shared secret that authenticates the workers' internal API (Raft RPCs, joins, forwarded
    /// task configs). `None`: derived from `group.id`, which only keeps apart fleets that do not
    /// try to impersonate each other; set it in production.
    pub secret: Option<String>,
    /// A worker silent for this long is dead to the leader, which moves its work; a worker that
    /// hears nothing from a leader for this long stops its own tasks.
    pub session_timeout_ms: u64,
    /// Interval of the leader's heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Raft voters to keep (the rest of the fleet are learners).
    pub voters: usize,
    /// Enables `PUT /sluice/internal/isolate`, which cuts this worker off from the others (tests).
    pub fault_injection: bool,
}

/// The worker's config definition.
pub fn worker_config_def() -> ConfigDef {
    use ConfigType::*;
    ConfigDef::new()
        .define(
            ConfigKey::new(
                "bootstrap.servers",
                String,
                "Kafka brokers, host:port[,host:port]. Unset: start an embedded broker.",
            )
            .default_value("")
            .importance(Importance::High),
        )
        .define(
            ConfigKey::new(
                "group.id",
                String,
                "Identifies the Connect cluster this worker belongs to.",
            )
            .default_value("sluice-cluster")
            .importance(Importance::High)
            .validator(Validator::NonEmpty),
        )
        .define(
            ConfigKey::new(
                "config.storage.topic",
                String,
                "Topic for connector configs (1 partition, compacted).",
            )
            .default_value("connect-configs")
            .importance(Importance::High)
            .validator(Validator::NonEmpty),
        )
        .define(
            ConfigKey::new(
                "offset.storage.topic",
                String,
                "Topic for source offsets (compacted).",
            )
            .default_value("connect-offsets")
            .importance(Importance::High)
            .validator(Validator::NonEmpty),
        )
        .define(
            ConfigKey::new(
                "offset.storage.partitions",
                Int,
                "Partitions of the offsets topic when created.",
            )
            .default_value("25")
            .validator(Validator::at_least(1.0)),
        )
        .define(
            ConfigKey::new(
                "status.storage.topic",
                String,
                "Topic for connector and task status (compacted).",
            )
            .default_value("connect-status")
            .importance(Importance::High)
            .validator(Validator::NonEmpty),
        )
        .define(
            ConfigKey::new(
                "status.storage.partitions",
                Int,
                "Partitions of the status topic when created.",
            )
            .default_value("5")
            .validator(Validator::at_least(1.0)),
        )
        .define(
            ConfigKey::new(
                "replication.factor",
                Int,
                "Replication factor of internal topics when created; -1 for the broker default.",
            )
            .default_value("-1")
            .validator(Validator::at_least(-1.0)),
        )
        .define(
            ConfigKey::new(
                "offset.flush.interval.ms",
                Long,
                "Interval between source offset writes and sink offset commits, in ms.",
            )
            .default_value("60000")
            .validator(Validator::at_least(1.0)),
        )
        .define(
            ConfigKey::new(
                "task.shutdown.graceful.timeout.ms",
                Long,
                "Time a task may take to stop, in ms.",
            )
            .default_value("5000")
            .validator(Validator::at_least(0.0)),
        )
        .define(
            ConfigKey::new("rest.host.name", String, "Address the REST API binds to.")
                .default_value("0.0.0.0"),
        )
        .define(
            ConfigKey::new("rest.port", Int, "REST API port; 0 picks a free port.")
                .default_value("8083")
                .validator(Validator::between(0.0, 65535.0)),
        )
        .define(
            ConfigKey::new(
                "listeners",
                List,
                "REST listeners as http://host:port; overrides rest.host.name and rest.port.",
            )
            .default_value(""),
        )
        .define(
            ConfigKey::new(
                "rest.advertised.host.name",
                String,
                "Host name advertised to other workers.",
            )
            .default_value(""),
        )
        .define(
            ConfigKey::new(
                "rest.max.body.bytes",
                Int,
                "Largest accepted request body, in bytes.",
            )
            .default_value("1048576")
            .validator(Validator::at_least(1024.0)),
        )
        .define(
            ConfigKey::new("key.converter", Class, "Default key converter.")
                .default_value("org.apache.kafka.connect.json.JsonConverter"),
        )
        .define(
            ConfigKey::new("value.converter", Class, "Default value converter.")
                .default_value("org.apache.kafka.connect.json.JsonConverter"),
        )
        .define(
            ConfigKey::new(
                "topic.creation.enable",
                Boolean,
                "Whether source connectors create missing destination topics.",
            )
            .default_value("true"),
        )
        .define(
            ConfigKey::new(
                "cluster.secret",
                Password,
                "Shared secret of the workers' internal API; unset derives one from group.id.",
            )
            .default_value("")
            .importance(Importance::High),
        )
        .define(
            ConfigKey::new(
                "session.timeout.ms",
                Long,
                "A worker silent this long loses its work to others; one cut off this long stops its tasks.",
            )
            .default_value("6000")
            .importance(Importance::High)
            .validator(Validator::at_least(1000.0)),
        )
        .define(
            ConfigKey::new(
                "heartbeat.interval.ms",
                Long,
                "Interval of the leader's heartbeats, in ms; well below session.timeout.ms.",
            )
            .default_value("500")
            .validator(Validator::at_least(50.0)),
        )
        .define(
            ConfigKey::new(
                "cluster.voters",
                Int,
                "Raft voters to keep; the rest of the fleet are learners.",
            )
            .default_value("3")
            .validator(Validator::at_least(1.0)),
        )
        .define(
            ConfigKey::new(
                "cluster.fault.injection.enable",
                Boolean,
                "Enables PUT /sluice/internal/isolate, which cuts this worker off (tests only).",
            )
            .default_value("false"),
        )
        .define(
            ConfigKey::new(
                "embedded.broker.data.dir",
                String,
                "Data directory of the embedded broker.",
            )
            .default_value("data"),
        )
        .define(
            ConfigKey::new("embedded.broker.port", Int, "Port of the embedded broker.")
                .default_value("9092")
                .validator(Validator::between(1.0, 65535.0)),
        )
}

impl WorkerConfig {
    /// Builds the config from properties.
    pub fn from_props(props: Props) -> Result<Self, ConfigErrors> {
        let parsed: ParsedConfig = worker_config_def().parse(&props)?;
        let mut errors = ConfigErrors::default();
        let (mut rest_host, mut rest_port) = (
            parsed.string("rest.host.name"),
            parsed.int("rest.port") as u16,
        );
        if let Some(listener) = parsed.list("listeners").first() {
            match parse_listener(listener) {
                Some((host, port)) => (rest_host, rest_port) = (host, port),
                None => errors.push(
                    "listeners",
                    format!("Invalid listener {listener}: expected http://host:port"),
                ),
            }
        }
        for key in ["key.converter", "value.converter"] {
            let prefix = format!("{key}.");
            if let Err(e) = sluice_connector_api::convert::converter_for(
                &parsed.string(key),
                &parsed.originals_with_prefix(&prefix),
            ) {
                errors.push(key, e);
            }
        }
        let session_timeout_ms = parsed.long("session.timeout.ms") as u64;
        let heartbeat_interval_ms = parsed.long("heartbeat.interval.ms") as u64;
        if heartbeat_interval_ms * 3 > session_timeout_ms {
            errors.push(
                "heartbeat.interval.ms",
                format!(
                    "heartbeat.interval.ms ({heartbeat_interval_ms}) must be at most a third of session.timeout.ms ({session_timeout_ms})"
                ),
            );
        }
        let cluster = ClusterSettings {
            secret: parsed.optional_string("cluster.secret"),
            session_timeout_ms,
            heartbeat_interval_ms,
            voters: parsed.int("cluster.voters") as usize,
            fault_injection: parsed.boolean("cluster.fault.injection.enable"),
        };
        errors.into_result(Self {
            bootstrap_servers: parsed.optional_string("bootstrap.servers"),
            group_id: parsed.string("group.id"),
            config_storage_topic: parsed.string("config.storage.topic"),
            offset_storage_topic: parsed.string("offset.storage.topic"),
            offset_storage_partitions: parsed.int("offset.storage.partitions"),
            status_storage_topic: parsed.string("status.storage.topic"),
            status_storage_partitions: parsed.int("status.storage.partitions"),
            replication_factor: parsed.int("replication.factor"),
            offset_flush_interval_ms: parsed.long("offset.flush.interval.ms") as u64,
            task_shutdown_graceful_timeout_ms: parsed.long("task.shutdown.graceful.timeout.ms")
                as u64,
            rest_host,
            rest_port,
            rest_advertised_host_name: parsed.optional_string("rest.advertised.host.name"),
            rest_max_body_bytes: parsed.int("rest.max.body.bytes") as usize,
            key_converter: parsed.string("key.converter"),
            value_converter: parsed.string("value.converter"),
            embedded_data_dir: PathBuf::from(parsed.string("embedded.broker.data.dir")),
            embedded_port: parsed.int("embedded.broker.port") as u16,
            topic_creation_enable: parsed.boolean("topic.creation.enable"),
            cluster,
            originals: props,
        })
    }

    /// Loads defaults, then the properties file (if any), then `SLUICE_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        let mut props = Props::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read worker config {}: {e}", path.display()))?;
            props.extend(parse_properties(&text));
        }
        props.extend(env_props(std::env::vars()));
        Self::from_props(props).map_err(|e| {
            e.to_string()
                .replace("Connector configuration", "Worker configuration")
        })
    }

    /// Client settings passed through to every client of `kind` (`producer`, `consumer`, `admin`).
    pub fn client_overrides(&self, kind: &str) -> Props {
        let prefix = format!("{kind}.");
        let mut out: Props = self
            .originals
            .iter()
            .filter(|(k, _)| {
                ["security.", "ssl.", "sasl.", "client."]
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.extend(sluice_connector_api::config::with_prefix(
            &self.originals,
            &prefix,
        ));
        out
    }
}

fn parse_listener(listener: &str) -> Option<(String, u16)> {
    let rest = listener.strip_prefix("http://")?;
    let (host, port) = rest.rsplit_once(':')?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
}

/// Parses Java-style `.properties` text: `key=value` or `key: value`, `#`/`!` comments.
pub fn parse_properties(text: &str) -> Props {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let idx = l.find(['=', ':'])?;
            Some((l[..idx].trim().to_owned(), l[idx + 1..].trim().to_owned()))
        })
        .collect()
}

/// `SLUICE_BOOTSTRAP_SERVERS=x` → `bootstrap.servers=x`.
pub fn env_props(vars: impl Iterator<Item = (String, String)>) -> Props {
    vars.filter_map(|(k, v)| {
        let key = k.strip_prefix("SLUICE_")?;
        (!key.is_empty()).then(|| (key.to_ascii_lowercase().replace('_', "."), v))
    })
    .filter(|(k, _)| k != "log" && k != "log.format")
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_env_and_listener_combine() {
        let mut props = parse_properties(
            "# comment\nbootstrap.servers=k1:9092\nlisteners=http://127.0.0.1:9000\nsasl.mechanism: PLAIN\nproducer.linger.ms=5\n",
        );
        props.extend(env_props(
            [
                ("SLUICE_GROUP_ID".to_owned(), "g".to_owned()),
                ("PATH".to_owned(), "/bin".to_owned()),
            ]
            .into_iter(),
        ));
        let config = WorkerConfig::from_props(props).unwrap();
        assert_eq!(config.bootstrap_servers.as_deref(), Some("k1:9092"));
        assert_eq!(config.group_id, "g");
        assert_eq!(
            (config.rest_host.as_str(), config.rest_port),
            ("127.0.0.1", 9000)
        );
        let producer = config.client_overrides("producer");
        assert_eq!(
            producer.get("sasl.mechanism").map(String::as_str),
            Some("PLAIN")
        );
        assert_eq!(producer.get("linger.ms").map(String::as_str), Some("5"));
        assert!(
            !config
                .client_overrides("consumer")
                .contains_key("linger.ms")
        );
    }

    #[test]
    fn docker_compose_sets_only_real_settings() {
        let compose = include_str!("../../docker-compose.yml");
        let def = worker_config_def();
        let vars: Vec<&str> = compose
            .lines()
            .filter_map(|l| l.trim().strip_prefix("SLUICE_"))
            .filter_map(|l| l.split(':').next())
            .collect();
        assert!(vars.len() >= 5, "found {vars:?}");
        for var in vars {
            let key = var.to_ascii_lowercase().replace('_', ".");
            let known = def.key(&key).is_some() || ["log", "log.format"].contains(&key.as_str());
            assert!(
                known,
                "docker-compose.yml sets SLUICE_{var}, which is no worker setting ({key})"
            );
        }
    }

    #[test]
    fn every_error_is_reported() {
        let props = parse_properties(
            "rest.port=99999\noffset.flush.interval.ms=soon\nvalue.converter=avro\n",
        );
        let errors = WorkerConfig::from_props(props).unwrap_err();
        let keys: Vec<_> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["offset.flush.interval.ms", "rest.port"]);
        let errors =
            WorkerConfig::from_props(parse_properties("value.converter=avro")).unwrap_err();
        assert_eq!(errors.0[0].key, "value.converter");
    }
}
