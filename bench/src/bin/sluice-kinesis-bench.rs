//! Benchmark: Kafka topic → Kinesis stream, side by side in one run (see bench/README.md):
//!
//! - **bare SDK loop** (the limit): aws-sdk-kinesis `PutRecords` of 500 records, five calls in
//!   flight, from memory, with no ordering rule and no Kafka;
//! - **Sluice**: a release `sluice` worker running the Kinesis sink (one task, five calls in
//!   flight, records of one partition key in order) from a 4-partition topic;
//! - **boto3 loop** (the hand-written alternative): `bench/python/kinesis_boto3_baseline.py`,
//!   `put_records` of 500 records one call at a time.
//!
//! All three send the same N records (~380-byte JSON events, 2,000 partition keys) to their own
//! 4-shard stream in one kinesalite process. The emulator bounds records/s; the figure to compare
//! is CPU seconds per million records of each contender's own process.
//!
//! usage: sluice-kinesis-bench [records]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use rdkafka::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::{Value, json};
use sluice_bench::{
    Killed, Result, clock_ticks, committed, cpu_seconds, create_topic, free_port, s3_event,
    sluice_bin, wait_healthy, wait_port,
};

const KEYS: u64 = 2_000;
const IN_FLIGHT: usize = 5;

fn key(i: u64) -> String {
    format!("device-{}", i % KEYS)
}

async fn client(endpoint: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .build();
    Client::from_conf(config)
}

async fn create_stream(c: &Client, name: &str) -> Result<()> {
    c.create_stream()
        .stream_name(name)
        .shard_count(4)
        .send()
        .await?;
    loop {
        let s = c.describe_stream_summary().stream_name(name).send().await?;
        let active = s
            .stream_description_summary()
            .is_some_and(|d| d.stream_status() == &StreamStatus::Active);
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bare loop, run as a child process so that its CPU is its own: prints `{"wall": s}`.
async fn bare_sdk(endpoint: &str, stream: &str, n: u64) -> Result<()> {
    let c = client(endpoint).await;
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let mut i = 0;
    while i < n || !calls.is_empty() {
        while i < n && calls.len() < IN_FLIGHT {
            let entries: Vec<PutRecordsRequestEntry> = (i..(i + 500).min(n))
                .map(|j| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(key(j))
                        .data(Blob::new(s3_event(j)))
                        .build()
                })
                .collect::<std::result::Result<_, _>>()?;
            i = (i + 500).min(n);
            let (c, stream) = (c.clone(), stream.to_owned());
            calls.spawn(async move {
                c.put_records()
                    .stream_name(stream)
                    .set_records(Some(entries))
                    .send()
                    .await
            });
        }
        if let Some(done) = calls.join_next().await {
            let out = done??;
            if out.failed_record_count().unwrap_or(0) > 0 {
                return Err("the emulator refused records".into());
            }
        }
    }
    println!("{}", json!({"wall": started.elapsed().as_secs_f64()}));
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
) -> Result<(f64, f64)> {
    let http = reqwest::Client::new();
    let port = free_port()?;
    let id = format!("kbench-{}", std::process::id());
    let worker = Killed(
        Command::new(sluice_bin()?)
            .env("SLUICE_BOOTSTRAP_SERVERS", bootstrap)
            .env("SLUICE_GROUP_ID", format!("{id}-cluster"))
            .env("SLUICE_CONFIG_STORAGE_TOPIC", format!("{id}-configs"))
            .env("SLUICE_OFFSET_STORAGE_TOPIC", format!("{id}-offsets"))
            .env("SLUICE_STATUS_STORAGE_TOPIC", format!("{id}-status"))
            .env("SLUICE_REST_PORT", port.to_string())
            .env("SLUICE_REST_HOST_NAME", "127.0.0.1")
            .env("SLUICE_CONSUMER_FETCH_WAIT_MAX_MS", "50")
            // Commits show when the last record is in: every second, not every minute.
            .env("SLUICE_OFFSET_FLUSH_INTERVAL_MS", "1000")
            .env("SLUICE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let pid = worker.0.id();
    wait_healthy(&http, port).await?;
    let url = format!("http://127.0.0.1:{port}");
    let name = "kinesis-bench";
    let config = json!({"name": name, "config": {
        "connector.class": "KinesisSink", "topics": topic, "tasks.max": "1",
        "kinesis.stream": stream, "kinesis.region": "us-east-1", "kinesis.endpoint": endpoint,
        "aws.access.key.id": "bench", "aws.secret.access.key": "bench",
        "kinesis.max.in.flight": IN_FLIGHT.to_string(), "kinesis.linger.ms": "20"
    }});
    let cpu0 = cpu_seconds(pid)?;
    let started = Instant::now();
    let r = http
        .post(format!("{url}/connectors"))
        .json(&config)
        .send()
        .await?;
    if !r.status().is_success() {
        return Err(format!("creating the connector: {}", r.text().await?).into());
    }
    let deadline = Instant::now() + Duration::from_secs(1800);
    while committed(&http, &url, name).await < n as i64 {
        if Instant::now() > deadline {
            return Err("the sink did not commit every record within 30 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((started.elapsed().as_secs_f64(), cpu_seconds(pid)? - cpu0))
}

fn row(name: &str, n: u64, wall: f64, cpu: f64, base_cpu: f64) -> String {
    let per_million = cpu / n as f64 * 1e6;
    format!(
        "| {name} | {:.0} | {per_million:.1} | {:.2}x |",
        n as f64 / wall,
        per_million / (base_cpu / n as f64 * 1e6)
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bare-sdk") {
        return bare_sdk(&args[2], &args[3], args[4].parse()?).await;
    }
    let n: u64 = args.get(1).map_or(Ok(200_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let kafka_port = free_port()?;
    let _broker = Killed(
        Command::new(sluice_bin()?)
            .args(["broker", "--port", &kafka_port.to_string(), "--data-dir"])
            .arg(dir.path().join("kafka"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_port(kafka_port)?;
    let bootstrap = format!("127.0.0.1:{kafka_port}");
    let kinesalite = std::env::var("SLUICE_KINESALITE")?;
    let k_port = free_port()?;
    let script = format!(
        "require({kinesalite:?})({{shardLimit: 100, createStreamMs: 50}}).listen({k_port}, '127.0.0.1')"
    );
    let _kinesis = Killed(
        Command::new("node")
            .args(["-e", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_port(k_port)?;
    let endpoint = format!("http://127.0.0.1:{k_port}");
    let c = client(&endpoint).await;
    let topic = format!("kinesis-bench-{}", std::process::id());
    create_topic(&bootstrap, &topic, 4).await?;
    produce(&bootstrap, &topic, n)?;

    eprintln!("bare SDK loop ...");
    create_stream(&c, "bare").await?;
    let out = Command::new(std::env::current_exe()?)
        .args(["bare-sdk", &endpoint, "bare", &n.to_string()])
        .stdout(Stdio::piped())
        .output()?;
    let bare: Value = serde_json::from_slice(&out.stdout)?;
    let bare_wall = bare["wall"].as_f64().ok_or("no wall")?;
    // The CPU of a finished child is in this process's children total.
    let bare_cpu = children_cpu()?;

    eprintln!("sluice ...");
    create_stream(&c, "sluice").await?;
    let (sluice_wall, sluice_cpu) =
        through_sluice(&bootstrap, &topic, &endpoint, "sluice", n).await?;

    eprintln!("boto3 loop ...");
    create_stream(&c, "boto3").await?;
    let before = children_cpu()?;
    let python = std::env::var("SLUICE_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/kinesis_boto3_baseline.py"
    );
    let out = Command::new(python)
        .args([
            script,
            &endpoint,
            "boto3",
            &n.to_string(),
            &KEYS.to_string(),
        ])
        .stdout(Stdio::piped())
        .output()?;
    let boto: Value = serde_json::from_slice(&out.stdout)?;
    let boto_wall = boto["wall"].as_f64().ok_or("no wall")?;
    let boto_cpu = children_cpu()? - before;

    println!("{n} records (~380 B JSON, {KEYS} keys) into 4-shard kinesalite streams, one run:\n");
    println!("| contender | records/s | CPU s per million records | CPU vs bare SDK |");
    println!("|---|---|---|---|");
    println!(
        "{}",
        row(
            "bare aws-sdk-kinesis loop (limit)",
            n,
            bare_wall,
            bare_cpu,
            bare_cpu
        )
    );
    println!(
        "{}",
        row(
            "Sluice Kinesis sink (worker process)",
            n,
            sluice_wall,
            sluice_cpu,
            bare_cpu
        )
    );
    println!(
        "{}",
        row("Python boto3 loop", n, boto_wall, boto_cpu, bare_cpu)
    );
    Ok(())
}

/// User + system CPU seconds of every waited-for child of this process so far.
fn children_cpu() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // cutime and cstime (fields 16 and 17 of stat; 13 and 14 after the command).
    let ticks: f64 = f[13].parse::<f64>()? + f[14].parse::<f64>()?;
    Ok(ticks / clock_ticks()?)
}
