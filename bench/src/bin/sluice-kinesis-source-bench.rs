//! Benchmark: Kinesis stream → Kafka topic, side by side in one run (see bench/README.md):
//!
//! - **bare SDK loop** (the limit): aws-sdk-kinesis `GetRecords` of up to 500 records, one loop
//!   per shard, all four at once, from `TRIM_HORIZON` to each shard's end; the records are
//!   counted and dropped;
//! - **Sluice**: a release `sluice` worker running the Kinesis source (one task reading the four
//!   shards, `kinesis.record.limit` 500) into a 4-partition topic;
//! - **boto3 loop** (the hand-written alternative): `bench/python/kinesis_boto3_source_baseline.py`,
//!   `get_records` of up to 500, shard after shard.
//!
//! All three read the same stream: N records (~380-byte JSON events, 2,000 partition keys) in a
//! 4-shard stream of one kinesalite process, put there before the contenders run. CPU seconds
//! per million records of each contender's own process, for its work only (the loops measure
//! themselves after start-up; the worker from the connector's creation until the topic holds
//! every record).
//!
//! usage: sluice-kinesis-source-bench [records]  (`SLUICE_BENCH_RECORD_LIMIT`: records per call)

use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;
use serde_json::json;
use sluice_bench::kinesis::{
    Emulator, Run, child_run, client, create_stream, events, put_events, table,
};
use sluice_bench::{
    Killed, Result, cpu_seconds, create_connector, create_topic, free_port, start_broker,
    wait_for_records, wait_healthy, worker_command,
};

/// Records per `GetRecords` call for all three: `SLUICE_BENCH_RECORD_LIMIT`, else the connector's
/// default (500); Kinesis allows up to 10,000.
fn limit() -> i32 {
    std::env::var("SLUICE_BENCH_RECORD_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}
const STREAM: &str = "source";

/// Reads one shard from its start to its end; returns the records read.
async fn read_shard(c: Client, shard: String) -> std::result::Result<u64, String> {
    read_to_end(c, shard).await.map_err(|e| e.to_string())
}

async fn read_to_end(c: Client, shard: String) -> Result<u64> {
    let mut iterator = c
        .get_shard_iterator()
        .stream_name(STREAM)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await?
        .shard_iterator
        .ok_or("no shard iterator")?;
    let mut records = 0;
    loop {
        let page = c
            .get_records()
            .shard_iterator(&iterator)
            .limit(limit())
            .send()
            .await?;
        records += page.records().len() as u64;
        if page.records().is_empty() && page.millis_behind_latest().unwrap_or(0) == 0 {
            return Ok(records);
        }
        match page.next_shard_iterator {
            Some(next) => iterator = next,
            None => return Ok(records),
        }
    }
}

/// The bare loop, run as a child process so that its CPU is its own: prints `{"wall", "cpu"}`.
async fn bare_sdk(endpoint: &str, n: u64) -> Result<()> {
    let c = client(endpoint).await;
    let (started, cpu0) = (Instant::now(), cpu_seconds(std::process::id())?);
    let shards = c.list_shards().stream_name(STREAM).send().await?;
    let mut reads = tokio::task::JoinSet::new();
    for s in shards.shards() {
        reads.spawn(read_shard(c.clone(), s.shard_id().to_owned()));
    }
    let mut records = 0;
    while let Some(read) = reads.join_next().await {
        records += read??;
    }
    if records != n {
        return Err(format!("read {records} records, not {n}").into());
    }
    let cpu = cpu_seconds(std::process::id())? - cpu0;
    println!(
        "{}",
        json!({"wall": started.elapsed().as_secs_f64(), "cpu": cpu})
    );
    Ok(())
}

/// Sluice from the connector's creation until the topic holds every record.
async fn through_sluice(bootstrap: &str, endpoint: &str, n: u64) -> Result<Run> {
    let http = reqwest::Client::new();
    let port = free_port()?;
    let id = format!("ksbench-{}", std::process::id());
    let topic = format!("{id}-records");
    create_topic(bootstrap, &topic, 4).await?;
    let worker = Killed(worker_command(bootstrap, &id, port)?.spawn()?);
    let pid = worker.0.id();
    wait_healthy(&http, port).await?;
    let config = json!({"name": "kinesis-source-bench", "config": {
        "connector.class": "KinesisSource", "tasks.max": "1", "kafka.topic": topic,
        "kinesis.stream": STREAM, "kinesis.region": "us-east-1", "kinesis.endpoint": endpoint,
        "aws.access.key.id": "bench", "aws.secret.access.key": "bench",
        "kinesis.position": "TRIM_HORIZON", "kinesis.record.limit": limit().to_string()
    }});
    let cpu0 = cpu_seconds(pid)?;
    let started = Instant::now();
    create_connector(&http, port, &config).await?;
    wait_for_records(bootstrap, &topic, 4, n, Duration::from_secs(1800)).await?;
    Ok(Run {
        name: "Sluice Kinesis source (worker process)".into(),
        records: n,
        wall: started.elapsed().as_secs_f64(),
        cpu: cpu_seconds(pid)? - cpu0,
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bare-sdk") {
        return bare_sdk(&args[2], args[3].parse()?).await;
    }
    let n: u64 = args.get(1).map_or(Ok(200_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let (_broker, bootstrap) = start_broker(&dir.path().join("kafka"))?;
    let kinesis = Emulator::start()?;
    let endpoint = kinesis.endpoint.clone();
    let c = client(&endpoint).await;
    create_stream(&c, STREAM).await?;
    put_events(&c, STREAM, &events(n), 5).await?;

    eprintln!("bare SDK loop ...");
    let bare = child_run(
        "bare aws-sdk-kinesis loop",
        n,
        Command::new(std::env::current_exe()?).args(["bare-sdk", &endpoint, &n.to_string()]),
    )?;

    eprintln!("sluice ...");
    let sluice = through_sluice(&bootstrap, &endpoint, n).await?;

    eprintln!("boto3 loop ...");
    let python = std::env::var("SLUICE_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/kinesis_boto3_source_baseline.py"
    );
    let boto = child_run(
        "Python boto3 loop",
        n,
        Command::new(python).args([script, &endpoint, STREAM, &limit().to_string()]),
    )?;

    println!("{n} records (~380 B JSON) read from a 4-shard kinesalite stream, one run:\n");
    print!("{}", table(&[bare, sluice, boto]));
    Ok(())
}
