//! What lands in S3 is what was produced, as lake users read it: every double bit for bit and every
//! column in every file, read back with pyarrow's dataset API (which takes its schema from the
//! first file) and with DuckDB's `read_parquet(union_by_name = true)`.
//!
//! The readers run in the Python that `SLUICE_TEST_PYTHON` names (`scripts/test.sh` makes a
//! virtualenv with pyarrow and DuckDB).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use sluice_tests::kafka::{Produce, create_topic, produce};
use sluice_tests::s3::S3Server;
use sluice_tests::{Broker, Value, Worker, WorkerSettings, eventually, json, unique};

const COLUMNS: [&str; 5] = ["id", "shared", "part1_only", "never", "nested"];

/// Doubles over every exponent range (a fixed xorshift over bit patterns), with the edge values
/// first.
fn doubles(n: usize) -> Vec<f64> {
    let mut out = vec![
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        5e-324,
        -5e-324,
        f64::MAX,
        f64::MIN,
        0.195_096_176_608_499_98,
        1_931.392_860_933_903_4,
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = f64::from_bits(x);
        if v.is_finite() {
            out.push(v);
        }
    }
    out
}

fn python() -> String {
    std::env::var("SLUICE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("SLUICE_TEST_PYTHON must name a Python with pyarrow and duckdb (scripts/test.sh sets it)")
    })
}

/// What each reader makes of the objects under `root`.
fn read_with_lake_readers(root: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/read_lake.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .arg(root)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the lake readers failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the readers")
}

fn bits(v: &Value) -> Option<u64> {
    v.as_f64().map(f64::to_bits)
}

#[tokio::test]
async fn every_value_and_every_column_reach_the_lake_readers() {
    let broker = Broker::start();
    let s3 = S3Server::start().await;
    let bucket = s3.bucket("fidelity").await;
    let topic = unique("fidelity");
    create_topic(&broker.bootstrap, &topic, 2).await;
    let per_partition = 1000usize;
    let values = doubles(4 * per_partition);
    // Records of partition p: `part1_only` has a value in partition 1 only, `never` nowhere.
    let record = |p: usize, i: usize| {
        let id = p * per_partition + i;
        json!({
            "id": id,
            "shared": values[2 * id],
            "part1_only": if p == 1 { json!(i) } else { Value::Null },
            "never": null,
            "nested": {"a": values[2 * id + 1]},
        })
    };
    let batch = |p: usize| -> Vec<Produce> {
        (0..per_partition)
            .map(|i| Produce::json(p as i32, &record(p, i)))
            .collect()
    };
    // Partition 1 first, so that the task knows part1_only's type before partition 0's files.
    produce(&broker.bootstrap, &topic, &batch(1)).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let mut config = s3.sink_config(&bucket);
    for (k, v) in [
        ("topics", topic.as_str()),
        ("topics.dir", "lake"),
        ("flush.size", "500"),
        (
            "value.converter",
            "org.apache.kafka.connect.json.JsonConverter",
        ),
        ("value.converter.schemas.enable", "false"),
    ] {
        config.insert(k.into(), json!(v));
    }
    worker
        .create(&unique("fidelity"), Value::Object(config))
        .await;
    let ids_in = |objects: &[(String, Vec<i64>)]| -> usize {
        objects.iter().map(|(_, ids)| ids.len()).sum()
    };
    eventually("partition 1 in S3", Duration::from_secs(120), || async {
        (ids_in(&s3.ids(&bucket).await) >= per_partition).then_some(())
    })
    .await;
    produce(&broker.bootstrap, &topic, &batch(0)).await;
    let objects = eventually("every record in S3", Duration::from_secs(120), || async {
        let objects = s3.ids(&bucket).await;
        (ids_in(&objects) >= 2 * per_partition).then_some(objects)
    })
    .await;
    assert_eq!(ids_in(&objects), 2 * per_partition, "no record twice");

    // Every object into a local directory, as a lake reader would see the bucket.
    let root = tempfile::tempdir().expect("temp dir");
    for (key, _) in &objects {
        let path = root.path().join(key);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("folder");
        std::fs::write(&path, s3.get(&bucket, key).await).expect("write");
    }
    let read = read_with_lake_readers(&root.path().join("lake"));
    for reader in ["pyarrow", "duckdb"] {
        let seen = &read[reader];
        let columns: BTreeSet<&str> = seen["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().expect("a name"))
            .collect();
        assert_eq!(columns, COLUMNS.into_iter().collect(), "{reader}'s columns");
        let rows = seen["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 2 * per_partition, "{reader}'s rows");
        for (p, i) in (0..2).flat_map(|p| (0..per_partition).map(move |i| (p, i))) {
            let id = p * per_partition + i;
            let (row, want) = (&rows[id], record(p, i));
            assert_eq!(row["id"], json!(id), "{reader}");
            assert_eq!(
                bits(&row["shared"]),
                bits(&want["shared"]),
                "{reader}: shared of {id}: {} for {}",
                row["shared"],
                want["shared"]
            );
            assert_eq!(
                bits(&row["nested"]["a"]),
                bits(&want["nested"]["a"]),
                "{reader}: nested.a of {id}"
            );
            assert_eq!(
                row["part1_only"], want["part1_only"],
                "{reader}: part1_only of {id}"
            );
            assert!(row["never"].is_null(), "{reader}: never of {id}");
        }
    }
}
