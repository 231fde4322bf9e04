//! Benchmark: Kafka topic → Kinesis stream, side by side in one run (see bench/README.md):
//!
//! - **bare SDK loop** (the limit): aws-sdk-kinesis `PutRecords` of 500 records, five calls in
//!   flight, from events made before the clock starts, with no ordering rule and no Kafka;
//! - **Sluice**: a release `sluice` worker running the Kinesis sink (one task, five calls in
//!   flight, records of one partition key in order) from a 4-partition topic;
//! - **boto3 loop** (the hand-written alternative): `bench/python/kinesis_boto3_baseline.py`,
//!   `put_records` of 500 records one call at a time.
//!
//! All three send the same N records (~380-byte JSON events, 2,000 partition keys) to their own
//! 4-shard stream in one kinesalite process. The emulator bounds records/s; the figure to compare
//! is CPU seconds per million records of each contender's own process, for its work only (the
//! loops measure themselves after start-up and imports; the worker from the connector's creation
//! to its last commit).
//!
//! usage: sluice-kinesis-bench [records]

use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::json;
use sluice_bench::kinesis::{
    Emulator, KEYS, Run, child_run, client, create_stream, events, key, put_events, table,
};
use sluice_bench::{
    CommittedOffsets, Killed, Result, cpu_seconds, create_connector, create_topic, free_port,
    s3_event, start_broker, wait_healthy, worker_command,
};

const IN_FLIGHT: usize = 5;

/// The bare loop, run as a child process so that its CPU is its own: prints `{"wall", "cpu"}`.
async fn bare_sdk(endpoint: &str, stream: &str, n: u64) -> Result<()> {
    let c = client(endpoint).await;
    let events = events(n);
    let (started, cpu0) = (Instant::now(), cpu_seconds(std::process::id())?);
    put_events(&c, stream, &events, IN_FLIGHT).await?;
    let cpu = cpu_seconds(std::process::id())? - cpu0;
    println!(
        "{}",
        json!({"wall": started.elapsed().as_secs_f64(), "cpu": cpu})
    );
    Ok(())
}

fn produce(bootstrap: &str, topic: &str, n: u64) -> Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .create()?;
    for i in 0..n {
        let (k, value) = (key(i), s3_event(i));
        let partition = ((i % KEYS) % 4) as i32;
        loop {
            let record = BaseRecord::to(topic)
                .key(&k)
                .payload(&value)
                .partition(partition);
            match producer.send(record) {
                Ok(()) => break,
                Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Sluice from the connector's creation to its last commit: (wall, worker CPU).
async fn through_sluice(
    bootstrap: &str,
    topic: &str,
    endpoint: &str,
    stream: &str,
    n: u64,
) -> Result<Run> {
    let http = reqwest::Client::new();
    let port = free_port()?;
    let id = format!("kbench-{}", std::process::id());
    let worker = Killed(
        worker_command(bootstrap, &id, port)?
            .env("SLUICE_CONSUMER_FETCH_WAIT_MAX_MS", "50")
            // Commits show when the last record is in: every second, not every minute.
            .env("SLUICE_OFFSET_FLUSH_INTERVAL_MS", "1000")
            .spawn()?,
    );
    let pid = worker.0.id();
    wait_healthy(&http, port).await?;
    let name = "kinesis-bench";
    let config = json!({"name": name, "config": {
        "connector.class": "KinesisSink", "topics": topic, "tasks.max": "1",
        "kinesis.stream": stream, "kinesis.region": "us-east-1", "kinesis.endpoint": endpoint,
        "aws.access.key.id": "bench", "aws.secret.access.key": "bench",
        "kinesis.max.in.flight": IN_FLIGHT.to_string(), "kinesis.linger.ms": "20"
    }});
    let cpu0 = cpu_seconds(pid)?;
    let started = Instant::now();
    create_connector(&http, port, &config).await?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let offsets = CommittedOffsets::new(bootstrap, name, topic, 4)?;
    while tokio::task::block_in_place(|| offsets.sum()) < n as i64 {
        if Instant::now() > deadline {
            return Err("the sink did not commit every record within 30 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Run {
        name: "Sluice Kinesis sink (worker process)".into(),
        records: n,
        wall: started.elapsed().as_secs_f64(),
        cpu: cpu_seconds(pid)? - cpu0,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bare-sdk") {
        return bare_sdk(&args[2], &args[3], args[4].parse()?).await;
    }
    let n: u64 = args.get(1).map_or(Ok(200_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let (_broker, bootstrap) = start_broker(&dir.path().join("kafka"))?;
    let kinesis = Emulator::start()?;
    let endpoint = kinesis.endpoint.clone();
    let c = client(&endpoint).await;
    let topic = format!("kinesis-bench-{}", std::process::id());
    create_topic(&bootstrap, &topic, 4).await?;
    produce(&bootstrap, &topic, n)?;

    eprintln!("bare SDK loop ...");
    create_stream(&c, "bare").await?;
    let bare = child_run(
        "bare aws-sdk-kinesis loop",
        n,
        Command::new(std::env::current_exe()?).args([
            "bare-sdk",
            &endpoint,
            "bare",
            &n.to_string(),
        ]),
    )?;

    eprintln!("sluice ...");
    create_stream(&c, "sluice").await?;
    let sluice = through_sluice(&bootstrap, &topic, &endpoint, "sluice", n).await?;

    eprintln!("boto3 loop ...");
    create_stream(&c, "boto3").await?;
    let python = std::env::var("SLUICE_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/kinesis_boto3_baseline.py"
    );
    let boto = child_run(
        "Python boto3 loop",
        n,
        Command::new(python).args([
            script,
            &endpoint,
            "boto3",
            &n.to_string(),
            &KEYS.to_string(),
        ]),
    )?;

    println!("{n} records (~380 B JSON, {KEYS} keys) into 4-shard kinesalite streams, one run:\n");
    print!("{}", table(&[bare, sluice, boto]));
    Ok(())
}
