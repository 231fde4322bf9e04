//! What the connector asks PostgreSQL's catalog over an ordinary (sqlx) connection: the server's
//! settings and the user's rights (checked at start, each failure saying how to fix it), the
//! publication and the slot, the tables to stream, and the columns, types, nullability and
//! primary key of a table.

use std::collections::HashMap;

use sluice_connector_api::{ConnectError, ConnectResult};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{Connection, Row};

use super::config::{PostgresCdcConfig, PublicationAutocreate};
use super::types::{PgType, SESSION_SETTINGS, builtin_array_element};

/// A PostgreSQL error as a connector error, classified as the JDBC source classifies it
/// (retriable when the server is going away, restarting or unreachable).
pub fn db_error(doing: &str, e: sqlx::Error) -> ConnectError {
    crate::jdbc::db::db_error("PostgreSQL", doing, e)
}

/// An ordinary connection's options for `config` (the password stays in them, never in a
/// message).
pub fn connect_options(config: &PostgresCdcConfig) -> PgConnectOptions {
    let mut o = PgConnectOptions::new()
        .host(&config.host)
        .port(config.port)
        .username(&config.user)
        .database(&config.dbname)
        .application_name("sluice-postgres-cdc")
        .ssl_mode(match config.sslmode.as_str() {
            "disable" => PgSslMode::Disable,
            "allow" => PgSslMode::Allow,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            _ => PgSslMode::Prefer,
        })
        .options(SESSION_SETTINGS.iter().copied());
    if let Some(p) = &config.password {
        o = o.password(p.expose());
    }
    o
}

/// Connects, naming the server (never the password) when it fails.
pub async fn connect(config: &PostgresCdcConfig) -> ConnectResult<PgConnection> {
    PgConnection::connect_with(&connect_options(config))
        .await
        .map_err(|e| {
            db_error(
                &format!("connecting to PostgreSQL at {}", config.server()),
                e,
            )
        })
}

/// Checks what logical replication needs, so that the task fails with the fix, not with a
/// protocol error later.
pub async fn check_server(db: &mut PgConnection, config: &PostgresCdcConfig) -> ConnectResult<()> {
    let row = sqlx::query(
        "SELECT current_setting('wal_level'), r.rolreplication OR r.rolsuper \
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(&mut *db)
    .await
    .map_err(|e| db_error("reading wal_level and the user's rights", e))?;
    let wal_level: String = row.get(0);
    let can_replicate: bool = row.get(1);
    if wal_level != "logical" {
        return Err(ConnectError::user(format!(
            "{}: wal_level is {wal_level:?}, logical replication needs 'logical': set \
             wal_level = logical in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) \
             and restart PostgreSQL",
            config.server()
        )));
    }
    if !can_replicate {
        return Err(ConnectError::user(format!(
            "user {:?} may not use replication on {}: ALTER ROLE {} WITH REPLICATION (or use a \
             superuser)",
            config.user,
            config.server(),
            config.user
        )));
    }
    Ok(())
}

/// A replication slot's state.
#[derive(Debug, Clone)]
pub struct SlotState {
    /// The oldest LSN the slot keeps WAL for.
    pub restart_lsn: Option<u64>,
    /// What a client last confirmed.
    pub confirmed_flush_lsn: Option<u64>,
    /// The pid of the session using it now.
    pub active_pid: Option<i32>,
    /// Its plugin.
    pub plugin: Option<String>,
}

/// The slot, if it exists.
pub async fn slot(db: &mut PgConnection, name: &str) -> ConnectResult<Option<SlotState>> {
    let row = sqlx::query(
        "SELECT (restart_lsn - '0/0')::int8, (confirmed_flush_lsn - '0/0')::int8, active_pid, \
         plugin FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(name.to_owned())
    .fetch_optional(&mut *db)
    .await
    .map_err(|e| db_error("reading the replication slot", e))?;
    Ok(row.map(|r| SlotState {
        restart_lsn: r.get::<Option<i64>, _>(0).map(|l| l as u64),
        confirmed_flush_lsn: r.get::<Option<i64>, _>(1).map(|l| l as u64),
        active_pid: r.get(2),
        plugin: r.get(3),
    }))
}

/// How many bytes of WAL the slot holds back (`pg_current_wal_lsn() - confirmed_flush_lsn`).
pub async fn slot_lag(db: &mut PgConnection, name: &str) -> ConnectResult<Option<i64>> {
    sqlx::query_scalar(
        "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::int8 FROM pg_replication_slots \
         WHERE slot_name = $1",
    )
    .bind(name.to_owned())
    .fetch_optional(&mut *db)
    .await
    .map(Option::flatten)
    .map_err(|e| db_error("reading the slot's lag", e))
}

/// Drops the slot, waiting (a few seconds at most) for a session that is ending to release it.
pub async fn drop_slot(db: &mut PgConnection, name: &str) -> ConnectResult<()> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while slot(db, name)
        .await?
        .is_some_and(|s| s.active_pid.is_some())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(name.to_owned())
        .execute(&mut *db)
        .await
        .map(|_| ())
        .map_err(|e| db_error(&format!("dropping replication slot {name}"), e))
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A table's qualified, quoted name.
pub fn quoted(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

/// The ordinary tables of the database that the config selects, as `(schema, table)`.
async fn selected_tables(
    db: &mut PgConnection,
    config: &PostgresCdcConfig,
) -> ConnectResult<Vec<(String, String)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' \
         ORDER BY 1, 2",
    )
    .fetch_all(&mut *db)
    .await
    .map_err(|e| db_error("listing tables", e))?;
    Ok(rows
        .into_iter()
        .filter(|(s, t)| config.streams_table(s, t))
        .collect())
}

/// Creates the publication when absent (per `publication.autocreate.mode`); with `filtered`,
/// sets its tables to the selected ones.
pub async fn ensure_publication(
    db: &mut PgConnection,
    config: &PostgresCdcConfig,
) -> ConnectResult<()> {
    let name = &config.publication;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(name.to_owned())
            .fetch_one(&mut *db)
            .await
            .map_err(|e| db_error("reading publications", e))?;
    let statement = match (config.publication_autocreate, exists) {
        (PublicationAutocreate::Disabled, false) => {
            return Err(ConnectError::user(format!(
                "publication {name:?} does not exist on {} and publication.autocreate.mode is \
                 disabled: CREATE PUBLICATION {} FOR TABLE ...",
                config.server(),
                quote(name)
            )));
        }
        (PublicationAutocreate::Disabled, true) | (PublicationAutocreate::AllTables, true) => {
            return Ok(());
        }
        (PublicationAutocreate::AllTables, false) => {
            format!("CREATE PUBLICATION {} FOR ALL TABLES", quote(name))
        }
        (PublicationAutocreate::Filtered, _) => {
            let tables = selected_tables(db, config).await?;
            if tables.is_empty() {
                return Err(ConnectError::user(format!(
                    "no table of {} matches the include and exclude lists: a filtered \
                     publication needs at least one",
                    config.server()
                )));
            }
            let list = tables
                .iter()
                .map(|(s, t)| quoted(s, t))
                .collect::<Vec<_>>()
                .join(", ");
            if exists {
                format!("ALTER PUBLICATION {} SET TABLE {list}", quote(name))
            } else {
                format!("CREATE PUBLICATION {} FOR TABLE {list}", quote(name))
            }
        }
    };
    sqlx::query(&statement)
        .execute(&mut *db)
        .await
        .map(|_| ())
        .map_err(|e| db_error(&format!("creating publication {name}"), e))
}

/// The tables of the publication that the config selects, with their OIDs.
pub async fn published_tables(
    db: &mut PgConnection,
    config: &PostgresCdcConfig,
) -> ConnectResult<Vec<(u32, String, String)>> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT c.oid::int8, p.schemaname::text, p.tablename::text FROM pg_publication_tables p \
         JOIN pg_namespace n ON n.nspname = p.schemaname \
         JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename \
         WHERE p.pubname = $1 ORDER BY 2, 3",
    )
    .bind(config.publication.clone())
    .fetch_all(&mut *db)
    .await
    .map_err(|e| db_error("listing the publication's tables", e))?;
    Ok(rows
        .into_iter()
        .filter(|(_, s, t)| config.streams_table(s, t))
        .map(|(oid, s, t)| (oid as u32, s, t))
        .collect())
}

/// A column as the catalog describes it.
#[derive(Debug, Clone)]
pub struct CatalogColumn {
    /// Its name.
    pub name: String,
    /// Its type's OID.
    pub type_oid: u32,
    /// Its type modifier.
    pub type_modifier: i32,
    /// Whether it may be NULL.
    pub nullable: bool,
}

/// A table's columns, primary key and replica identity from the catalog.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    /// The columns in order.
    pub columns: Vec<CatalogColumn>,
    /// The primary key's columns in key order.
    pub primary_key: Vec<String>,
    /// `REPLICA IDENTITY`: `d`, `n`, `f` or `i`.
    pub replica_identity: u8,
}

/// Describes table `oid`.
pub async fn describe(db: &mut PgConnection, oid: u32) -> ConnectResult<CatalogTable> {
    let columns: Vec<(String, i64, i32, bool)> = sqlx::query_as(
        "SELECT attname::text, atttypid::int8, atttypmod, NOT attnotnull FROM pg_attribute \
         WHERE attrelid = $1::int8::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .bind(i64::from(oid))
    .fetch_all(&mut *db)
    .await
    .map_err(|e| db_error("describing a table", e))?;
    let primary_key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[]) \
         WHERE i.indrelid = $1::int8::oid AND i.indisprimary \
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(i64::from(oid))
    .fetch_all(&mut *db)
    .await
    .map_err(|e| db_error("reading a table's primary key", e))?;
    let identity: Option<i8> =
        sqlx::query_scalar("SELECT relreplident::\"char\" FROM pg_class WHERE oid = $1::int8::oid")
            .bind(i64::from(oid))
            .fetch_optional(&mut *db)
            .await
            .map_err(|e| db_error("reading a table's replica identity", e))?;
    Ok(CatalogTable {
        columns: columns
            .into_iter()
            .map(|(name, oid, modifier, nullable)| CatalogColumn {
                name,
                type_oid: oid as u32,
                type_modifier: modifier,
                nullable,
            })
            .collect(),
        primary_key,
        replica_identity: identity.map_or(b'd', |c| c as u8),
    })
}

/// Resolves types the mapping does not know by OID (enums, domains, arrays of them), caching
/// what it read.
#[derive(Default)]
pub struct Types(HashMap<(u32, i32), PgType>);

impl Types {
    /// The type of a column of type `oid` with `modifier`.
    pub async fn resolve(
        &mut self,
        db: &mut PgConnection,
        oid: u32,
        modifier: i32,
    ) -> ConnectResult<PgType> {
        if let Some(t) = PgType::builtin(oid, modifier) {
            return Ok(t);
        }
        if let Some(t) = self.0.get(&(oid, modifier)) {
            return Ok(t.clone());
        }
        let resolved = self.lookup(db, oid, modifier, 0).await?;
        self.0.insert((oid, modifier), resolved.clone());
        Ok(resolved)
    }

    async fn lookup(
        &mut self,
        db: &mut PgConnection,
        oid: u32,
        modifier: i32,
        depth: u8,
    ) -> ConnectResult<PgType> {
        if let Some(t) = PgType::builtin(oid, modifier) {
            return Ok(t);
        }
        if depth > 8 {
            return Ok(PgType::Text);
        }
        if let Some(element) = builtin_array_element(oid) {
            let item = Box::pin(self.lookup(db, element, modifier, depth + 1)).await?;
            return Ok(PgType::Array(Box::new(item)));
        }
        let row: Option<(i8, i64, i64, i32, i8, Option<String>)> = sqlx::query_as(
            "SELECT t.typtype::\"char\", t.typelem::int8, t.typbasetype::int8, t.typtypmod, \
             t.typcategory::\"char\", (SELECT string_agg(e.enumlabel, ',' ORDER BY \
             e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) \
             FROM pg_type t WHERE t.oid = $1::int8::oid",
        )
        .bind(i64::from(oid))
        .fetch_optional(&mut *db)
        .await
        .map_err(|e| db_error("reading a column's type", e))?;
        let Some((typtype, element, base, base_modifier, category, labels)) = row else {
            return Ok(PgType::Text);
        };
        Ok(match (typtype as u8, category as u8) {
            (b'e', _) => PgType::Enum(
                labels
                    .unwrap_or_default()
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            (b'd', _) => {
                let m = if modifier >= 0 {
                    modifier
                } else {
                    base_modifier
                };
                Box::pin(self.lookup(db, base as u32, m, depth + 1)).await?
            }
            (_, b'A') if element != 0 => {
                let item = Box::pin(self.lookup(db, element as u32, modifier, depth + 1)).await?;
                PgType::Array(Box::new(item))
            }
            _ => PgType::Text,
        })
    }
}
