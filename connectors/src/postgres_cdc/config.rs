//! The PostgreSQL CDC source's typed settings, under Debezium's `PostgresConnector` names and
//! defaults, so that a Debezium connector JSON works as it is.
//!
//! [`PostgresCdcConfig::from_props`] checks every key and reports every error at once; it never
//! connects to the database (wrong credentials, `wal_level`, privileges and a slot held by another
//! client fail the task with a trace that says how to fix them).

use std::time::Duration;

use super::filter::{Filter, check_regexes};
use super::types::Modes;
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectorConfig, Importance, ParsedConfig,
    Password, Validator,
};

/// When the connector reads the tables' rows before streaming (`snapshot.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// Snapshot when there is no stored offset (or the last snapshot did not finish), then stream.
    Initial,
    /// Snapshot at every start, then stream.
    Always,
    /// Never snapshot: stream from the slot.
    NoData,
    /// Snapshot when there is no stored offset, then stop reading (no streaming).
    InitialOnly,
    /// As `initial`, and also when the stored offset is older than what the slot still holds.
    WhenNeeded,
}

/// How `numeric`/`decimal` columns become Connect values (`decimal.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalHandling {
    /// Connect `Decimal` (exact); `VariableScaleDecimal` for columns without a declared scale.
    Precise,
    /// `FLOAT64` (may round).
    Double,
    /// The exact decimal text.
    String,
}

/// How time columns become Connect values (`time.precision.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePrecision {
    /// Debezium's types by the column's precision: milliseconds up to 3 digits, microseconds
    /// beyond.
    Adaptive,
    /// As `adaptive`, but `time` always as microseconds.
    AdaptiveTimeMicroseconds,
    /// Kafka Connect's `Date`, `Time` and `Timestamp` (milliseconds).
    Connect,
}

/// Which tables the publication covers when the connector creates it
/// (`publication.autocreate.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicationAutocreate {
    /// `FOR ALL TABLES` (needs superuser).
    AllTables,
    /// Never created: it must exist.
    Disabled,
    /// The tables the include and exclude lists select, kept in line at every start.
    Filtered,
}

/// Typed PostgreSQL CDC settings.
#[derive(Debug, Clone)]
pub struct PostgresCdcConfig {
    /// `database.hostname`.
    pub host: String,
    /// `database.port`.
    pub port: u16,
    /// `database.user`: needs the `REPLICATION` attribute (or superuser).
    pub user: String,
    /// `database.password`; never logged.
    pub password: Option<Password>,
    /// `database.dbname`.
    pub dbname: String,
    /// `database.sslmode`: disable, allow, prefer, require, verify-ca, verify-full.
    pub sslmode: String,
    /// `topic.prefix`: topics are `<prefix>.<schema>.<table>`; also the offsets' partition.
    pub topic_prefix: String,
    /// `slot.name`.
    pub slot: String,
    /// `publication.name`.
    pub publication: String,
    /// `publication.autocreate.mode`.
    pub publication_autocreate: PublicationAutocreate,
    /// `schema.include.list` / `schema.exclude.list` (anchored regexes; `include` wins when set).
    pub schemas: Filter,
    /// `table.include.list` / `table.exclude.list`, matched against `schema.table`.
    pub tables: Filter,
    /// `column.include.list` / `column.exclude.list`, matched against `schema.table.column`.
    pub columns: Filter,
    /// `snapshot.mode`.
    pub snapshot_mode: SnapshotMode,
    /// `heartbeat.interval.ms` (`None`: no heartbeats).
    pub heartbeat_interval: Option<Duration>,
    /// `heartbeat.action.query`, run on the database at every heartbeat.
    pub heartbeat_action_query: Option<String>,
    /// `topic.heartbeat.prefix`: heartbeats go to `<it>.<topic.prefix>`.
    pub heartbeat_topic_prefix: String,
    /// `tombstones.on.delete`.
    pub tombstones_on_delete: bool,
    /// `decimal.handling.mode`.
    pub decimal_handling: DecimalHandling,
    /// `time.precision.mode`.
    pub time_precision: TimePrecision,
    /// `max.batch.size`: most records per poll.
    pub max_batch_size: usize,
    /// `max.queue.size`: most changes read ahead of the task.
    pub max_queue_size: usize,
    /// `slot.drop.on.stop`: drop the slot when the task stops (tests and demos only).
    pub slot_drop_on_stop: bool,
    /// `status.update.interval.ms`: how often the slot's position is reported to the server.
    pub status_update_interval: Duration,
    /// `unavailable.value.placeholder`: what an unchanged TOAST value reads as.
    pub unavailable_value_placeholder: String,
    /// `snapshot.fetch.size`: rows fetched per round trip (a cursor) in a snapshot.
    pub snapshot_fetch_size: usize,
    /// `skipped.operations`: the `op`s not emitted (`c`, `u`, `d`, `t`).
    pub skipped_operations: Vec<String>,
}

fn check_port(raw: &str) -> Result<(), String> {
    raw.trim()
        .parse::<u16>()
        .map(|_| ())
        .map_err(|_| format!("{raw:?} is not a port (1-65535)"))
}

fn check_identifier(raw: &str) -> Result<(), String> {
    let ok = !raw.is_empty()
        && raw.len() <= 63
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{raw:?}: slot names are lower-case letters, digits and underscores, at most 63"
        ))
    }
}

const G: &str = "PostgreSQL CDC";
const HOST: &str = "database.hostname";
const USER: &str = "database.user";
const DBNAME: &str = "database.dbname";
const PREFIX: &str = "topic.prefix";
const PLUGIN: &str = "plugin.name";
const TABLE_INCLUDE: &str = "table.include.list";
const TABLE_EXCLUDE: &str = "table.exclude.list";
const SCHEMA_INCLUDE: &str = "schema.include.list";
const SCHEMA_EXCLUDE: &str = "schema.exclude.list";
const COLUMN_INCLUDE: &str = "column.include.list";
const COLUMN_EXCLUDE: &str = "column.exclude.list";

fn key(name: &'static str, kind: ConfigType, doc: &'static str) -> ConfigKey {
    ConfigKey::new(name, kind, doc).group(G)
}

fn list_key(name: &'static str, doc: &'static str) -> ConfigKey {
    key(name, ConfigType::List, doc)
        .default_value("")
        .validator(Validator::Custom(check_regexes))
}

impl ConnectorConfig for PostgresCdcConfig {
    fn def() -> ConfigDef {
        ConfigDef::new()
            .define(
                key(HOST, ConfigType::String, "The PostgreSQL server's host.")
                    .importance(Importance::High)
                    .validator(Validator::NonEmpty),
            )
            .define(
                key(
                    "database.port",
                    ConfigType::Int,
                    "The PostgreSQL server's port.",
                )
                .default_value("5432")
                .validator(Validator::Custom(check_port)),
            )
            .define(
                key(
                    USER,
                    ConfigType::String,
                    "The user: needs the REPLICATION attribute and SELECT on the tables (and \
                    CREATE on the database to create the publication).",
                )
                .importance(Importance::High)
                .validator(Validator::NonEmpty),
            )
            .define(
                key(
                    "database.password",
                    ConfigType::Password,
                    "The user's password; never logged, hidden in validation results.",
                )
                .default_value(""),
            )
            .define(
                key(DBNAME, ConfigType::String, "The database to stream.")
                    .importance(Importance::High)
                    .validator(Validator::NonEmpty),
            )
            .define(
                key(
                    "database.sslmode",
                    ConfigType::String,
                    "TLS to the server: disable, allow, prefer, require, verify-ca, verify-full.",
                )
                .default_value("prefer")
                .validator(Validator::OneOf(&[
                    "disable",
                    "allow",
                    "prefer",
                    "require",
                    "verify-ca",
                    "verify-full",
                ])),
            )
            .define(
                key(
                    PREFIX,
                    ConfigType::String,
                    "The logical name of the server: topics are <prefix>.<schema>.<table>, and \
                    offsets are stored under it.",
                )
                .importance(Importance::High)
                .validator(Validator::NonEmpty),
            )
            .define(
                key(
                    PLUGIN,
                    ConfigType::String,
                    "The logical decoding plugin: pgoutput (built into PostgreSQL 10 and later).",
                )
                .default_value("pgoutput"),
            )
            .define(
                key(
                    "slot.name",
                    ConfigType::String,
                    "The replication slot, created when absent.",
                )
                .default_value("debezium")
                .validator(Validator::Custom(check_identifier)),
            )
            .define(
                key(
                    "publication.name",
                    ConfigType::String,
                    "The publication streamed.",
                )
                .default_value("dbz_publication")
                .validator(Validator::NonEmpty),
            )
            .define(
                key(
                    "publication.autocreate.mode",
                    ConfigType::String,
                    "all_tables (create it FOR ALL TABLES), disabled (it must exist) or filtered \
                    (create it for the selected tables and keep it in line at every start).",
                )
                .default_value("all_tables")
                .validator(Validator::OneOf(&[
                    "all_tables",
                    "disabled",
                    "filtered",
                ])),
            )
            .define(list_key(
                SCHEMA_INCLUDE,
                "Regexes of schemas to stream; empty: every schema not excluded.",
            ))
            .define(list_key(
                SCHEMA_EXCLUDE,
                "Regexes of schemas never streamed.",
            ))
            .define(list_key(
                TABLE_INCLUDE,
                "Regexes of tables (schema.table) to stream; empty: every table not excluded.",
            ))
            .define(list_key(
                TABLE_EXCLUDE,
                "Regexes of tables (schema.table) never streamed.",
            ))
            .define(list_key(
                COLUMN_INCLUDE,
                "Regexes of columns (schema.table.column) in change events; empty: every \
                column not excluded.",
            ))
            .define(list_key(
                COLUMN_EXCLUDE,
                "Regexes of columns (schema.table.column) left out of change events.",
            ))
            .define(
                key(
                    "snapshot.mode",
                    ConfigType::String,
                    "initial (snapshot without a stored offset, then stream), always, no_data \
                    (stream only), initial_only (snapshot, no streaming), when_needed (as \
                    initial, and when the stored offset is gone from the slot).",
                )
                .default_value("initial")
                .validator(Validator::OneOf(&[
                    "initial",
                    "always",
                    "no_data",
                    "never",
                    "initial_only",
                    "when_needed",
                ])),
            )
            .define(
                key(
                    "heartbeat.interval.ms",
                    ConfigType::Long,
                    "How often a heartbeat record is written to <topic.heartbeat.prefix>.<topic.\
                    prefix> carrying the newest position, so the slot advances on an idle or \
                    filtered database; 0 turns heartbeats off.",
                )
                .default_value("0")
                .validator(Validator::at_least(0.0)),
            )
            .define(
                key(
                    "heartbeat.action.query",
                    ConfigType::String,
                    "A statement run on the database at every heartbeat (for example an update \
                    of a heartbeat table in the publication), so the slot sees WAL of this \
                    database even when no streamed table changes.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "topic.heartbeat.prefix",
                    ConfigType::String,
                    "Prefix of the heartbeat topic.",
                )
                .default_value("__debezium-heartbeat"),
            )
            .define(
                key(
                    "tombstones.on.delete",
                    ConfigType::Boolean,
                    "Whether a delete event is followed by a tombstone (so compaction removes \
                    the key).",
                )
                .default_value("true"),
            )
            .define(
                key(
                    "decimal.handling.mode",
                    ConfigType::String,
                    "numeric columns: precise (Connect Decimal), double or string.",
                )
                .default_value("precise")
                .validator(Validator::OneOf(&["precise", "double", "string"])),
            )
            .define(
                key(
                    "time.precision.mode",
                    ConfigType::String,
                    "Time columns: adaptive (Debezium's milli- or microsecond types by the \
                    column's precision), adaptive_time_microseconds, or connect (Kafka \
                    Connect's Date, Time and Timestamp, milliseconds).",
                )
                .default_value("adaptive")
                .validator(Validator::OneOf(&[
                    "adaptive",
                    "adaptive_time_microseconds",
                    "connect",
                ])),
            )
            .define(
                key("max.batch.size", ConfigType::Int, "Most records per poll.")
                    .default_value("2048")
                    .validator(Validator::at_least(1.0)),
            )
            .define(
                key(
                    "max.queue.size",
                    ConfigType::Int,
                    "Most change events read ahead of the task (back-pressure on the stream).",
                )
                .default_value("8192")
                .validator(Validator::at_least(1.0)),
            )
            .define(
                key(
                    "slot.drop.on.stop",
                    ConfigType::Boolean,
                    "Drop the slot when the task stops gracefully: for tests and demos; a \
                    restart then loses the changes in between.",
                )
                .default_value("false"),
            )
            .define(
                key(
                    "status.update.interval.ms",
                    ConfigType::Long,
                    "How often the slot's confirmed position is reported to the server.",
                )
                .default_value("10000")
                .validator(Validator::at_least(1.0)),
            )
            .define(
                key(
                    "unavailable.value.placeholder",
                    ConfigType::String,
                    "What an unchanged TOAST value (not sent by PostgreSQL without REPLICA \
                    IDENTITY FULL) reads as.",
                )
                .default_value("__debezium_unavailable_value"),
            )
            .define(
                key(
                    "skipped.operations",
                    ConfigType::List,
                    "Operations not emitted: c (inserts), u (updates), d (deletes), t \
                    (truncates), or none. Debezium's default skips truncates.",
                )
                .default_value("t")
                .validator(Validator::OneOf(&["c", "u", "d", "t", "none"])),
            )
            .define(
                key(
                    "snapshot.fetch.size",
                    ConfigType::Int,
                    "Rows fetched per round trip while snapshotting (through a cursor, so a \
                    table is never all in memory).",
                )
                .default_value("10240")
                .validator(Validator::at_least(1.0)),
            )
    }

    fn build(p: &ParsedConfig, errors: &mut ConfigErrors) -> Self {
        let plugin = p.string(PLUGIN);
        if !plugin.eq_ignore_ascii_case("pgoutput") {
            errors.push(
                PLUGIN,
                format!("{plugin:?} is not supported: only pgoutput (no server extension needed)"),
            );
        }
        let mut filter = |include: &str, exclude: &str| {
            let (i, e) = (p.list(include), p.list(exclude));
            if !i.is_empty() && !e.is_empty() {
                errors.push(
                    exclude,
                    format!("cannot be combined with {include}: set one"),
                );
            }
            Filter::new(&i, &e)
        };
        let schemas = filter(SCHEMA_INCLUDE, SCHEMA_EXCLUDE);
        let tables = filter(TABLE_INCLUDE, TABLE_EXCLUDE);
        let columns = filter(COLUMN_INCLUDE, COLUMN_EXCLUDE);
        let heartbeat = p.long("heartbeat.interval.ms");
        Self {
            host: p.string(HOST),
            port: p.int("database.port").clamp(0, i32::from(u16::MAX)) as u16,
            user: p.string(USER),
            password: p.password("database.password"),
            dbname: p.string(DBNAME),
            sslmode: p.string("database.sslmode").to_ascii_lowercase(),
            topic_prefix: p.string(PREFIX),
            slot: p.string("slot.name"),
            publication: p.string("publication.name"),
            publication_autocreate: match p
                .string("publication.autocreate.mode")
                .to_ascii_lowercase()
                .as_str()
            {
                "disabled" => PublicationAutocreate::Disabled,
                "filtered" => PublicationAutocreate::Filtered,
                _ => PublicationAutocreate::AllTables,
            },
            schemas,
            tables,
            columns,
            snapshot_mode: match p.string("snapshot.mode").to_ascii_lowercase().as_str() {
                "always" => SnapshotMode::Always,
                "no_data" | "never" => SnapshotMode::NoData,
                "initial_only" => SnapshotMode::InitialOnly,
                "when_needed" => SnapshotMode::WhenNeeded,
                _ => SnapshotMode::Initial,
            },
            heartbeat_interval: (heartbeat > 0).then(|| Duration::from_millis(heartbeat as u64)),
            heartbeat_action_query: p.optional_string("heartbeat.action.query"),
            heartbeat_topic_prefix: p.string("topic.heartbeat.prefix"),
            tombstones_on_delete: p.boolean("tombstones.on.delete"),
            decimal_handling: match p
                .string("decimal.handling.mode")
                .to_ascii_lowercase()
                .as_str()
            {
                "double" => DecimalHandling::Double,
                "string" => DecimalHandling::String,
                _ => DecimalHandling::Precise,
            },
            time_precision: match p
                .string("time.precision.mode")
                .to_ascii_lowercase()
                .as_str()
            {
                "adaptive_time_microseconds" => TimePrecision::AdaptiveTimeMicroseconds,
                "connect" => TimePrecision::Connect,
                _ => TimePrecision::Adaptive,
            },
            max_batch_size: p.int("max.batch.size").max(1) as usize,
            max_queue_size: p.int("max.queue.size").max(1) as usize,
            slot_drop_on_stop: p.boolean("slot.drop.on.stop"),
            status_update_interval: p.duration_ms("status.update.interval.ms"),
            unavailable_value_placeholder: p.string("unavailable.value.placeholder"),
            snapshot_fetch_size: p.int("snapshot.fetch.size").max(1) as usize,
            skipped_operations: p
                .list("skipped.operations")
                .into_iter()
                .map(|o| o.to_ascii_lowercase())
                .filter(|o| o != "none")
                .collect(),
        }
    }
}

impl PostgresCdcConfig {
    /// Whether changes of `schema.table` are streamed.
    pub fn streams_table(&self, schema: &str, table: &str) -> bool {
        self.schemas.matches(schema) && self.tables.matches(&format!("{schema}.{table}"))
    }

    /// Whether `column` of `schema.table` is in change events.
    pub fn streams_column(&self, schema: &str, table: &str, column: &str) -> bool {
        self.columns.is_empty() || self.columns.matches(&format!("{schema}.{table}.{column}"))
    }

    /// `host:port/dbname`, for messages (never the password).
    pub fn server(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }

    /// Whether events of `op` are not emitted (`skipped.operations`).
    pub fn skips(&self, op: &str) -> bool {
        self.skipped_operations.iter().any(|o| o == op)
    }

    /// How decimals and times map.
    pub fn modes(&self) -> Modes {
        Modes {
            decimal: self.decimal_handling,
            time: self.time_precision,
        }
    }

    /// The heartbeat topic.
    pub fn heartbeat_topic(&self) -> String {
        format!("{}.{}", self.heartbeat_topic_prefix, self.topic_prefix)
    }
}

#[cfg(test)]
mod tests {
    use sluice_connector_api::testing::props;

    use super::*;

    #[test]
    fn a_debezium_config_reads_as_it_is() {
        let c = PostgresCdcConfig::from_props(&props(&[
            ("database.hostname", "db"),
            ("database.user", "postgres"),
            ("database.password", "secret"),
            ("database.dbname", "inventory"),
            ("topic.prefix", "dbserver1"),
            ("table.include.list", "public.orders, inventory\\..*"),
            ("column.exclude.list", "public.orders.card_number"),
        ]))
        .unwrap();
        assert_eq!((c.port, c.slot.as_str()), (5432, "debezium"));
        assert_eq!(c.publication, "dbz_publication");
        assert_eq!(c.snapshot_mode, SnapshotMode::Initial);
        assert_eq!(c.decimal_handling, DecimalHandling::Precise);
        assert_eq!(c.time_precision, TimePrecision::Adaptive);
        assert!(c.tombstones_on_delete);
        assert!(c.streams_table("public", "orders"));
        assert!(c.streams_table("inventory", "customers"));
        assert!(!c.streams_table("public", "orders_archive"), "anchored");
        assert!(c.streams_column("public", "orders", "id"));
        assert!(!c.streams_column("public", "orders", "card_number"));
        assert_eq!(c.heartbeat_interval, None);
        assert_eq!(c.heartbeat_topic(), "__debezium-heartbeat.dbserver1");
    }

    #[test]
    fn every_error_is_reported_at_once_and_the_password_is_not_among_them() {
        let Err(errors) = PostgresCdcConfig::from_props(&props(&[
            ("database.hostname", "db"),
            ("database.password", "hunter2"),
            ("database.port", "99999"),
            ("plugin.name", "decoderbufs"),
            ("slot.name", "Bad-Slot"),
            ("table.include.list", "public.(orders"),
            ("schema.include.list", "a"),
            ("schema.exclude.list", "b"),
            ("snapshot.mode", "sometimes"),
        ])) else {
            panic!("invalid config accepted");
        };
        let text = errors.to_string();
        for key in [
            "database.user",
            "database.dbname",
            "topic.prefix",
            "database.port",
            "plugin.name",
            "slot.name",
            "table.include.list",
            "schema.exclude.list",
            "snapshot.mode",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        assert!(!text.contains("hunter2"), "{text}");
    }
}
