//! The JDBC source's typed settings, under Confluent's `JdbcSourceConnector` names, so that a
//! connector JSON written for Kafka Connect works as it is (`table.include.list` and
//! `table.exclude.list`, the newer names, are read as `table.whitelist` and `table.blacklist`).
//!
//! [`JdbcSourceConfig::from_props`] checks every key and reports every error at once; it never
//! connects to the database (a table or column that does not exist fails the task, naming it).

use std::time::Duration;

use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectorConfig, Importance, ParsedConfig,
    Password, Validator,
};

use super::catalog::TableId;
use super::url::DatabaseUrl;

/// How rows are found (`mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The whole table every `poll.interval.ms`.
    Bulk,
    /// New rows by a strictly increasing column (inserts only).
    Incrementing,
    /// New and updated rows by a timestamp column (or several, combined with COALESCE).
    Timestamp,
    /// Timestamp, with the incrementing column breaking ties between equal timestamps.
    TimestampIncrementing,
}

impl Mode {
    /// Whether the mode reads a timestamp column.
    pub fn uses_timestamp(self) -> bool {
        matches!(self, Self::Timestamp | Self::TimestampIncrementing)
    }

    /// Whether the mode reads an incrementing column.
    pub fn uses_incrementing(self) -> bool {
        matches!(self, Self::Incrementing | Self::TimestampIncrementing)
    }
}

/// How `NUMERIC`/`DECIMAL` columns become Connect types (`numeric.mapping`, Confluent's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericMapping {
    /// Always Connect `Decimal` (exact).
    None,
    /// Integers of the right width for `NUMERIC(p, 0)` with p ≤ 18; otherwise `Decimal`.
    PrecisionOnly,
    /// As `precision_only`, and `FLOAT64` for p ≤ 15 with a scale (exact in a double).
    BestFit,
    /// As `best_fit`, and `FLOAT64` for every other numeric (may round).
    BestFitEagerDouble,
}

/// Typed JDBC source settings.
#[derive(Debug, Clone)]
pub struct JdbcSourceConfig {
    /// The database, from `connection.url` (user and password kept apart).
    pub url: DatabaseUrl,
    /// `connection.user`, over the URL's.
    pub user: Option<String>,
    /// `connection.password`, over the URL's; never logged.
    pub password: Option<Password>,
    /// Connection attempts before the task fails.
    pub attempts: u32,
    /// Longest wait between connection attempts (the kit's jittered back-off).
    pub attempt_backoff: Duration,
    /// How new rows are found.
    pub mode: Mode,
    /// The incrementing column; `None` detects it (a non-null auto-increment primary key).
    pub incrementing_column: Option<String>,
    /// The timestamp columns, combined with COALESCE in this order.
    pub timestamp_columns: Vec<String>,
    /// Where timestamp modes start without a stored offset: ms since the epoch, `Some(-1)` for
    /// now, `None` for the beginning.
    pub timestamp_initial: Option<i64>,
    /// How long a row's timestamp must be in the past before it is read.
    pub timestamp_delay: Duration,
    /// Tables to read (empty: all the others allow).
    pub include: Vec<String>,
    /// Tables never read.
    pub exclude: Vec<String>,
    /// Table types listed (`TABLE`, `VIEW`).
    pub table_types: Vec<String>,
    /// Only tables of schemas matching this SQL `LIKE` pattern.
    pub schema_pattern: Option<String>,
    /// A query read instead of tables.
    pub query: Option<String>,
    /// Appended to every generated statement (for example `FOR UPDATE SKIP LOCKED` is not
    /// useful, but a hint or `OPTION` clause is).
    pub query_suffix: Option<String>,
    /// Topic = prefix + table name (the prefix alone in query mode).
    pub topic_prefix: String,
    /// Wait between two reads of a table that had nothing new.
    pub poll_interval: Duration,
    /// Most rows per statement, and per `poll`.
    pub batch_max_rows: usize,
    /// How often the connector lists tables to notice new and dropped ones.
    pub table_poll_interval: Duration,
    /// Whether the incrementing and timestamp columns must be declared NOT NULL.
    pub validate_non_null: bool,
    /// How numerics map.
    pub numeric_mapping: NumericMapping,
    /// The time zone of timestamps without one (`db.timezone`).
    pub db_timezone: String,
    /// Whether identifiers are quoted in generated SQL.
    pub quote_identifiers: bool,
    /// The tables of this task (set by the connector in task configs).
    pub tables: Vec<TableId>,
}

const G: &str = "JDBC";
/// The task config key that carries a task's tables.
pub const TASK_TABLES: &str = "jdbc.task.tables";
const URL: &str = "connection.url";
const MODE: &str = "mode";
const QUERY: &str = "query";
const INCLUDE: &str = "table.whitelist";
const EXCLUDE: &str = "table.blacklist";
const TIMESTAMP_COLUMNS: &str = "timestamp.column.name";
const TIMEZONE: &str = "db.timezone";

fn key(name: &'static str, kind: ConfigType, doc: &'static str) -> ConfigKey {
    ConfigKey::new(name, kind, doc).group(G)
}

fn check_url(raw: &str) -> Result<(), String> {
    DatabaseUrl::parse(raw).map(|_| ())
}

fn check_timezone(raw: &str) -> Result<(), String> {
    raw.parse::<chrono_tz::Tz>()
        .map(|_| ())
        .map_err(|_| format!("{raw:?} is not an IANA time zone (for example UTC, Europe/Berlin)"))
}

impl ConnectorConfig for JdbcSourceConfig {
    fn def() -> ConfigDef {
        ConfigDef::new()
            .define(
                key(
                    URL,
                    ConfigType::String,
                    "The database: jdbc:postgresql://host:port/db, jdbc:mysql://host:port/db, \
                    jdbc:mariadb://host:port/db or jdbc:sqlite:<file> (or postgres://…, \
                    mysql://…, sqlite:<file>). User and password may be in it, but \
                    connection.user and connection.password keep the password out of the URL.",
                )
                .importance(Importance::High)
                .validator(Validator::Custom(check_url)),
            )
            .define(key("connection.user", ConfigType::String, "Database user.").default_value(""))
            .define(
                key(
                    "connection.password",
                    ConfigType::Password,
                    "Database password; never logged, hidden in validation results.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "connection.attempts",
                    ConfigType::Int,
                    "Connection attempts before the task fails.",
                )
                .default_value("3")
                .validator(Validator::at_least(1.0)),
            )
            .define(
                key(
                    "connection.backoff.ms",
                    ConfigType::Long,
                    "Wait between connection attempts (jittered: between half of it and all).",
                )
                .default_value("10000")
                .validator(Validator::at_least(0.0)),
            )
            .define(
                key(
                    MODE,
                    ConfigType::String,
                    "How new rows are found: bulk (the whole table every poll), incrementing (a \
                    strictly increasing column), timestamp (a timestamp column), \
                    timestamp+incrementing (both: the safest for inserts and updates).",
                )
                .importance(Importance::High)
                .validator(Validator::OneOf(&[
                    "bulk",
                    "incrementing",
                    "timestamp",
                    "timestamp+incrementing",
                ])),
            )
            .define(
                key(
                    "incrementing.column.name",
                    ConfigType::String,
                    "The strictly increasing column; empty detects a non-null auto-increment \
                    primary key.",
                )
                .default_value(""),
            )
            .define(
                key(
                    TIMESTAMP_COLUMNS,
                    ConfigType::List,
                    "Timestamp columns, combined with COALESCE in this order.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "timestamp.initial",
                    ConfigType::Long,
                    "Where timestamp modes start without a stored offset: ms since the epoch, -1 \
                    for now; unset reads from the beginning.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "timestamp.delay.interval.ms",
                    ConfigType::Long,
                    "How long after its timestamp a row is read, so that transactions with \
                    earlier timestamps have committed.",
                )
                .default_value("0")
                .validator(Validator::at_least(0.0)),
            )
            .define(
                key(
                    INCLUDE,
                    ConfigType::List,
                    "Tables to read; empty reads every table.",
                )
                .default_value("")
                .alias("table.include.list"),
            )
            .define(
                key(EXCLUDE, ConfigType::List, "Tables never read.")
                    .default_value("")
                    .alias("table.exclude.list"),
            )
            .define(
                key(
                    "table.types",
                    ConfigType::List,
                    "Table types read: TABLE, VIEW.",
                )
                .default_value("TABLE"),
            )
            .define(
                key(
                    "schema.pattern",
                    ConfigType::String,
                    "Only tables of schemas matching this SQL LIKE pattern; empty: every schema \
                    but the system ones.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "catalog.pattern",
                    ConfigType::String,
                    "Kept for Confluent's configs: the catalog is the database of connection.url.",
                )
                .default_value(""),
            )
            .define(
                key(
                    QUERY,
                    ConfigType::String,
                    "A query read instead of tables; it may have its own WHERE, GROUP BY and \
                    ORDER BY: the connector wraps it as a subquery.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "query.suffix",
                    ConfigType::String,
                    "Text appended to every statement the connector makes.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "topic.prefix",
                    ConfigType::String,
                    "Topic of a table's rows: this prefix and the table name; in query mode the \
                    prefix is the topic.",
                )
                .importance(Importance::High),
            )
            .define(
                key(
                    "poll.interval.ms",
                    ConfigType::Long,
                    "Wait before reading a table again once it had nothing new.",
                )
                .default_value("5000")
                .validator(Validator::at_least(1.0)),
            )
            .define(
                key(
                    "batch.max.rows",
                    ConfigType::Int,
                    "Most rows per statement and per poll.",
                )
                .default_value("100")
                .validator(Validator::at_least(1.0)),
            )
            .define(
                key(
                    "table.poll.interval.ms",
                    ConfigType::Long,
                    "How often tables are listed to notice new and dropped ones.",
                )
                .default_value("60000")
                .validator(Validator::at_least(100.0)),
            )
            .define(
                key(
                    "validate.non.null",
                    ConfigType::Boolean,
                    "Whether the incrementing and timestamp columns must be NOT NULL (a NULL \
                    there is never read).",
                )
                .default_value("true"),
            )
            .define(
                key(
                    "numeric.mapping",
                    ConfigType::String,
                    "NUMERIC/DECIMAL columns: none (Connect Decimal), precision_only (integers \
                    for scale 0), best_fit (also FLOAT64 where exact), best_fit_eager_double \
                    (FLOAT64 for the rest).",
                )
                .default_value("none")
                .validator(Validator::OneOf(&[
                    "none",
                    "precision_only",
                    "best_fit",
                    "best_fit_eager_double",
                ])),
            )
            .define(
                key(
                    TIMEZONE,
                    ConfigType::String,
                    "Time zone of timestamps without one, and of the session.",
                )
                .default_value("UTC")
                .validator(Validator::Custom(check_timezone)),
            )
            .define(
                key(
                    "quote.sql.identifiers",
                    ConfigType::String,
                    "Whether generated SQL quotes identifiers: always or never.",
                )
                .default_value("always")
                .validator(Validator::OneOf(&["always", "never"])),
            )
            .define(
                key(
                    TASK_TABLES,
                    ConfigType::String,
                    "Set by the connector in task configs: the tables of one task.",
                )
                .default_value(""),
            )
    }

    fn build(p: &ParsedConfig, errors: &mut ConfigErrors) -> Self {
        let url = DatabaseUrl::parse(&p.string(URL)).unwrap_or_else(|_| DatabaseUrl::invalid());
        let mode = match p.string(MODE).to_ascii_lowercase().as_str() {
            "incrementing" => Mode::Incrementing,
            "timestamp" => Mode::Timestamp,
            "timestamp+incrementing" => Mode::TimestampIncrementing,
            _ => Mode::Bulk,
        };
        let timestamp_columns = p.list(TIMESTAMP_COLUMNS);
        if mode.uses_timestamp() && timestamp_columns.is_empty() {
            errors.push(
                TIMESTAMP_COLUMNS,
                format!("mode={} needs it", p.string(MODE)),
            );
        }
        let query = p.optional_string(QUERY);
        let include = p.list(INCLUDE);
        let exclude = p.list(EXCLUDE);
        if query.is_some() && !(include.is_empty() && exclude.is_empty()) {
            errors.push(
                QUERY,
                "reads a query instead of tables: leave table.whitelist and \
                                table.blacklist empty",
            );
        }
        if !include.is_empty() && !exclude.is_empty() {
            errors.push(
                EXCLUDE,
                "cannot be combined with table.whitelist: set one of them",
            );
        }
        let tables = match p.optional_string(TASK_TABLES) {
            Some(raw) => serde_json::from_str(&raw).unwrap_or_else(|e| {
                errors.push(TASK_TABLES, format!("not a table list: {e}"));
                Vec::new()
            }),
            None => Vec::new(),
        };
        Self {
            url,
            user: p.optional_string("connection.user"),
            password: p.password("connection.password"),
            attempts: p.int("connection.attempts").max(1) as u32,
            attempt_backoff: p.duration_ms("connection.backoff.ms"),
            mode,
            incrementing_column: p.optional_string("incrementing.column.name"),
            timestamp_columns,
            timestamp_initial: p.optional_long("timestamp.initial"),
            timestamp_delay: p.duration_ms("timestamp.delay.interval.ms"),
            include,
            exclude,
            table_types: p.list("table.types"),
            schema_pattern: p.optional_string("schema.pattern"),
            query,
            query_suffix: p.optional_string("query.suffix"),
            topic_prefix: p.string("topic.prefix"),
            poll_interval: p.duration_ms("poll.interval.ms"),
            batch_max_rows: p.int("batch.max.rows").max(1) as usize,
            table_poll_interval: p.duration_ms("table.poll.interval.ms"),
            validate_non_null: p.boolean("validate.non.null"),
            numeric_mapping: match p.string("numeric.mapping").to_ascii_lowercase().as_str() {
                "precision_only" => NumericMapping::PrecisionOnly,
                "best_fit" => NumericMapping::BestFit,
                "best_fit_eager_double" => NumericMapping::BestFitEagerDouble,
                _ => NumericMapping::None,
            },
            db_timezone: p.string(TIMEZONE),
            quote_identifiers: !p
                .string("quote.sql.identifiers")
                .eq_ignore_ascii_case("never"),
            tables,
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_connector_api::testing::props;

    use super::*;

    #[test]
    fn a_confluent_config_reads_as_it_is() {
        let c = JdbcSourceConfig::from_props(&props(&[
            (
                "connection.url",
                "jdbc:postgresql://db:5432/shop?user=app&password=secret",
            ),
            ("mode", "timestamp+incrementing"),
            ("incrementing.column.name", "id"),
            ("timestamp.column.name", "updated_at, created_at"),
            ("table.include.list", "orders,public.customers"),
            ("topic.prefix", "pg-"),
        ]))
        .unwrap();
        assert_eq!(c.mode, Mode::TimestampIncrementing);
        assert_eq!(c.timestamp_columns, ["updated_at", "created_at"]);
        assert_eq!(c.include, ["orders", "public.customers"]);
        assert_eq!(
            (c.batch_max_rows, c.poll_interval),
            (100, Duration::from_secs(5))
        );
        assert_eq!(c.numeric_mapping, NumericMapping::None);
        assert_eq!(c.url.host(), "db:5432/shop");
        assert!(c.quote_identifiers);
    }

    #[test]
    fn every_error_is_reported_at_once_and_the_password_is_not_among_them() {
        let Err(errors) = JdbcSourceConfig::from_props(&props(&[
            ("connection.url", "jdbc:oracle:thin:@db:1521:x"),
            ("connection.password", "hunter2"),
            ("mode", "timestamp"),
            ("query", "select 1"),
            ("table.whitelist", "a"),
            ("table.blacklist", "b"),
            ("db.timezone", "Mars/Olympus"),
        ])) else {
            panic!("invalid config accepted");
        };
        let text = errors.to_string();
        for key in [
            "connection.url",
            "timestamp.column.name",
            "query",
            "table.blacklist",
            "db.timezone",
            "topic.prefix",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        assert!(!text.contains("hunter2"), "{text}");
    }
}
