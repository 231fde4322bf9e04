//! Benchmark: datagen → Kafka → file sink through a `sluice` worker, side by side with a plain rdkafka
//! producer and consumer doing the same transfer, in one run. See bench/README.md.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use sluice_bench::{
    Killed, Result, cpu_seconds, create_topic, free_port, memory_mib, sluice_bin, wait_healthy,
    wait_port,
};

/// The test broker answers fetches late when `fetch.wait.max.ms` is long (real Kafka answers as soon
/// as data is there), so both consumers, the baseline's and the worker's (through the `consumer.*`
/// pass-through), use the same short wait. The worker's own default is librdkafka's.
const FETCH_WAIT_MAX_MS: &str = "50";

fn rss_mib(pid: u32) -> Result<f64> {
    memory_mib(pid, "VmRSS")
}

/// Counts the lines of a growing file, reading only what was appended since the last call, so
/// that polling costs little next to the process being measured.
#[derive(Default)]
struct LineCounter {
    read: u64,
    lines: usize,
}

impl LineCounter {
    fn count(&mut self, path: &Path) -> usize {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut file) = std::fs::File::open(path) else {
            return self.lines;
        };
        if file.seek(SeekFrom::Start(self.read)).is_err() {
            return self.lines;
        }
        let mut buf = Vec::new();
        if let Ok(n) = file.read_to_end(&mut buf) {
            self.read += n as u64;
            self.lines += buf.iter().filter(|&&b| b == b'\n').count();
        }
        self.lines
    }
}

fn order(i: u64) -> (String, Vec<u8>) {
    let key = format!("customer-{}", i % 1000);
    let value = json!({"task": 0, "seq": i, "ts": 1_795_324_655_609_i64 + i as i64, "order_id": format!("o-0-{i}"), "customer_id": key,
        "product": "usb-c hub", "quantity": 3, "unit_price": 59.9, "status": "shipped"});
    (key, serde_json::to_vec(&value).unwrap_or_default())
}

/// Wall seconds end to end, wall seconds from the first record delivered to the last, CPU seconds.
struct Run {
    wall: f64,
    steady: f64,
    cpu: f64,
}

/// The baseline: producer and consumer concurrently, in this process.
async fn baseline(bootstrap: &str, n: u64, out: &Path) -> Result<Run> {
    let topic = format!("bench-baseline-{}", std::process::id());
    create_topic(bootstrap, &topic, 4).await?;
    let cpu0 = cpu_seconds(std::process::id())?;
    let started = Instant::now();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .create()?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-group"))
        .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let produce = async {
        let mut pending = futures::stream::FuturesUnordered::new();
        for i in 0..n {
            let (key, value) = order(i);
            loop {
                match producer.send_result(FutureRecord::to(&topic).key(&key).payload(&value)) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((_, _)) => {
                        pending.next().await;
                    }
                }
            }
        }
        while let Some(result) = pending.next().await {
            result.map_err(|_| "cancelled")?.map_err(|(e, _)| e)?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let consume = async {
        let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
        let mut seen = 0;
        let mut first = None;
        while seen < n {
            let msg = consumer.recv().await?;
            first.get_or_insert_with(Instant::now);
            file.write_all(msg.payload().unwrap_or_default())?;
            file.write_all(b"\n")?;
            seen += 1;
        }
        file.flush()?;
        file.get_ref().sync_data()?;
        consumer.commit_consumer_state(CommitMode::Sync)?;
        Ok::<_, Box<dyn std::error::Error>>(first)
    };
    let (p, c) = tokio::join!(produce, consume);
    p?;
    let first = c?.unwrap_or(started);
    Ok(Run {
        wall: started.elapsed().as_secs_f64(),
        steady: first.elapsed().as_secs_f64(),
        cpu: cpu_seconds(std::process::id())? - cpu0,
    })
}

/// The same transfer through a sluice worker.
async fn through_sluice(
    bin: &Path,
    bootstrap: &str,
    n: u64,
    out: &Path,
    http: &reqwest::Client,
) -> Result<Run> {
    let port = free_port()?;
    let id = format!("bench-{}", std::process::id());
    let worker = Killed(
        Command::new(bin)
            .env("SLUICE_BOOTSTRAP_SERVERS", bootstrap)
            .env("SLUICE_REST_PORT", port.to_string())
            .env("SLUICE_GROUP_ID", &id)
            .env("SLUICE_CONFIG_STORAGE_TOPIC", format!("{id}-configs"))
            .env("SLUICE_OFFSET_STORAGE_TOPIC", format!("{id}-offsets"))
            .env("SLUICE_STATUS_STORAGE_TOPIC", format!("{id}-status"))
            .env("SLUICE_OFFSET_FLUSH_INTERVAL_MS", "5000")
            .env("SLUICE_CONSUMER_FETCH_WAIT_MAX_MS", FETCH_WAIT_MAX_MS)
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    wait_healthy(http, port).await?;
    let pid = worker.0.id();
    let topic = format!("{id}-orders");
    let cpu0 = cpu_seconds(pid)?;
    let started = Instant::now();
    let post = |body: serde_json::Value| {
        http.post(format!("http://127.0.0.1:{port}/connectors"))
            .json(&body)
            .send()
    };
    let r = post(json!({"name": "gen", "config": {"connector.class": "Datagen", "kafka.topic": topic, "quickstart": "orders",
        "records.per.second": "0", "iterations": (n / 2).to_string(), "tasks.max": "2", "topic.creation.default.partitions": "4"}}))
    .await?;
    if r.status() != 201 {
        return Err(format!("creating datagen: {}", r.text().await?).into());
    }
    let r = post(json!({"name": "sink", "config": {"connector.class": "FileStreamSink", "topics": topic, "file": out.to_str().unwrap_or_default()}})).await?;
    if r.status() != 201 {
        return Err(format!("creating sink: {}", r.text().await?).into());
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first = None;
    let mut counter = LineCounter::default();
    loop {
        let lines = counter.count(out);
        if lines > 0 {
            first.get_or_insert_with(Instant::now);
        }
        if lines >= n as usize {
            break;
        }
        if Instant::now() > deadline {
            return Err("sluice did not deliver every record in 15 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Run {
        wall: started.elapsed().as_secs_f64(),
        steady: first.unwrap_or(started).elapsed().as_secs_f64(),
        cpu: cpu_seconds(pid)? - cpu0,
    })
}

/// Start-up time and idle RSS with the embedded broker.
async fn embedded_default(bin: &Path, http: &reqwest::Client) -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let started = Instant::now();
    let worker = Killed(
        Command::new(bin)
            .current_dir(dir.path())
            .env("SLUICE_REST_PORT", port.to_string())
            .env("SLUICE_EMBEDDED_BROKER_PORT", free_port()?.to_string())
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    wait_healthy(http, port).await?;
    let startup = started.elapsed().as_secs_f64();
    // Idle: let start-up allocations settle, then read the resident set.
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok((startup, rss_mib(worker.0.id())?))
}

#[tokio::main]
async fn main() -> Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let bin = sluice_bin()?;
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir()?;

    let (startup, idle_rss) = embedded_default(&bin, &http).await?;

    let broker_port = free_port()?;
    let _broker = Killed(
        Command::new(&bin)
            .args(["broker", "--port", &broker_port.to_string(), "--data-dir"])
            .arg(dir.path().join("broker"))
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    wait_port(broker_port)?;
    let bootstrap = format!("127.0.0.1:{broker_port}");

    eprintln!("baseline: {n} records ...");
    let base = baseline(&bootstrap, n, &dir.path().join("baseline.jsonl")).await?;
    eprintln!("sluice: {n} records ...");
    let sluice =
        through_sluice(&bin, &bootstrap, n, &dir.path().join("sluice.jsonl"), &http).await?;

    let per_m = |cpu: f64| cpu / n as f64 * 1e6;
    let rate = |secs: f64| n as f64 / secs;
    let row = |name: &str, r: &Run| {
        format!(
            "| {name} | {:.0} | {:.0} | {:.2} |\n",
            rate(r.wall),
            rate(r.steady),
            per_m(r.cpu)
        )
    };
    let table = format!(
        "| pipeline ({n} records, 4 partitions) | records/s end to end | records/s first to last record | CPU s per million records |\n\
         | --- | ---: | ---: | ---: |\n{}{}\
         | ratio sluice / baseline | {:.2} | {:.2} | {:.2} |\n\n\
         Embedded default: start-up to healthy REST API {:.0} ms; idle RSS {:.1} MiB.\n",
        row("baseline: plain rdkafka producer + consumer → file", &base),
        row("sluice: Datagen → Kafka → FileStreamSink", &sluice),
        base.wall / sluice.wall,
        base.steady / sluice.steady,
        per_m(sluice.cpu) / per_m(base.cpu),
        startup * 1000.0,
        idle_rss,
    );
    println!("{table}");
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(results.join("latest.md"), &table)?;
    Ok(())
}
