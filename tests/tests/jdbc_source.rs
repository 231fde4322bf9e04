//! The JDBC source against a real PostgreSQL server (one per test, on a free port) and a real
//! broker: values and types, each mode, the two losses Confluent's connector is known for, a
//! query with its own WHERE and ORDER BY, a table created later, a SIGKILL mid-table, and an
//! unreachable database.

use std::collections::BTreeMap;

use sluice_tests::jdbc::{JdbcTest, WAIT, counts, payload};
use sluice_tests::kafka::{consume_all, create_topic};
use sluice_tests::postgres::Postgres;
use sluice_tests::{Broker, Value, Worker, WorkerSettings, eventually, json, unique};

/// A test's broker and worker, a PostgreSQL server and a pool to it.
struct Setup {
    t: JdbcTest,
    pg: Postgres,
    db: sqlx::PgPool,
}

impl Setup {
    async fn start() -> Self {
        let t = JdbcTest::start().await;
        let pg = Postgres::start();
        let db = pg.pool().await;
        Self { t, pg, db }
    }

    async fn exec(&self, sql: &str) {
        self.pg.exec(&self.db, sql).await;
    }

    /// Creates the source on the test's server with `extra`.
    async fn source(&self, extra: Value) {
        let url = format!(
            "jdbc:postgresql://127.0.0.1:{}/postgres?user=postgres",
            self.pg.port
        );
        self.t.source(&url, extra).await;
    }
}

#[tokio::test]
async fn every_type_arrives_exact_and_a_sigkill_mid_table_loses_no_row() {
    let mut t = Setup::start().await;
    let table = JdbcTest::table("items");
    t.exec(&format!(
        "CREATE TYPE {table}_mood AS ENUM ('happy', 'sad');
             CREATE TABLE {table} (
               id bigserial PRIMARY KEY, small int2, n int4, price numeric(12,3),
               any_num numeric, ratio float8, name text, blob bytea, ok bool, day date,
               at_time time, local_ts timestamp, ts timestamptz, uid uuid, doc jsonb,
               tags int4[], feeling {table}_mood);
             INSERT INTO {table} (small, n, price, any_num, ratio, name, blob, ok, day, at_time,
               local_ts, ts, uid, doc, tags, feeling) VALUES
             (7, -42, 12345.678, 123456789012345678901234567890.000000001, 0.1,
              'Grüße 🌍', '\\x00ff', true, '2026-12-07', '12:34:56.789',
              '2026-12-07 10:00:00.123456', '2026-12-07 10:00:00.5+02',
              'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"a\": [1, 2]}}', '{{1,NULL,3}}', 'happy');
             INSERT INTO {table} (name) VALUES (NULL);"
    ))
    .await;
    t.source(json!({"mode": "incrementing", "table.whitelist": table}))
        .await;
    let first = t.t.rows(&table, 2).await;
    let row = payload(&first[0]);
    assert_eq!(
        first[0].key.as_deref(),
        Some(&b"{\"id\":1}"[..]),
        "the key is the primary key"
    );
    let expected = json!({
        "id": 1, "small": 7, "n": -42,
        "price": "ALxhTg==", // 12345.678 at scale 3, unscaled 12345678, big-endian
        "any_num": "123456789012345678901234567890.000000001",
        "ratio": 0.1, "name": "Grüße 🌍", "blob": "AP8=", "ok": true,
        "day": 20794, "at_time": 45_296_789,
        "local_ts": 1_796_637_600_123i64, "ts": 1_796_630_400_500i64,
        "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "doc": "{\"a\":[1,2]}",
        "tags": [1, null, 3], "feeling": "happy",
    });
    assert_eq!(row, expected);
    let schema = &first[0].json()["schema"];
    let field = |n: &str| {
        schema["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no field {n} in {schema}"))
    };
    assert_eq!(schema["name"], table.as_str());
    assert_eq!(field("id")["type"], "int64");
    assert_eq!(field("id")["optional"], false);
    assert_eq!(field("small")["type"], "int16");
    assert_eq!(
        field("price")["name"],
        "org.apache.kafka.connect.data.Decimal"
    );
    assert_eq!(field("price")["parameters"]["scale"], "3");
    assert_eq!(field("day")["name"], "org.apache.kafka.connect.data.Date");
    assert_eq!(
        field("at_time")["name"],
        "org.apache.kafka.connect.data.Time"
    );
    assert_eq!(
        field("ts")["name"],
        "org.apache.kafka.connect.data.Timestamp"
    );
    assert_eq!(field("tags")["type"], "array");
    let nulls = payload(&first[1]);
    assert_eq!(nulls["id"], 2);
    for (k, v) in nulls.as_object().unwrap() {
        assert!(k == "id" || v.is_null(), "{k} should be null: {v}");
    }

    // 2,000 rows more; SIGKILL once part of them is stored as the offset.
    t.exec(&format!(
        "INSERT INTO {table} (n) SELECT g FROM generate_series(1, 2000) AS g"
    ))
    .await;
    t.t.kill_mid_table_and_check_every_row(&table, 2_002).await;
    assert_eq!(
        t.t.offsets().await["offsets"][0]["partition"],
        json!({"protocol": "1", "table": format!("postgres.public.{table}")}),
        "Confluent's source partition"
    );
}

#[tokio::test]
async fn a_row_whose_transaction_commits_after_a_later_id_is_not_lost() {
    let t = Setup::start().await;
    let table = JdbcTest::table("orders");
    t.exec(&format!(
        "CREATE TABLE {table} (id serial PRIMARY KEY, note text NOT NULL)"
    ))
    .await;
    // The earlier id's transaction stays open while a later id commits.
    let mut slow = t.db.begin().await.unwrap();
    sqlx::query(&format!("INSERT INTO {table} (note) VALUES ('slow')"))
        .execute(&mut *slow)
        .await
        .unwrap();
    t.exec(&format!("INSERT INTO {table} (note) VALUES ('fast')"))
        .await;
    t.source(json!({"mode": "incrementing", "table.whitelist": table}))
        .await;
    // The source saw id 2 without id 1 and held back (Confluent's connector would read 2 and
    // never 1).
    eventually("the source to hold back at the gap", WAIT, || async {
        (t.t.task_counter("jdbc.gap.waits").await >= 2).then_some(())
    })
    .await;
    slow.commit().await.unwrap();
    t.exec(&format!("INSERT INTO {table} (note) VALUES ('after')"))
        .await;
    let records = t.t.rows(&table, 3).await;
    // Rows spread over the topic's partitions by key: compare them by id.
    let notes: BTreeMap<i64, Value> = records
        .iter()
        .map(|r| {
            (
                payload(r)["id"].as_i64().unwrap(),
                payload(r)["note"].clone(),
            )
        })
        .collect();
    assert_eq!(records.len(), 3, "each row once");
    assert_eq!(
        notes.into_values().collect::<Vec<_>>(),
        [json!("slow"), json!("fast"), json!("after")]
    );
}

#[tokio::test]
async fn a_thousand_rows_sharing_a_timestamp_are_all_read_across_batches() {
    let t = Setup::start().await;
    let table = JdbcTest::table("events");
    t.exec(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, updated_at timestamptz NOT NULL);
         INSERT INTO {table} SELECT g, '2026-12-01 00:00:00+00' FROM generate_series(1, 1000) g;
         INSERT INTO {table} SELECT g, '2026-12-01 00:00:01+00' FROM generate_series(1001, 1150) g;"
    ))
    .await;
    t.source(
        json!({"mode": "timestamp", "timestamp.column.name": "updated_at",
                    "table.whitelist": table, "batch.max.rows": "100"}),
    )
    .await;
    let records = t.t.rows(&table, 1_150).await;
    let ids = counts(&records, "id");
    assert_eq!(ids.len(), 1_150, "no row lost at a batch boundary");
    assert_eq!(
        records.len(),
        1_150,
        "and none read twice without a restart"
    );
    // A newer row arrives after them.
    t.exec(&format!("INSERT INTO {table} VALUES (2001, now())"))
        .await;
    let more = t.t.rows(&table, 1_151).await;
    assert!(counts(&more, "id").contains_key(&2001));
}

#[tokio::test]
async fn a_query_with_its_own_where_and_order_by_reads_timestamp_and_incrementing() {
    let t = Setup::start().await;
    let table = JdbcTest::table("accounts");
    t.exec(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, region text NOT NULL, balance numeric(10,2),
           updated_at timestamptz NOT NULL);
         INSERT INTO {table} VALUES
           (1, 'eu', 10.50, '2026-12-01 00:00:00+00'), (2, 'us', 20.00, '2026-12-01 00:00:00+00'),
           (3, 'eu', 30.25, '2026-12-01 00:00:00+00'), (4, 'eu', 40.00, '2026-12-01 00:00:01+00');"
    ))
    .await;
    // In query mode the prefix is the topic. One partition: a query's rows have no key, and their
    // order is what is checked.
    create_topic(&t.t.broker.bootstrap, &t.t.prefix, 1).await;
    let query = format!(
        "SELECT id, region, balance, updated_at FROM {table} WHERE region = 'eu' ORDER BY id DESC"
    );
    t.source(json!({"mode": "timestamp+incrementing", "query": query,
                    "timestamp.column.name": "updated_at", "incrementing.column.name": "id",
                    "batch.max.rows": "1"}))
        .await;
    let records = t.t.rows("", 3).await;
    let ids: Vec<i64> = records
        .iter()
        .map(|r| payload(r)["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 3, 4], "only eu rows, by timestamp then id");
    assert_eq!(
        payload(&records[0])["balance"],
        "10.50",
        "a query's numeric is its exact text"
    );
    // An update moves the row's timestamp: it arrives again.
    t.exec(&format!(
        "UPDATE {table} SET balance = 11.00, updated_at = now() WHERE id = 1"
    ))
    .await;
    let again = t.t.rows("", 4).await;
    assert_eq!(payload(&again[3])["id"], 1);
    assert_eq!(payload(&again[3])["balance"], "11.00");
}

#[tokio::test]
async fn a_table_created_later_is_picked_up() {
    let t = Setup::start().await;
    let (a, b) = (JdbcTest::table("first"), JdbcTest::table("second"));
    t.exec(&format!(
        "CREATE TABLE {a} (id int PRIMARY KEY); INSERT INTO {a} VALUES (1)"
    ))
    .await;
    t.source(
        json!({"mode": "bulk", "table.poll.interval.ms": "500", "tasks.max": "2",
                    "poll.interval.ms": "60000"}),
    )
    .await;
    t.t.rows(&a, 1).await;
    t.exec(&format!(
        "CREATE TABLE {b} (id int PRIMARY KEY); INSERT INTO {b} VALUES (7)"
    ))
    .await;
    let records = t.t.rows(&b, 1).await;
    assert_eq!(payload(&records[0])["id"], 7);
    t.t.worker.wait_for_state(&t.t.name, "RUNNING", 2).await;
}

#[tokio::test]
async fn a_column_added_is_read_and_a_dropped_table_does_not_fail_the_task() {
    let t = Setup::start().await;
    let (a, b) = (JdbcTest::table("altered"), JdbcTest::table("dropped"));
    t.exec(&format!(
        "CREATE TABLE {a} (id serial PRIMARY KEY, n int NOT NULL); INSERT INTO {a} (n) VALUES (1);
         CREATE TABLE {b} (id serial PRIMARY KEY); INSERT INTO {b} DEFAULT VALUES;"
    ))
    .await;
    t.source(json!({"mode": "incrementing", "table.poll.interval.ms": "500"}))
        .await;
    t.t.rows(&a, 1).await;
    t.t.rows(&b, 1).await;
    t.exec(&format!(
        "ALTER TABLE {a} ADD COLUMN label text; INSERT INTO {a} (n, label) VALUES (2, 'new');
         DROP TABLE {b};"
    ))
    .await;
    let rows = t.t.rows(&a, 2).await;
    let last = rows
        .iter()
        .map(payload)
        .find(|p| p["id"] == 2)
        .expect("row 2");
    assert_eq!(last["label"], "new", "the added column is read: {last}");
    t.exec(&format!("INSERT INTO {a} (n) VALUES (3)")).await;
    let rows = t.t.rows(&a, 3).await;
    assert_eq!(counts(&rows, "id").len(), 3);
    let status = t.t.worker.wait_for_state(&t.t.name, "RUNNING", 1).await;
    assert_eq!(status["tasks"][0]["state"], "RUNNING");
}

#[tokio::test]
async fn a_value_that_cannot_be_read_goes_to_the_dead_letter_queue_naming_table_and_key() {
    let t = Setup::start().await;
    let table = JdbcTest::table("readings");
    let dlq = unique("jdbc-dlq");
    // 'infinity' has no Connect Timestamp.
    t.exec(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO {table} VALUES (1, now()), (2, 'infinity'), (3, now());"
    ))
    .await;
    t.source(json!({"mode": "incrementing", "table.whitelist": table,
                    "incrementing.column.name": "id",
                    "errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq,
                    "errors.deadletterqueue.topic.replication.factor": "1",
                    "errors.deadletterqueue.context.headers.enable": "true"}))
        .await;
    let dead = consume_all(&t.t.broker.bootstrap, &dlq, 1, WAIT).await;
    let message = dead[0]
        .header("__connect.errors.exception.message")
        .unwrap_or_default();
    assert!(
        message.contains(&format!("public.{table}")) && message.contains("key id=2"),
        "{message}"
    );
    assert!(message.contains("column at"), "{message}");
    let rows = t.t.rows(&table, 2).await;
    assert_eq!(
        counts(&rows, "id").into_keys().collect::<Vec<_>>(),
        [1, 3],
        "the other rows arrive"
    );
    assert_eq!(dead.len(), 1);
}

#[tokio::test]
async fn an_unreachable_database_fails_the_task_naming_the_host_and_never_the_password() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let port = sluice_tests::free_port();
    let name = unique("jdbc");
    let config = json!({
        "name": name,
        "connector.class": "JdbcSource",
        "connection.url": format!("jdbc:postgresql://127.0.0.1:{port}/shop"),
        "connection.user": "app",
        "connection.password": "pa55-w0rd",
        "connection.attempts": "2",
        "connection.backoff.ms": "100",
        "mode": "bulk",
        "query": "SELECT 1 AS one",
        "topic.prefix": unique("never"),
    });
    // Validation never connects: the config is valid.
    let v = worker
        .request(
            "PUT",
            "/connector-plugins/JdbcSource/config/validate",
            Some(config.clone()),
        )
        .await;
    assert_eq!(v.body["error_count"], 0, "{}", v.body);
    assert!(!v.body.to_string().contains("pa55-w0rd"), "{}", v.body);
    worker.create(&name, config).await;
    let trace = worker.failed_task_trace(&name).await;
    assert!(trace.contains(&format!("127.0.0.1:{port}/shop")), "{trace}");
    assert!(trace.contains("2 attempts"), "{trace}");
    assert!(!trace.contains("pa55-w0rd"), "{trace}");
    assert!(
        !worker.log().contains("pa55-w0rd"),
        "the password is in the log"
    );
}
