//! Benchmark: Kafka topic → Lambda → response topic, side by side in one run (see
//! bench/README.md), for batch sizes 1 and 20 and 1 and 8 invocations in flight:
//!
//! - **bare SDK loop** (the limit): aws-sdk-lambda `Invoke` of ready-made batches, that many in
//!   flight, no Kafka: the emulator's own records/s and latency per invocation;
//! - **Sluice**: a release `sluice` worker running the Lambda sink (one task, results to a
//!   response topic). `max.in.flight` 1 is Confluent's connector's behaviour (one batch at a
//!   time per partition).
//!
//! Each Sluice configuration is measured twice: throughput (N records already in the topic,
//! results per second between the first and the last result's Kafka timestamp, which the worker
//! sets when it queues the result) and latency (records produced at a steady
//! `RATE` per second for `LATENCY_SECS`; latency is from just before the bench produced a record
//! to when its result reached the bench's consumer of the response topic, which polls with
//! `fetch.wait.max.ms=5`, split into stages by the result's timestamp and its `lambda.latency.ms`
//! header). The function is the tests' logistic scorer in Node, served by
//! serverless-offline on this machine.
//!
//! usage: sluice-lambda-bench [records]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use sluice_bench::{
    Killed, Result, create_connector, create_topic, free_port, start_broker, wait_healthy,
    worker_command,
};
use sluice_tests::lambda::LambdaEmulator;

const HANDLER: &str = r#"
const W = [0.8, -1.2, 0.5], B = 0.1;
exports.score = async (batch) => batch.map((r) => {
  const v = r.value;
  const z = W[0] * v.f1 + W[1] * v.f2 + W[2] * v.f3 + B;
  return { offset: r.offset, sent: v.sent, score: 1 / (1 + Math.exp(-z)) };
});
"#;

/// Records per second in the latency runs.
const RATE: u64 = 400;
/// Length of a latency run.
const LATENCY_SECS: u64 = 10;

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn features(i: u64, sent: f64) -> Vec<u8> {
    json!({"id": i, "f1": (i % 7) as f64 * 0.25, "f2": (i % 5) as f64 * 0.5,
           "f3": (i % 3) as f64 - 1.0, "sent": sent})
    .to_string()
    .into_bytes()
}

/// The p-th percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn lambda_client(endpoint: &str) -> Client {
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
        .region(aws_sdk_lambda::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .build();
    Client::from_conf(config)
}

/// The bare loop: `n` records in batches of `batch`, `in_flight` invocations at a time:
/// (records/s, invocation latency p50, p99 in ms).
async fn bare(client: &Client, n: u64, batch: u64, in_flight: usize) -> Result<(f64, f64, f64)> {
    let function = LambdaEmulator::function("score");
    let payloads: Vec<Vec<u8>> = (0..n.div_ceil(batch))
        .map(|b| {
            let items: Vec<Value> = (b * batch..((b + 1) * batch).min(n))
                .map(|i| {
                    let v: Value = serde_json::from_slice(&features(i, 0.0)).unwrap_or_default();
                    json!({"topic": "t", "partition": 0, "offset": i, "value": v})
                })
                .collect();
            serde_json::to_vec(&items).unwrap_or_default()
        })
        .collect();
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(payloads.len());
    let mut pending = FuturesUnordered::new();
    let mut next = payloads.into_iter();
    loop {
        while pending.len() < in_flight {
            let Some(p) = next.next() else { break };
            let (c, f) = (client.clone(), function.clone());
            pending.push(async move {
                let t = Instant::now();
                let r = c
                    .invoke()
                    .function_name(f)
                    .payload(Blob::new(p))
                    .send()
                    .await;
                (t.elapsed(), r)
            });
        }
        let Some((took, answer)) = pending.next().await else {
            break;
        };
        let out = answer?;
        if out.function_error().is_some() {
            return Err("the function failed".into());
        }
        latencies.push(took.as_secs_f64() * 1000.0);
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok((
        rate,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    ))
}

fn response_consumer(bootstrap: &str, topic: &str) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// What a run of results showed.
struct Arrivals {
    /// Each input's latency (arrival − `sent`), in ms.
    latency: HashMap<u64, f64>,
    /// Each input's latency in stages, in ms, from the result's Kafka timestamp (set when the
    /// worker queued it) and its `lambda.latency.ms` header: (sent → result queued, of which the
    /// invocation, result queued → read).
    stages: HashMap<u64, [f64; 3]>,
    /// When the first and the last result arrived.
    first: Instant,
    last: Instant,
    /// The earliest and latest Kafka timestamp of the results (when the worker queued them).
    queued: Option<(i64, i64)>,
}

impl Arrivals {
    /// Results per second between the first and the last result the worker queued (the group
    /// join and the task's start left out; not the reader's arrivals, which bunch up when the
    /// worker is done before the reader has joined its group).
    fn rate(&self) -> f64 {
        let secs = match self.queued {
            Some((first, last)) if last > first => (last - first) as f64 / 1000.0,
            _ => (self.last - self.first).as_secs_f64(),
        };
        (self.latency.len() - 1) as f64 / secs
    }
}

/// Reads results until `n` distinct inputs have one, or `within` passes.
fn read_results(consumer: &BaseConsumer, n: usize, within: Duration) -> Result<Arrivals> {
    let deadline = Instant::now() + within;
    let mut seen = HashMap::with_capacity(n);
    let mut stages = HashMap::with_capacity(n);
    let mut first = None;
    let mut queued: Option<(i64, i64)> = None;
    while seen.len() < n {
        if Instant::now() > deadline {
            return Err(format!("{} of {n} results within {within:?}", seen.len()).into());
        }
        let Some(m) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let m = m?;
        let arrived = now_ms();
        first.get_or_insert_with(Instant::now);
        let v: Value = serde_json::from_slice(m.payload().unwrap_or(b"null"))?;
        // One input partition: the input offset names the input.
        let offset = v["offset"]
            .as_u64()
            .or_else(|| v["id"].as_u64())
            .unwrap_or(u64::MAX);
        if let Some(ts) = m.timestamp().to_millis() {
            queued = Some(queued.map_or((ts, ts), |(a, b)| (a.min(ts), b.max(ts))));
        }
        let sent = v["sent"].as_f64().unwrap_or(arrived);
        seen.entry(offset).or_insert(arrived - sent);
        let invoked = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == "lambda.latency.ms")
                .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<f64>().ok())
        });
        if let (Some(queued), Some(invoked)) = (m.timestamp().to_millis(), invoked) {
            let queued = queued as f64;
            stages
                .entry(offset)
                .or_insert([queued - sent, invoked, arrived - queued]);
        }
    }
    Ok(Arrivals {
        latency: seen,
        stages,
        first: first.unwrap_or_else(Instant::now),
        last: Instant::now(),
        queued,
    })
}

/// Produces `n` records to `topic` at `RATE` per second, ids from `first`, each stamped with the
/// time just before it was produced.
fn steady(
    producer: &FutureProducer,
    topic: &str,
    first: u64,
    n: u64,
) -> tokio::task::JoinHandle<()> {
    let (producer, topic) = (producer.clone(), topic.to_owned());
    tokio::spawn(async move {
        let start = Instant::now();
        for i in 0..n {
            let due = start + Duration::from_micros(i * 1_000_000 / RATE);
            tokio::time::sleep_until(due.into()).await;
            let value = features(first + i, now_ms());
            let _ = producer
                .send(
                    FutureRecord::<(), _>::to(&topic).payload(&value),
                    Duration::from_secs(30),
                )
                .await;
        }
    })
}

/// Latency percentiles (p50, p99) of a run.
fn percentiles(arrivals: &Arrivals) -> (f64, f64) {
    let mut ms: Vec<f64> = arrivals.latency.values().copied().collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// Percentiles (p50, p99) of each stage of a run.
fn stage_percentiles(arrivals: &Arrivals) -> [(f64, f64); 3] {
    std::array::from_fn(|i| {
        let mut ms: Vec<f64> = arrivals.stages.values().map(|s| s[i]).collect();
        ms.sort_by(f64::total_cmp);
        (percentile(&ms, 0.5), percentile(&ms, 0.99))
    })
}

struct Row {
    batch: u64,
    in_flight: usize,
    bare_rate: f64,
    bare_p50: f64,
    bare_p99: f64,
    rate: f64,
    p50: f64,
    p99: f64,
    stages: [(f64, f64); 3],
}

/// The (batch size, invocations in flight) pairs to run: `SLUICE_BENCH_CONFIGS`, for example
/// `20x8,1x8`, or all four.
fn configs() -> Result<Vec<(u64, usize)>> {
    let Ok(list) = std::env::var("SLUICE_BENCH_CONFIGS") else {
        return Ok(vec![(1, 1), (1, 8), (20, 1), (20, 8)]);
    };
    list.split(',')
        .map(|pair| {
            let (batch, in_flight) = pair.trim().split_once('x').ok_or_else(|| {
                format!("SLUICE_BENCH_CONFIGS: {pair:?} is not <batch>x<in flight>")
            })?;
            Ok((batch.parse()?, in_flight.parse()?))
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map_or(Ok(20_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let (_broker, bootstrap) = start_broker(&dir.path().join("kafka"))?;
    let lambda = LambdaEmulator::start(HANDLER, &["score"]);
    let client = lambda_client(&lambda.endpoint).await;
    let http = reqwest::Client::new();
    let port = free_port()?;
    let id = format!("lbench-{}", std::process::id());
    let _worker = Killed(
        worker_command(&bootstrap, &id, port)?
            .env("SLUICE_CONSUMER_FETCH_WAIT_MAX_MS", "5")
            .spawn()?,
    );
    wait_healthy(&http, port).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "0")
        .create()?;
    // Warm the function and the SDK's connections.
    bare(&client, 200, 20, 8).await?;
    // One Kafka hop on this broker (produce → consume), at the same rate: Sluice's path has two.
    let hop = format!("lb-hop-{}", std::process::id());
    create_topic(&bootstrap, &hop, 1).await?;
    let hop_consumer = response_consumer(&bootstrap, &hop)?;
    let n_steady = RATE * LATENCY_SECS;
    let sender = steady(&producer, &hop, 0, n_steady);
    let hop_arrivals = tokio::task::block_in_place(|| {
        read_results(
            &hop_consumer,
            n_steady as usize,
            Duration::from_secs(LATENCY_SECS + 60),
        )
    })?;
    sender.await?;
    let (hop_p50, hop_p99) = percentiles(&hop_arrivals);
    let mut rows = Vec::new();
    for (batch, in_flight) in configs()? {
        eprintln!("batch {batch}, {in_flight} in flight ...");
        // Records are one topic partition: max.in.flight is what orders or parallelises them.
        let (input, output) = (
            format!("lb-in-{batch}-{in_flight}-{}", std::process::id()),
            format!("lb-out-{batch}-{in_flight}-{}", std::process::id()),
        );
        create_topic(&bootstrap, &input, 1).await?;
        create_topic(&bootstrap, &output, 1).await?;
        let through = (n / if batch == 1 { 4 } else { 1 }).max(1000);
        let (bare_rate, bare_p50, bare_p99) = bare(&client, through, batch, in_flight).await?;
        for i in 0..through {
            let value = features(i, 0.0);
            producer
                .send(
                    FutureRecord::<(), _>::to(&input).payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)?;
        }
        let consumer = response_consumer(&bootstrap, &output)?;
        let config = json!({"name": format!("lambda-{batch}-{in_flight}"), "config": {
            "connector.class": "LambdaSink", "topics": input, "tasks.max": "1",
            "aws.lambda.function.name": LambdaEmulator::function("score"),
            "aws.lambda.region": "us-east-1", "aws.lambda.endpoint": lambda.endpoint,
            "aws.access.key.id": "bench", "aws.secret.access.key": "bench",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
            "aws.lambda.batch.size": batch.to_string(),
            "aws.lambda.max.in.flight": in_flight.to_string(),
            "aws.lambda.linger.ms": "2",
            "aws.lambda.response.topic": output,
        }});
        create_connector(&http, port, &config).await?;
        let backlog = tokio::task::block_in_place(|| {
            read_results(&consumer, through as usize, Duration::from_secs(900))
        })?;
        let rate = backlog.rate();
        // Latency at a steady rate, from an empty backlog.
        let n_steady = RATE * LATENCY_SECS;
        let sender = steady(&producer, &input, through, n_steady);
        let latencies = tokio::task::block_in_place(|| {
            read_results(
                &consumer,
                n_steady as usize,
                Duration::from_secs(LATENCY_SECS + 120),
            )
        })?;
        sender.await?;
        let (p50, p99) = percentiles(&latencies);
        let stages = stage_percentiles(&latencies);
        rows.push(Row {
            batch,
            in_flight,
            bare_rate,
            bare_p50,
            bare_p99,
            rate,
            p50,
            p99,
            stages,
        });
    }
    println!(
        "| batch | in flight | bare invoke records/s | bare invoke p50 / p99 ms | Sluice records/s | \
         Sluice vs bare | Sluice end-to-end p50 / p99 ms at {RATE}/s |\n|---|---|---|---|---|---|---|"
    );
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.1} / {:.1} | {:.0} | {:.2}x | {:.1} / {:.1} |",
            r.batch,
            r.in_flight,
            r.bare_rate,
            r.bare_p50,
            r.bare_p99,
            r.rate,
            r.rate / r.bare_rate,
            r.p50,
            r.p99
        );
    }
    println!(
        "\nWhere the end-to-end time goes at {RATE}/s (p50 / p99 ms of each stage; the result's \
         Kafka timestamp is when the worker queued it):\n\n| batch | in flight | produced → result \
         queued | of which the invocation | result queued → read |\n|---|---|---|---|---|"
    );
    for r in &rows {
        let [a, b, c] = r.stages;
        println!(
            "| {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} |",
            r.batch, r.in_flight, a.0, a.1, b.0, b.1, c.0, c.1
        );
    }
    println!(
        "\nOne Kafka hop on this broker (produce → consume, {RATE}/s): p50 {hop_p50:.1} ms, p99 \
         {hop_p99:.1} ms; Sluice's path has two (input → worker, result → reader)."
    );
    Ok(())
}
