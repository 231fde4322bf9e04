//! Structured logs with `tracing`, and log levels changeable at run time through `/admin/loggers`.
//!
//! Logger names are `tracing` targets (module paths such as `sluice_worker::task::sink`); `root`
//! is the default level. `SLUICE_LOG` (an `EnvFilter` directive string) sets the initial levels, and
//! `SLUICE_LOG_FORMAT=json` switches to JSON lines.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use sluice_rest_api::LogControl;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

type Handle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// Log levels behind a reloadable filter.
pub struct Logging {
    handle: Handle,
    levels: Mutex<BTreeMap<String, String>>,
}

const LEVELS: &[&str] = &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF"];

fn directives(levels: &BTreeMap<String, String>) -> String {
    let mut parts = vec![
        levels
            .get("root")
            .cloned()
            .unwrap_or_else(|| "INFO".into())
            .to_ascii_lowercase(),
    ];
    // librdkafka and the embedded broker are noisy below WARN unless asked for explicitly.
    for quiet in [
        "rdkafka",
        "tansu_broker",
        "tansu_storage",
        "tansu_sans_io",
        "libsql",
        "tansu_schema",
    ] {
        if !levels.contains_key(quiet) {
            parts.push(format!("{quiet}=warn"));
        }
    }
    // openraft logs every failed RPC to a dead worker at ERROR, twice a second; the fleet's own
    // logs (sluice_worker::cluster) report what matters. `SLUICE_LOG=openraft=warn` brings it back.
    if !levels.contains_key("openraft") {
        parts.push("openraft=off".to_owned());
    }
    for (logger, level) in levels.iter().filter(|(k, _)| *k != "root") {
        parts.push(format!("{logger}={}", level.to_ascii_lowercase()));
    }
    parts.join(",")
}

impl Logging {
    /// Installs the global subscriber.
    pub fn init() -> Self {
        let mut levels = BTreeMap::from([("root".to_owned(), "INFO".to_owned())]);
        if let Ok(spec) = std::env::var("SLUICE_LOG") {
            for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match part.split_once('=') {
                    Some((logger, level)) => {
                        levels.insert(logger.to_owned(), level.to_ascii_uppercase())
                    }
                    None => levels.insert("root".to_owned(), part.to_ascii_uppercase()),
                };
            }
        }
        let filter =
            EnvFilter::try_new(directives(&levels)).unwrap_or_else(|_| EnvFilter::new("info"));
        let (filter, handle) = reload::Layer::new(filter);
        let json = std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
        let registry = tracing_subscriber::registry().with(filter);
        let _ = if json {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(std::io::stderr),
                )
                .try_init()
        } else {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        // Colours only on a terminal: log files and collectors get plain text.
                        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                        .with_writer(std::io::stderr),
                )
                .try_init()
        };
        Self {
            handle,
            levels: Mutex::new(levels),
        }
    }
}

impl LogControl for Logging {
    fn levels(&self) -> BTreeMap<String, String> {
        self.levels.lock().clone()
    }

    fn set_level(&self, logger: &str, level: &str) -> Result<Vec<String>, String> {
        let level = level.trim().to_ascii_uppercase();
        if !LEVELS.contains(&level.as_str()) {
            return Err(format!(
                "Invalid log level {level}: must be one of {}",
                LEVELS.join(", ")
            ));
        }
        if logger.is_empty() || logger.contains([',', '=', ' ']) {
            return Err(format!("Invalid logger name {logger:?}"));
        }
        let mut levels = self.levels.lock();
        levels.insert(logger.to_owned(), level);
        let filter = EnvFilter::try_new(directives(&levels)).map_err(|e| e.to_string())?;
        self.handle.reload(filter).map_err(|e| e.to_string())?;
        Ok(vec![logger.to_owned()])
    }
}
