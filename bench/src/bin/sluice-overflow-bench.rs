//! Overflow benchmark: a release worker runs a datagen source (one task, `RATE` records/s) with an
//! overflow stream on kinesalite. Each trial SIGKILLs the broker mid-stream, keeps it down for
//! `DOWN`, restarts it on its data, and measures from the worker's `/metrics` (polled every 10 ms):
//! - *to first diverted*: from the kill until the first record is counted as diverted;
//! - *diverting rate*: records/s diverted while the broker is down, against the rate into Kafka
//!   just before the kill (the baseline, same run);
//! - *drain*: from the restart until the task is back on Kafka (`overflow.recovery.ms`, then the
//!   replay of everything diverted), and the replay rate;
//! - *lost* and *duplicated*: every (task, seq) of the run read back from the topic.
//!
//! Usage: `sluice-overflow-bench [trials]` (default 5).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_bench::Result;
use sluice_tests::kafka::read_topic;
use sluice_tests::kinesis::KinesisEmulator;
use sluice_tests::{Broker, Worker, WorkerSettings, json, unique};

const RATE: u64 = 5000;
const RUN: Duration = Duration::from_secs(40);
const DOWN: Duration = Duration::from_secs(10);
const RECOVERY_MS: u64 = 2000;

async fn records(worker: &Worker, target: &str) -> f64 {
    let label = format!("target=\"{target}\"");
    worker
        .metric("sluice_overflow_records_total", &[&label])
        .await
}

/// Polls `check` every 10 ms until it holds; returns when it first did.
async fn until<F, Fut>(what: &str, within: Duration, mut check: F) -> Result<Instant>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {within:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Trial {
    kafka_rate: f64,
    to_first: Duration,
    diverting_rate: f64,
    drain: Duration,
    replayed: f64,
    lost: usize,
    duplicated: usize,
}

async fn trial() -> Result<Trial> {
    let total = RATE * RUN.as_secs();
    let mut broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let stream = unique("spill");
    kinesis.create_stream(&stream, 2).await;
    let worker = Worker::start(WorkerSettings::new(&broker).log("warn")).await;
    let topic = unique("bench");
    worker
        .create(
            "gen",
            json!({
                "connector.class": "Datagen", "kafka.topic": topic, "quickstart": "clickstream",
                "records.per.second": RATE.to_string(), "iterations": total.to_string(),
                "tasks.max": "1", "key.cardinality": "1000",
                "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter.schemas.enable": "false",
                "topic.creation.default.partitions": "4",
                "overflow.kinesis.stream": stream, "overflow.kinesis.region": "us-east-1",
                "overflow.kinesis.endpoint": kinesis.endpoint,
                "overflow.aws.access.key.id": "bench", "overflow.aws.secret.access.key": "bench",
                "overflow.recovery.ms": RECOVERY_MS.to_string(),
            }),
        )
        .await;
    until("records flowing", Duration::from_secs(60), || async {
        records(&worker, "kafka").await >= (RATE * 5) as f64
    })
    .await?;
    let (k0, t0) = (records(&worker, "kafka").await, Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kafka_rate = (records(&worker, "kafka").await - k0) / t0.elapsed().as_secs_f64();

    let killed = Instant::now();
    broker.kill();
    let first = until("a record diverted", Duration::from_secs(30), || async {
        records(&worker, "kinesis").await > 0.0
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (d0, t1) = (records(&worker, "kinesis").await, Instant::now());
    tokio::time::sleep(DOWN.saturating_sub(killed.elapsed())).await;
    let diverting_rate = (records(&worker, "kinesis").await - d0) / t1.elapsed().as_secs_f64();

    let restarted = Instant::now();
    broker.restart();
    let back = until("back on Kafka", Duration::from_secs(120), || async {
        worker
            .metric("sluice_overflow_switches_total", &["to=\"kafka\""])
            .await
            >= 1.0
    })
    .await?;
    let replayed = records(&worker, "replayed").await;

    let seen = until(
        "every record in the topic",
        Duration::from_secs(180),
        || {
            let (bootstrap, topic) = (broker.bootstrap.clone(), topic.clone());
            async move {
                let n = tokio::task::spawn_blocking(move || read_topic(&bootstrap, &topic).len())
                    .await
                    .unwrap_or(0);
                n as u64 >= total
            }
        },
    )
    .await;
    let bootstrap = broker.bootstrap.clone();
    let all = tokio::task::spawn_blocking(move || read_topic(&bootstrap, &topic)).await?;
    let mut copies: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &all {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap_or(b"{}"))?;
        *copies.entry(v["seq"].as_i64().unwrap_or(-1)).or_default() += 1;
    }
    let lost = (0..total as i64)
        .filter(|s| !copies.contains_key(s))
        .count();
    if let Err(e) = seen
        && lost == 0
    {
        return Err(e);
    }
    Ok(Trial {
        kafka_rate,
        to_first: first - killed,
        diverting_rate,
        drain: back - restarted,
        replayed,
        lost,
        duplicated: copies.values().map(|c| c - 1).sum(),
    })
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let trials: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    let mut done = Vec::new();
    for i in 0..trials {
        let t = trial().await?;
        println!(
            "trial {i}: kafka {:.0}/s, first diverted after {:.0} ms, diverting {:.0}/s, \
             drained in {:.2} s ({:.0} replayed), lost {}, duplicated {}",
            t.kafka_rate,
            t.to_first.as_secs_f64() * 1000.0,
            t.diverting_rate,
            t.drain.as_secs_f64(),
            t.replayed,
            t.lost,
            t.duplicated
        );
        done.push(t);
    }
    let f = |g: fn(&Trial) -> f64| done.iter().map(g).collect::<Vec<f64>>();
    let max = |v: Vec<f64>| v.into_iter().fold(0.0, f64::max);
    let first = f(|t| t.to_first.as_secs_f64() * 1000.0);
    let drain = f(|t| t.drain.as_secs_f64());
    let replay_rate =
        f(|t| t.replayed / (t.drain.as_secs_f64() - RECOVERY_MS as f64 / 1000.0).max(0.001));
    let ratio = f(|t| t.diverting_rate / t.kafka_rate);
    println!("\n| figure | p50 | max |\n|---|---|---|");
    println!(
        "| kill → first diverted record (ms) | {:.0} | {:.0} |",
        p50(first.clone()),
        max(first)
    );
    println!(
        "| diverting rate / Kafka rate before the kill | {:.2} | {:.2} |",
        p50(ratio.clone()),
        max(ratio)
    );
    println!(
        "| restart → back on Kafka (s, incl. overflow.recovery.ms={RECOVERY_MS}) | {:.2} | {:.2} |",
        p50(drain.clone()),
        max(drain)
    );
    println!(
        "| replay rate (records/s, drain less recovery) | {:.0} | {:.0} |",
        p50(replay_rate.clone()),
        max(replay_rate)
    );
    println!(
        "\nsource rate {RATE}/s, broker down {DOWN:?}; lost {} in all trials, duplicated {} in all",
        done.iter().map(|t| t.lost).sum::<usize>(),
        done.iter().map(|t| t.duplicated).sum::<usize>()
    );
    Ok(())
}
