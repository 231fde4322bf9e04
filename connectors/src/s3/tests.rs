//! The S3 sink task's exactly-once paths, with the runtime played by the kit's test double and
//! the `file://` store (with injected faults): an intent that cannot be written while later records
//! wait, a batch delivered again after a failed `put`, a stale writer, and the columns a task learns.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_connector_api::testing::{FakeSinkControl, Group, props};
use sluice_connector_api::{ConnectError, Offsets, SinkRecord, SinkTask, TopicPartition};

use super::S3SinkTask;
use super::store::faults::Faults;

const TOPIC: &str = "events";
const CONNECTOR: &str = "lake";

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, partition)
}

/// Records `range` of `partition` as schemaless JSON text: `{"id": <offset>, "p": <partition>}`.
fn records(partition: i32, range: std::ops::Range<i64>) -> Vec<SinkRecord> {
    range
        .map(|o| {
            let json = format!(r#"{{"id":{o},"p":{partition}}}"#);
            FakeSinkControl::record(TOPIC, partition, o, json.as_bytes())
        })
        .collect()
}

async fn task(
    dir: &Path,
    control: &Arc<FakeSinkControl>,
    faults: Option<Arc<Faults>>,
    extra: &[(&str, &str)],
) -> S3SinkTask {
    let url = format!("file://{}", dir.display());
    let mut p = props(&[
        ("connector.class", super::CLASS),
        ("topics", TOPIC),
        ("store.url", &url),
        ("flush.size", "100"),
        ("s3.retry.backoff.ms", "1"),
    ]);
    p.extend(props(extra));
    let mut task = match faults {
        Some(f) => S3SinkTask::with_faults(f),
        None => S3SinkTask::default(),
    };
    task.start(control.context(CONNECTOR, 0), &p)
        .await
        .expect("starts");
    task
}

/// What the runtime does at a commit: ask `pre_commit` and commit its answer.
async fn commit(task: &mut S3SinkTask, control: &FakeSinkControl, position: Offsets) -> Offsets {
    let safe = task.pre_commit(position).await.expect("pre_commit");
    for (tp, offset) in &safe {
        control.group().commit(tp, *offset);
    }
    safe
}

/// The Parquet objects under a local store's `dir` (not the hidden files of uploads in progress),
/// sorted.
pub(super) fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("named").to_string_lossy();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".parquet") && !name.starts_with('.') {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every Parquet object under `dir`: its path and its rows' `p` and `id` columns.
fn objects(dir: &Path) -> Vec<(String, Vec<(i64, i64)>)> {
    parquet_files(dir)
        .into_iter()
        .map(|path| {
            let file = std::fs::File::open(&path).expect("opens");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet")
                .build()
                .expect("reader");
            let mut rows = Vec::new();
            for batch in reader {
                let batch = batch.expect("batch");
                let ids = int_column(&batch, "id");
                let ps = int_column(&batch, "p");
                rows.extend(
                    ids.iter()
                        .zip(ps.iter())
                        .map(|(i, p)| (p.expect("p is never null"), i.expect("id is never null"))),
                );
            }
            (path.display().to_string(), rows)
        })
        .collect()
}

fn int_column(batch: &RecordBatch, name: &str) -> Int64Array {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("int64")
        .clone()
}

/// How often each (partition, id) is in the objects.
fn counts(dir: &Path) -> BTreeMap<(i64, i64), usize> {
    let mut counts = BTreeMap::new();
    for (_, rows) in objects(dir) {
        for row in rows {
            *counts.entry(row).or_default() += 1;
        }
    }
    counts
}

fn assert_each_once(dir: &Path, expected: impl IntoIterator<Item = (i64, i64)>) {
    let counts = counts(dir);
    let expected: Vec<(i64, i64)> = expected.into_iter().collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|r| !counts.contains_key(r))
        .collect();
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty() && doubled.is_empty() && counts.len() == expected.len(),
        "missing {} records (first {:?}), doubled {} (first {:?}), {} in all; objects: {:?}",
        missing.len(),
        missing.first(),
        doubled.len(),
        doubled.first(),
        counts.len(),
        objects(dir)
            .iter()
            .map(|(k, rows)| (
                k.rsplit('/').next().unwrap_or_default().to_owned(),
                rows.len()
            ))
            .collect::<Vec<_>>()
    );
}

fn position(partition: i32, next: i64) -> Offsets {
    Offsets::from([(tp(partition), next)])
}

/// Issue 23, 1: records waiting behind an unpublished set are not committed past.
#[tokio::test]
async fn records_waiting_behind_an_unpublished_set_are_never_committed_past() {
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = Arc::new(Faults::default());
    let control = FakeSinkControl::new();
    let mut a = task(dir.path(), &control, Some(Arc::clone(&faults)), &[]).await;
    a.open(&[tp(0)]).await.expect("open");
    // The intent of [0, 100) cannot be written (503); 100..299 wait in the backlog.
    faults.fail("PutObject", ".intent.json");
    a.put(records(0, 0..300)).await.expect("put");
    assert!(
        control.paused().contains(&tp(0)),
        "paused while publishing fails"
    );
    faults.heal();
    // A revocation's commit once the retry is due: the set is published then, while the
    // backlog is still only in memory. (Until the retry is due the partition is left out.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let safe = loop {
        let safe = commit(&mut a, &control, position(0, 300)).await;
        if !safe.is_empty() || std::time::Instant::now() > deadline {
            break safe;
        }
        tokio::task::yield_now().await;
    };
    assert!(
        safe.get(&tp(0)).is_some_and(|o| *o <= 100),
        "pre_commit answered {safe:?} while 100..299 are only in memory"
    );
    a.close(&[tp(0)]).await.expect("close");
    a.stop().await.expect("stop");

    // The next owner reads from the committed offset and writes the rest.
    let control_b = FakeSinkControl::in_group(Arc::clone(control.group()));
    let mut b = task(dir.path(), &control_b, None, &[]).await;
    b.open(&[tp(0)]).await.expect("open");
    let from = control.group().committed(&tp(0)).expect("committed");
    b.put(records(0, from..300)).await.expect("put");
    commit(&mut b, &control_b, position(0, 300)).await;
    assert_each_once(dir.path(), (0..300).map(|i| (0, i)));
    assert_eq!(control.group().committed(&tp(0)), Some(300));
}

/// Issue 23, 2: a batch delivered again after a failed `put` cannot reopen a set below what
/// was published.
#[tokio::test]
async fn a_batch_delivered_again_after_a_failed_put_writes_nothing_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let control = FakeSinkControl::new();
    let mut t = task(dir.path(), &control, None, &[]).await;
    t.open(&[tp(0), tp(1)]).await.expect("open");
    t.put(records(0, 0..50)).await.expect("put");
    // The batch closes partition 0's set at 99, then a record of partition 1 does not decode
    // and its dead letter is not acknowledged: the put fails retriably.
    let mut batch = records(0, 50..100);
    batch.push(FakeSinkControl::record(TOPIC, 1, 0, b"not json"));
    control.fail_next_report(ConnectError::retriable("the DLQ produce timed out"));
    let failed = t.put(batch.clone()).await.expect_err("the report failed");
    assert!(failed.is_retriable());
    // The runtime delivers the same batch again; this time the dead letter is written.
    t.put(batch).await.expect("put again");
    t.put(records(0, 100..200)).await.expect("put");
    commit(&mut t, &control, Offsets::from([(tp(0), 200), (tp(1), 1)])).await;
    assert_each_once(dir.path(), (0..200).map(|i| (0, i)));
    let reported = control.reported();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!((reported[0].origin.partition, reported[0].offset), (1, 0));
}

/// Issue 23, 3: a stale writer, held at its intent while a newer owner publishes another cut of
/// the same offsets, is fenced. `first_set_published` chooses whether the stale writer had
/// published a set before (its write expects an ETag) or not (it expects no intent at all).
async fn a_stale_writer_is_fenced(first_set_published: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = Arc::new(Faults::default());
    let group = Group::new();
    // The stale task runs an older config (flush.size 60), as after a config update.
    let control_a = FakeSinkControl::in_group(Arc::clone(&group));
    let mut a = task(
        dir.path(),
        &control_a,
        Some(Arc::clone(&faults)),
        &[("flush.size", "60")],
    )
    .await;
    a.open(&[tp(0)]).await.expect("open");
    let start = if first_set_published {
        a.put(records(0, 0..60)).await.expect("put");
        commit(&mut a, &control_a, position(0, 60)).await;
        60
    } else {
        0
    };
    let hold = faults.hold("PutObject", ".intent.json");
    let stale_batch = records(0, start..start + 60);
    let stale = tokio::spawn(async move {
        let result = a.put(stale_batch).await;
        (a, result)
    });
    hold.reached().await;
    assert_eq!(
        group.committed(&tp(0)),
        Some(start),
        "the stale task committed its set's start"
    );

    // The partition moved: the new owner cuts [start, start+100) and [start+100, start+200).
    let control_b = FakeSinkControl::in_group(Arc::clone(&group));
    let mut b = task(dir.path(), &control_b, None, &[]).await;
    b.open(&[tp(0)]).await.expect("open");
    b.put(records(0, start..start + 200)).await.expect("put");
    commit(&mut b, &control_b, position(0, start + 200)).await;
    assert_eq!(group.committed(&tp(0)), Some(start + 200));
    let intent = std::fs::read(
        dir.path()
            .join(format!("topics/_sluice/{CONNECTOR}/{TOPIC}+0.intent.json")),
    )
    .expect("an intent");

    // The stale task's intent write lands now: it must be refused.
    hold.release();
    let (mut a, result) = stale.await.expect("joined");
    result.expect("a fenced task goes on");
    let after = std::fs::read(
        dir.path()
            .join(format!("topics/_sluice/{CONNECTOR}/{TOPIC}+0.intent.json")),
    )
    .expect("an intent");
    assert_eq!(
        String::from_utf8_lossy(&after),
        String::from_utf8_lossy(&intent),
        "the stale write replaced the new owner's intent"
    );
    // It answers nothing for the partition, and reads it again from the committed offset: the
    // records of the put that asks for the rewind are from before it, and are ignored.
    let safe = a
        .pre_commit(position(0, start + 60))
        .await
        .expect("pre_commit");
    assert!(safe.is_empty(), "{safe:?}");
    a.put(records(0, start + 60..start + 120))
        .await
        .expect("put");
    assert_eq!(
        control_a.take_resets(),
        vec![position(0, start + 200)],
        "the fenced task rewinds to the committed offset"
    );
    let safe = a
        .pre_commit(position(0, start + 200))
        .await
        .expect("pre_commit");
    assert!(
        safe.is_empty(),
        "nothing is committed while rewinding: {safe:?}"
    );
    assert_each_once(dir.path(), (0..start + 200).map(|i| (0, i)));
    // From the rewind on, the partition is the task's again (its intent expects the newest).
    a.put(records(0, start + 200..start + 260))
        .await
        .expect("put");
    commit(&mut a, &control_a, position(0, start + 260)).await;
    assert_eq!(group.committed(&tp(0)), Some(start + 260));
    assert_each_once(dir.path(), (0..start + 260).map(|i| (0, i)));
}

#[tokio::test]
async fn a_stale_writer_that_found_no_intent_is_fenced() {
    a_stale_writer_is_fenced(false).await;
}

#[tokio::test]
async fn a_stale_writer_that_published_before_is_fenced() {
    a_stale_writer_is_fenced(true).await;
}

/// Issue 14: `rotate.interval.ms` reads the record time `timestamp.extractor` names, whatever the
/// partitioner (here the default one): the field, not the Kafka timestamp.
#[tokio::test]
async fn rotate_interval_reads_the_record_field_with_the_default_partitioner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let control = FakeSinkControl::new();
    let mut t = task(
        dir.path(),
        &control,
        None,
        &[
            ("rotate.interval.ms", "5000"),
            ("timestamp.extractor", "RecordField"),
            ("timestamp.field", "ts"),
        ],
    )
    .await;
    t.open(&[tp(0)]).await.expect("open");
    // Kafka timestamps are 0..20 ms (the offsets); the field says one record per second. The
    // values arrive decoded, as the runtime delivers them to a sink that reads value fields.
    let ctx = control.context(CONNECTOR, 0);
    let mut batch = Vec::new();
    for o in 0..20 {
        let json = format!(r#"{{"id":{o},"p":0,"ts":{}}}"#, o * 1000);
        let mut record = FakeSinkControl::record(TOPIC, 0, o, json.as_bytes());
        let (_, value) = ctx
            .decode_value(&record)
            .await
            .expect("JSON")
            .expect("a value");
        record.record.value = value;
        record.value_is_json = false;
        batch.push(record);
    }
    t.put(batch).await.expect("put");
    commit(&mut t, &control, position(0, 20)).await;
    let sizes: Vec<usize> = objects(dir.path()).iter().map(|(_, r)| r.len()).collect();
    assert_eq!(
        sizes,
        [5, 5, 5],
        "a file per 5 s of field time; the last is open"
    );
    t.stop().await.expect("stop");
}

/// Issue 14: a store that can never be written (here a directory under a regular file, which
/// even root cannot create) fails the task with a readable error instead of retrying for ever
/// with its partitions paused.
#[tokio::test]
async fn a_store_that_cannot_be_written_fails_the_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").expect("file");
    let control = FakeSinkControl::new();
    let mut t = task(&file.join("lake"), &control, None, &[("flush.size", "10")]).await;
    // The first call that touches the store is the intent read at assignment.
    let error = t
        .open(&[tp(0)])
        .await
        .expect_err("cannot be read or written");
    assert!(!error.is_retriable(), "{}", error.trace());
    assert!(
        error.trace().contains("not-a-directory"),
        "{}",
        error.trace()
    );
}
