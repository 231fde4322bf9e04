//! A real Kinesis emulator (kinesalite, in memory) on a free loopback port, and a fault-injecting
//! proxy in front of it for what the emulator cannot do: throttle and fail single records.
//!
//! The emulator comes from `SLUICE_KINESALITE` (the module's folder), else
//! `~/.cache/sluice/tools/kinesalite/node_modules/kinesalite` (`scripts/test.sh` installs it
//! there). kinesalite checks Kinesis's request limits itself, but it never throttles and fails a
//! whole `PutRecords` call rather than one record: the [`FaultProxy`] refuses chosen records with
//! `ProvisionedThroughputExceededException` (they are not forwarded, so they are truly not
//! written), fails whole calls with `InternalFailure`, and records every request over a limit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::{eventually, free_port};

/// One record read back from a stream.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    /// Shard id.
    pub shard: String,
    /// Sequence number.
    pub sequence: String,
    /// Partition key.
    pub key: String,
    /// Data.
    pub data: Vec<u8>,
}

/// A kinesalite process (in-memory), killed on drop.
pub struct KinesisEmulator {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    client: Client,
    child: Child,
}

fn module_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_KINESALITE") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/sluice/tools/kinesalite/node_modules/kinesalite")
}

/// A client of `endpoint` with static test credentials.
pub async fn client(endpoint: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .build();
    Client::from_conf(config)
}

impl KinesisEmulator {
    /// Starts the emulator on a free loopback port and waits until it listens.
    pub async fn start() -> Self {
        let module = module_dir();
        assert!(
            module.join("package.json").exists(),
            "{} is missing (scripts/test.sh installs kinesalite)",
            module.display()
        );
        let port = free_port();
        let script = format!(
            "require({:?})({{shardLimit: 100, createStreamMs: 50, deleteStreamMs: 50, \
             updateStreamMs: 50}}).listen({port}, '127.0.0.1')",
            module.display().to_string()
        );
        let mut child = Command::new("node")
            .args(["-e", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting node (scripts/test.sh installs it)");
        crate::wait_for_port(port, &mut child, "kinesalite");
        let endpoint = format!("http://127.0.0.1:{port}");
        Self {
            client: client(&endpoint).await,
            endpoint,
            child,
        }
    }

    /// A client of the emulator (one per emulator, cloned: clients share their connections).
    pub async fn client(&self) -> Client {
        self.client.clone()
    }

    /// Creates a stream of `shards` shards and waits until it is ACTIVE.
    pub async fn create_stream(&self, name: &str, shards: i32) {
        let c = self.client().await;
        c.create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
        self.wait_active(name).await;
    }

    /// Waits until the stream is ACTIVE.
    pub async fn wait_active(&self, name: &str) {
        let c = self.client().await;
        eventually("stream ACTIVE", Duration::from_secs(30), || async {
            let s = c
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .ok()?;
            let status = s.stream_description_summary()?.stream_status().clone();
            (status == StreamStatus::Active).then_some(())
        })
        .await;
    }

    /// Puts one record.
    pub async fn put(&self, stream: &str, key: &str, data: &[u8]) -> String {
        let c = self.client().await;
        let out = c
            .put_record()
            .stream_name(stream)
            .partition_key(key)
            .data(Blob::new(data.to_vec()))
            .send()
            .await
            .expect("PutRecord");
        out.sequence_number().to_owned()
    }

    /// Puts records in calls of up to 500, in order; panics if any is refused.
    pub async fn put_many(&self, stream: &str, records: &[(String, Vec<u8>)]) {
        let c = self.client().await;
        for chunk in records.chunks(500) {
            let entries = chunk
                .iter()
                .map(|(k, d)| {
                    aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                        .partition_key(k)
                        .data(Blob::new(d.clone()))
                        .build()
                        .expect("entry")
                })
                .collect();
            let out = c
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries))
                .send()
                .await
                .expect("PutRecords");
            assert_eq!(out.failed_record_count(), Some(0), "a test put was refused");
        }
    }

    /// Splits `shard` in two at the middle of its hash key range; waits until ACTIVE again.
    pub async fn split(&self, stream: &str, shard: &str) {
        let c = self.client().await;
        let shards = c
            .list_shards()
            .stream_name(stream)
            .send()
            .await
            .expect("ListShards");
        let s = shards
            .shards()
            .iter()
            .find(|s| s.shard_id() == shard)
            .expect("shard listed");
        let range = s.hash_key_range().expect("hash key range");
        let (lo, hi): (u128, u128) = (
            range.starting_hash_key().parse().expect("hash key"),
            range.ending_hash_key().parse().expect("hash key"),
        );
        c.split_shard()
            .stream_name(stream)
            .shard_to_split(shard)
            .new_starting_hash_key((lo + (hi - lo) / 2).to_string())
            .send()
            .await
            .expect("SplitShard");
        self.wait_active(stream).await;
    }

    /// Every record of every shard, each shard from its start, in sequence order per shard.
    pub async fn read_all(&self, stream: &str) -> Vec<StreamRecord> {
        let c = self.client().await;
        let shards = c
            .list_shards()
            .stream_name(stream)
            .send()
            .await
            .expect("ListShards");
        let mut out = Vec::new();
        for shard in shards.shards() {
            let id = shard.shard_id().to_owned();
            let mut iterator = c
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(&id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("GetShardIterator")
                .shard_iterator()
                .map(str::to_owned);
            while let Some(it) = iterator {
                let page = c
                    .get_records()
                    .shard_iterator(it)
                    .limit(10_000)
                    .send()
                    .await
                    .expect("GetRecords");
                for r in page.records() {
                    out.push(StreamRecord {
                        shard: id.clone(),
                        sequence: r.sequence_number().to_owned(),
                        key: r.partition_key().to_owned(),
                        data: r.data().as_ref().to_vec(),
                    });
                }
                let caught_up = page.records().is_empty() && page.millis_behind_latest() == Some(0);
                iterator = if caught_up {
                    None
                } else {
                    page.next_shard_iterator().map(str::to_owned)
                };
            }
        }
        out
    }
}

impl Drop for KinesisEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to `PutRecords` calls, changeable while it runs.
#[derive(Default)]
pub struct Faults {
    /// Refuse every n-th record (0: none) with `ProvisionedThroughputExceededException`.
    pub refuse_every: AtomicU64,
    /// Refuse every record whose partition key starts with this, every time.
    pub refuse_key_prefix: Mutex<Option<String>>,
    /// Fail this many upcoming `PutRecords` calls as a whole with HTTP 500 `InternalFailure`.
    pub fail_calls: AtomicU64,
    /// Records refused so far.
    pub refused: AtomicU64,
    /// Records forwarded and stored so far.
    pub accepted: AtomicU64,
    /// `PutRecords` calls seen.
    pub calls: AtomicU64,
    /// Most records in one call.
    pub most_records: AtomicU64,
    /// Requests over a Kinesis limit (each refused with `ValidationException`, as Kinesis does).
    pub violations: Mutex<Vec<String>>,
    seen: AtomicU64,
}

/// A proxy in front of the emulator that injects faults into `PutRecords`.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`: give this to the connector as `kinesis.endpoint`.
    pub endpoint: String,
    /// The faults, shared with the proxy.
    pub faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    faults: Arc<Faults>,
}

impl FaultProxy {
    /// A proxy to `upstream` on a free port.
    pub async fn start(upstream: &str) -> Self {
        let faults = Arc::new(Faults::default());
        let state = Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            faults: Arc::clone(&faults),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&state);
            async move { forward(&state, headers, body).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            faults,
            task,
        }
    }
}

type Answer = (StatusCode, [(&'static str, String); 1], Vec<u8>);

fn answer(status: StatusCode, body: Vec<u8>) -> Answer {
    (
        status,
        [("content-type", "application/x-amz-json-1.1".to_owned())],
        body,
    )
}

async fn send(state: &ProxyState, headers: &HeaderMap, body: Vec<u8>) -> Answer {
    let mut request = state.http.post(&state.upstream).body(body);
    for (name, value) in headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            answer(
                status,
                r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
            )
        }
        Err(e) => answer(StatusCode::BAD_GATEWAY, e.to_string().into_bytes()),
    }
}

async fn forward(state: &ProxyState, headers: HeaderMap, body: Bytes) -> Answer {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target != "Kinesis_20131202.PutRecords" {
        return send(state, &headers, body.to_vec()).await;
    }
    let f = &state.faults;
    f.calls.fetch_add(1, Ordering::SeqCst);
    let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
        return send(state, &headers, body.to_vec()).await;
    };
    let records = request["Records"].as_array().cloned().unwrap_or_default();
    f.most_records
        .fetch_max(records.len() as u64, Ordering::SeqCst);
    // Kinesis's limits: 500 records, 5 MiB of data and keys per call, 1 MiB per record.
    let sizes: Vec<usize> = records
        .iter()
        .map(|r| {
            let data = STANDARD
                .decode(r["Data"].as_str().unwrap_or_default())
                .map_or(0, |d| d.len());
            data + r["PartitionKey"].as_str().map_or(0, str::len)
        })
        .collect();
    let total: usize = sizes.iter().sum();
    let mut broken = Vec::new();
    if records.len() > 500 {
        broken.push(format!("{} records in one call", records.len()));
    }
    if total > 5 * 1024 * 1024 {
        broken.push(format!("{total} bytes in one call"));
    }
    if let Some(big) = sizes.iter().find(|s| **s > 1024 * 1024) {
        broken.push(format!("a record of {big} bytes"));
    }
    if !broken.is_empty() {
        f.violations.lock().extend(broken.iter().cloned());
        let body = json!({"__type": "ValidationException", "message": broken.join("; ")});
        return answer(StatusCode::BAD_REQUEST, body.to_string().into_bytes());
    }
    if f.fail_calls
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        let body = json!({"__type": "InternalFailure", "message": "injected by the test proxy"});
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            body.to_string().into_bytes(),
        );
    }
    let every = f.refuse_every.load(Ordering::SeqCst);
    let prefix = f.refuse_key_prefix.lock().clone();
    let refuse: Vec<bool> = records
        .iter()
        .map(|r| {
            let n = f.seen.fetch_add(1, Ordering::SeqCst) + 1;
            let by_key = prefix.as_deref().is_some_and(|p| {
                r["PartitionKey"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(p)
            });
            by_key || (every > 0 && n.is_multiple_of(every))
        })
        .collect();
    let kept: Vec<Value> = records
        .iter()
        .zip(&refuse)
        .filter(|(_, r)| !**r)
        .map(|(v, _)| v.clone())
        .collect();
    let upstream_results: Vec<Value> = if kept.is_empty() {
        Vec::new()
    } else {
        request["Records"] = Value::Array(kept);
        let (status, _, body) = send(state, &headers, request.to_string().into_bytes()).await;
        if !status.is_success() {
            return answer(status, body);
        }
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        parsed["Records"].as_array().cloned().unwrap_or_default()
    };
    let mut upstream = upstream_results.into_iter();
    let mut failed = 0;
    let results: Vec<Value> = refuse
        .iter()
        .map(|r| {
            if *r {
                failed += 1;
                f.refused.fetch_add(1, Ordering::SeqCst);
                json!({"ErrorCode": "ProvisionedThroughputExceededException",
                       "ErrorMessage": "Rate exceeded for shard (injected by the test proxy)"})
            } else {
                let result = upstream.next().unwrap_or(Value::Null);
                if result["ErrorCode"].is_string() {
                    failed += 1;
                } else {
                    f.accepted.fetch_add(1, Ordering::SeqCst);
                }
                result
            }
        })
        .collect();
    let body = json!({"FailedRecordCount": failed, "Records": results});
    answer(StatusCode::OK, body.to_string().into_bytes())
}

/// How often each item occurs.
pub fn counts<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}
