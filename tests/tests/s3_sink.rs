//! The S3 Parquet sink against a real S3-compatible server (s3s-fs) and a real broker: every value
//! read back with the parquet crate, each partitioner and rotation trigger, SIGKILL at several
//! points, an S3 outage, schema evolution and the memory bound.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_tests::kafka::{Produce, consume_all, create_topic, produce};
use sluice_tests::s3::{S3Server, parquet_metadata};
use sluice_tests::{Broker, Value, Worker, WorkerSettings, eventually, json, unique};

/// Log filter that shows the sink's file-set events, which the crash tests wait for.
const S3_DEBUG: &str = "info,sluice_connectors::s3=debug";

fn config(s3: &S3Server, bucket: &str, topic: &str, extra: Value) -> Value {
    let mut c = s3.sink_config(bucket);
    c.insert("topics".into(), json!(topic));
    c.insert("topics.dir".into(), json!("lake"));
    c.insert(
        "value.converter".into(),
        json!("org.apache.kafka.connect.json.JsonConverter"),
    );
    c.insert("value.converter.schemas.enable".into(), json!("false"));
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        c.insert(k, v);
    }
    Value::Object(c)
}

/// How often each `id` occurs over all objects.
fn id_counts(objects: &[(String, Vec<Value>)]) -> BTreeMap<i64, usize> {
    count(
        objects
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|r| r["id"].as_i64().expect("id"))),
    )
}

fn count(ids: impl Iterator<Item = i64>) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// Waits until the objects hold every id in `0..n`, then checks that none is there twice.
async fn assert_exactly_once(s3: &S3Server, bucket: &str, n: i64) -> Vec<(String, Vec<i64>)> {
    let objects = eventually("every record in S3", Duration::from_secs(120), || async {
        let objects = s3.ids(bucket).await;
        let seen = count(objects.iter().flat_map(|(_, ids)| ids.iter().copied())).len();
        (seen as i64 >= n).then_some(objects)
    })
    .await;
    let counts = count(objects.iter().flat_map(|(_, ids)| ids.iter().copied()));
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(dups.is_empty(), "duplicated ids (id, count): {dups:?}");
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    objects
}

#[tokio::test]
async fn default_partitioner_writes_every_value_under_deterministic_keys() {
    let broker = Broker::start();
    let s3 = S3Server::start().await;
    let bucket = s3.bucket("default").await;
    let topic = unique("orders");
    create_topic(&broker.bootstrap, &topic, 2).await;
    let value = |p: i64, i: i64| json!({"id": p * 1000 + i, "name": format!("n-{p}-{i}"), "price": i as f64 * 1.5, "tags": ["a", format!("t{i}")], "nested": {"x": i, "ok": i % 2 == 0}});
    let mut records = Vec::new();
    for p in 0..2 {
        for i in 0..300 {
            records.push(Produce::json(p as i32, &value(p, i)));
        }
    }
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("s3");
    worker
        .create(
            &name,
            config(&s3, &bucket, &topic, json!({"flush.size": "100"})),
        )
        .await;

    let expected_keys: Vec<String> = (0..2)
        .flat_map(|p| {
            let topic = topic.clone();
            (0..3).map(move |f| {
                format!(
                    "lake/{topic}/partition={p}/{topic}+{p}+{:010}.parquet",
                    f * 100
                )
            })
        })
        .collect();
    let parquet_keys = || async {
        let keys = s3.keys(&bucket).await;
        keys.into_iter()
            .filter(|k| k.ends_with(".parquet"))
            .collect::<Vec<_>>()
    };
    eventually("6 objects", Duration::from_secs(90), || async {
        (parquet_keys().await.len() >= 6).then_some(())
    })
    .await;
    let keys = parquet_keys().await;
    let mut want = expected_keys.clone();
    want.sort();
    assert_eq!(keys, want);
    // Beside the data, one intent object per partition, outside the topic's folder.
    let intents: Vec<String> = s3
        .keys(&bucket)
        .await
        .into_iter()
        .filter(|k| k.ends_with(".intent.json"))
        .collect();
    assert_eq!(
        intents,
        vec![
            format!("lake/_sluice/{name}/{topic}+0.intent.json"),
            format!("lake/_sluice/{name}/{topic}+1.intent.json")
        ]
    );
    for (key, rows) in s3.parquet_objects(&bucket).await {
        let p: i64 = key.split("partition=").nth(1).unwrap()[..1]
            .parse()
            .unwrap();
        let start: i64 = key
            .rsplit('+')
            .next()
            .unwrap()
            .trim_end_matches(".parquet")
            .parse()
            .unwrap();
        assert_eq!(rows.len(), 100, "{key}");
        for (i, row) in rows.iter().enumerate() {
            let want = value(p, start + i as i64);
            assert_eq!(row["id"], want["id"], "{key} row {i}");
            assert_eq!(row["name"], want["name"]);
            assert_eq!(row["price"].as_f64(), want["price"].as_f64());
            assert_eq!(row["tags"], want["tags"]);
            assert_eq!(row["nested"]["x"], want["nested"]["x"]);
            assert_eq!(row["nested"]["ok"], want["nested"]["ok"]);
        }
    }
    // Offsets are committed once the objects exist: 300 per partition.
    eventually("offsets committed", Duration::from_secs(30), || async {
        (worker.committed_sink_records(&name).await? == 600).then_some(())
    })
    .await;
}

#[tokio::test]
async fn time_based_and_field_partitioners_with_record_time_rotation() {
    let broker = Broker::start();
    let s3 = S3Server::start().await;
    let topic = unique("events");
    create_topic(&broker.bootstrap, &topic, 1).await;
    // 2024-03-01T10:00:00Z, then 10 records per hour over three hours, then one 5 hours later.
    let t0 = 1_709_287_200_000i64;
    let regions = ["eu", "us", "ap"];
    let mut records = Vec::new();
    for i in 0..30i64 {
        let t = t0 + (i / 10) * 3_600_000 + (i % 10) * 60_000;
        let v = json!({"id": i, "region": regions[(i % 3) as usize], "t": t});
        records.push(Produce::json(0, &v).at(t));
    }
    records.push(
        Produce::json(
            0,
            &json!({"id": 30, "region": "eu", "t": t0 + 5 * 3_600_000}),
        )
        .at(t0 + 5 * 3_600_000),
    );
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;

    let hourly = s3.bucket("hourly").await;
    worker
        .create(&unique("hourly"), config(&s3, &hourly, &topic, json!({
            "partitioner.class": "io.confluent.connect.storage.partitioner.TimeBasedPartitioner",
            "path.format": "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH", "partition.duration.ms": "3600000",
            "timestamp.extractor": "Record", "timezone": "UTC", "locale": "en-US",
            "rotate.interval.ms": "3600000", "flush.size": "1000"
        })))
        .await;
    let by_field = s3.bucket("field").await;
    worker
        .create(&unique("field"), config(&s3, &by_field, &topic, json!({
            "partitioner.class": "FieldPartitioner", "partition.field.name": "region", "flush.size": "30"
        })))
        .await;

    // Record time closes a file when a record is an hour past the file's first: three files, one
    // per hour; the record 5 hours later opens a fourth that stays open.
    let objects = eventually("3 hourly objects", Duration::from_secs(90), || async {
        let o = s3.parquet_objects(&hourly).await;
        (o.len() >= 3).then_some(o)
    })
    .await;
    let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        (0..3)
            .map(|h| format!(
                "lake/{topic}/year=2024/month=03/day=01/hour={}/{topic}+0+{:010}.parquet",
                10 + h,
                h * 10
            ))
            .collect::<Vec<_>>()
    );
    for (h, (_, rows)) in objects.iter().enumerate() {
        let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, (h as i64 * 10..h as i64 * 10 + 10).collect::<Vec<_>>());
    }

    // flush.size=30 closes one set of three files, one per region, each named by the offset of
    // its first record.
    let objects = eventually("3 field objects", Duration::from_secs(90), || async {
        let o = s3.parquet_objects(&by_field).await;
        (o.len() >= 3).then_some(o)
    })
    .await;
    for (key, rows) in &objects {
        let region = key
            .split("region=")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let first = regions.iter().position(|r| *r == region).unwrap();
        assert!(
            key.ends_with(&format!("/{topic}+0+{first:010}.parquet")),
            "{key}"
        );
        let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(
            ids,
            (0..30)
                .filter(|i| i % 3 == first as i64)
                .collect::<Vec<_>>(),
            "{key}"
        );
        assert!(rows.iter().all(|r| r["region"] == region));
    }
}

#[tokio::test]
async fn scheduled_rotation_fires_without_new_data_and_size_rotation_splits_files() {
    let broker = Broker::start();
    let s3 = S3Server::start().await;
    let topic = unique("quiet");
    create_topic(&broker.bootstrap, &topic, 1).await;
    let records: Vec<_> = (0..3000i64)
        .map(|i| Produce::json(0, &json!({"id": i, "payload": format!("{i:0>40}")})))
        .collect();
    produce(&broker.bootstrap, &topic, &records[..10]).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let scheduled = s3.bucket("scheduled").await;
    let name = unique("scheduled");
    worker
        .create(
            &name,
            config(
                &s3,
                &scheduled,
                &topic,
                json!({"flush.size": "1000000", "rotate.schedule.interval.ms": "1000"}),
            ),
        )
        .await;
    // Ten records, no more data: the schedule alone closes the file.
    assert_exactly_once(&s3, &scheduled, 10).await;
    eventually("offsets committed", Duration::from_secs(30), || async {
        (worker.committed_sink_records(&name).await? == 10).then_some(())
    })
    .await;

    produce(&broker.bootstrap, &topic, &records[10..]).await;
    let sized = s3.bucket("sized").await;
    worker
        .create(
            &unique("sized"),
            config(
                &s3,
                &sized,
                &topic,
                json!({"flush.size": "1000000", "rotate.size.bytes": "20000"}),
            ),
        )
        .await;
    // Files close at the first chunk (1024 records) past 20,000 encoded bytes.
    let objects = eventually("2 sized objects", Duration::from_secs(90), || async {
        let o = s3.parquet_objects(&sized).await;
        (o.len() >= 2).then_some(o)
    })
    .await;
    assert_eq!(
        objects[0].0,
        format!("lake/{topic}/partition=0/{topic}+0+{:010}.parquet", 0)
    );
    assert_eq!(
        objects[1].0,
        format!("lake/{topic}/partition=0/{topic}+0+{:010}.parquet", 1024)
    );
    assert_eq!(objects[0].1.len(), 1024);
    assert_eq!(objects[1].1.len(), 1024);
}

#[tokio::test]
async fn connect_schemas_map_to_parquet_logical_types() {
    let broker = Broker::start();
    let s3 = S3Server::start().await;
    let bucket = s3.bucket("typed").await;
    let topic = unique("typed");
    create_topic(&broker.bootstrap, &topic, 1).await;
    let schema = json!({"type": "struct", "name": "Order", "fields": [
        {"field": "id", "type": "int64", "optional": false},
        {"field": "qty", "type": "int32", "optional": false},
        {"field": "at", "type": "int64", "name": "org.apache.kafka.connect.data.Timestamp", "optional": false},
        {"field": "day", "type": "int32", "name": "org.apache.kafka.connect.data.Date", "optional": false},
        {"field": "amount", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}, "optional": false},
        {"field": "note", "type": "string", "optional": true},
        {"field": "tags", "type": "array", "items": {"type": "string"}, "optional": false},
        {"field": "attrs", "type": "map", "keys": {"type": "string"}, "values": {"type": "int64"}, "optional": false},
        {"field": "customer", "type": "struct", "optional": false, "fields": [
            {"field": "name", "type": "string", "optional": false}, {"field": "vip", "type": "boolean", "optional": false}]}
    ]});
    // 12345 cents = 0x3039, base64 "MDk=".
    let records: Vec<_> = (0..5i64)
        .map(|i| {
            let payload = json!({"id": i, "qty": i as i32 * 2, "at": 1_700_000_000_000i64 + i, "day": 19_700 + i, "amount": "MDk=",
                "note": if i == 0 { Value::Null } else { json!(format!("note {i}")) }, "tags": ["x", "y"], "attrs": {"k": i},
                "customer": {"name": format!("c{i}"), "vip": i == 3}});
            Produce::json(0, &json!({"schema": schema, "payload": payload}))
        })
        .collect();
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let mut c = config(
        &s3,
        &bucket,
        &topic,
        json!({"flush.size": "5", "parquet.codec": "zstd"}),
    );
    c["value.converter.schemas.enable"] = json!("true");
    worker.create(&unique("typed"), c).await;
    assert_exactly_once(&s3, &bucket, 5).await;
    let objects = s3.parquet_objects(&bucket).await;
    let (key, rows) = &objects[0];
    assert_eq!(rows[1]["qty"], 2);
    assert_eq!(rows[1]["note"], "note 1");
    assert_eq!(rows[0]["note"], Value::Null);
    assert_eq!(rows[3]["customer"]["vip"], true);
    assert_eq!(rows[2]["tags"], json!(["x", "y"]));
    let meta = parquet_metadata(s3.get(&bucket, key).await);
    let schema = meta.file_metadata().schema_descr();
    let leaf = |name: &str| {
        (0..schema.num_columns())
            .map(|i| schema.column(i))
            .find(|c| c.path().string() == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    assert_eq!(
        format!("{:?}", leaf("at").logical_type_ref()),
        "Some(Timestamp { is_adjusted_to_u_t_c: true, unit: MILLIS })"
    );
    assert_eq!(
        format!("{:?}", leaf("day").logical_type_ref()),
        "Some(Date)"
    );
    assert_eq!(
        format!("{:?}", leaf("amount").logical_type_ref()),
        "Some(Decimal { scale: 2, precision: 38 })"
    );
    assert_eq!(
        format!("{:?}", leaf("id").self_type().get_basic_info().repetition()),
        "REQUIRED"
    );
    assert_eq!(
        format!(
            "{:?}",
            leaf("note").self_type().get_basic_info().repetition()
        ),
        "OPTIONAL"
    );
    let codec = meta.row_group(0).column(0).compression();
    assert!(format!("{codec:?}").starts_with("ZSTD"), "{codec:?}");
    // The decimal's value: 123.45.
    assert_eq!(rows[0]["amount"].to_string().trim_matches('"'), "123.45");
}

#[tokio::test]
async fn schemaless_files_evolve_and_bad_records_follow_the_error_policy() {
    let broker = Broker::start();
    let s3 = S3Server::start().await;
    let topic = unique("evolve");
    create_topic(&broker.bootstrap, &topic, 1).await;
    // 0..1100 {id, a:int}; 1100..1200 add b; 1200 widens a to a double; 1201 puts a string in a
    // (a conflict: an error record); 1202..1300 go on as before, except 1250, which is not JSON
    // (a value-converter failure, found by the sink's fast path, which decodes JSON itself).
    let mut records = Vec::new();
    for i in 0..1300i64 {
        let v = match i {
            0..1100 => json!({"id": i, "a": i}),
            1100..1200 => json!({"id": i, "a": i, "b": format!("b{i}")}),
            1200 => json!({"id": i, "a": 1.5, "b": "b1200"}),
            1201 => json!({"id": i, "a": "not a number"}),
            1250 => {
                records.push(Produce::bytes(0, br#"{"id": 1250, "a": broken"#));
                continue;
            }
            _ => json!({"id": i, "a": i as f64 + 0.25}),
        };
        records.push(Produce::json(0, &v));
    }
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let bucket = s3.bucket("evolve").await;
    let tolerant = unique("tolerant");
    let dlq = unique("evolve-dlq");
    worker
        .create(&tolerant, config(&s3, &bucket, &topic, json!({
            "flush.size": "100000", "rotate.schedule.interval.ms": "2000",
            "errors.tolerance": "all", "errors.log.enable": "true", "errors.log.include.messages": "true",
            "errors.deadletterqueue.topic.name": dlq, "errors.deadletterqueue.topic.replication.factor": "1",
            "errors.deadletterqueue.context.headers.enable": "true"
        })))
        .await;
    let objects = eventually("1298 records in S3", Duration::from_secs(90), || async {
        let o = s3.parquet_objects(&bucket).await;
        (id_counts(&o).len() >= 1298).then_some(o)
    })
    .await;
    let counts = id_counts(&objects);
    assert!(counts.values().all(|c| *c == 1), "duplicates");
    assert!(!counts.contains_key(&1201), "the bad record was written");
    assert_eq!(counts.len(), 1298);
    for (key, rows) in &objects {
        let meta = parquet_metadata(s3.get(&bucket, key).await);
        let schema = meta.file_metadata().schema_descr();
        let column = |name: &str| {
            (0..schema.num_columns())
                .map(|i| schema.column(i))
                .find(|c| c.name() == name)
        };
        for row in rows {
            let id = row["id"].as_i64().unwrap();
            if (1100..1201).contains(&id) {
                assert!(
                    column("b").is_some(),
                    "{key} holds record {id} without column b"
                );
                assert_eq!(row["b"], format!("b{id}"));
            }
            if id >= 1200 {
                let a = column("a").expect("column a");
                assert_eq!(format!("{:?}", a.physical_type()), "DOUBLE", "{key}");
            }
            if id == 1200 {
                assert_eq!(row["a"], 1.5);
            }
        }
    }
    let log = worker.log();
    assert!(
        log.contains(&format!(
            "skipping record at topic {topic}, partition 0, offset 1201"
        )),
        "no error log line"
    );
    // The sink reported the record on its own (the plugin API's errant record reporter): it is
    // in the dead-letter queue with its original bytes, re-read from Kafka.
    let dead = consume_all(&broker.bootstrap, &dlq, 2, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].value, records[1201].value);
    assert_eq!(
        dead[0].header("__connect.errors.stage").as_deref(),
        Some("TASK_PUT")
    );
    assert_eq!(
        dead[0].header("__connect.errors.offset").as_deref(),
        Some("1201")
    );
    assert_eq!(
        dead[0].header("__connect.errors.class.name").as_deref(),
        Some("io.confluent.connect.s3.S3SinkConnector")
    );
    // The record that is not JSON failed in the value converter, as if the runtime had decoded it.
    assert_eq!(dead[1].value, records[1250].value);
    assert_eq!(
        dead[1].header("__connect.errors.stage").as_deref(),
        Some("VALUE_CONVERTER")
    );
    assert_eq!(
        dead[1].header("__connect.errors.class.name").as_deref(),
        Some("org.apache.kafka.connect.json.JsonConverter")
    );
    assert_eq!(
        dead[1].header("__connect.errors.offset").as_deref(),
        Some("1250")
    );

    // errors.tolerance=none: the task fails at the bad record and says where it is.
    let strict = unique("strict");
    let strict_bucket = s3.bucket("strict").await;
    worker
        .create(
            &strict,
            config(
                &s3,
                &strict_bucket,
                &topic,
                json!({"flush.size": "100000", "rotate.schedule.interval.ms": "2000"}),
            ),
        )
        .await;
    let trace = worker.failed_task_trace(&strict).await;
    assert!(
        trace.contains(&format!("topic {topic}, partition 0, offset 1201")),
        "{trace}"
    );
    assert!(
        trace.contains("cannot convert the value to Parquet"),
        "{trace}"
    );
}

/// A value of about 1.2 KB that compresses poorly, so that files reach the multipart size.
fn blob(i: i64) -> String {
    let mut x = (i as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let mut s = String::with_capacity(1200);
    while s.len() < 1200 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        s.push_str(&format!("{:016x}", x >> 1));
    }
    s
}

async fn wait_for_log(worker: &Worker, needle: &str, more_than: usize) -> usize {
    eventually(
        &format!("log line {needle:?}"),
        Duration::from_secs(90),
        || async {
            let n = worker.log().matches(needle).count();
            (n > more_than).then_some(n)
        },
    )
    .await
}

#[tokio::test]
async fn sigkill_at_every_stage_loses_and_duplicates_nothing() {
    let broker = Broker::start();
    let s3 = S3Server::start().await;
    let bucket = s3.bucket("crash").await;
    let topic = unique("crash");
    create_topic(&broker.bootstrap, &topic, 2).await;
    let n = 24_000i64;
    let records: Vec<_> = (0..n)
        .map(|i| Produce::json((i % 2) as i32, &json!({"id": i, "blob": blob(i)})))
        .collect();
    produce(&broker.bootstrap, &topic, &records).await;
    // Directories by wall-clock time (2 s buckets) and a wall-clock rotation schedule: a replay
    // that decided again would put records in other directories and files than before the crash.
    // The runtime's own commits are rare, so a kill after a publish finds the committed offset at
    // the published set's start and its intent: the replay must rebuild exactly those objects.
    let settings = WorkerSettings::new(&broker)
        .with("offset.flush.interval.ms", "60000")
        .log(S3_DEBUG);
    let mut worker = Worker::start(settings).await;
    worker
        .create(&unique("crash"), config(&s3, &bucket, &topic, json!({
            "flush.size": "8000", "s3.part.size": "5242880", "parquet.row.group.size.bytes": "1048576",
            "rotate.schedule.interval.ms": "3000", "partitioner.class": "TimeBasedPartitioner",
            "timestamp.extractor": "Wallclock", "partition.duration.ms": "2000", "path.format": "'t'=YYYYMMdd-HHmmss"
        })))
        .await;

    // 1. Mid-multipart: a part is uploaded, the object is not complete.
    wait_for_log(&worker, "uploaded part", 0).await;
    worker.kill();
    // 2. After an upload, before the commit that follows it: the commit comes within milliseconds,
    //    so a test hook aborts the process right there.
    worker
        .settings
        .env
        .insert("SLUICE_S3_FAULT_ABORT_AFTER_PUBLISH".into(), "1".into());
    worker.restart().await;
    worker.wait_for_exit(Duration::from_secs(90)).await;
    assert!(
        worker
            .log()
            .contains("fault injection: aborting after a publish")
    );
    worker.settings.env.clear();
    // 3. Mid-buffer: right after the task took its partitions and started filling files.
    worker.restart().await;
    let before = worker.log().matches("partitions assigned").count();
    wait_for_log(&worker, "partitions assigned", before).await;
    worker.kill();
    // 4. Run to the end.
    worker.restart().await;
    let objects = assert_exactly_once(&s3, &bucket, n).await;
    let replays = worker.log().matches("replaying a file set").count();
    assert!(
        replays > 0,
        "no restart found an intent to replay: the test did not crash after a publish"
    );
    // Every object is named by the offset of its first record.
    for (key, rows) in &objects {
        let start: i64 = key
            .rsplit('+')
            .next()
            .unwrap()
            .trim_end_matches(".parquet")
            .parse()
            .unwrap();
        let p: i64 = key.rsplit('+').nth(1).unwrap().parse().unwrap();
        assert_eq!(rows[0], start * 2 + p, "{key}");
    }
}

/// An S3 outage in the middle of a stream: `partitions` partitions, `total` records of which
/// `before` are in S3 before the server stops, `flush_size` per file. With `restart`, the
/// connector's tasks restart (a rebalance: commit, close, open) just as S3 comes back.
async fn s3_outage_loses_nothing(
    partitions: i32,
    total: i64,
    before: usize,
    flush_size: &str,
    restart: bool,
) {
    let broker = Broker::start();
    let mut s3 = S3Server::start().await;
    let bucket = s3.bucket("outage").await;
    let topic = unique("outage");
    create_topic(&broker.bootstrap, &topic, partitions).await;
    let records: Vec<_> = (0..total)
        .map(|i| Produce::json((i % i64::from(partitions)) as i32, &json!({"id": i})))
        .collect();
    produce(&broker.bootstrap, &topic, &records[..before]).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("outage");
    worker
        .create(
            &name,
            config(
                &s3,
                &bucket,
                &topic,
                json!({"flush.size": flush_size, "s3.retry.backoff.ms": "100"}),
            ),
        )
        .await;
    assert_exactly_once(&s3, &bucket, before as i64).await;
    s3.stop();
    produce(&broker.bootstrap, &topic, &records[before..]).await;
    wait_for_log(&worker, "publishing a file set failed", 0).await;
    s3.resume();
    if restart {
        let restarted = worker
            .request(
                "POST",
                &format!("/connectors/{name}/restart?includeTasks=true"),
                None,
            )
            .await;
        assert!(restarted.status < 300, "{}", restarted.body);
    }
    assert_exactly_once(&s3, &bucket, total).await;
    eventually("offsets committed", Duration::from_secs(60), || async {
        (worker.committed_sink_records(&name).await? == total).then_some(())
    })
    .await;
    let status = eventually("the task running", Duration::from_secs(30), || async {
        let status = worker.get(&format!("/connectors/{name}/status")).await.body;
        (status["tasks"][0]["state"] == "RUNNING").then_some(status)
    })
    .await;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
}

#[tokio::test]
async fn an_s3_outage_pauses_and_loses_nothing() {
    s3_outage_loses_nothing(1, 1500, 500, "500", false).await;
}

/// The chaos run of issue 23: records keep coming while S3 is away (they wait behind a set that
/// cannot be published), and the tasks restart just as S3 comes back. Nothing may be committed past
/// records that were only in memory.
#[tokio::test]
async fn an_s3_outage_with_a_task_restart_as_it_returns_loses_nothing() {
    s3_outage_loses_nothing(2, 1200, 400, "100", true).await;
}

#[tokio::test]
async fn the_memory_bound_holds_with_1000_open_partitions() {
    let broker = Broker::start();
    let s3 = S3Server::start().await;
    let bucket = s3.bucket("wide").await;
    let topic = unique("wide");
    create_topic(&broker.bootstrap, &topic, 4).await;
    let n = 200_000i64;
    let records: Vec<_> = (0..n)
        .map(|i| {
            Produce::json(
                (i % 4) as i32,
                &json!({"id": i, "k": format!("k{:04}", i % 1000), "blob": &blob(i)[..800]}),
            )
        })
        .collect();
    produce(&broker.bootstrap, &topic, &records).await;
    // librdkafka's prefetch queue (64 MiB by default) is memory the sink does not control: a
    // smaller one keeps the measurement about the sink's buffers.
    let settings = WorkerSettings::new(&broker)
        .with("consumer.queued.max.messages.kbytes", "16384")
        .log(S3_DEBUG);
    let worker = Worker::start(settings).await;
    let name = unique("wide");
    worker
        .create(
            &name,
            config(
                &s3,
                &bucket,
                &topic,
                json!({
                    "partitioner.class": "FieldPartitioner", "partition.field.name": "k",
                    "flush.size": "1000000000", "rotate.schedule.interval.ms": "20000",
                    "buffer.max.bytes": "16777216"
                }),
            ),
        )
        .await;
    // About 200 MB of JSON into 1,000 open files (250 per Kafka partition): without the bound the
    // task would buffer most of it before the schedule closes the files.
    eventually(
        "every record committed",
        Duration::from_secs(240),
        || async { (worker.committed_sink_records(&name).await? == n).then_some(()) },
    )
    .await;
    // VmHWM: the highest resident memory the worker ever had.
    let peak = worker.peak_rss().expect("peak RSS");
    eprintln!("worker peak RSS: {} MiB", peak / 1024 / 1024);
    assert!(
        worker.log().contains("memory bound reached"),
        "the bound never triggered"
    );
    let objects = assert_exactly_once(&s3, &bucket, n).await;
    let dirs: std::collections::BTreeSet<_> = objects
        .iter()
        .map(|(k, _)| k.split('/').nth(2).unwrap().to_owned())
        .collect();
    assert_eq!(dirs.len(), 1000);
    assert!(
        peak < 250 * 1024 * 1024,
        "peak RSS {} MiB",
        peak / 1024 / 1024
    );
}

#[tokio::test]
async fn a_file_store_writes_the_same_layout_locally() {
    let broker = Broker::start();
    let topic = unique("local");
    create_topic(&broker.bootstrap, &topic, 1).await;
    let records: Vec<_> = (0..50i64)
        .map(|i| Produce::json(0, &json!({"id": i})))
        .collect();
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let dir = tempfile::tempdir().unwrap();
    worker
        .create(&unique("local"), json!({
            "connector.class": "S3SinkConnector", "topics": topic, "store.url": format!("file://{}", dir.path().display()),
            "flush.size": "25", "value.converter": "org.apache.kafka.connect.json.JsonConverter", "value.converter.schemas.enable": "false"
        }))
        .await;
    let folder = dir.path().join(format!("topics/{topic}/partition=0"));
    let files = eventually("2 local files", Duration::from_secs(60), || async {
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        names.sort();
        (names.len() >= 2).then_some(names)
    })
    .await;
    assert_eq!(
        files,
        vec![
            format!("{topic}+0+0000000000.parquet"),
            format!("{topic}+0+0000000025.parquet")
        ]
    );
    let rows =
        sluice_tests::s3::parquet_rows(std::fs::read(folder.join(&files[1])).unwrap().into());
    assert_eq!(
        rows.iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (25..50).collect::<Vec<_>>()
    );
}
