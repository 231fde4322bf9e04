//! Failover benchmark: a fleet of three `sluice` workers (default `session.timeout.ms` and
//! `heartbeat.interval.ms`) runs a datagen connector with six tasks. Each trial SIGKILLs one worker
//! (the leader every third trial) and measures
//! - *reassigned*: from the kill until every task is RUNNING on a live worker (status API);
//! - *flowing*: from the kill until every moved task's records arrive in Kafka again (a consumer
//!   in this process; a record counts once it arrives more than 300 ms after the kill, later than
//!   anything the dead worker had in flight);
//! - *join*: the killed worker is started again; from its start until its share of tasks is
//!   RUNNING on it (process start, fleet join and rebalance).
//!
//! Usage: `sluice-failover-bench [trials]` (default 10). Kafka Connect's figure beside it is its
//! documented default, not a measurement: a dead worker's tasks stay unassigned for
//! `scheduled.rebalance.max.delay.ms` = 300 s (Kafka Connect cannot be downloaded here).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::{Value, json};
use sluice_bench::{Killed, Result, free_port, sluice_bin, wait_healthy, wait_port};

const TASKS: usize = 6;

struct Fleet {
    bin: std::path::PathBuf,
    env: Vec<(String, String)>,
    ports: Vec<u16>,
    procs: Vec<Option<Killed>>,
    http: reqwest::Client,
    logs: std::path::PathBuf,
}

impl Fleet {
    fn spawn(&mut self, i: usize) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("worker-{i}.log")))?;
        let mut cmd = Command::new(&self.bin);
        cmd.envs(self.env.iter().cloned())
            .env("SLUICE_REST_PORT", self.ports[i].to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.procs[i] = Some(Killed(cmd.spawn()?));
        Ok(())
    }

    async fn get(&self, i: usize, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.ports[i]))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.ports.len())
            .filter(|i| self.procs[*i].is_some())
            .collect()
    }

    /// Task → worker id, once every task is RUNNING (status API of the first live worker).
    async fn running(&self, name: &str) -> Option<Vec<String>> {
        self.running_at(*self.alive().first()?, name).await
    }

    /// Task → worker id as worker `i` reports it, once every task is RUNNING.
    async fn running_at(&self, i: usize, name: &str) -> Option<Vec<String>> {
        let status = self.get(i, &format!("/connectors/{name}/status")).await?;
        let tasks = status["tasks"].as_array()?;
        if tasks.len() != TASKS || tasks.iter().any(|t| t["state"] != "RUNNING") {
            return None;
        }
        tasks
            .iter()
            .map(|t| t["worker_id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Task → worker id once every task is RUNNING and every live worker's status API agrees
    /// with the fleet's assignment (status records reach each worker's status store a few
    /// milliseconds apart).
    async fn settled(&self, name: &str) -> Option<Vec<String>> {
        let owners = self.running(name).await?;
        for i in self.alive() {
            if self.running_at(i, name).await? != owners {
                return None;
            }
        }
        let i = *self.alive().first()?;
        let fleet = self.get(i, "/fleet").await?;
        let mut assigned = vec![String::new(); TASKS];
        for w in fleet["workers"].as_array()? {
            let id = w["worker_id"].as_str()?;
            for t in w["tasks"].as_array()? {
                let n = t["task"].as_u64()? as usize;
                *assigned.get_mut(n)? = id.to_owned();
            }
        }
        (assigned == owners).then_some(owners)
    }

    async fn leader_port(&self) -> Option<u16> {
        let i = *self.alive().first()?;
        let fleet = self.get(i, "/fleet").await?;
        fleet["leader"]["url"]
            .as_str()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()
    }
}

async fn poll<T, F, Fut>(timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err("timed out".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(idx).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> Result<()> {
    let trials: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10);
    let bin = sluice_bin()?;
    let data = tempfile::tempdir()?;
    let broker_port = free_port()?;
    let _broker = Killed(
        Command::new(&bin)
            .args(["broker", "--port", &broker_port.to_string(), "--data-dir"])
            .arg(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_port(broker_port)?;
    let bootstrap = format!("127.0.0.1:{broker_port}");
    let id = std::process::id();
    let env = vec![
        ("SLUICE_BOOTSTRAP_SERVERS", bootstrap.clone()),
        ("SLUICE_GROUP_ID", format!("failover-{id}")),
        (
            "SLUICE_CONFIG_STORAGE_TOPIC",
            format!("failover-{id}-configs"),
        ),
        (
            "SLUICE_OFFSET_STORAGE_TOPIC",
            format!("failover-{id}-offsets"),
        ),
        (
            "SLUICE_STATUS_STORAGE_TOPIC",
            format!("failover-{id}-status"),
        ),
        ("SLUICE_REST_HOST_NAME", "127.0.0.1".into()),
        ("SLUICE_CLUSTER_SECRET", format!("bench-{id}")),
        ("SLUICE_OFFSET_FLUSH_INTERVAL_MS", "1000".into()),
    ];
    // Worker logs: kept in SLUICE_BENCH_LOGS if set.
    let scratch = tempfile::tempdir()?;
    let logs = match std::env::var_os("SLUICE_BENCH_LOGS") {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            tempfile::Builder::new()
                .prefix("failover-")
                .tempdir_in(dir)?
                .keep()
        }
        None => scratch.path().to_owned(),
    };
    let mut fleet = Fleet {
        bin,
        env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        ports: (0..3).map(|_| free_port()).collect::<Result<_>>()?,
        procs: vec![None, None, None],
        http: reqwest::Client::new(),
        logs,
    };
    for i in 0..3 {
        fleet.spawn(i)?;
    }
    for i in 0..3 {
        wait_healthy(&fleet.http, fleet.ports[i]).await?;
    }

    let topic = format!("failover-{id}");
    let name = "failover-datagen";
    let created = fleet
        .http
        .post(format!("http://127.0.0.1:{}/connectors", fleet.ports[0]))
        .json(&json!({"name": name, "config": {
            "connector.class": "DatagenConnector", "kafka.topic": topic, "quickstart": "orders",
            "tasks.max": TASKS.to_string(), "records.per.second": "50",
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false"}}))
        .send()
        .await?;
    if created.status().as_u16() != 201 {
        return Err(format!("creating the connector: {}", created.text().await?).into());
    }
    poll(Duration::from_secs(60), || fleet.running(name)).await?;

    // Last arrival time of each datagen task's records.
    let arrivals: Arc<Mutex<BTreeMap<i64, Instant>>> = Arc::default();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("failover-watch-{id}"))
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "50")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let seen = Arc::clone(&arrivals);
    let watcher = tokio::spawn(async move {
        let mut stream = consumer.stream();
        while let Some(Ok(m)) = stream.next().await {
            let task = m
                .payload()
                .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                .and_then(|v| v["task"].as_i64());
            if let Some(t) = task {
                seen.lock().insert(t, Instant::now());
            }
        }
    });
    poll(Duration::from_secs(60), || async {
        (arrivals.lock().len() == TASKS).then_some(())
    })
    .await?;

    let (mut reassigned, mut flowing, mut joined) = (Vec::new(), Vec::new(), Vec::new());
    for trial in 0..trials {
        let owners = poll(Duration::from_secs(60), || fleet.settled(name)).await?;
        let victim = if trial % 3 == 2 {
            let port = poll(Duration::from_secs(30), || fleet.leader_port()).await?;
            fleet
                .ports
                .iter()
                .position(|p| *p == port)
                .ok_or("leader")?
        } else {
            fleet
                .alive()
                .into_iter()
                .find(|i| {
                    owners
                        .iter()
                        .any(|o| o.ends_with(&format!(":{}", fleet.ports[*i])))
                })
                .ok_or("no worker owns tasks")?
        };
        let victim_id = format!("127.0.0.1:{}", fleet.ports[victim]);
        let moved: BTreeSet<i64> = owners
            .iter()
            .enumerate()
            .filter(|(_, o)| **o == victim_id)
            .map(|(t, _)| t as i64)
            .collect();
        let killed = Instant::now();
        let killed_wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() % 3600.0)
            .unwrap_or(0.0);
        fleet.procs[victim] = None; // SIGKILL
        poll(Duration::from_secs(120), || async {
            let owners = fleet.running(name).await?;
            (!owners.contains(&victim_id)).then_some(())
        })
        .await?;
        let r = killed.elapsed().as_secs_f64();
        let after = killed + Duration::from_millis(300);
        poll(Duration::from_secs(120), || async {
            let a = arrivals.lock();
            moved
                .iter()
                .all(|t| a.get(t).is_some_and(|at| *at > after))
                .then_some(())
        })
        .await?;
        let f = killed.elapsed().as_secs_f64();

        let started = Instant::now();
        fleet.spawn(victim)?;
        poll(Duration::from_secs(120), || async {
            let owners = fleet.running(name).await?;
            (owners.iter().filter(|o| **o == victim_id).count() >= TASKS / 3).then_some(())
        })
        .await?;
        let j = started.elapsed().as_secs_f64();
        println!(
            "trial {trial}: killed {} ({} tasks moved) at {killed_wall:.3} s past the hour: \
             reassigned {r:.2} s, flowing {f:.2} s; rejoin {j:.2} s",
            if trial % 3 == 2 {
                "the leader"
            } else {
                "a follower"
            },
            moved.len()
        );
        reassigned.push(r);
        flowing.push(f);
        joined.push(j);
    }

    // Close the watching consumer while the broker still runs (closing blocks without one).
    watcher.abort();
    let _ = watcher.await;
    println!();
    println!("| {trials} trials, 3 workers, {TASKS} tasks, session.timeout.ms=6000 | p50 | max |");
    println!("|---|---:|---:|");
    for (what, v) in [
        ("SIGKILL → every task RUNNING elsewhere (s)", &reassigned),
        ("SIGKILL → moved tasks' records flowing (s)", &flowing),
        ("worker start → its share RUNNING on it (s)", &joined),
    ] {
        println!(
            "| {what} | {:.2} | {:.2} |",
            percentile(v, 0.5),
            percentile(v, 1.0)
        );
    }
    println!("| Kafka Connect default: dead worker's tasks unassigned for up to (s) | 300 | 300 |");
    println!(
        "\nratio, Kafka Connect's 300 s over Sluice's p50 records-flowing time: {:.0}x",
        300.0 / percentile(&flowing, 0.5)
    );
    Ok(())
}
