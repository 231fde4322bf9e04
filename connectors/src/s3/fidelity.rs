//! Values reach Parquet as they were produced: every double bit for bit on the fast path (JSON
//! text straight into columns) and on the decoded path, integers exact in a double column or
//! refused, Connect's required fields as required columns, and every column a topic's records
//! have in every file, across partitions and task restarts.

use std::sync::Arc;

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Repetition;
use parquet::file::properties::WriterProperties;
use proptest::prelude::*;
use sluice_connector_api::convert::JsonConverter;
use sluice_connector_api::testing::{FakeSinkControl, props};
use sluice_connector_api::{
    Converter, Field, Schema, SchemaType, SinkTask, Struct, TopicPartition, Value,
};

use super::S3SinkTask;
use super::config::TypeConflict;
use super::file::{Admit, CHUNK_ROWS, FileSettings, OpenFile};
use super::tests::parquet_files;

fn settings() -> Arc<FileSettings> {
    Arc::new(FileSettings {
        properties: WriterProperties::builder().build(),
        row_group_bytes: 1 << 20,
        part_size: 5 << 20,
        policy: TypeConflict::Widen,
    })
}

fn decode(text: &str) -> Value {
    JsonConverter::new(false)
        .to_connect("t", Some(text.as_bytes()))
        .expect("valid JSON")
        .1
}

fn batches(bytes: Bytes) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("parquet")
        .build()
        .expect("reader")
        .map(|b| b.expect("batch"))
        .collect()
}

fn doubles(batches: &[RecordBatch], name: &str) -> Vec<Option<u64>> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b
                .column_by_name(name)
                .expect("column")
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("double")
                .clone();
            (0..c.len())
                .map(move |i| (!c.is_null(i)).then(|| c.value(i).to_bits()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Writes `{"x": v}` for every double: the first chunk decoded (as the converter makes it), the
/// rest as JSON text on the fast path; returns what Parquet holds.
fn through_both_paths(values: &[f64]) -> Vec<Option<u64>> {
    let mut file = OpenFile::new("k".into(), None, settings(), None);
    for (i, v) in values.iter().enumerate() {
        let text = serde_json::json!({"x": v}).to_string();
        let taken = file.push_json(text.as_bytes()).expect("push");
        assert_eq!(
            taken,
            i >= CHUNK_ROWS,
            "record {i}: fast path after the first chunk only"
        );
        if !taken {
            let value = decode(&text);
            assert_eq!(file.admit(&value, None), Admit::Take, "{text}");
            file.push(value).expect("push");
        }
    }
    let finished = file.finish().expect("finish");
    doubles(&batches(finished.tail_for_tests()), "x")
}

const EDGES: &[f64] = &[
    0.0,
    -0.0,
    f64::MIN_POSITIVE,
    5e-324,
    -5e-324,
    2.225_073_858_507_201e-308,
    f64::MAX,
    f64::MIN,
    0.195_096_176_608_499_98,
    1_931.392_860_933_903_4,
    9_007_199_254_740_993.0,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn every_double_reaches_parquet_bit_for_bit_on_both_paths(
        random in proptest::collection::vec(
            any::<u64>().prop_map(f64::from_bits).prop_filter("finite", |v| v.is_finite()),
            CHUNK_ROWS + 600,
        )
    ) {
        let values: Vec<f64> = EDGES.iter().copied().chain(random).collect();
        let stored = through_both_paths(&values);
        let wanted: Vec<Option<u64>> = values.iter().map(|v| Some(v.to_bits())).collect();
        prop_assert_eq!(stored, wanted);
    }
}

#[test]
fn integers_in_a_double_column_are_exact_or_refused() {
    let exact = [
        -(1i64 << 53),
        -(1 << 53) + 1,
        -1,
        0,
        1,
        (1 << 53) - 1,
        1 << 53,
    ];
    let inexact = [i64::MIN, -(1 << 53) - 1, (1 << 53) + 1, i64::MAX];
    let mut file = OpenFile::new("k".into(), None, settings(), None);
    // A first chunk that fixes x as a double column.
    for i in 0..CHUNK_ROWS {
        let value = decode(&format!("{{\"x\":{}.5}}", i));
        assert_eq!(file.admit(&value, None), Admit::Take);
        file.push(value).expect("push");
    }
    for v in exact {
        let text = format!("{{\"x\":{v}}}");
        assert!(
            file.push_json(text.as_bytes()).expect("push"),
            "{text} fits exactly"
        );
        let value = decode(&text);
        assert_eq!(file.admit(&value, None), Admit::Take, "{text}");
        file.push(value).expect("push");
    }
    for v in inexact {
        let text = format!("{{\"x\":{v}}}");
        assert!(
            !file.push_json(text.as_bytes()).expect("push"),
            "{text} is refused"
        );
        assert!(
            matches!(file.admit(&decode(&text), None), Admit::Reject(m) if m.contains("exactly")),
            "{text}"
        );
    }
    let stored = doubles(
        &batches(file.finish().expect("finish").tail_for_tests()),
        "x",
    );
    let tail: Vec<f64> = stored[CHUNK_ROWS..]
        .iter()
        .map(|b| f64::from_bits(b.expect("not null")))
        .collect();
    let wanted: Vec<f64> = exact.iter().flat_map(|v| [*v as f64, *v as f64]).collect();
    assert_eq!(tail, wanted);
    for (got, v) in tail.iter().step_by(2).zip(exact) {
        assert_eq!(*got as i64, v, "{v} is held exactly");
    }
}

#[test]
fn required_connect_fields_are_required_columns() {
    let schema = Arc::new(Schema::structure(vec![
        Field {
            name: "id".into(),
            schema: Schema::new(SchemaType::Int64),
        },
        Field {
            name: "note".into(),
            schema: Schema::new(SchemaType::String).optional(),
        },
    ]));
    let mut file = OpenFile::new("k".into(), Some(&schema), settings(), None);
    let value = Value::Struct(Struct::new().with("id", 1i64).with("note", Value::Null));
    assert_eq!(file.admit(&value, Some(&schema)), Admit::Take);
    file.push(value).expect("push");
    let bytes = file.finish().expect("finish").tail_for_tests();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
    let columns = reader.parquet_schema().columns();
    let repetition: Vec<(String, Repetition)> = columns
        .iter()
        .map(|c| {
            (
                c.name().to_owned(),
                c.self_type().get_basic_info().repetition(),
            )
        })
        .collect();
    assert_eq!(
        repetition,
        vec![
            ("id".to_owned(), Repetition::REQUIRED),
            ("note".to_owned(), Repetition::OPTIONAL)
        ]
    );
    let arrow = reader.schema();
    assert!(!arrow.field_with_name("id").expect("id").is_nullable());
}

/// Columns of every file of a local store: (file name, [(column, Arrow type)]).
fn file_columns(dir: &std::path::Path) -> Vec<(String, Vec<(String, DataType)>)> {
    parquet_files(dir)
        .into_iter()
        .map(|path| {
            let file = std::fs::File::open(&path).expect("opens");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
            let columns = reader
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect();
            let name = path
                .file_name()
                .expect("named")
                .to_string_lossy()
                .into_owned();
            (name, columns)
        })
        .collect()
}

fn event(partition: i32, offset: i64, x: Option<i64>) -> sluice_connector_api::SinkRecord {
    let x = x.map_or("null".to_owned(), |v| v.to_string());
    let json = format!(r#"{{"id":{offset},"x":{x},"never":null}}"#);
    FakeSinkControl::record("events", partition, offset, json.as_bytes())
}

async fn sink(dir: &std::path::Path, control: &Arc<FakeSinkControl>) -> S3SinkTask {
    let url = format!("file://{}", dir.display());
    let mut task = S3SinkTask::default();
    let p = props(&[
        ("connector.class", super::CLASS),
        ("topics", "events"),
        ("store.url", &url),
        ("flush.size", "10"),
    ]);
    task.start(control.context("lake", 0), &p)
        .await
        .expect("starts");
    task
}

#[tokio::test]
async fn every_file_has_every_column_known_across_partitions_and_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let control = FakeSinkControl::new();
    let (p0, p1, p2) = (
        TopicPartition::new("events", 0),
        TopicPartition::new("events", 1),
        TopicPartition::new("events", 2),
    );
    let mut a = sink(dir.path(), &control).await;
    a.open(&[p0.clone(), p1.clone()]).await.expect("open");
    // Partition 0's records have x; partition 1's never do; "never" is null everywhere.
    let mut batch: Vec<_> = (0..10).map(|o| event(0, o, Some(o * 7))).collect();
    batch.extend((0..10).map(|o| event(1, o, None)));
    a.put(batch).await.expect("put");
    a.stop().await.expect("stop");
    // A new task (a restart, or another worker) learns the columns from the store.
    let mut b = sink(dir.path(), &FakeSinkControl::new()).await;
    b.open(&[p2]).await.expect("open");
    b.put((0..10).map(|o| event(2, o, None)).collect())
        .await
        .expect("put");
    let files = file_columns(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    for (name, columns) in &files {
        assert_eq!(
            columns,
            &vec![
                ("id".to_owned(), DataType::Int64),
                ("x".to_owned(), DataType::Int64),
                ("never".to_owned(), DataType::Null),
            ],
            "{name}"
        );
    }
    // The values: x where it was produced, null elsewhere.
    let values = |name: &str| -> Vec<Option<i64>> {
        let path = parquet_files(dir.path())
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == name))
            .unwrap_or_else(|| panic!("no {name}"));
        let b = batches(Bytes::from(std::fs::read(path).expect("read")));
        let c = b[0]
            .column_by_name("x")
            .expect("x")
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64")
            .clone();
        (0..c.len())
            .map(|i| (!c.is_null(i)).then(|| c.value(i)))
            .collect()
    };
    assert_eq!(
        values("events+0+0000000000.parquet"),
        (0..10).map(|o| Some(o * 7)).collect::<Vec<_>>()
    );
    assert_eq!(values("events+1+0000000000.parquet"), vec![None; 10]);
}
