//! moto's server (PyPI `moto[server]`): AWS's STS (and S3, without signature checks) for tests of
//! the shared AWS settings, on a free port.
//!
//! The server comes from `SLUICE_MOTO_SERVER`, else `moto_server` beside `SLUICE_TEST_PYTHON`
//! (the virtualenv `scripts/test.sh` installs it into), else `PATH`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::free_port;

/// A moto server process, killed on drop.
pub struct Moto {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    child: Child,
}

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_MOTO_SERVER") {
        return p.into();
    }
    std::env::var("SLUICE_TEST_PYTHON")
        .ok()
        .map(PathBuf::from)
        .and_then(|python| python.parent().map(|bin| bin.join("moto_server")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "moto_server".into())
}

impl Moto {
    /// Starts a server on a free port and waits until it listens.
    pub fn start() -> Self {
        let port = free_port();
        let mut child = Command::new(binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} failed: {e} (scripts/test.sh installs it)",
                    binary().display()
                )
            });
        crate::wait_for_port(port, &mut child, "moto_server");
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
