//! Helpers shared by the benchmarks: free ports, child processes that die with the benchmark, and
//! waiting for a worker to become healthy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors of a benchmark run.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something listens on `port`.
pub fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("nothing listens on {port}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Waits until the worker on `port` answers `/health` with 200.
pub async fn wait_healthy(http: &reqwest::Client, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("worker did not become healthy".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sluice broker` on a free port with its data under `dir`; returns the process (killed when
/// dropped) and its bootstrap address, once it accepts connections.
pub fn start_broker(dir: &Path) -> Result<(Killed, String)> {
    let port = free_port()?;
    let broker = Killed(
        Command::new(sluice_bin()?)
            .args(["broker", "--port", &port.to_string(), "--data-dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_port(port)?;
    Ok((broker, format!("127.0.0.1:{port}")))
}

/// The command for a worker of its own fleet: group `<id>-cluster`, internal topics `<id>-configs`,
/// `<id>-offsets` and `<id>-status`, REST on `127.0.0.1:port`, warnings only, output discarded. The
/// caller adds its settings (the `fetch.wait.max.ms` the test broker needs, for example) and spawns it.
pub fn worker_command(bootstrap: &str, id: &str, port: u16) -> Result<Command> {
    let mut command = Command::new(sluice_bin()?);
    command
        .env("SLUICE_BOOTSTRAP_SERVERS", bootstrap)
        .env("SLUICE_GROUP_ID", format!("{id}-cluster"))
        .env("SLUICE_CONFIG_STORAGE_TOPIC", format!("{id}-configs"))
        .env("SLUICE_OFFSET_STORAGE_TOPIC", format!("{id}-offsets"))
        .env("SLUICE_STATUS_STORAGE_TOPIC", format!("{id}-status"))
        .env("SLUICE_REST_PORT", port.to_string())
        .env("SLUICE_REST_HOST_NAME", "127.0.0.1")
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(command)
}

/// Creates a connector on the worker at `port` (`config` is `{"name", "config"}`), failing with the
/// worker's error body if it refuses.
pub async fn create_connector(
    http: &reqwest::Client,
    port: u16,
    config: &serde_json::Value,
) -> Result<()> {
    let r = http
        .post(format!("http://127.0.0.1:{port}/connectors"))
        .json(config)
        .send()
        .await?;
    if !r.status().is_success() {
        return Err(format!("creating the connector: {}", r.text().await?).into());
    }
    Ok(())
}

/// Creates a topic with the broker's default replication factor.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    admin
        .create_topics(
            [&NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(-1),
            )],
            &AdminOptions::new(),
        )
        .await?;
    Ok(())
}

/// Reads a sink connector's committed offsets straight from the broker (its consumer group
/// `connect-<name>`), so that watching for the end of a run costs the worker nothing: the
/// worker's `/connectors/<name>/offsets` creates a Kafka client per request, which polled every
/// 100 ms would be counted as the sink's CPU.
pub struct CommittedOffsets {
    consumer: rdkafka::consumer::BaseConsumer,
    partitions: rdkafka::TopicPartitionList,
}

impl CommittedOffsets {
    /// For connector `name` reading partitions `0..partitions` of `topic`.
    pub fn new(bootstrap: &str, name: &str, topic: &str, partitions: i32) -> Result<Self> {
        let consumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("connect-{name}"))
            .set("enable.auto.commit", "false")
            .create()?;
        let mut list = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(topic, p);
        }
        Ok(Self {
            consumer,
            partitions: list,
        })
    }

    /// The sum of the committed offsets (how many records the sink has committed); 0 while the
    /// broker does not answer.
    pub fn sum(&self) -> i64 {
        use rdkafka::consumer::Consumer;
        self.consumer
            .committed_offsets(self.partitions.clone(), Duration::from_secs(10))
            .map(|c| {
                c.elements()
                    .iter()
                    .filter_map(|e| e.offset().to_raw().filter(|o| *o >= 0))
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Waits until `topic`'s `partitions` hold at least `n` records together (the sum of their high
/// watermarks), polling every 100 ms; fails after `within`, saying how many there were.
pub async fn wait_for_records(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: u64,
    within: Duration,
) -> Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-watermarks"))
        .create()?;
    let count = || -> i64 {
        (0..partitions)
            .filter_map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(5))
                    .ok()
            })
            .map(|(_, high)| high)
            .sum()
    };
    let deadline = Instant::now() + within;
    loop {
        let c = tokio::task::block_in_place(count);
        if c >= n as i64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{topic} holds {c} of {n} records after {within:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clock ticks per second (`getconf CLK_TCK`), the unit of /proc's CPU times.
pub fn clock_ticks() -> Result<f64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()?
        .stdout;
    Ok(String::from_utf8(out)?.trim().parse()?)
}

/// User + system CPU seconds of a process, from /proc.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("bad stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks()?)
}

/// A memory figure of a process in MiB: `VmRSS` (now) or `VmHWM` (peak), from /proc.
pub fn memory_mib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .ok_or_else(|| format!("no {field}"))?
        .parse()?;
    Ok(kb / 1024.0)
}

/// The `sluice` binary: `SLUICE_BIN`, or the one next to this executable.
pub fn sluice_bin() -> Result<PathBuf> {
    if let Ok(bin) = std::env::var("SLUICE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    Ok(exe.parent().ok_or("no parent")?.join("sluice"))
}

/// Event `i` of the S3 benchmarks: twenty flat fields (strings, integers, doubles, a boolean),
/// about 380 bytes as JSON.
pub fn s3_event(i: u64) -> Vec<u8> {
    let pages = ["/", "/products/42", "/cart", "/checkout", "/search?q=usb"];
    let countries = ["DE", "US", "FR", "IN", "BR", "JP"];
    let v = serde_json::json!({
        "id": i, "ts": 1_795_324_655_609u64 + i, "user": format!("user-{}", i % 5000),
        "event": if i.is_multiple_of(7) { "purchase" } else { "page_view" }, "page": pages[(i % 5) as usize],
        "referrer": "https://example.com/landing", "country": countries[(i % 6) as usize],
        "device": if i.is_multiple_of(3) { "desktop" } else { "mobile" }, "os": "android", "browser": "chrome",
        "session": format!("s-{:09}", i / 20), "duration_ms": (i * 37) % 5000, "amount": (i % 1000) as f64 / 10.0,
        "currency": "EUR", "items": i % 9, "campaign": "spring-sale", "ab_group": if i.is_multiple_of(2) { "A" } else { "B" },
        "is_new": i.is_multiple_of(11), "score": (i % 997) as f64 / 997.0, "version": "1.4.2"
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

pub mod kinesis;

/// A consumer of `topic` from its start with a short fetch wait, for measuring how soon records
/// arrive (group `group`).
pub fn lag_consumer(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> Result<rdkafka::consumer::BaseConsumer> {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// The `q` quantile (0.5 for p50) of `samples`, which it sorts.
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}
