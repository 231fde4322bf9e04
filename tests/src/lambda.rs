//! A real Lambda runtime (serverless-offline, running real Node handlers) on a free loopback
//! port, and a throttling proxy in front of it for what it cannot do.
//!
//! serverless-offline comes from `SLUICE_SERVERLESS` (its `node_modules` folder's parent), else
//! `~/.cache/sluice/tools/serverless` (`scripts/test.sh` installs it there). It serves the Lambda
//! Invoke API for the functions of a `serverless.yml` that the harness writes into a temporary
//! folder with the test's handlers; a function `f` is invoked as `sluice-test-f`. It never
//! throttles: the [`ThrottleProxy`] answers chosen invocations with 429
//! `TooManyRequestsException`, as Lambda does when a function's concurrency is used up, without
//! forwarding them (so the function truly did not run). It can also refuse payloads over a
//! limit with 413 `RequestEntityTooLargeException` (serverless-offline takes any size), and add
//! the `x-amzn-RequestId` and `X-Amz-Executed-Version` headers Lambda puts on every answer
//! (serverless-offline sends neither).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::{free_port, wait_for_port};

/// A serverless-offline process serving `functions`, killed on drop.
pub struct LambdaEmulator {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The service folder: handlers, and whatever files they write.
    pub dir: tempfile::TempDir,
    child: Child,
}

fn install_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_SERVERLESS") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/sluice/tools/serverless")
}

impl LambdaEmulator {
    /// Serves the Node handlers in `handlers_js` (a CommonJS module) as the functions named in
    /// `functions` (each exported under its name), and waits until the Invoke API listens.
    /// `{dir}` in the source is replaced with the service folder.
    pub fn start(handlers_js: &str, functions: &[&str]) -> Self {
        let install = install_dir();
        let modules = install.join("node_modules");
        assert!(
            modules.join("serverless-offline/package.json").exists(),
            "{} is missing (scripts/test.sh installs serverless and serverless-offline)",
            modules.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut yml = format!(
            "service: sluice\nframeworkVersion: \"3\"\nprovider:\n  name: aws\n  runtime: nodejs20.x\n  \
             stage: test\n  region: us-east-1\nplugins:\n  - serverless-offline\ncustom:\n  \
             serverless-offline:\n    host: 127.0.0.1\n    lambdaPort: {port}\n    noSponsor: true\n\
             functions:\n"
        );
        for f in functions {
            yml.push_str(&format!(
                "  {f}:\n    handler: handler.{f}\n    timeout: 30\n"
            ));
        }
        std::fs::write(dir.path().join("serverless.yml"), yml).expect("serverless.yml");
        let source = handlers_js.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(dir.path().join("handler.js"), source).expect("handler.js");
        std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).expect("symlink");
        let mut child = Command::new("node")
            .arg(modules.join("serverless/bin/serverless.js"))
            .args(["offline", "start"])
            .current_dir(dir.path())
            .env("SLS_TELEMETRY_DISABLED", "1")
            .env("SLS_NOTIFICATIONS_MODE", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting node (scripts/test.sh installs it)");
        wait_for_port(port, &mut child, "serverless-offline");
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            dir,
            child,
        }
    }

    /// The name Lambda knows function `f` by.
    pub fn function(f: &str) -> String {
        format!("sluice-test-{f}")
    }

    /// A file in the service folder, as a handler writing `{dir}/<name>` sees it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does, changeable while it runs.
#[derive(Default)]
pub struct Throttling {
    /// Throttle every n-th invocation (0: none).
    pub every: AtomicU64,
    /// Invocations seen.
    pub calls: AtomicU64,
    /// Invocations throttled.
    pub throttled: AtomicU64,
    /// Refuse payloads over this many bytes with 413 (0: no limit).
    pub max_payload: AtomicU64,
    /// Invocations refused as too large.
    pub too_large: AtomicU64,
    /// Add Lambda's request id (`proxy-<n>`) and executed version (`$LATEST`) headers.
    pub lambda_headers: std::sync::atomic::AtomicBool,
}

/// A proxy in front of the emulator that throttles chosen invocations.
pub struct ThrottleProxy {
    /// `http://127.0.0.1:<port>`: give this to the connector as `aws.lambda.endpoint`.
    pub endpoint: String,
    /// The throttling, shared with the proxy.
    pub throttling: Arc<Throttling>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    throttling: Arc<Throttling>,
}

impl ThrottleProxy {
    /// A proxy to `upstream` on a free port.
    pub async fn start(upstream: &str) -> Self {
        let throttling = Arc::new(Throttling::default());
        let state = Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            throttling: Arc::clone(&throttling),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = Arc::clone(&state);
                async move { forward(&state, method, uri, headers, body).await }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            throttling,
            task,
        }
    }
}

async fn forward(
    state: &ProxyState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t = &state.throttling;
    let n = t.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let every = t.every.load(Ordering::SeqCst);
    if every > 0 && n.is_multiple_of(every) {
        t.throttled.fetch_add(1, Ordering::SeqCst);
        let body = r#"{"Type":"User","message":"Rate Exceeded. (injected by the test proxy)"}"#;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("x-amzn-errortype", "TooManyRequestsException"),
                ("content-type", "application/json"),
            ],
            body,
        )
            .into_response();
    }
    let max = t.max_payload.load(Ordering::SeqCst);
    if max > 0 && body.len() as u64 > max {
        t.too_large.fetch_add(1, Ordering::SeqCst);
        let body = format!(
            r#"{{"Type":"User","message":"{} byte payload is too large for the Invoke operation (limit {max} bytes, injected by the test proxy)"}}"#,
            body.len()
        );
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [
                ("x-amzn-errortype", "RequestEntityTooLargeException"),
                ("content-type", "application/json"),
            ],
            body,
        )
            .into_response();
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = state
        .http
        .request(method, format!("{}{path}", state.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut out = HeaderMap::new();
            for (name, value) in r.headers() {
                if !matches!(
                    name.as_str(),
                    "content-length" | "transfer-encoding" | "connection"
                ) {
                    out.insert(name.clone(), value.clone());
                }
            }
            if t.lambda_headers.load(Ordering::SeqCst) {
                let id = format!("proxy-{n}");
                out.insert("x-amzn-requestid", id.parse().expect("header value"));
                out.insert(
                    "x-amz-executed-version",
                    axum::http::HeaderValue::from_static("$LATEST"),
                );
            }
            let body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            (status, out, body).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
