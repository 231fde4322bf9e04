//! A real PostgreSQL server per test: `initdb` into a temporary directory and `postgres` on a free
//! loopback port (trust authentication, `fsync=off`, `wal_level=logical`), stopped on drop.
//!
//! The server binaries come from `SLUICE_PG_BIN` (their folder), else the first of `initdb` on
//! `PATH` and `/usr/lib/postgresql/*/bin` (`scripts/test.sh` installs PostgreSQL when neither has
//! it). PostgreSQL refuses to run as root: as root, the harness runs it as the `postgres` user
//! (which the Debian package creates) with `runuser`, and hands it the directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::free_port;

/// A running PostgreSQL server, stopped (immediately) on drop.
pub struct Postgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    options: String,
}

fn bin_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_PG_BIN") {
        return p.into();
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let real = std::fs::canonicalize(&path).unwrap_or(path);
        if let Some(dir) = real.parent() {
            return dir.to_owned();
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect(
        "no PostgreSQL server binaries (scripts/test.sh installs them; or set SLUICE_PG_BIN)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` of the server binaries, as the `postgres` user when this process is root.
fn server_command(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// Creates a cluster and starts it; returns once it accepts connections.
    pub fn start() -> Self {
        let bin = bin_dir();
        // Under /tmp when root: the postgres user must be able to reach the folder, which a
        // root-only TMPDIR would not let it.
        let mut builder = tempfile::Builder::new();
        builder.prefix("sluice-pg-");
        let dir = if is_root() {
            builder.tempdir_in("/tmp")
        } else {
            builder.tempdir()
        }
        .expect("temp dir");
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:"]).arg(dir.path());
                    c
                },
                "chown of the PostgreSQL directory",
            );
        }
        let data = dir.path().join("data");
        let mut initdb = server_command(&bin, "initdb");
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "-D",
            ])
            .arg(&data);
        run(initdb, "initdb");
        // In the config file rather than on the command line, so that a test can change it with
        // ALTER SYSTEM and a restart.
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str("\nwal_level = logical\n");
        std::fs::write(&conf, text).expect("writing postgresql.conf");
        let port = free_port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            dir.path().display()
        );
        let server = Self {
            port,
            dir,
            bin,
            options,
        };
        server.pg_ctl("start");
        server
    }

    fn pg_ctl(&self, action: &str) {
        let mut c = server_command(&self.bin, "pg_ctl");
        c.args(["-w", "-t", "60", "-D"])
            .arg(self.dir.path().join("data"))
            .args(["-o", &self.options, "-l"])
            .arg(self.dir.path().join("server.log"))
            .args(["-m", "fast", action]);
        run(c, &format!("pg_ctl {action}"));
    }

    /// The path of one of the server's binaries (`pg_recvlogical`).
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// A client program of the server's binaries (`pg_recvlogical`, `psql`), run as the
    /// `postgres` user when this process is root.
    pub fn program(&self, name: &str) -> Command {
        server_command(&self.bin, name)
    }

    /// Restarts the server (so that settings changed with `ALTER SYSTEM` that need a restart
    /// apply); returns once it accepts connections again.
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// A URL of database `postgres` as the superuser, for the connector.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A connection pool for the test itself.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&self.url())
            .await
            .expect("connecting to the test PostgreSQL")
    }

    /// Runs `sql` (one or more statements) on `db`, panicking with the server's log if it fails.
    pub async fn exec(&self, db: &PgPool, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}\n{}", self.log()));
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = server_command(&self.bin, "pg_ctl");
        stop.args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
    }
}
