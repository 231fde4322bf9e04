//! Where the S3 sink's CPU goes, stage by stage, without Kafka or S3: the benchmark's events
//! (`sluice_bench::s3_event`) through JSON decoding, Arrow and Parquet, each stage timed on its
//! own. `scripts/bench.sh s3-stages [records]` (default 200000).

use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use sluice_bench::{cpu_seconds, s3_event};
use sluice_connector_api::convert::converter_for;
use sluice_connector_api::{Props, Value};
use sluice_connectors::s3::config::TypeConflict;
use sluice_connectors::s3::file::{Admit, FileSettings, OpenFile};

/// CPU seconds of this (single-threaded) process so far.
fn cpu() -> f64 {
    cpu_seconds(std::process::id()).expect("/proc/<pid>/stat")
}

/// CPU seconds per million records since `start`.
fn per_million(start: f64, n: usize) -> f64 {
    (cpu() - start) / (n as f64 / 1e6)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let records: Vec<Vec<u8>> = (0..n as u64).map(s3_event).collect();
    let mut props = Props::new();
    props.insert("schemas.enable".into(), "false".into());
    let converter = converter_for("json", &props).expect("json converter");
    let settings = Arc::new(FileSettings {
        properties: WriterProperties::builder()
            .set_max_row_group_size(usize::MAX)
            .build(),
        row_group_bytes: 128 << 20,
        part_size: usize::MAX,
        policy: TypeConflict::Widen,
    });

    let t = cpu();
    for r in &records {
        let v: &serde_json::value::RawValue = serde_json::from_slice(r).expect("json");
        std::hint::black_box(v);
    }
    let scan = per_million(t, n);

    let t = cpu();
    let values: Vec<Value> = records
        .iter()
        .map(|r| converter.to_connect("t", Some(r)).expect("decodes").1)
        .collect();
    let decode = per_million(t, n);

    let t = cpu();
    let mut bytes = 0;
    for chunk in values.chunks(50_000) {
        let mut file = OpenFile::new("k".into(), None, Arc::clone(&settings), None);
        for v in chunk {
            assert_eq!(file.admit(v, None), Admit::Take);
            file.push(v.clone()).expect("push");
        }
        bytes += file.finish().expect("finish").memory();
    }
    let encode = per_million(t, n);

    // The sink's path for schemaless JSON: text straight into the columns once a file's schema is
    // fixed; the first chunk of each file (and anything the fast path refuses) is decoded.
    let t = cpu();
    let mut fast_bytes = 0;
    for chunk in records.chunks(50_000) {
        let mut file = OpenFile::new("k".into(), None, Arc::clone(&settings), None);
        for text in chunk {
            if !file.push_json(text).expect("push") {
                let v = converter.to_connect("t", Some(text)).expect("decodes").1;
                assert_eq!(file.admit(&v, None), Admit::Take);
                file.push(v).expect("push");
            }
        }
        fast_bytes += file.finish().expect("finish").memory();
    }
    let fast = per_million(t, n);
    assert_eq!(fast_bytes, bytes, "both paths write the same files");
    // Parquet encoding alone, of batches of 1,024 rows built once.
    let row = sluice_connectors::s3::columns::infer_row(&values[0])
        .expect("inferable")
        .expect("a struct");
    let batches: Vec<RecordBatch> = values
        .chunks(1024)
        .map(|c| {
            let refs: Vec<&Value> = c.iter().collect();
            RecordBatch::from(
                sluice_connectors::s3::columns::build_rows(&row, &refs).expect("rows"),
            )
        })
        .collect();
    let mut parquet_only = Vec::new();
    for (name, props) in [
        (
            "snappy, dictionary, page statistics (the sink's)",
            WriterProperties::builder(),
        ),
        (
            "no compression",
            WriterProperties::builder().set_compression(Compression::UNCOMPRESSED),
        ),
        (
            "snappy, no dictionary",
            WriterProperties::builder().set_dictionary_enabled(false),
        ),
        (
            "snappy, chunk statistics only",
            WriterProperties::builder().set_statistics_enabled(EnabledStatistics::Chunk),
        ),
        (
            "no compression, no dictionary, no statistics",
            WriterProperties::builder()
                .set_compression(Compression::UNCOMPRESSED)
                .set_dictionary_enabled(false)
                .set_statistics_enabled(EnabledStatistics::None),
        ),
    ] {
        let props = props.set_max_row_group_size(usize::MAX).build();
        let t = cpu();
        let mut size = 0;
        for group in batches.chunks(50) {
            let mut w = ArrowWriter::try_new(Vec::new(), group[0].schema(), Some(props.clone()))
                .expect("writer");
            for b in group {
                w.write(b).expect("write");
            }
            size += w.into_inner().expect("close").len();
        }
        parquet_only.push((name, per_million(t, n), size));
    }
    println!(
        "CPU s per million records ({n} records, {} MB of JSON, {} MB of Parquet):",
        records.iter().map(Vec::len).sum::<usize>() / 1_000_000,
        bytes / 1_000_000
    );
    println!("  serde_json scan only        {scan:.3}");
    println!("  JSON → Connect values       {decode:.3}");
    println!("  values → Arrow → Parquet    {encode:.3} (a clone per value included)");
    println!("  JSON text → Parquet (fast)  {fast:.3}");
    for (name, s, size) in parquet_only {
        println!(
            "  Arrow → Parquet, {name}: {s:.3} ({} MB)",
            size / 1_000_000
        );
    }
}
