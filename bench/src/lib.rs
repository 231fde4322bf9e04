//! Helpers shared by the benchmarks: free ports, child processes that die with the benchmark, and
//! waiting for a worker to become healthy.

use std::path::PathBuf;
use std::process::Child;
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

/// The `sluice` binary: `SLUICE_BIN`, or the one next to this executable.
pub fn sluice_bin() -> Result<PathBuf> {
    if let Ok(bin) = std::env::var("SLUICE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    Ok(exe.parent().ok_or("no parent")?.join("sluice"))
}
