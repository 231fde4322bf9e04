//! A real MariaDB server per test: `mariadb-install-db` into a temporary directory and `mariadbd`
//! on a free loopback port (InnoDB without flushing, no binary log), stopped on drop. A user
//! `sluice` with a password and every privilege is created for the connector (through the
//! server's socket, as the installed `root` user).
//!
//! The binaries come from `SLUICE_MARIADB_BIN` (their folder), else `PATH` and `/usr/sbin`
//! (`scripts/test.sh` installs Debian's `mariadb-server` when they are missing). As root the
//! server is told `--user=root`, which it otherwise refuses.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use crate::free_port;

/// The connector's user and password.
pub const USER: &str = "sluice";
/// The password of [`USER`].
pub const PASSWORD: &str = "s3cret-pw";

/// A running MariaDB server, killed on drop.
pub struct MariaDb {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    server: Child,
}

fn program(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("SLUICE_MARIADB_BIN") {
        return PathBuf::from(dir).join(name);
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let path = PathBuf::from(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("no {name} (scripts/test.sh installs mariadb-server; or set SLUICE_MARIADB_BIN)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl MariaDb {
    /// Creates a data directory and starts a server on it; returns once the connector's user
    /// can connect.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sluice-mariadb-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let user = if is_root() { "--user=root" } else { "" };
        let mut install = Command::new(program("mariadb-install-db"));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args([user].into_iter().filter(|u| !u.is_empty()))
            .stdin(Stdio::null());
        let out = install.output().expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let socket = dir.path().join("mariadb.sock");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let server = Command::new(program("mariadbd"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mariadb.pid").display()
            ))
            .args([
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=16M",
                "--character-set-server=utf8mb4",
                "--max-connections=200",
            ])
            .args([user].into_iter().filter(|u| !u.is_empty()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mariadbd");
        let mut db = Self { port, dir, server };
        db.create_user(&socket).await;
        db
    }

    /// Connects as root through the socket (polling until the server is up) and creates the
    /// connector's user.
    async fn create_user(&mut self, socket: &std::path::Path) {
        let options = MySqlConnectOptions::new()
            .socket(socket)
            .username("root")
            .database("mysql");
        let deadline = Instant::now() + Duration::from_secs(60);
        let root = loop {
            match MySqlPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
            {
                Ok(pool) => break pool,
                Err(e) => {
                    if let Ok(Some(status)) = self.server.try_wait() {
                        panic!("mariadbd exited ({status}): {}", self.log());
                    }
                    assert!(
                        Instant::now() < deadline,
                        "MariaDB did not start within 60 s: {e}\n{}",
                        self.log()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        for sql in [
            format!("CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'"),
            format!("GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%'"),
            "CREATE DATABASE sluice CHARACTER SET utf8mb4".to_owned(),
        ] {
            sqlx::raw_sql(&sql)
                .execute(&root)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        root.close().await;
    }

    /// A URL of database `sluice` without the user, for the connector.
    pub fn url(&self) -> String {
        format!("mysql://127.0.0.1:{}/sluice", self.port)
    }

    /// A connection pool to database `sluice` for the test itself (as the connector's user).
    pub async fn pool(&self) -> MySqlPool {
        MySqlPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(
                MySqlConnectOptions::new()
                    .host("127.0.0.1")
                    .port(self.port)
                    .username(USER)
                    .password(PASSWORD)
                    .database("sluice"),
            )
            .await
            .expect("connecting to the test MariaDB")
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
