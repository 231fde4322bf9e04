//! Start-up failures are one clear line, and the embedded default starts with no Kafka configured.

use std::process::Command;
use std::time::Duration;

use sluice_tests::{eventually, free_port, sluice_bin};

#[test]
fn unreachable_broker_is_one_clear_line() {
    let port = free_port();
    let out = Command::new(sluice_bin())
        .env("SLUICE_BOOTSTRAP_SERVERS", format!("127.0.0.1:{port}"))
        .env("SLUICE_REST_PORT", free_port().to_string())
        .env("SLUICE_LOG", "off")
        .output()
        .expect("running sluice");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with(&format!("error: cannot reach Kafka at 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn invalid_worker_config_lists_every_error() {
    let out = Command::new(sluice_bin())
        .env("SLUICE_REST_PORT", "99999")
        .env("SLUICE_OFFSET_FLUSH_INTERVAL_MS", "soon")
        .env("SLUICE_LOG", "off")
        .output()
        .expect("running sluice");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 error(s)")
            && stderr.contains("rest.port")
            && stderr.contains("offset.flush.interval.ms"),
        "{stderr}"
    );
}

#[tokio::test]
async fn embedded_default_serves_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let rest = free_port();
    let mut child = Command::new(sluice_bin())
        .current_dir(dir.path())
        .env("SLUICE_REST_PORT", rest.to_string())
        .env("SLUICE_EMBEDDED_BROKER_PORT", free_port().to_string())
        .env("SLUICE_LOG", "warn")
        .spawn()
        .expect("running sluice");
    let http = reqwest::Client::new();
    let info = eventually(
        "the embedded worker to answer",
        Duration::from_secs(60),
        || {
            let http = http.clone();
            async move {
                http.get(format!("http://127.0.0.1:{rest}/"))
                    .send()
                    .await
                    .ok()?
                    .json::<serde_json::Value>()
                    .await
                    .ok()
            }
        },
    )
    .await;
    assert_eq!(info["kafka_cluster_id"], "sluice-embedded");
    assert!(
        dir.path().join("data").join("tansu.db").exists(),
        "data directory not created"
    );
    let _ = child.kill();
    let _ = child.wait();
}
