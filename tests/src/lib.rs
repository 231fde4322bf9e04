//! Test harness: real processes, free ports, unique names, polling with deadlines.
//!
//! - [`Broker`] runs `sluice broker` (the embedded tansu broker with SQLite storage) as its own
//!   process on a free port, with its data in a temporary directory.
//! - [`Worker`] runs a `sluice` worker process against a broker, with internal topics and group
//!   unique to the test, and can be killed (SIGKILL), terminated (SIGTERM) and restarted.
//! - [`kinesis::KinesisEmulator`] runs a Kinesis emulator, [`kinesis::FaultProxy`] throttles in front of it.
//! - [`eventually`] polls a condition until it holds or a deadline passes.
//!
//! The `sluice` binary is built on first use (`cargo build -p sluice-worker --bin sluice`), or
//! taken from `SLUICE_BIN`.

pub mod jdbc;
pub mod kafka;
pub mod kinesis;
pub mod lambda;
pub mod mariadb;
pub mod moto;
pub mod postgres;
pub mod s3;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use serde_json::{Value, json};

/// A port nobody listens on right now, for a server this test starts.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`): a port the kernel hands out
/// for `:0` is also the kind it hands to outgoing connections, so between this check and the
/// server's bind a Kafka client elsewhere on the machine could take it (CI saw "Address already
/// in use" that way). Below the range only another test's server competes, and each test process
/// starts its search at a different random point.
pub fn free_port() -> u16 {
    static NEXT: OnceLock<std::sync::Mutex<u32>> = OnceLock::new();
    let (low, high) = below_ephemeral_range();
    let span = u32::from(high - low);
    let next = NEXT.get_or_init(|| {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id().wrapping_mul(2_654_435_761);
        std::sync::Mutex::new(seed % span)
    });
    let mut next = next
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..span {
        // Steps of a prime apart, so neighbouring test processes do not walk into each other.
        *next = (*next + 7919) % span;
        let port = low + u16::try_from(*next).expect("span fits u16");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}")
}

/// The lower half of the ports below the kernel's ephemeral range (32768 by default).
fn below_ephemeral_range() -> (u16, u16) {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    ((start / 2).max(1024), start.max(2048))
}

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// The `sluice` binary, built once per test process.
pub fn sluice_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("SLUICE_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "sluice-worker", "--bin", "sluice"])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the sluice binary failed");
        // <target>/debug/deps/<test binary> → <target>/debug/sluice
        let exe = std::env::current_exe().expect("current exe");
        let dir = exe.parent().and_then(Path::parent).expect("target dir");
        let bin = dir.join("sluice");
        assert!(bin.exists(), "{} does not exist", bin.display());
        bin
    })
    .clone()
}

/// Polls `check` every `every` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `child` (`what`: a broker, a worker, a test service) listens on `port`; panics if
/// it exits first or does not listen within 30 s.
pub fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on {port}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A Kafka-compatible broker process.
pub struct Broker {
    /// `host:port`.
    pub bootstrap: String,
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker on a free port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Self::spawn(port, dir.path());
        Self {
            bootstrap: format!("127.0.0.1:{port}"),
            port,
            child,
            dir,
        }
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("broker.log"))
            .expect("log file");
        let mut child = Command::new(sluice_bin())
            .args(["broker", "--port", &port.to_string(), "--data-dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting broker");
        wait_for_port(port, &mut child, "broker");
        child
    }

    /// SIGKILLs the broker (its data stays).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.port, self.dir.path());
    }

    /// SIGSTOPs the broker: connections stay open and nothing is answered.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// SIGCONTs a frozen broker.
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Settings of a worker process; reused across restarts so it finds its state again.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Properties passed as `SLUICE_*` environment variables.
    pub props: BTreeMap<String, String>,
    /// Log filter (`SLUICE_LOG`); default `SLUICE_TEST_LOG` or `info`.
    pub log: Option<String>,
    /// Other environment variables (test hooks).
    pub env: BTreeMap<String, String>,
}

impl WorkerSettings {
    /// Settings with internal topics and group unique to this test.
    pub fn new(broker: &Broker) -> Self {
        let id = unique("t");
        let props = BTreeMap::from([
            ("bootstrap.servers".to_owned(), broker.bootstrap.clone()),
            ("group.id".to_owned(), format!("{id}-cluster")),
            ("config.storage.topic".to_owned(), format!("{id}-configs")),
            ("offset.storage.topic".to_owned(), format!("{id}-offsets")),
            ("offset.storage.partitions".to_owned(), "3".to_owned()),
            ("status.storage.topic".to_owned(), format!("{id}-status")),
            ("status.storage.partitions".to_owned(), "2".to_owned()),
            ("offset.flush.interval.ms".to_owned(), "1000".to_owned()),
            ("rest.host.name".to_owned(), "127.0.0.1".to_owned()),
        ]);
        Self {
            props,
            log: None,
            env: BTreeMap::new(),
        }
    }

    /// Sets the log filter.
    pub fn log(mut self, filter: &str) -> Self {
        self.log = Some(filter.to_owned());
        self
    }

    /// Sets a property.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.props.insert(key.to_owned(), value.to_owned());
        self
    }
}

/// A `sluice` worker process.
pub struct Worker {
    /// Base URL of its REST API.
    pub url: String,
    /// Its settings (with the REST port it used).
    pub settings: WorkerSettings,
    child: Option<Child>,
    bin: PathBuf,
    log: PathBuf,
    _logdir: tempfile::TempDir,
    http: reqwest::Client,
}

/// A response: status code and JSON body (`Null` when empty).
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body as JSON (or a JSON string holding non-JSON text).
    pub body: Value,
}

impl Worker {
    /// Starts a worker and waits until its REST API answers.
    pub async fn start(settings: WorkerSettings) -> Self {
        Self::start_binary(settings, sluice_bin()).await
    }

    /// Starts a worker from another binary (one built with extra plugins).
    pub async fn start_binary(settings: WorkerSettings, bin: PathBuf) -> Self {
        let chosen = settings.props.contains_key("rest.port");
        let mut attempts = 0;
        loop {
            let mut settings = settings.clone();
            let port = match settings.props.get("rest.port") {
                Some(p) => p.parse().expect("rest.port"),
                None => free_port(),
            };
            settings
                .props
                .insert("rest.port".to_owned(), port.to_string());
            let logdir = tempfile::tempdir().expect("tempdir");
            let log = logdir.path().join("worker.log");
            let mut worker = Self {
                url: format!("http://127.0.0.1:{port}"),
                settings,
                child: None,
                bin: bin.clone(),
                log,
                _logdir: logdir,
                http: reqwest::Client::new(),
            };
            match worker.try_spawn().await {
                Ok(()) => return worker,
                // Another test's server took the free port between the check and the bind.
                Err(log) if !chosen && attempts < 5 && log.contains("Address already in use") => {
                    attempts += 1;
                }
                Err(log) => panic!("{log}"),
            }
        }
    }

    async fn spawn(&mut self) {
        if let Err(log) = self.try_spawn().await {
            panic!("{log}");
        }
    }

    /// Starts the process and waits until it is healthy; on exit during start-up, the log.
    async fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(&self.bin);
        for (k, v) in &self.settings.props {
            cmd.env(
                format!("SLUICE_{}", k.to_ascii_uppercase().replace('.', "_")),
                v,
            );
        }
        cmd.envs(&self.settings.env);
        let child = cmd
            .env(
                "SLUICE_LOG",
                self.settings.log.clone().unwrap_or_else(|| {
                    std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".to_owned())
                }),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting worker");
        self.child = Some(child);
        let url = self.url.clone();
        let http = self.http.clone();
        let log = self.log.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{url}/health")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "worker exited with {status} during start-up; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            assert!(
                Instant::now() < deadline,
                "worker did not become healthy; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Peak resident memory of the process so far, in bytes (Linux `VmHWM`).
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Waits for the process to exit by itself (a crash), then forgets it.
    pub async fn wait_for_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process was started and not killed or terminated since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: the process dies at once, committing nothing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for exit; returns how long the exit took.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(mut child) = self.child.take() {
            let sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            assert!(sent.is_ok_and(|s| s.success()), "sending SIGTERM failed");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("worker did not exit within 60 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        started.elapsed()
    }

    /// Starts the worker process again with the same settings and port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// SIGTERM, wait for the exit, then start again with the same settings and port; returns
    /// how long the exit took.
    pub async fn restart_gracefully(&mut self) -> Duration {
        let took = self.terminate();
        self.spawn().await;
        took
    }

    /// The sum of the `/metrics` samples of `name` whose labels include each of `labels`
    /// (`connector="gen"`); 0 when there are none.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let body = self.get("/metrics").await.body;
        body.as_str()
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{'))
            })
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The worker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a request with an optional JSON body.
    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request failed");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Response { status, body }
    }

    /// Sends a raw body with a content type.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request failed");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Response {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path, None).await
    }

    /// Creates a connector, asserting 201.
    pub async fn create(&self, name: &str, config: Value) -> Value {
        let r = self
            .request(
                "POST",
                "/connectors",
                Some(json!({"name": name, "config": config})),
            )
            .await;
        assert_eq!(r.status, 201, "creating {name}: {:?}", r.body);
        r.body
    }

    /// The sum of a sink connector's committed offsets over all its partitions: how many records
    /// of its topics it has committed (offsets start at 0). `None` until the API answers.
    pub async fn committed_sink_records(&self, name: &str) -> Option<i64> {
        let body = self.get(&format!("/connectors/{name}/offsets")).await.body;
        Some(
            body["offsets"]
                .as_array()?
                .iter()
                .filter_map(|o| o["offset"]["kafka_offset"].as_i64())
                .sum(),
        )
    }

    /// Waits (up to 60 s) until task 0 of `name` is FAILED and returns its trace.
    pub async fn failed_task_trace(&self, name: &str) -> String {
        let status = eventually("task 0 to fail", Duration::from_secs(60), || async {
            let s = self.get(&format!("/connectors/{name}/status")).await.body;
            (s["tasks"][0]["state"] == "FAILED").then_some(s)
        })
        .await;
        status["tasks"][0]["trace"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the connector and `tasks` tasks are in `state`.
    pub async fn wait_for_state(&self, name: &str, state: &str, tasks: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.get(&format!("/connectors/{name}/status")).await;
            let ok = r.status == 200
                && r.body["connector"]["state"] == state
                && r.body["tasks"]
                    .as_array()
                    .is_some_and(|t| t.len() == tasks && t.iter().all(|t| t["state"] == state));
            if ok {
                return r.body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after 60 s waiting for {name} and {tasks} tasks {state}; last status: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("---- last lines of worker log {} ----", self.url);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Parses a JSON-lines file written by the file sink; missing file = no lines.
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// Waits until the JSON-lines file holds every datagen sequence number of `tasks` x `per_task`,
/// and returns its records.
pub async fn wait_for_every_sequence(
    out: &Path,
    tasks: i64,
    per_task: i64,
    timeout: Duration,
) -> Vec<Value> {
    eventually(
        "every sequence number in the sink file",
        timeout,
        || async {
            let records = read_json_lines(out);
            sequence_report(&records, tasks, per_task)
                .missing
                .is_empty()
                .then_some(records)
        },
    )
    .await
}

/// Counts of (task, seq) pairs in datagen records.
pub struct SequenceReport {
    /// Distinct pairs seen.
    pub distinct: usize,
    /// Records seen more than once (total extra copies).
    pub duplicates: usize,
    /// Extra copies identical to the first (the sink delivered the same Kafka record again).
    pub sink_duplicates: usize,
    /// Extra copies generated anew (the source produced the sequence number again).
    pub source_duplicates: usize,
    /// Expected pairs never seen.
    pub missing: Vec<(i64, i64)>,
}

/// Checks that every `seq` in `0..per_task` of every task in `0..tasks` is present.
pub fn sequence_report(records: &[Value], tasks: i64, per_task: i64) -> SequenceReport {
    let mut seen: BTreeMap<(i64, i64), Vec<&Value>> = BTreeMap::new();
    for r in records {
        let key = (
            r["task"].as_i64().unwrap_or(-1),
            r["seq"].as_i64().unwrap_or(-1),
        );
        seen.entry(key).or_default().push(r);
    }
    let (mut sink_duplicates, mut source_duplicates) = (0, 0);
    for copies in seen.values() {
        for extra in &copies[1..] {
            if copies[..]
                .iter()
                .take_while(|c| !std::ptr::eq(**c, *extra))
                .any(|c| c == extra)
            {
                sink_duplicates += 1;
            } else {
                source_duplicates += 1;
            }
        }
    }
    let mut missing = Vec::new();
    for t in 0..tasks {
        for s in 0..per_task {
            if !seen.contains_key(&(t, s)) {
                missing.push((t, s));
            }
        }
    }
    SequenceReport {
        distinct: seen.len(),
        duplicates: seen.values().map(|c| c.len() - 1).sum(),
        sink_duplicates,
        source_duplicates,
        missing,
    }
}
