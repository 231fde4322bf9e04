//! SQLite: a database file opened read only, its catalog (`sqlite_master`, `pragma_table_info`)
//! and its types by declared type, as SQLite's affinity rules read them.
//!
//! Read through `libsql` (SQLite's fork that the embedded broker links) rather than sqlx: sqlx's
//! bundled SQLite exports the same C symbols as libsql's, and the two cannot link into one
//! binary. One connection per [`super::Database`], used by one read at a time.
//!
//! - Integers are 64-bit (SQLite's own width); `BOOL…` is a boolean; `DECIMAL(p,s)` and
//!   `NUMERIC(p,s)` are Decimals read from SQLite's text of the stored value (which SQLite may
//!   have stored as a double: a value with more digits than its scale goes to the error policy);
//!   `DATETIME`/`TIMESTAMP`, `DATE` and `TIME` are ISO-8601 text as SQLite's date functions write
//!   it, wall times in `db.timezone` (a text with an offset is that instant); a value of another
//!   storage class than its column's goes to the error policy.
//! - Timestamps are compared as `strftime('%Y-%m-%d %H:%M:%f', …)`: milliseconds, whatever the
//!   stored text's precision and separator; offsets keep milliseconds.
//! - SQLite has one writer at a time, which commits ids in order, so a gap in the ids is
//!   permanent ([`Pending::Nothing`]); a reader cannot see a write transaction still open, so in
//!   timestamp modes only `timestamp.delay.interval.ms` protects the rows of a long one.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use libsql::{TransactionBehavior, Value as Lite};
use sluice_connector_api::{ConnectError, ConnectResult, Value};
use tokio::sync::Mutex;

use super::{Bind, Fetched, Layout, Pending, Snapshot, Tx};
use crate::jdbc::catalog::TableId;
use crate::jdbc::columns::{
    Column, Kind, days, decode_error, from_text, local_to_utc, numeric, time_ms, truncate,
};
use crate::jdbc::config::{JdbcSourceConfig, NumericMapping};

/// How long a read waits for a writer holding the file's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a time is written for comparison with [`time_expression`].
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// A timestamp expression as SQLite compares it.
pub fn time_expression(expression: &str) -> String {
    format!("strftime('%Y-%m-%d %H:%M:%f', {expression})")
}

/// A SQLite file opened read only, and its connection.
#[derive(Clone)]
pub struct SqliteFile {
    /// Kept open while the connection is used.
    _db: Arc<libsql::Database>,
    conn: Arc<Mutex<libsql::Connection>>,
}

/// A libsql error as a task error: a busy or locked file may answer later.
pub fn lite_error(what: &str, doing: &str, e: libsql::Error) -> ConnectError {
    let busy = matches!(&e, libsql::Error::SqliteFailure(code, _) if matches!(code & 0xff, 5 | 6));
    let message = format!("{what}: {doing} failed: {e}");
    if busy {
        ConnectError::retriable(message)
    } else {
        ConnectError::user(message)
    }
}

/// Opens the file of `config`, read only.
pub async fn connect(config: &JdbcSourceConfig) -> Result<SqliteFile, String> {
    let path = std::path::Path::new(&config.url.driver_url);
    if !path.exists() {
        return Err("no such file".to_owned());
    }
    let db = libsql::Builder::new_local(path)
        .flags(libsql::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let conn = db.connect().map_err(|e| e.to_string())?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
    // Opening is lazy: a file that is not a database fails here.
    conn.query("SELECT count(*) FROM sqlite_master", ())
        .await
        .map_err(|e| e.to_string())?;
    Ok(SqliteFile {
        _db: Arc::new(db),
        conn: Arc::new(Mutex::new(conn)),
    })
}

/// Every row of `sql` with `params` on `conn`, as libsql values.
async fn rows(
    conn: &libsql::Connection,
    sql: &str,
    params: Vec<Lite>,
) -> Result<Vec<Vec<Lite>>, libsql::Error> {
    let mut rows = conn.query(sql, params).await?;
    let n = rows.column_count();
    let mut out = Vec::new();
    while let Some(row) = rows.next().await? {
        out.push((0..n).map(|i| row.get_value(i)).collect::<Result<_, _>>()?);
    }
    Ok(out)
}

/// A table's columns from `pragma_table_info`: name, declared type, NOT NULL, place in the
/// primary key (0: not in it).
type InfoRow = (String, String, bool, i64);

async fn info(conn: &libsql::Connection, table: &TableId) -> ConnectResult<Vec<InfoRow>> {
    let found = rows(
        conn,
        "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid",
        vec![Lite::Text(table.name.clone())],
    )
    .await
    .map_err(|e| lite_error(&table.display(), "reading its columns", e))?;
    Ok(found
        .into_iter()
        .map(|r| {
            let text = |v: &Lite| match v {
                Lite::Text(s) => s.clone(),
                _ => String::new(),
            };
            let int = |v: &Lite| match v {
                Lite::Integer(n) => *n,
                _ => 0,
            };
            (text(&r[0]), text(&r[1]), int(&r[2]) != 0, int(&r[3]))
        })
        .collect())
}

fn shape_of(rows: &[InfoRow]) -> Option<String> {
    (!rows.is_empty()).then(|| {
        rows.iter()
            .map(|(name, ty, not_null, _)| {
                format!("{name} {ty}{}", if *not_null { " not null" } else { "" })
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The tables (and views, when `table.types` says) of the file, in order, with their shapes.
pub async fn tables(file: &SqliteFile, config: &JdbcSourceConfig) -> ConnectResult<Vec<TableId>> {
    let conn = file.conn.lock().await;
    let listed = rows(
        &conn,
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        Vec::new(),
    )
    .await
    .map_err(|e| lite_error("the database", "listing tables", e))?;
    let mut tables = Vec::new();
    for row in listed {
        let (Some(Lite::Text(name)), Some(Lite::Text(ty))) = (row.first(), row.get(1)) else {
            continue;
        };
        if !config
            .table_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(ty))
        {
            continue;
        }
        let mut table = TableId {
            schema: "main".to_owned(),
            name: name.clone(),
            shape: String::new(),
        };
        table.shape = shape_of(&info(&conn, &table).await?).unwrap_or_default();
        tables.push(table);
    }
    Ok(tables)
}

/// The table's shape now; `None` once it is gone.
pub async fn shape(file: &SqliteFile, table: &TableId) -> ConnectResult<Option<String>> {
    Ok(shape_of(&info(&*file.conn.lock().await, table).await?))
}

/// A table's columns, in order, and its primary key's columns.
pub async fn describe_table(
    file: &SqliteFile,
    table: &TableId,
    mapping: NumericMapping,
) -> ConnectResult<(Vec<Column>, Vec<String>)> {
    let rows = info(&*file.conn.lock().await, table).await?;
    let mut key: Vec<(i64, String)> = rows
        .iter()
        .filter(|r| r.3 > 0)
        .map(|r| (r.3, r.0.clone()))
        .collect();
    key.sort();
    let rowid = key.len() == 1;
    let columns = rows
        .into_iter()
        .map(|(name, ty, not_null, pk)| {
            // An INTEGER PRIMARY KEY is the rowid, never NULL whatever pragma says.
            let is_rowid = rowid && pk == 1 && ty.eq_ignore_ascii_case("integer");
            Column {
                nullable: !(not_null || is_rowid),
                ..column(name, &ty, mapping)
            }
        })
        .collect();
    Ok((columns, key.into_iter().map(|(_, k)| k).collect()))
}

/// The columns of `query`'s result, as SQLite describes them without running it (an
/// expression's column has no declared type: its text).
pub async fn describe_query(
    file: &SqliteFile,
    query: &str,
    mapping: NumericMapping,
) -> ConnectResult<Vec<Column>> {
    let conn = file.conn.lock().await;
    let statement = conn
        .prepare(query)
        .await
        .map_err(|e| lite_error("query", "describing its columns", e))?;
    Ok(statement
        .columns()
        .iter()
        .map(|c| {
            column(
                c.name().to_owned(),
                c.decl_type().unwrap_or_default(),
                mapping,
            )
        })
        .collect())
}

/// A column of declared type `declared`, by SQLite's affinity rules and the type's name.
fn column(name: String, declared: &str, mapping: NumericMapping) -> Column {
    let ty = declared.to_ascii_uppercase();
    let has = |s: &str| ty.contains(s);
    let native = |kind| Column::new(name.clone(), kind);
    let text = |kind| Column {
        as_text: true,
        ..Column::new(name.clone(), kind)
    };
    if has("BOOL") {
        native(Kind::Boolean)
    } else if has("DATETIME") || has("TIMESTAMP") {
        // Of unknown precision, and SQLite's own CURRENT_TIMESTAMP has whole seconds: the bound
        // is cut to the second, so a second still gaining rows is not read yet.
        Column {
            fraction_digits: Some(0),
            ..native(Kind::Timestamp)
        }
    } else if has("DATE") {
        native(Kind::Date)
    } else if has("TIME") {
        native(Kind::Time)
    } else if has("INT") {
        native(Kind::Int64)
    } else if has("CHAR") || has("CLOB") || has("TEXT") || has("UUID") || has("JSON") {
        native(Kind::Text)
    } else if has("BLOB") {
        native(Kind::Bytes)
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        native(Kind::Float64)
    } else if ty.is_empty() {
        Column::text(name.clone())
    } else {
        // NUMERIC affinity: DECIMAL(p,s), NUMERIC, and any other name.
        let (precision, scale) = precision_and_scale(&ty);
        text(numeric(precision, scale, mapping))
    }
}

/// `(p, s)` of a type written `NAME(p, s)`.
fn precision_and_scale(ty: &str) -> (Option<i32>, Option<i32>) {
    let Some(args) = ty
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(args, _)| args)
    else {
        return (None, None);
    };
    let mut parts = args.split(',').map(|p| p.trim().parse::<i32>().ok());
    let precision = parts.next().flatten();
    let scale = parts.next().flatten().or(precision.map(|_| 0));
    (precision, scale)
}

/// A read's transaction: the connection, held for the read.
pub struct SqliteTx {
    conn: tokio::sync::OwnedMutexGuard<libsql::Connection>,
    tx: Option<libsql::Transaction>,
}

/// Begins a deferred read: its snapshot starts with its first statement, which reads the
/// table's shape when asked.
pub async fn begin(
    file: &SqliteFile,
    what: &str,
    table: Option<&TableId>,
) -> ConnectResult<(Tx, Snapshot)> {
    let conn = Arc::clone(&file.conn).lock_owned().await;
    if !conn.is_autocommit() {
        // A read that failed half way left its transaction open.
        conn.execute("ROLLBACK", ())
            .await
            .map_err(|e| lite_error(what, "ending a failed read", e))?;
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .await
        .map_err(|e| lite_error(what, "starting a read", e))?;
    let shape = match table {
        Some(t) => shape_of(&info(&conn, t).await?),
        None => None,
    };
    Ok((
        Tx::Sqlite(SqliteTx { conn, tx: Some(tx) }),
        Snapshot {
            pending: Pending::Nothing,
            shape,
        },
    ))
}

impl SqliteTx {
    /// Ends the read.
    pub async fn commit(mut self, what: &str) -> ConnectResult<()> {
        match self.tx.take() {
            Some(tx) => tx
                .commit()
                .await
                .map_err(|e| lite_error(what, "ending a read", e)),
            None => Ok(()),
        }
    }

    /// The rows of `sql` with `binds`.
    pub async fn fetch(
        &mut self,
        sql: &str,
        binds: &[Bind],
        layout: &Layout<'_>,
        what: &str,
    ) -> ConnectResult<Vec<Fetched>> {
        fetch_on(&self.conn, sql, binds, layout, what).await
    }
}

/// Every row of `sql` outside a transaction (`bulk` mode).
pub async fn fetch_all(
    file: &SqliteFile,
    sql: &str,
    layout: &Layout<'_>,
    what: &str,
) -> ConnectResult<Vec<Fetched>> {
    fetch_on(&*file.conn.lock().await, sql, &[], layout, what).await
}

async fn fetch_on(
    conn: &libsql::Connection,
    sql: &str,
    binds: &[Bind],
    layout: &Layout<'_>,
    what: &str,
) -> ConnectResult<Vec<Fetched>> {
    let params = binds
        .iter()
        .map(|bind| match *bind {
            Bind::Int(n) => Lite::Integer(n),
            Bind::Time(t) => Lite::Text(
                t.with_timezone(&layout.tz)
                    .naive_local()
                    .format(TIME_FORMAT)
                    .to_string(),
            ),
        })
        .collect();
    let found = rows(conn, sql, params)
        .await
        .map_err(|e| lite_error(what, "reading", e))?;
    Ok(found.into_iter().map(|r| decode(r, layout)).collect())
}

/// A row as read by a reader of `layout`.
fn decode(row: Vec<Lite>, layout: &Layout<'_>) -> Fetched {
    let time = layout.timestamps.iter().find_map(|&i| {
        let column = &layout.columns[i];
        let Some(Lite::Text(text)) = row.get(i) else {
            return None;
        };
        let t = instant(text, column, layout).ok()?;
        // As SQLite compares it: milliseconds.
        Some(truncate(t, &column.kind, Some(3), layout.tz))
    });
    let values: Vec<_> = row
        .into_iter()
        .zip(layout.columns)
        .map(|(v, c)| value(v, c, layout))
        .collect();
    Fetched {
        id: Fetched::id_of(&values, layout),
        values,
        time,
    }
}

/// A stored value of `column` as a Connect value: its storage class must be one the column's
/// kind reads.
fn value(v: Lite, column: &Column, layout: &Layout<'_>) -> ConnectResult<Value> {
    let name = column.name.as_str();
    let mismatch = |v: &Lite| {
        decode_error(
            name,
            format!("a stored {v:?} cannot be read as {:?}", column.kind),
        )
    };
    if let Lite::Null = v {
        return Ok(Value::Null);
    }
    if column.as_text {
        return match v {
            Lite::Text(text) => from_text(text, &column.kind, name),
            other => Err(mismatch(&other)),
        };
    }
    Ok(match (&column.kind, v) {
        (Kind::Boolean, Lite::Integer(n)) => Value::Boolean(n != 0),
        (Kind::Int64, Lite::Integer(n)) => Value::Int64(n),
        (Kind::Float64, Lite::Real(f)) => Value::Float64(f),
        (Kind::Float64, Lite::Integer(n)) => Value::Float64(n as f64),
        (Kind::Bytes, Lite::Blob(b)) => Value::Bytes(b),
        (Kind::Bytes, Lite::Text(t)) => Value::Bytes(t.into_bytes()),
        (Kind::Text, Lite::Text(t)) => Value::String(t),
        (Kind::Text, Lite::Integer(n)) => Value::String(n.to_string()),
        (Kind::Date, Lite::Text(text)) => Value::Int32(days(
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .map_err(|e| decode_error(name, format!("{text:?} as a date: {e}")))?,
        )),
        (Kind::Time, Lite::Text(text)) => Value::Int32(time_ms(
            NaiveTime::parse_from_str(text.trim(), "%H:%M:%S%.f")
                .or_else(|_| NaiveTime::parse_from_str(text.trim(), "%H:%M"))
                .map_err(|e| decode_error(name, format!("{text:?} as a time: {e}")))?,
        )),
        (Kind::Timestamp, Lite::Text(text)) => {
            Value::Int64(instant(&text, column, layout)?.timestamp_millis())
        }
        (_, other) => return Err(mismatch(&other)),
    })
}

/// An ISO-8601 text of a timestamp column as an instant: a wall time in `db.timezone`, or the
/// instant its offset says.
fn instant(text: &str, column: &Column, layout: &Layout<'_>) -> ConnectResult<DateTime<Utc>> {
    let text = text.trim();
    let normalized = text.replacen('T', " ", 1);
    if let Ok(t) = DateTime::parse_from_str(&normalized, "%Y-%m-%d %H:%M:%S%.f%#z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
    {
        return Ok(t.with_timezone(&Utc));
    }
    let wall = NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%d %H:%M"))
        .or_else(|e| {
            NaiveDate::parse_from_str(&normalized, "%Y-%m-%d")
                .map(|d| d.and_time(NaiveTime::MIN))
                .map_err(|_| e)
        })
        .map_err(|e| decode_error(&column.name, format!("{text:?} as a timestamp: {e}")))?;
    Ok(local_to_utc(wall, layout.tz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_map_by_affinity() {
        let exact = NumericMapping::None;
        let c = |ty: &str| column("c".into(), ty, exact);
        assert_eq!(c("INTEGER").kind, Kind::Int64);
        assert_eq!(c("varchar(20)").kind, Kind::Text);
        assert_eq!(c("BOOLEAN").kind, Kind::Boolean);
        assert_eq!(c("DATETIME").kind, Kind::Timestamp);
        assert_eq!(c("DATE").kind, Kind::Date);
        assert_eq!(c("double precision").kind, Kind::Float64);
        let money = c("DECIMAL(10, 2)");
        assert!(money.as_text && money.kind == Kind::Decimal(2));
        assert_eq!(c("NUMERIC").kind, Kind::NumericText);
        assert!(c("").as_text, "no declared type: its text");
    }

    #[test]
    fn timestamps_are_read_in_the_forms_sqlite_writes() {
        let columns = [Column::new("ts", Kind::Timestamp)];
        let layout = Layout {
            columns: &columns,
            timestamps: &[0],
            incrementing: None,
            tz: chrono_tz::Tz::UTC,
        };
        let at = |s: &str| instant(s, &columns[0], &layout).unwrap().to_rfc3339();
        assert_eq!(at("2026-12-07 10:00:00"), "2026-12-07T10:00:00+00:00");
        assert_eq!(
            at("2026-12-07T10:00:00.250"),
            "2026-12-07T10:00:00.250+00:00"
        );
        assert_eq!(at("2026-12-07 12:00:00+02:00"), "2026-12-07T10:00:00+00:00");
        assert_eq!(at("2026-12-07"), "2026-12-07T00:00:00+00:00");
        assert!(instant("yesterday", &columns[0], &layout).is_err());
    }
}
