//! The JDBC source against a real MariaDB server (one per test, on a free port, `mysql://` and
//! `jdbc:mariadb://` URLs) and a real broker: values and types in a time zone other than UTC,
//! each mode with inserts and updates, a SIGKILL mid-table, the two losses Confluent's connector
//! is known for (a late commit, equal timestamps across batches, here with whole-second
//! `DATETIME`s), a query with its own WHERE and ORDER BY, and a table created later.

use std::collections::BTreeMap;

use sluice_tests::jdbc::{JdbcTest, WAIT, counts, field_schema, payload};
use sluice_tests::kafka::create_topic;
use sluice_tests::mariadb::{MariaDb, PASSWORD, USER};
use sluice_tests::{Value, eventually, json};

/// A test's broker, worker and MariaDB server, with a pool to it.
struct Setup {
    t: JdbcTest,
    db: MariaDb,
    pool: sqlx::MySqlPool,
}

impl Setup {
    async fn start() -> Self {
        let (t, db) = (JdbcTest::start().await, MariaDb::start().await);
        let pool = db.pool().await;
        Self { t, db, pool }
    }

    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}\n{}", self.db.log()));
    }

    /// Connector/J's form of the URL, with the user and password as settings.
    fn jdbc_url(&self) -> String {
        format!(
            "jdbc:mariadb://127.0.0.1:{}/sluice?user={USER}&password={PASSWORD}",
            self.db.port
        )
    }

    async fn source(&self, extra: Value) {
        self.t.source(&self.jdbc_url(), extra).await;
    }
}

#[tokio::test]
async fn every_type_arrives_exact_in_its_time_zone_and_a_sigkill_loses_no_row() {
    let mut s = Setup::start().await;
    let table = JdbcTest::table("items");
    s.exec(&format!(
        "CREATE TABLE {table} (
           id int AUTO_INCREMENT PRIMARY KEY, tiny tinyint, flag tinyint(1),
           small smallint unsigned, n int, big bigint, big_u bigint unsigned, price decimal(12,3),
           ratio double, f float, name varchar(50), body text, raw varbinary(10), day date,
           at_time time(3), local_ts datetime(6), ts timestamp(3) NULL, doc json,
           mood enum('happy', 'sad'), made year
         ) CHARACTER SET utf8mb4;
         INSERT INTO {table} (tiny, flag, small, n, big, big_u, price, ratio, f, name, body, raw,
           day, at_time, local_ts, ts, doc, mood, made) VALUES
         (-5, 1, 65535, -42, 9007199254740993, 18446744073709551615, 12345.678, 0.1, 1.5,
          'Grüße 🌍', 'long text', x'00ff', '2026-12-07', '12:34:56.789',
          '2026-12-07 10:00:00.123456', '2026-12-07 10:00:00.500', '{{\"a\": [1, 2]}}', 'happy',
          2026);
         INSERT INTO {table} (name) VALUES (NULL);"
    ))
    .await;
    // DATETIME is a wall time in db.timezone; TIMESTAMP is an instant (the session is UTC).
    s.source(json!({"mode": "incrementing", "table.whitelist": table,
                    "db.timezone": "Europe/Berlin"}))
        .await;
    let first = s.t.rows(&table, 2).await;
    let one = first.iter().find(|r| payload(r)["id"] == 1).expect("row 1");
    assert_eq!(one.key.as_deref(), Some(&b"{\"id\":1}"[..]), "the key");
    let expected = json!({
        "id": 1, "tiny": -5, "flag": true, "small": 65535, "n": -42,
        "big": 9_007_199_254_740_993i64,
        "big_u": "AP//////////", // 18446744073709551615 as a Decimal of scale 0
        "price": "ALxhTg==", // 12345.678 at scale 3, unscaled 12345678, big-endian
        "ratio": 0.1, "f": 1.5, "name": "Grüße 🌍", "body": "long text", "raw": "AP8=",
        "day": 20794, "at_time": 45_296_789,
        "local_ts": 1_796_634_000_123i64, // 10:00:00.123 in Berlin (CET) is 09:00:00.123 UTC
        "ts": 1_796_637_600_500i64,
        "doc": "{\"a\": [1, 2]}", "mood": "happy", "made": 2026,
    });
    assert_eq!(payload(one), expected);
    let types: BTreeMap<&str, Value> = [
        "id", "tiny", "flag", "small", "big", "big_u", "price", "f", "day", "at_time", "ts",
    ]
    .into_iter()
    .map(|f| {
        let s = field_schema(one, f);
        (f, json!([s["type"], s["name"], s["optional"]]))
    })
    .collect();
    let decimal = "org.apache.kafka.connect.data.Decimal";
    assert_eq!(
        json!(types),
        json!({
            "id": ["int32", null, false], "tiny": ["int8", null, true],
            "flag": ["boolean", null, true], "small": ["int32", null, true],
            "big": ["int64", null, true], "big_u": ["bytes", decimal, true],
            "price": ["bytes", decimal, true], "f": ["float", null, true],
            "day": ["int32", "org.apache.kafka.connect.data.Date", true],
            "at_time": ["int32", "org.apache.kafka.connect.data.Time", true],
            "ts": ["int64", "org.apache.kafka.connect.data.Timestamp", true],
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

    // 2,000 rows more; SIGKILL once part of them is stored as the offset.
    s.exec(&format!(
        "INSERT INTO {table} (n) SELECT seq FROM seq_1_to_2000"
    ))
    .await;
    s.t.kill_mid_table_and_check_every_row(&table, 2_002).await;
    assert_eq!(
        s.t.offsets().await["offsets"][0]["partition"],
        json!({"protocol": "1", "table": format!("sluice.{table}")}),
        "Confluent's source partition on MySQL: database.table"
    );
}

#[tokio::test]
async fn each_mode_reads_inserts_and_the_timestamp_modes_read_updates() {
    let s = Setup::start().await;
    let table = JdbcTest::table("accounts");
    s.exec(&format!(
        "CREATE TABLE {table} (id int AUTO_INCREMENT PRIMARY KEY, owner varchar(20) NOT NULL,
           balance decimal(10,2) NOT NULL,
           updated_at datetime(3) NOT NULL DEFAULT current_timestamp(3)
             ON UPDATE current_timestamp(3));
         INSERT INTO {table} (owner, balance) VALUES ('ann', 10.50), ('bob', 20.00), ('cy', 0.01);"
    ))
    .await;
    let url = format!("mysql://{USER}:{PASSWORD}@127.0.0.1:{}/sluice", s.db.port);
    let modes = [
        ("bulk", json!({"poll.interval.ms": "60000"})),
        ("incrementing", json!({})),
        ("timestamp", json!({"timestamp.column.name": "updated_at"})),
        (
            "timestamp+incrementing",
            json!({"timestamp.column.name": "updated_at"}),
        ),
    ];
    let mut prefixes = Vec::new();
    for (mode, extra) in &modes {
        let prefix = format!("{}{}-", s.t.prefix, mode.replace('+', "-"));
        let mut config = s.t.config(&url, extra.clone());
        config["mode"] = json!(mode);
        config["table.whitelist"] = json!(table);
        config["topic.prefix"] = json!(prefix);
        s.t.worker
            .create(&format!("{}-{}", s.t.name, mode.replace('+', "-")), config)
            .await;
        prefixes.push(prefix);
    }
    let read = |prefix: &str, at_least| {
        let topic = format!("{prefix}{table}");
        let bootstrap = s.t.broker.bootstrap.clone();
        async move { sluice_tests::kafka::consume_all(&bootstrap, &topic, at_least, WAIT).await }
    };
    let balances = |records: &[sluice_tests::kafka::Consumed]| -> BTreeMap<i64, Value> {
        records
            .iter()
            .map(|r| {
                (
                    payload(r)["id"].as_i64().unwrap(),
                    payload(r)["balance"].clone(),
                )
            })
            .collect()
    };
    // 10.50, 20.00, 0.01 at scale 2: unscaled 1050, 2000, 1.
    let inserted = json!({"1": "BBo=", "2": "B9A=", "3": "AQ=="});
    for prefix in &prefixes {
        let records = read(prefix, 3).await;
        assert_eq!(json!(balances(&records)), inserted, "{prefix}");
    }
    s.exec(&format!(
        "UPDATE {table} SET balance = 99.99 WHERE id = 2; \
         INSERT INTO {table} (owner, balance) VALUES ('dee', 5.00);"
    ))
    .await;
    for prefix in &prefixes[1..] {
        let records = read(prefix, 4).await;
        let ids = counts(&records, "id");
        assert!(ids.contains_key(&4), "{prefix}: the new row");
    }
    for prefix in &prefixes[2..] {
        let records = eventually("the update", WAIT, || async {
            let records = read(prefix, 4).await;
            (counts(&records, "id")[&2] == 2).then_some(records)
        })
        .await;
        let last_of_2 = records
            .iter()
            .rev()
            .find(|r| payload(r)["id"] == 2)
            .unwrap();
        assert_eq!(payload(last_of_2)["balance"], "Jw8=", "{prefix}: 99.99");
    }
    // Incrementing mode does not see updates: row 2 once.
    let incrementing = read(&prefixes[1], 4).await;
    assert_eq!(counts(&incrementing, "id")[&2], 1);
}

#[tokio::test]
async fn a_row_whose_transaction_commits_after_a_later_id_is_not_lost() {
    let s = Setup::start().await;
    let table = JdbcTest::table("orders");
    s.exec(&format!(
        "CREATE TABLE {table} (id int AUTO_INCREMENT PRIMARY KEY, note varchar(10) NOT NULL)"
    ))
    .await;
    let mut slow = s.pool.begin().await.unwrap();
    sqlx::query(&format!("INSERT INTO {table} (note) VALUES ('slow')"))
        .execute(&mut *slow)
        .await
        .unwrap();
    s.exec(&format!("INSERT INTO {table} (note) VALUES ('fast')"))
        .await;
    s.source(json!({"mode": "incrementing", "table.whitelist": table}))
        .await;
    // Row 2 is there without row 1, whose transaction is open: the source waits.
    eventually("the source to hold back at the gap", WAIT, || async {
        (s.t.task_counter("jdbc.gap.waits").await >= 3).then_some(())
    })
    .await;
    slow.commit().await.unwrap();
    s.exec(&format!("INSERT INTO {table} (note) VALUES ('after')"))
        .await;
    let records = s.t.rows(&table, 3).await;
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
async fn a_thousand_rows_sharing_a_whole_second_are_all_read_across_batches() {
    let s = Setup::start().await;
    let table = JdbcTest::table("events");
    s.exec(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, updated_at datetime NOT NULL);
         INSERT INTO {table} SELECT seq, '2026-12-01 00:00:00' FROM seq_1_to_1000;
         INSERT INTO {table} SELECT seq, '2026-12-01 00:00:01' FROM seq_1001_to_1150;"
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
    // Rows written now, in whole seconds, while the source reads.
    s.exec(&format!(
        "INSERT INTO {table} VALUES (2001, now()); INSERT INTO {table} VALUES (2002, now());"
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
        "CREATE TABLE {table} (id int PRIMARY KEY, region varchar(5) NOT NULL,
           balance decimal(10,2), updated_at datetime(3) NOT NULL);
         INSERT INTO {table} VALUES
           (1, 'eu', 10.50, '2026-12-01 00:00:00'), (2, 'us', 20.00, '2026-12-01 00:00:00'),
           (3, 'eu', 30.25, '2026-12-01 00:00:00'), (4, 'eu', 40.00, '2026-12-01 00:00:01');"
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
    assert_eq!(
        payload(&records[0])["balance"],
        "10.50",
        "a query's decimal is its text"
    );
}

#[tokio::test]
async fn a_table_created_later_is_picked_up() {
    let s = Setup::start().await;
    let (a, b) = (JdbcTest::table("first"), JdbcTest::table("second"));
    s.exec(&format!(
        "CREATE TABLE {a} (id int PRIMARY KEY); INSERT INTO {a} VALUES (1)"
    ))
    .await;
    s.source(
        json!({"mode": "bulk", "table.poll.interval.ms": "500", "tasks.max": "2",
                    "poll.interval.ms": "60000"}),
    )
    .await;
    s.t.rows(&a, 1).await;
    s.exec(&format!(
        "CREATE TABLE {b} (id int PRIMARY KEY); INSERT INTO {b} VALUES (7)"
    ))
    .await;
    let records = s.t.rows(&b, 1).await;
    assert_eq!(payload(&records[0])["id"], 7);
}
