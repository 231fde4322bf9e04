//! The PostgreSQL CDC source against a real PostgreSQL 15 (one per test, `wal_level=logical`, on
//! a free port) and a real broker: Debezium's envelope for snapshot and stream, every mapped type,
//! REPLICA IDENTITY DEFAULT and FULL, tombstones and truncates, an unchanged TOAST value, a
//! column added mid-stream, a snapshot taken while writes go on, SIGKILLs mid-stream with the
//! slot checked against the topic, and an idle database whose slot keeps moving.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sluice_tests::kafka::{Consumed, consume_all, create_topic, read_topic};
use sluice_tests::postgres::Postgres;
use sluice_tests::{Broker, Value, Worker, WorkerSettings, eventually, json, unique};

const WAIT: Duration = Duration::from_secs(90);

/// A broker, a worker, a PostgreSQL server, and this test's connector, prefix and slot.
struct Cdc {
    broker: Broker,
    worker: Worker,
    pg: Postgres,
    db: sqlx::PgPool,
    name: String,
    prefix: String,
    slot: String,
    publication: String,
}

impl Cdc {
    async fn start() -> Self {
        let broker = Broker::start();
        let worker = Worker::start(WorkerSettings::new(&broker)).await;
        let pg = Postgres::start();
        let db = pg.pool().await;
        Self {
            broker,
            worker,
            pg,
            db,
            name: unique("cdc"),
            prefix: unique("pg"),
            slot: unique("slot").replace('-', "_"),
            publication: unique("pub").replace('-', "_"),
        }
    }

    async fn exec(&self, sql: &str) {
        self.pg.exec(&self.db, sql).await;
    }

    /// Creates the connector with the test's settings and `extra`.
    async fn source(&self, extra: Value) {
        let mut c = json!({
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "database.hostname": "127.0.0.1",
            "database.port": self.pg.port.to_string(),
            "database.user": "postgres",
            "database.dbname": "postgres",
            "database.sslmode": "disable",
            "topic.prefix": self.prefix,
            "slot.name": self.slot,
            "publication.name": self.publication,
            "skipped.operations": "none",
            "status.update.interval.ms": "200",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "true",
        });
        c.as_object_mut()
            .expect("an object")
            .extend(extra.as_object().cloned().unwrap_or_default());
        self.worker.create(&self.name, c).await;
    }

    fn topic(&self, table: &str) -> String {
        format!("{}.public.{table}", self.prefix)
    }

    async fn events(&self, table: &str, at_least: usize) -> Vec<Consumed> {
        consume_all(&self.broker.bootstrap, &self.topic(table), at_least, WAIT).await
    }

    /// The slot's confirmed flush LSN.
    async fn confirmed(&self) -> Option<i64> {
        sqlx::query_scalar(
            "SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots \
             WHERE slot_name = $1",
        )
        .bind(self.slot.clone())
        .fetch_optional(&self.db)
        .await
        .expect("reading the slot")
        .flatten()
    }

    /// The ids of the inserts still in the slot after its confirmed position (peeked, not
    /// consumed: pgoutput's Insert messages, whose first column is the id).
    async fn pending_insert_ids(&self) -> BTreeSet<i64> {
        // A peek decodes only flushed WAL, and the test server commits asynchronously: a
        // checkpoint flushes it all (a synchronous commit of a transaction that wrote nothing
        // else does not flush).
        sqlx::raw_sql("CHECKPOINT")
            .execute(&self.db)
            .await
            .expect("flushing the WAL");
        let changes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, \
             'proto_version', '1', 'publication_names', $2)",
        )
        .bind(self.slot.clone())
        .bind(self.publication.clone())
        .fetch_all(&self.db)
        .await
        .expect("peeking the slot");
        changes
            .iter()
            .filter(|m| m.first() == Some(&b'I'))
            .filter_map(|m| {
                // 'I', relation (4), 'N', column count (2), 't', length (4), text.
                let len = u32::from_be_bytes(m.get(9..13)?.try_into().ok()?) as usize;
                std::str::from_utf8(m.get(13..13 + len)?).ok()?.parse().ok()
            })
            .collect()
    }

    async fn wal_now(&self) -> i64 {
        sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0')::int8")
            .fetch_one(&self.db)
            .await
            .expect("reading the WAL position")
    }
}

fn table_name(base: &str) -> String {
    unique(base).replace('-', "_")
}

/// A change event's value payload.
fn payload(r: &Consumed) -> Value {
    r.json()["payload"].clone()
}

fn op(r: &Consumed) -> String {
    payload(r)["op"].as_str().unwrap_or("tombstone").to_owned()
}

fn key(r: &Consumed) -> Value {
    serde_json::from_slice(r.key.as_deref().unwrap_or(b"null")).expect("a JSON key")
}

/// The field `name` of a value schema's `after`.
fn after_field_schema(r: &Consumed, name: &str) -> Value {
    let schema = &r.json()["schema"];
    let after = schema["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["field"] == "after")
        .expect("an after field");
    after["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["field"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no field {name} in {after}"))
}

#[tokio::test]
async fn snapshot_then_stream_in_debeziums_envelope_with_every_type_exact() {
    let t = Cdc::start().await;
    let items = table_name("items");
    let full = table_name("full");
    t.exec(&format!(
        "CREATE TYPE {items}_mood AS ENUM ('happy', 'sad');
         CREATE TABLE {items} (
           id int PRIMARY KEY, small int2 NOT NULL, big int8, price numeric(12,3),
           any_num numeric, ratio float8, real4 float4, name text, blob bytea, ok bool,
           day date, at_time time, at_ms time(3), local_ts timestamp, ts timestamptz, uid uuid,
           doc jsonb, tags int4[], names text[], feeling {items}_mood, span interval,
           cash money, tz_time timetz, big_text text);
         CREATE TABLE {full} (id int PRIMARY KEY, note text NOT NULL);
         ALTER TABLE {full} REPLICA IDENTITY FULL;
         INSERT INTO {items} (id, small, big, price, any_num, ratio, real4, name, blob, ok, day,
           at_time, at_ms, local_ts, ts, uid, doc, tags, names, feeling, span, cash, tz_time)
         VALUES (1, 7, -9007199254740993, 12345.678, 123456789012345678901234567890.000000001,
           0.1, 1.5, 'Grüße 🌍', '\\x00ff', true, '2026-12-07', '12:34:56.789012',
           '12:34:56.789', '2026-12-07 10:00:00.123456', '2026-12-07 10:00:00.5+02',
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"a\": [1, 2]}}', '{{1,NULL,3}}',
           '{{\"x y\",z}}', 'sad', '1 day 2 hours 0.5 seconds', 1234.5, '10:00:00+05:30');
         INSERT INTO {full} VALUES (1, 'one');"
    ))
    .await;
    // One partition each, so that the topic's order is the commit order of every key.
    for table in [&items, &full] {
        create_topic(&t.broker.bootstrap, &t.topic(table), 1).await;
    }
    t.source(json!({})).await;

    // The snapshot: one read event each.
    let snap = t.events(&items, 1).await;
    assert_eq!(op(&snap[0]), "r");
    let p = payload(&snap[0]);
    assert_eq!(p["source"]["snapshot"], "last", "{p}");
    assert_eq!(p["source"]["connector"], "postgresql");
    assert_eq!(p["source"]["table"], items.as_str());
    assert_eq!(p["before"], Value::Null);
    let a = &p["after"];
    assert_eq!(a["small"], 7);
    assert_eq!(a["big"], -9_007_199_254_740_993i64);
    // 12345.678 at scale 3: unscaled 12345678 = 0x00BC614E, base64.
    assert_eq!(a["price"], "ALxhTg==");
    assert_eq!(a["any_num"]["scale"], 9);
    assert_eq!(a["ratio"], 0.1);
    assert_eq!(a["real4"], 1.5);
    assert_eq!(a["name"], "Grüße 🌍");
    assert_eq!(a["blob"], "AP8=");
    assert_eq!(a["ok"], true);
    assert_eq!(a["day"], 20_794);
    assert_eq!(a["at_time"], 45_296_789_012i64, "MicroTime");
    assert_eq!(a["at_ms"], 45_296_789, "Time (ms) for time(3)");
    assert_eq!(a["local_ts"], 1_796_637_600_123_456i64, "MicroTimestamp");
    assert_eq!(a["ts"], "2026-12-07T08:00:00.5Z", "ZonedTimestamp in UTC");
    assert_eq!(a["uid"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(
        serde_json::from_str::<Value>(a["doc"].as_str().unwrap()).unwrap(),
        json!({"a": [1, 2]})
    );
    assert_eq!(a["tags"], json!([1, null, 3]));
    assert_eq!(a["names"], json!(["x y", "z"]));
    assert_eq!(a["feeling"], "sad");
    assert_eq!(a["span"], 93_600_500_000i64, "MicroDuration");
    assert_eq!(a["cash"], "AeI6", "money as Decimal(2): 123450");
    assert_eq!(a["tz_time"], "04:30:00Z");
    for (field, name) in [
        ("price", "org.apache.kafka.connect.data.Decimal"),
        ("any_num", "io.debezium.data.VariableScaleDecimal"),
        ("day", "io.debezium.time.Date"),
        ("at_time", "io.debezium.time.MicroTime"),
        ("local_ts", "io.debezium.time.MicroTimestamp"),
        ("ts", "io.debezium.time.ZonedTimestamp"),
        ("uid", "io.debezium.data.Uuid"),
        ("doc", "io.debezium.data.Json"),
        ("feeling", "io.debezium.data.Enum"),
    ] {
        assert_eq!(after_field_schema(&snap[0], field)["name"], name, "{field}");
    }
    assert_eq!(
        after_field_schema(&snap[0], "feeling")["parameters"]["allowed"],
        "happy,sad"
    );
    assert_eq!(
        after_field_schema(&snap[0], "price")["parameters"]["scale"],
        "3"
    );
    assert_eq!(key(&snap[0]), json!({"id": 1}));

    // Streaming: insert, update, delete (DEFAULT identity), a primary key change, truncate.
    // Stored out of line uncompressed, so the next transaction's update leaves it unchanged.
    t.exec(&format!(
        "ALTER TABLE {items} ALTER COLUMN big_text SET STORAGE EXTERNAL;
         INSERT INTO {items} (id, small, name, big_text) VALUES (2, 2, 'two', repeat('x', 10000));"
    ))
    .await;
    t.exec(&format!(
        "UPDATE {items} SET small = 3 WHERE id = 2;
         UPDATE {items} SET id = 20 WHERE id = 2;
         DELETE FROM {items} WHERE id = 1;
         UPDATE {full} SET note = 'uno' WHERE id = 1;
         DELETE FROM {full} WHERE id = 1;
         TRUNCATE {items};"
    ))
    .await;
    // r, c, u (TOAST unchanged), d + tombstone + c (key change), d + tombstone, t.
    let all = t.events(&items, 9).await;
    let ops: Vec<String> = all.iter().map(op).collect();
    assert_eq!(
        ops,
        ["r", "c", "u", "d", "tombstone", "c", "d", "tombstone", "t"],
        "in commit order"
    );
    let update = payload(&all[2]);
    assert_eq!(
        update["before"],
        Value::Null,
        "DEFAULT identity: no old row"
    );
    assert_eq!(update["after"]["small"], 3);
    let toasted = update["after"]["big_text"].as_str().unwrap_or("NULL");
    assert!(
        toasted == "__debezium_unavailable_value",
        "an unchanged TOAST value is marked, not NULL: {}",
        &toasted[..toasted.len().min(40)]
    );
    assert_eq!(
        payload(&all[1])["after"]["big_text"].as_str().map(str::len),
        Some(10_000),
        "the insert carries the whole value"
    );
    assert_eq!(payload(&all[3])["before"]["id"], 2);
    assert_eq!(key(&all[4]), json!({"id": 2}));
    assert_eq!(all[4].value, None, "a tombstone");
    assert_eq!(key(&all[5]), json!({"id": 20}));
    let delete = payload(&all[6]);
    assert_eq!(delete["before"]["id"], 1);
    assert_eq!(
        delete["before"]["name"],
        Value::Null,
        "only the key of a DEFAULT delete"
    );
    assert_eq!(delete["after"], Value::Null);
    let streamed = payload(&all[1]);
    assert_eq!(streamed["source"]["snapshot"], "false");
    assert!(streamed["source"]["lsn"].as_i64().is_some_and(|l| l > 0));
    assert!(streamed["source"]["txId"].as_i64().is_some());

    // FULL identity: the whole old row.
    let full_events = t.events(&full, 4).await;
    let ops: Vec<String> = full_events.iter().map(op).collect();
    assert_eq!(ops, ["r", "u", "d", "tombstone"]);
    assert_eq!(payload(&full_events[1])["before"]["note"], "one");
    assert_eq!(payload(&full_events[2])["before"]["note"], "uno");

    // A column added mid-stream is in the next change's schema.
    t.exec(&format!(
        "ALTER TABLE {full} ADD COLUMN added int; INSERT INTO {full} VALUES (2, 'two', 42);"
    ))
    .await;
    let full_events = t.events(&full, 5).await;
    assert_eq!(payload(&full_events[4])["after"]["added"], 42);
    assert_eq!(
        after_field_schema(&full_events[4], "added")["type"],
        "int32"
    );
}

#[tokio::test]
async fn a_snapshot_taken_while_writes_go_on_has_every_row_exactly_once() {
    let t = Cdc::start().await;
    let rows = table_name("rows");
    t.exec(&format!(
        "CREATE TABLE {rows} (id int PRIMARY KEY); \
         INSERT INTO {rows} SELECT generate_series(1, 3000);"
    ))
    .await;
    let writer = {
        let db = t.db.clone();
        let rows = rows.clone();
        tokio::spawn(async move {
            for id in 3001..=6000 {
                sqlx::raw_sql(&format!("INSERT INTO {rows} VALUES ({id})"))
                    .execute(&db)
                    .await
                    .expect("insert");
            }
        })
    };
    t.source(json!({"snapshot.fetch.size": "500"})).await;
    writer.await.expect("the writer");
    let events = t.events(&rows, 6000).await;
    let mut seen: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for e in &events {
        let id = payload(e)["after"]["id"].as_i64().expect("an id");
        seen.entry(id).or_default().push(op(e));
    }
    assert_eq!(seen.len(), 6000, "every row");
    let twice: Vec<_> = seen.iter().filter(|(_, ops)| ops.len() > 1).collect();
    assert!(twice.is_empty(), "read in snapshot and stream: {twice:?}");
    let read = seen.values().filter(|ops| ops[0] == "r").count();
    let streamed = seen.values().filter(|ops| ops[0] == "c").count();
    assert_eq!(read + streamed, 6000, "only read and create events");
    assert!(
        read > 3000 && streamed > 0,
        "the writes overlapped the snapshot: {read} read, {streamed} streamed"
    );
}

#[tokio::test]
async fn sigkills_mid_stream_lose_no_change_and_the_slot_never_passes_kafka() {
    let mut t = Cdc::start().await;
    let rows = table_name("rows");
    t.exec(&format!("CREATE TABLE {rows} (id int PRIMARY KEY)"))
        .await;
    t.source(json!({"snapshot.mode": "no_data"})).await;
    eventually("the slot", WAIT, || async { t.confirmed().await }).await;
    let total = 3000usize;
    let writer = {
        let db = t.db.clone();
        let rows = rows.clone();
        tokio::spawn(async move {
            for id in 1..=total {
                sqlx::raw_sql(&format!("INSERT INTO {rows} VALUES ({id})"))
                    .execute(&db)
                    .await
                    .expect("insert");
            }
        })
    };
    let topic = t.topic(&rows);
    let mut allowed_duplicates = 0;
    for round in 1..=3 {
        let before = read_topic(&t.broker.bootstrap, &topic).len();
        let stored = eventually(
            "more changes in Kafka and a stored offset",
            WAIT,
            || async {
                let now = read_topic(&t.broker.bootstrap, &topic).len();
                let offsets = t
                    .worker
                    .get(&format!("/connectors/{}/offsets", t.name))
                    .await
                    .body;
                let stored = offsets["offsets"][0]["offset"]["lsn_proc"].as_i64();
                // The writer may be done before the last round: then any stored offset will do.
                (now > before + 200 || writer.is_finished()).then_some(stored)?
            },
        )
        .await;
        t.worker.kill();
        // With the worker dead, every change not in Kafka must still be in the slot (after its
        // confirmed position): the slot never confirmed past what Kafka holds.
        let in_kafka = read_topic(&t.broker.bootstrap, &topic);
        let ids: BTreeSet<i64> = in_kafka
            .iter()
            .filter_map(|r| payload(r)["after"]["id"].as_i64())
            .collect();
        let committed: Vec<i64> = sqlx::query_scalar(&format!("SELECT id::int8 FROM {rows}"))
            .fetch_all(&t.db)
            .await
            .expect("the rows");
        let pending = t.pending_insert_ids().await;
        let lost: Vec<i64> = committed
            .iter()
            .filter(|id| !ids.contains(id) && !pending.contains(id))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: committed, not in Kafka and no longer in the slot: {lost:?}"
        );
        // What a restart may read again: the records after the offset stored before the kill.
        allowed_duplicates += in_kafka
            .iter()
            .filter(|r| payload(r)["source"]["lsn"].as_i64() >= Some(stored))
            .count();
        t.worker.restart().await;
    }
    writer.await.expect("the writer");
    let all = t.events(&rows, total).await;
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &all {
        *counts
            .entry(payload(r)["after"]["id"].as_i64().expect("an id"))
            .or_default() += 1;
    }
    assert_eq!(counts.len(), total, "every change at least once");
    let duplicates = all.len() - total;
    assert!(
        duplicates <= allowed_duplicates,
        "{duplicates} duplicates, more than the {allowed_duplicates} after the stored offsets"
    );
}

#[tokio::test]
async fn an_idle_or_filtered_database_does_not_make_the_slot_keep_wal() {
    let t = Cdc::start().await;
    let watched = table_name("watched");
    let other = table_name("other");
    t.exec(&format!(
        "CREATE TABLE {watched} (id int PRIMARY KEY); CREATE TABLE {other} (id int PRIMARY KEY);"
    ))
    .await;
    t.source(json!({
        "table.include.list": format!("public\\.{watched}"),
        "publication.autocreate.mode": "filtered",
        "heartbeat.interval.ms": "500",
    }))
    .await;
    t.exec(&format!("INSERT INTO {watched} VALUES (1)")).await;
    t.events(&watched, 1).await;
    // Only a table the connector does not stream changes: 20 MB of WAL.
    t.exec(&format!(
        "INSERT INTO {other} SELECT generate_series(1, 200000); \
         CREATE TABLE {other}_pad AS SELECT repeat('x', 1000) AS pad FROM generate_series(1, 10000);"
    ))
    .await;
    let written = t.wal_now().await;
    let lag = eventually(
        "the slot to move past the filtered changes",
        WAIT,
        || async {
            let confirmed = t.confirmed().await?;
            (confirmed >= written).then_some(t.wal_now().await - confirmed)
        },
    )
    .await;
    assert!(lag < 1_000_000, "{lag} bytes still held");
    let heartbeats = consume_all(
        &t.broker.bootstrap,
        &format!("__debezium-heartbeat.{}", t.prefix),
        1,
        WAIT,
    )
    .await;
    assert_eq!(key(&heartbeats[0]), json!({"serverName": t.prefix}));
    let status = t
        .worker
        .get(&format!("/connectors/{}/status", t.name))
        .await
        .body;
    assert!(
        status.to_string().contains("cdc.slot.lag.bytes"),
        "the slot's lag is in the status: {status}"
    );
}

#[tokio::test]
async fn a_server_without_logical_wal_fails_the_task_saying_how_to_fix_it() {
    let t = Cdc::start().await;
    t.exec("ALTER SYSTEM SET wal_level = replica").await;
    t.pg.restart();
    t.source(json!({"database.password": "not-this-one-s3cret"}))
        .await;
    let trace = t.worker.failed_task_trace(&t.name).await;
    assert!(trace.contains("wal_level"), "{trace}");
    assert!(trace.contains("logical"), "{trace}");
    assert!(
        !t.worker.log().contains("not-this-one-s3cret"),
        "the password in the log"
    );
    let status = t
        .worker
        .get(&format!("/connectors/{}/status", t.name))
        .await
        .body;
    assert!(!status.to_string().contains("not-this-one-s3cret"));
}

#[tokio::test]
async fn extract_new_record_state_flattens_events_for_row_sinks() {
    let t = Cdc::start().await;
    let rows = table_name("rows");
    t.exec(&format!(
        "CREATE TABLE {rows} (id int PRIMARY KEY, note text)"
    ))
    .await;
    create_topic(&t.broker.bootstrap, &t.topic(&rows), 1).await;
    t.source(json!({
        "transforms": "unwrap",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
        "transforms.unwrap.delete.tombstone.handling.mode": "rewrite",
        "transforms.unwrap.add.fields": "op,table,source.lsn",
    }))
    .await;
    eventually("the slot", WAIT, || async { t.confirmed().await }).await;
    t.exec(&format!(
        "INSERT INTO {rows} VALUES (1, 'a'); UPDATE {rows} SET note = 'b' WHERE id = 1; \
         DELETE FROM {rows} WHERE id = 1;"
    ))
    .await;
    let out = t.events(&rows, 3).await;
    let flat: Vec<Value> = out.iter().map(payload).collect();
    assert_eq!(flat.len(), 3, "no tombstone in rewrite mode: {flat:?}");
    assert_eq!(flat[0]["note"], "a");
    assert_eq!(flat[0]["__op"], "c");
    assert_eq!(flat[0]["__deleted"], "false");
    assert_eq!(flat[1]["note"], "b");
    assert_eq!(flat[2]["id"], 1);
    assert_eq!(flat[2]["__op"], "d");
    assert_eq!(flat[2]["__deleted"], "true");
    assert_eq!(flat[2]["__table"], rows.as_str());
    assert!(flat[2]["__source_lsn"].as_i64().is_some_and(|l| l > 0));
}

#[tokio::test]
async fn a_slot_held_by_another_client_fails_the_task_saying_so() {
    let t = Cdc::start().await;
    t.exec(&format!(
        "CREATE PUBLICATION {} FOR ALL TABLES",
        t.publication
    ))
    .await;
    t.exec(&format!(
        "SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
        t.slot
    ))
    .await;
    let mut holder =
        t.pg.program("pg_recvlogical")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "--start",
                "-f",
                "/dev/null",
            ])
            .args(["-p", &t.pg.port.to_string(), "--slot", &t.slot])
            .args(["-o", "proto_version=1", "-o"])
            .arg(format!("publication_names={}", t.publication))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pg_recvlogical");
    eventually("pg_recvlogical to hold the slot", WAIT, || async {
        let active: Option<bool> =
            sqlx::query_scalar("SELECT active FROM pg_replication_slots WHERE slot_name = $1")
                .bind(t.slot.clone())
                .fetch_optional(&t.db)
                .await
                .expect("the slot");
        (active == Some(true)).then_some(())
    })
    .await;
    t.source(json!({})).await;
    let trace = t.worker.failed_task_trace(&t.name).await;
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(trace.contains("in use by another client"), "{trace}");
    assert!(trace.contains(&t.slot), "{trace}");
}

#[tokio::test]
async fn a_user_without_the_replication_right_fails_the_task_saying_how_to_fix_it() {
    let t = Cdc::start().await;
    let user = unique("reader").replace('-', "_");
    t.exec(&format!("CREATE ROLE {user} LOGIN")).await;
    t.source(json!({"database.user": user})).await;
    let trace = t.worker.failed_task_trace(&t.name).await;
    assert!(trace.contains("may not use replication"), "{trace}");
    assert!(
        trace.contains(&format!("ALTER ROLE {user} WITH REPLICATION")),
        "{trace}"
    );
}
