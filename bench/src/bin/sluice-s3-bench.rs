//! Benchmark: Kafka topic → S3 Parquet, side by side in one run (see bench/README.md):
//!
//! - **bare consumer** (the limit): a plain rdkafka consumer that reads the topic and discards it;
//! - **Sluice**: a release `sluice` worker running the S3 sink (one task);
//! - **Python baseline**: confluent-kafka + pyarrow + boto3 (`bench/python/s3_parquet_baseline.py`).
//!
//! All three read the same N JSON records (~330 bytes, 20 fields) from one broker process and the
//! two writers upload to the same S3-compatible server (s3s-fs). Each reports records/s, MB/s, CPU
//! seconds per million records and peak RSS of its own process.
//!
//! usage: sluice-s3-bench [records] [flush.size]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::{Value, json};
use sluice_bench::{
    CommittedOffsets, Killed, Result, cpu_seconds, create_connector, create_topic, free_port,
    memory_mib, s3_event, start_broker, wait_healthy, wait_port, worker_command,
};

const PARTITIONS: i32 = 4;
const ACCESS_KEY: &str = "bench";
const SECRET_KEY: &str = "bench-secret-key";
/// See bench/README.md: the test broker answers fetches late with librdkafka's default.
const FETCH_WAIT_MAX_MS: &str = "50";

/// What one contender measured.
struct Measured {
    records: u64,
    bytes: u64,
    wall: f64,
    cpu: f64,
    peak_rss_mib: f64,
}

impl Measured {
    fn from_json(v: &Value) -> Result<Self> {
        let f = |k: &str| v[k].as_f64().ok_or_else(|| format!("no {k} in {v}"));
        Ok(Self {
            records: f("records")? as u64,
            bytes: f("bytes")? as u64,
            wall: f("wall")?,
            cpu: f("cpu")?,
            peak_rss_mib: f("peak_rss_mib")?,
        })
    }
    fn records_per_s(&self) -> f64 {
        self.records as f64 / self.wall
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.wall
    }
    fn cpu_per_million(&self) -> f64 {
        self.cpu / (self.records as f64 / 1e6)
    }
}

fn produce(bootstrap: &str, topic: &str, n: u64) -> Result<u64> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("compression.type", "none")
        .create()?;
    let mut bytes = 0;
    for i in 0..n {
        let value = s3_event(i);
        bytes += value.len() as u64;
        let key = format!("user-{}", i % 5000);
        let partition = (i % PARTITIONS as u64) as i32;
        loop {
            let record = BaseRecord::to(topic)
                .key(&key)
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
    Ok(bytes)
}

/// The bare consumer, run as a child process so that its CPU and memory are its own.
fn bare_consumer(bootstrap: &str, topic: &str, n: u64) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bare-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
        .create()?;
    consumer.subscribe(&[topic])?;
    let (mut records, mut bytes, mut first) = (0u64, 0u64, None);
    while records < n {
        if let Some(m) = consumer.poll(Duration::from_secs(1)) {
            let m = m?;
            first.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, <[u8]>::len) as u64;
            records += 1;
        }
    }
    let wall = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let pid = std::process::id();
    let out = json!({"records": records, "bytes": bytes, "wall": wall, "cpu": cpu_seconds(pid)?,
        "peak_rss_mib": memory_mib(pid, "VmHWM")?});
    println!("{out}");
    Ok(())
}

fn s3s_fs() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_S3S_FS") {
        return p.into();
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/sluice/tools/bin/s3s-fs");
    if cached.exists() {
        cached
    } else {
        "s3s-fs".into()
    }
}

fn python() -> PathBuf {
    std::env::var("SLUICE_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/sluice/venv/bin/python")
        })
}

/// The time in the leading RFC 3339 timestamp of the first log line holding `needle`.
fn log_time(log: &Path, needle: &str) -> Option<SystemTime> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(needle))?;
    let stamp = chrono::DateTime::parse_from_rfc3339(line.split_whitespace().next()?).ok()?;
    Some(SystemTime::from(stamp))
}

#[allow(clippy::too_many_arguments)]
async fn through_sluice(
    bootstrap: &str,
    topic: &str,
    n: u64,
    bytes: u64,
    flush: u64,
    endpoint: &str,
    bucket: &str,
    dir: &Path,
) -> Result<(Measured, f64)> {
    let http = reqwest::Client::new();
    let port = free_port()?;
    let id = format!("s3bench-{}", std::process::id());
    let log = dir.join("worker.log");
    let worker = Killed(
        worker_command(bootstrap, &id, port)?
            .env("SLUICE_CONSUMER_FETCH_WAIT_MAX_MS", FETCH_WAIT_MAX_MS)
            .env("SLUICE_LOG", "info")
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    let pid = worker.0.id();
    wait_healthy(&http, port).await?;
    let name = "s3-bench";
    let config = json!({"name": name, "config": {
        "connector.class": "S3SinkConnector", "topics": topic, "tasks.max": "1",
        "store.url": endpoint, "s3.bucket.name": bucket, "aws.access.key.id": ACCESS_KEY, "aws.secret.access.key": SECRET_KEY,
        "flush.size": flush.to_string(), "topics.dir": "sluice",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter", "value.converter.schemas.enable": "false",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter"
    }});
    let cpu0 = cpu_seconds(pid)?;
    let created = Instant::now();
    create_connector(&http, port, &config).await?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let offsets = CommittedOffsets::new(bootstrap, name, topic, PARTITIONS)?;
    while tokio::task::block_in_place(|| offsets.sum()) < n as i64 {
        if Instant::now() > deadline {
            return Err("the sink did not commit every record within 30 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end_to_end = created.elapsed().as_secs_f64();
    let done = SystemTime::now();
    let cpu = cpu_seconds(pid)? - cpu0;
    let peak = memory_mib(pid, "VmHWM")?;
    // From the moment the task had its partitions (the static-member join takes seconds on the
    // test broker) to the last commit.
    let assigned = log_time(&log, "partitions assigned").ok_or("no assignment in the log")?;
    let wall = done.duration_since(assigned)?.as_secs_f64();
    Ok((
        Measured {
            records: n,
            bytes,
            wall,
            cpu,
            peak_rss_mib: peak,
        },
        end_to_end,
    ))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bare-consumer") {
        return bare_consumer(&args[2], &args[3], args[4].parse()?);
    }
    let n: u64 = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let flush: u64 = args.get(2).map_or(Ok(50_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;

    let (_broker, bootstrap) = start_broker(&dir.path().join("kafka"))?;
    let s3_port = free_port()?;
    std::fs::create_dir_all(dir.path().join("s3"))?;
    let _s3 = Killed(
        Command::new(s3s_fs())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &s3_port.to_string(),
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
            ])
            .arg(dir.path().join("s3"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_port(s3_port)?;
    let endpoint = format!("http://127.0.0.1:{s3_port}");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "bench",
            ))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .build(),
    );
    let bucket = "bench";
    s3.create_bucket().bucket(bucket).send().await?;

    let topic = format!("s3-bench-{}", std::process::id());
    create_topic(&bootstrap, &topic, PARTITIONS).await?;
    let started = Instant::now();
    let bytes = produce(&bootstrap, &topic, n)?;
    eprintln!(
        "produced {n} records ({:.1} MB) in {:.1} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    eprintln!("bare consumer ...");
    let out = Command::new(std::env::current_exe()?)
        .args(["bare-consumer", &bootstrap, &topic, &n.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    let bare = Measured::from_json(&serde_json::from_slice(&out.stdout)?)?;

    eprintln!("sluice ...");
    let (sluice, end_to_end) = through_sluice(
        &bootstrap,
        &topic,
        n,
        bytes,
        flush,
        &endpoint,
        bucket,
        dir.path(),
    )
    .await?;

    eprintln!("python baseline ...");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/s3_parquet_baseline.py");
    let out = Command::new(python())
        .arg(script)
        .args([
            &bootstrap,
            &topic,
            &n.to_string(),
            &flush.to_string(),
            &endpoint,
            bucket,
            ACCESS_KEY,
            SECRET_KEY,
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "the python baseline failed ({}); run scripts/bench.sh to install its packages",
            out.status
        )
        .into());
    }
    let python = Measured::from_json(&serde_json::from_slice(&out.stdout)?)?;

    let row = |name: &str, m: &Measured| {
        format!(
            "| {name} | {:.0} | {:.1} | {:.2} | {:.0} |",
            m.records_per_s(),
            m.mb_per_s(),
            m.cpu_per_million(),
            m.peak_rss_mib
        )
    };
    let report = format!(
        "# S3 Parquet sink benchmark\n\n{n} JSON records ({:.0} bytes each, 20 fields), {PARTITIONS} partitions, flush.size {flush}, \
         one broker process (tansu, SQLite) and one s3s-fs server on this machine ({} cores).\n\n\
         | contender | records/s | MB/s | CPU s per 1M records | peak RSS MiB |\n|---|---:|---:|---:|---:|\n{}\n{}\n{}\n\n\
         Ratios (Sluice / other): CPU per record {:.2}x the bare consumer's, {:.2}x the Python baseline's; \
         records/s {:.2}x the bare consumer's, {:.2}x the Python baseline's.\n\n\
         Sluice end to end (from creating the connector, including the consumer-group join): {:.1} s.\n",
        bytes as f64 / n as f64,
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        row("bare rdkafka consumer (reads and discards)", &bare),
        row("Sluice S3 sink (1 task)", &sluice),
        row("Python: confluent-kafka + pyarrow + boto3", &python),
        sluice.cpu_per_million() / bare.cpu_per_million(),
        sluice.cpu_per_million() / python.cpu_per_million(),
        sluice.records_per_s() / bare.records_per_s(),
        sluice.records_per_s() / python.records_per_s(),
        end_to_end,
    );
    println!("{report}");
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/s3.md");
    std::fs::write(results, report)?;
    Ok(())
}
