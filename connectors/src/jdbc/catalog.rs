//! What the database says about itself: connecting (with `connection.attempts`), the tables to
//! read, and each table's or query's columns and primary key. Messages name the database by host,
//! port and name, never with the password.

use std::time::Duration;

use sluice_connector_api::backoff::Backoff;
use sluice_connector_api::{ConnectError, ConnectResult};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Column as _, Connection, Executor, TypeInfo};

use super::columns::{Column, Kind};
use super::config::{JdbcSourceConfig, NumericMapping};
use super::reader::{APPLICATION_NAME, db_error};
use super::sql::quote;

/// Longest wait for a connection to the database.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A table: its schema and name, and the shape of its columns when it was listed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TableId {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// Its columns (name, type, precision, scale, nullability) as one string: a column added,
    /// dropped or changed makes the table list differ, so the tasks get new configs and read the
    /// new columns.
    #[serde(default)]
    pub shape: String,
}

/// The columns of the relation `regclass` (an SQL expression) as one string ([`TableId::shape`]):
/// name, type with its modifiers and NOT NULL, in order. From `pg_attribute`, by its index.
pub fn shape_sql(regclass: &str) -> String {
    format!(
        "(SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY a.attnum) \
          FROM pg_attribute a \
          WHERE a.attrelid = {regclass} AND a.attnum > 0 AND NOT a.attisdropped)"
    )
}

/// The relation of `information_schema.tables` row `t`.
const LISTED: &str = "(quote_ident(t.table_schema) || '.' || quote_ident(t.table_name))::regclass";

impl TableId {
    /// `"schema"."name"`.
    pub fn quoted(&self, quoted: bool) -> String {
        format!(
            "{}.{}",
            quote(&self.schema, quoted),
            quote(&self.name, quoted)
        )
    }

    /// `schema.name`.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Whether a `table.whitelist`/`table.blacklist` entry names it: `name`, `schema.name` or
    /// `database.schema.name`.
    pub fn matches(&self, entry: &str, database: &str) -> bool {
        let entry = entry.trim();
        entry == self.name
            || entry == self.display()
            || entry == format!("{database}.{}", self.display())
    }
}

/// A pool to the database of `config`, after up to `connection.attempts` attempts.
pub async fn connect(config: &JdbcSourceConfig) -> ConnectResult<PgPool> {
    let place = config.url.host().to_owned();
    let mut options: PgConnectOptions = config
        .url
        .driver_url
        .parse()
        .map_err(|e| ConnectError::user(format!("connection.url for {place}: {e}")))?;
    options = options
        .application_name(APPLICATION_NAME)
        .options([("TimeZone", config.db_timezone.as_str())]);
    if let Some(user) = config.user.as_deref().or(config.url.user.as_deref()) {
        options = options.username(user);
    }
    if let Some(password) = config.password.as_ref().or(config.url.password.as_ref()) {
        options = options.password(password.expose());
    }
    let mut last = None;
    // connection.backoff.ms between attempts, jittered (the kit's back-off with a constant ceiling).
    let backoff = Backoff::new(config.attempt_backoff, config.attempt_backoff);
    for attempt in 1..=config.attempts {
        // One connection first: the pool would retry on its own until its timeout and then
        // report only that it timed out, not why.
        let first = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
        match first {
            Ok(connection) => {
                let _ = connection.close().await;
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_with(options.clone())
                    .await;
                match pool {
                    Ok(pool) => return Ok(pool),
                    Err(e) => last = Some(e.to_string()),
                }
            }
            Err(sqlx::Error::PoolTimedOut) => {
                last = Some(format!("no answer within {CONNECT_TIMEOUT:?}"));
            }
            Err(e) => last = Some(e.to_string()),
        }
        tracing::warn!(
            "connecting to PostgreSQL at {place} failed (attempt {attempt} of {}): {}",
            config.attempts,
            last.as_deref().unwrap_or_default()
        );
        if attempt < config.attempts {
            tokio::time::sleep(backoff.delay(attempt - 1)).await;
        }
    }
    let e = last.unwrap_or_default();
    Err(ConnectError::retriable(format!(
        "cannot connect to PostgreSQL at {place} after {} attempts: {e}",
        config.attempts
    )))
}

/// The database's name (the first part of Confluent's fully qualified table name).
pub async fn database(pool: &PgPool) -> ConnectResult<String> {
    sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(pool)
        .await
        .map_err(|e| db_error("the database", "reading its name", e))
}

/// The tables `config` reads, in order.
pub async fn tables(
    pool: &PgPool,
    config: &JdbcSourceConfig,
    database: &str,
) -> ConnectResult<Vec<TableId>> {
    let types: Vec<String> = config
        .table_types
        .iter()
        .map(|t| match t.to_ascii_uppercase().as_str() {
            "TABLE" => "BASE TABLE".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT t.table_schema::text, t.table_name::text, {} \
         FROM information_schema.tables t \
         WHERE t.table_type::text = ANY($1) \
           AND t.table_schema NOT IN ('pg_catalog', 'information_schema') \
           AND t.table_schema::text NOT LIKE 'pg\\_toast%' \
           AND ($2::text IS NULL OR t.table_schema::text LIKE $2) \
         ORDER BY 1, 2",
        shape_sql(LISTED)
    ))
    .bind(&types)
    .bind(config.schema_pattern.as_deref())
    .fetch_all(pool)
    .await
    .map_err(|e| db_error("the database", "listing tables", e))?;
    Ok(rows
        .into_iter()
        .map(|(schema, name, shape)| TableId {
            schema,
            name,
            shape: shape.unwrap_or_default(),
        })
        .filter(|t| {
            config.include.is_empty() || config.include.iter().any(|e| t.matches(e, database))
        })
        .filter(|t| !config.exclude.iter().any(|e| t.matches(e, database)))
        .collect())
}

/// The table's shape now; `None` once it is gone.
pub async fn shape(pool: &PgPool, table: &TableId) -> ConnectResult<Option<String>> {
    sqlx::query_scalar(&format!(
        "SELECT CASE WHEN to_regclass($1) IS NULL THEN NULL ELSE {} END",
        shape_sql("to_regclass($1)")
    ))
    .bind(table.quoted(true))
    .fetch_one(pool)
    .await
    .map_err(|e| db_error(&table.display(), "reading its columns", e))
}

/// A column as `information_schema.columns` describes it: name, type, numeric precision and
/// scale, nullable.
type ColumnRow = (String, String, Option<i32>, Option<i32>, bool);

/// A table's columns, in order, and its primary key's columns.
pub async fn describe_table(
    pool: &PgPool,
    table: &TableId,
    mapping: NumericMapping,
) -> ConnectResult<(Vec<Column>, Vec<String>)> {
    let name = table.display();
    let rows: Vec<ColumnRow> = sqlx::query_as(
        "SELECT column_name::text, udt_name::text, numeric_precision::int4, \
                numeric_scale::int4, is_nullable::text = 'YES' \
         FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_all(pool)
    .await
    .map_err(|e| db_error(&name, "reading its columns", e))?;
    if rows.is_empty() {
        return Err(ConnectError::user(format!(
            "table {name} does not exist (or has no columns)"
        )));
    }
    let columns = rows
        .into_iter()
        .map(|(name, udt, precision, scale, nullable)| Column {
            kind: Kind::of(&udt, precision, scale, mapping),
            name,
            nullable,
        })
        .collect();
    let key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = $1::regclass AND i.indisprimary \
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(table.quoted(true))
    .fetch_all(pool)
    .await
    .map_err(|e| db_error(&name, "reading its primary key", e))?;
    Ok((columns, key))
}

/// The columns of `query`'s result, as the database describes them without running it.
pub async fn describe_query(
    pool: &PgPool,
    query: &str,
    mapping: NumericMapping,
) -> ConnectResult<Vec<Column>> {
    let described = pool
        .describe(&format!("SELECT * FROM ({query}) AS sluice_query"))
        .await
        .map_err(|e| db_error("query", "describing its columns", e))?;
    Ok(described
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let type_name = c.type_info().name().to_ascii_lowercase();
            let type_name = match type_name.strip_suffix("[]") {
                Some(item) => format!("_{item}"),
                None => type_name,
            };
            Column {
                name: c.name().to_owned(),
                // No declared scale here: numerics read as exact text (or doubles, if asked).
                kind: Kind::of(&type_name, None, None, mapping),
                nullable: described.nullable(i).unwrap_or(true),
            }
        })
        .collect())
}

/// Whether the source's user sees every session's transaction start (superuser or
/// `pg_read_all_stats`); without it, other users' open transactions do not hold the bound back.
pub async fn sees_all_transactions(pool: &PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'member') \
         FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(false)
}
