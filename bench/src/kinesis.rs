//! What the Kinesis benchmarks share: one kinesalite process, SDK clients, streams, the events'
//! partition keys, and the result table.

use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::StreamStatus;

use crate::{Killed, Result, free_port, wait_port};

/// Partition keys of the benchmark events (`device-0` … `device-1999`).
pub const KEYS: u64 = 2_000;

/// The partition key of event `i`.
pub fn key(i: u64) -> String {
    format!("device-{}", i % KEYS)
}

/// A kinesalite process on a free loopback port (`SLUICE_KINESALITE`), killed when dropped.
pub struct Emulator {
    _process: Killed,
    /// Its URL.
    pub endpoint: String,
}

impl Emulator {
    /// Starts kinesalite with room for the benchmark's streams.
    pub fn start() -> Result<Self> {
        let kinesalite = std::env::var("SLUICE_KINESALITE")
            .map_err(|_| "SLUICE_KINESALITE is not set (scripts/bench.sh sets it)")?;
        let port = free_port()?;
        let script = format!(
            "require({kinesalite:?})({{shardLimit: 100, createStreamMs: 50}}).listen({port}, '127.0.0.1')"
        );
        let process = Killed(
            Command::new("node")
                .args(["-e", &script])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        wait_port(port)?;
        Ok(Self {
            _process: process,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }
}

/// An SDK client for `endpoint` with static test credentials.
pub async fn client(endpoint: &str) -> Client {
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

/// Creates a 4-shard stream and waits until it is ACTIVE.
pub async fn create_stream(c: &Client, name: &str) -> Result<()> {
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

/// What a contender did: records, wall seconds, CPU seconds of its own process for the work.
pub struct Run {
    /// The contender, as the table names it.
    pub name: String,
    /// Records moved.
    pub records: u64,
    /// Wall seconds.
    pub wall: f64,
    /// CPU seconds (user + system).
    pub cpu: f64,
}

impl Run {
    /// CPU seconds per million records.
    pub fn cpu_per_million(&self) -> f64 {
        self.cpu / self.records as f64 * 1e6
    }
}

/// The Markdown table of `runs`, with each contender's CPU per record against the first's and
/// against the last's (the limit and the hand-written alternative).
pub fn table(runs: &[Run]) -> String {
    let (first, last) = (&runs[0], &runs[runs.len() - 1]);
    let mut out = format!(
        "| contender | records/s | CPU s per million records | CPU vs {} | CPU vs {} |\n|---|---|---|---|---|\n",
        first.name, last.name
    );
    for r in runs {
        out.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2}x | {:.2}x |\n",
            r.name,
            r.records as f64 / r.wall,
            r.cpu_per_million(),
            r.cpu_per_million() / first.cpu_per_million(),
            r.cpu_per_million() / last.cpu_per_million(),
        ));
    }
    out
}

/// Runs a child process that prints one JSON object with `wall` and `cpu` (seconds of its own
/// work, start-up and imports left out) on its last line of standard output.
pub fn child_run(name: &str, records: u64, command: &mut Command) -> Result<Run> {
    let out = command.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(format!("{name} failed: {}", out.status).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let last = text
        .lines()
        .last()
        .ok_or_else(|| format!("{name} printed nothing"))?;
    let v: serde_json::Value = serde_json::from_str(last)?;
    let field = |f: &str| {
        v[f].as_f64()
            .ok_or_else(|| format!("{name}: no {f} in {last}"))
    };
    Ok(Run {
        name: name.to_owned(),
        records,
        wall: field("wall")?,
        cpu: field("cpu")?,
    })
}

/// Events `0..n` ([`crate::s3_event`]), made before a loop is timed.
pub fn events(n: u64) -> Vec<Vec<u8>> {
    (0..n).map(crate::s3_event).collect()
}

/// Puts `events` into `stream`: `PutRecords` of 500, `in_flight` calls at a time, in no order;
/// fails if Kinesis refuses any record.
pub async fn put_events(
    c: &Client,
    stream: &str,
    events: &[Vec<u8>],
    in_flight: usize,
) -> Result<()> {
    let n = events.len() as u64;
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let mut calls = tokio::task::JoinSet::new();
    let mut i = 0;
    while i < n || !calls.is_empty() {
        while i < n && calls.len() < in_flight {
            let entries: Vec<PutRecordsRequestEntry> = (i..(i + 500).min(n))
                .map(|j| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(key(j))
                        .data(Blob::new(events[j as usize].clone()))
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
    Ok(())
}
