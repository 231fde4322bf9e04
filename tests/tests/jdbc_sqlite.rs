//! The JDBC source against SQLite files (one per test, written through libsql while the source
//! reads them, `jdbc:sqlite:` URLs) and a real broker: values and types by declared type in a
//! time zone other than UTC, a SIGKILL mid-table, equal timestamps stored as different texts
//! across batches, a query with its own WHERE and ORDER BY, a table created later, and a value of
//! the wrong storage class going to the dead letter queue.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_tests::jdbc::{JdbcTest, WAIT, counts, field_schema, payload};
use sluice_tests::kafka::{consume_all, create_topic};
use sluice_tests::{Value, json, unique};

/// A test's broker and worker, and a SQLite file with a connection writing it.
struct Setup {
    t: JdbcTest,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    _db: libsql::Database,
    conn: libsql::Connection,
}

impl Setup {
    async fn start() -> Self {
        let t = JdbcTest::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.db");
        let db = libsql::Builder::new_local(&path)
            .build()
            .await
            .expect("a SQLite file");
        let conn = db.connect().expect("a connection");
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        Self {
            t,
            _dir: dir,
            path,
            _db: db,
            conn,
        }
    }

    async fn exec(&self, sql: &str) {
        self.conn
            .execute_batch(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn url(&self) -> String {
        format!("jdbc:sqlite:{}", self.path.display())
    }

    async fn source(&self, extra: Value) {
        self.t.source(&self.url(), extra).await;
    }
}

#[tokio::test]
async fn every_declared_type_arrives_exact_and_a_sigkill_loses_no_row() {
    let mut s = Setup::start().await;
    let table = JdbcTest::table("items");
    s.exec(&format!(
        "CREATE TABLE {table} (id INTEGER PRIMARY KEY, n INT, price DECIMAL(12,3), ratio REAL,
           name TEXT, raw BLOB, ok BOOLEAN, day DATE, at_time TIME, local_ts DATETIME, plain);
         INSERT INTO {table} (n, price, ratio, name, raw, ok, day, at_time, local_ts, plain) VALUES
           (-42, 12345.678, 0.1, 'Grüße 🌍', x'00ff', 1, '2026-12-07', '12:34:56.789',
            '2026-12-07 10:00:00.123', 'anything');
         INSERT INTO {table} (name) VALUES (NULL);"
    ))
    .await;
    s.source(json!({"mode": "incrementing", "table.whitelist": table,
                    "db.timezone": "Europe/Berlin"}))
        .await;
    let first = s.t.rows(&table, 2).await;
    let one = first.iter().find(|r| payload(r)["id"] == 1).expect("row 1");
    assert_eq!(one.key.as_deref(), Some(&b"{\"id\":1}"[..]), "the key");
    assert_eq!(
        payload(one),
        json!({
            "id": 1, "n": -42,
            "price": "ALxhTg==", // 12345.678 at scale 3, unscaled 12345678, big-endian
            "ratio": 0.1, "name": "Grüße 🌍", "raw": "AP8=", "ok": true,
            "day": 20794, "at_time": 45_296_789,
            "local_ts": 1_796_634_000_123i64, // 10:00:00.123 in Berlin is 09:00:00.123 UTC
            "plain": "anything",
        })
    );
    let types: BTreeMap<&str, Value> = ["id", "n", "price", "ok", "local_ts", "plain"]
        .into_iter()
        .map(|f| {
            let s = field_schema(one, f);
            (f, json!([s["type"], s["name"], s["optional"]]))
        })
        .collect();
    assert_eq!(
        json!(types),
        json!({
            "id": ["int64", null, false], "n": ["int64", null, true],
            "price": ["bytes", "org.apache.kafka.connect.data.Decimal", true],
            "ok": ["boolean", null, true],
            "local_ts": ["int64", "org.apache.kafka.connect.data.Timestamp", true],
            "plain": ["string", null, true],
        })
    );
    let nulls = first
        .iter()
        .map(payload)
        .find(|p| p["id"] == 2)
        .expect("row 2");
    for (k, v) in nulls.as_object().unwrap() {
        assert!(k == "id" || v.is_null(), "{k} should be null: {v}");
    }

    s.exec(&format!(
        "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 2000)
         INSERT INTO {table} (n) SELECT x FROM g;"
    ))
    .await;
    s.t.kill_mid_table_and_check_every_row(&table, 2_002).await;
    assert_eq!(
        s.t.offsets().await["offsets"][0]["partition"],
        json!({"protocol": "1", "table": table}),
        "Confluent's source partition on SQLite: the table"
    );
}

#[tokio::test]
async fn equal_timestamps_written_as_different_texts_are_one_run_read_whole() {
    let s = Setup::start().await;
    let table = JdbcTest::table("events");
    // The same instant as "T" and as " ", with and without milliseconds.
    s.exec(&format!(
        "CREATE TABLE {table} (id INTEGER PRIMARY KEY, updated_at TIMESTAMP NOT NULL);
         WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 1000)
         INSERT INTO {table} SELECT x, CASE x % 3 WHEN 0 THEN '2026-12-01T00:00:00'
           WHEN 1 THEN '2026-12-01 00:00:00.000' ELSE '2026-12-01 00:00:00' END FROM g;
         WITH RECURSIVE g(x) AS (SELECT 1001 UNION ALL SELECT x + 1 FROM g WHERE x < 1150)
         INSERT INTO {table} SELECT x, '2026-12-01 00:00:01' FROM g;"
    ))
    .await;
    s.source(
        json!({"mode": "timestamp", "timestamp.column.name": "updated_at",
                    "table.whitelist": table, "batch.max.rows": "100"}),
    )
    .await;
    let records = s.t.rows(&table, 1_150).await;
    assert_eq!(counts(&records, "id").len(), 1_150, "no row lost");
    assert_eq!(records.len(), 1_150, "and none read twice");
    s.exec(&format!(
        "INSERT INTO {table} VALUES (2001, CURRENT_TIMESTAMP);
         INSERT INTO {table} VALUES (2002, CURRENT_TIMESTAMP);"
    ))
    .await;
    let more = s.t.rows(&table, 1_152).await;
    let ids = counts(&more, "id");
    assert!(ids.contains_key(&2001) && ids.contains_key(&2002));
}

#[tokio::test]
async fn a_query_with_its_own_where_and_order_by_reads_timestamp_and_incrementing() {
    let s = Setup::start().await;
    let table = JdbcTest::table("ledger");
    s.exec(&format!(
        "CREATE TABLE {table} (id INTEGER PRIMARY KEY, region TEXT NOT NULL,
           balance DECIMAL(10,2), updated_at DATETIME NOT NULL);
         INSERT INTO {table} VALUES
           (1, 'eu', 10.5, '2026-12-01 00:00:00'), (2, 'us', 20, '2026-12-01 00:00:00'),
           (3, 'eu', 30.25, '2026-12-01 00:00:00'), (4, 'eu', 40, '2026-12-01 00:00:01');"
    ))
    .await;
    create_topic(&s.t.broker.bootstrap, &s.t.prefix, 1).await;
    let query = format!(
        "SELECT id, region, balance, updated_at FROM {table} WHERE region = 'eu' ORDER BY id DESC"
    );
    s.source(json!({"mode": "timestamp+incrementing", "query": query,
                    "timestamp.column.name": "updated_at", "incrementing.column.name": "id",
                    "batch.max.rows": "1"}))
        .await;
    let records = s.t.rows("", 3).await;
    let ids: Vec<i64> = records
        .iter()
        .map(|r| payload(r)["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 3, 4], "only eu rows, by timestamp then id");
    // 10.5 at scale 2: unscaled 1050.
    assert_eq!(payload(&records[0])["balance"], "BBo=");
}

#[tokio::test]
async fn a_new_table_is_picked_up_and_a_value_of_the_wrong_class_goes_to_the_dlq() {
    let s = Setup::start().await;
    let (a, b) = (JdbcTest::table("first"), JdbcTest::table("second"));
    let dlq = unique("jdbc-dlq");
    s.exec(&format!(
        "CREATE TABLE {a} (id INTEGER PRIMARY KEY, n INTEGER);
         INSERT INTO {a} VALUES (1, 10), (2, 'not a number'), (3, 30);"
    ))
    .await;
    s.source(
        json!({"mode": "incrementing", "table.poll.interval.ms": "500",
                    "errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq,
                    "errors.deadletterqueue.topic.replication.factor": "1",
                    "errors.deadletterqueue.context.headers.enable": "true"}),
    )
    .await;
    let rows = s.t.rows(&a, 2).await;
    assert_eq!(counts(&rows, "id").into_keys().collect::<Vec<_>>(), [1, 3]);
    let dead = consume_all(&s.t.broker.bootstrap, &dlq, 1, WAIT).await;
    let message = dead[0]
        .header("__connect.errors.exception.message")
        .unwrap_or_default();
    assert!(
        message.contains(&format!("main.{a}")) && message.contains("key id=2"),
        "{message}"
    );
    assert!(message.contains("column n"), "{message}");
    s.exec(&format!(
        "CREATE TABLE {b} (id INTEGER PRIMARY KEY); INSERT INTO {b} VALUES (7)"
    ))
    .await;
    let records = s.t.rows(&b, 1).await;
    assert_eq!(payload(&records[0])["id"], 7);
    assert_eq!(dead.len(), 1);
}

#[tokio::test]
async fn a_missing_file_fails_the_task_naming_it() {
    let t = JdbcTest::start().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.db");
    let mut config = t.config(
        &format!("jdbc:sqlite:{}", missing.display()),
        json!({"mode": "bulk", "query": "SELECT 1 AS one", "connection.attempts": "2",
               "connection.backoff.ms": "100"}),
    );
    config["name"] = json!(t.name);
    t.worker.create(&t.name, config).await;
    let trace = t.worker.failed_task_trace(&t.name).await;
    assert!(trace.contains(&missing.display().to_string()), "{trace}");
    assert!(trace.contains("2 attempts"), "{trace}");
    assert!(
        !missing.exists(),
        "a read-only source never creates the file"
    );
}
