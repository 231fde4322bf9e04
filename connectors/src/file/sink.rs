//! The FileStream sink.

use std::io::Write;
use std::sync::Arc;

use sluice_connector_api::convert::AsJson;
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectError, ConnectResult, Connector,
    ConnectorConfig, ConnectorContext, Importance, Offsets, ParsedConfig, Props, SinkConnector,
    SinkRecord, SinkTask, SinkTaskContext, Validator, async_trait,
};

/// Typed FileStream sink settings (Kafka's names).
#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    /// The file appended to.
    pub file: String,
}

impl ConnectorConfig for FileSinkConfig {
    fn def() -> ConfigDef {
        ConfigDef::new().define(
            ConfigKey::new(
                "file",
                ConfigType::String,
                "Path of the file to append JSON lines to.",
            )
            .importance(Importance::High)
            .validator(Validator::NonEmpty),
        )
    }

    fn build(p: &ParsedConfig, _errors: &mut ConfigErrors) -> Self {
        Self {
            file: p.string("file"),
        }
    }
}

/// Appends record values to a file as JSON lines.
#[derive(Default)]
pub struct FileStreamSinkConnector {
    props: Props,
}

#[async_trait]
impl Connector for FileStreamSinkConnector {
    fn config_def(&self) -> ConfigDef {
        FileSinkConfig::def()
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        FileSinkConfig::from_props(props)?;
        self.props = props.clone();
        Ok(())
    }

    /// Every task appends whole batches to the same file under an exclusive lock, so lines never
    /// interleave.
    fn task_configs(&self, max_tasks: usize) -> ConnectResult<Vec<Props>> {
        Ok(vec![self.props.clone(); max_tasks])
    }
}

impl SinkConnector for FileStreamSinkConnector {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(FileStreamSinkTask::default())
    }
}

/// Appends lines on `put` and syncs them on `flush`.
#[derive(Default)]
pub struct FileStreamSinkTask {
    path: String,
    file: Option<Arc<std::fs::File>>,
}

impl FileStreamSinkTask {
    fn file(&self) -> ConnectResult<Arc<std::fs::File>> {
        self.file
            .clone()
            .ok_or_else(|| ConnectError::internal("the task is not started"))
    }
}

#[async_trait]
impl SinkTask for FileStreamSinkTask {
    async fn start(&mut self, _ctx: SinkTaskContext, props: &Props) -> ConnectResult<()> {
        self.path = FileSinkConfig::from_props(props)?.file;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| ConnectError::from(e).context(format!("opening {}", self.path)))?;
        self.file = Some(Arc::new(file));
        Ok(())
    }

    /// Appends the batch under an exclusive lock of the file (`flock`), so that tasks writing the
    /// same file, in this worker or another on the same machine, never interleave lines.
    async fn put(&mut self, records: Vec<SinkRecord>) -> ConnectResult<()> {
        let file = self.file()?;
        let mut buffer = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buffer, &AsJson::schemaless(&r.record.value))
                .map_err(|e| ConnectError::internal("encoding JSON").with_source(e))?;
            buffer.push(b'\n');
        }
        blocking(move || {
            file.lock()?;
            let written = (&*file).write_all(&buffer);
            file.unlock()?;
            written
        })
        .await
        .map_err(|e| e.context(format!("writing {}", self.path)))
    }

    /// Makes every line written so far durable; offsets are committed only after this.
    async fn flush(&mut self, _offsets: &Offsets) -> ConnectResult<()> {
        let file = self.file()?;
        blocking(move || file.sync_data())
            .await
            .map_err(|e| e.context(format!("syncing {}", self.path)))
    }
}

/// Runs file I/O on the blocking pool.
async fn blocking(io: impl FnOnce() -> std::io::Result<()> + Send + 'static) -> ConnectResult<()> {
    match tokio::task::spawn_blocking(io).await {
        Ok(result) => result.map_err(ConnectError::from),
        Err(e) => Err(ConnectError::internal("file I/O panicked").with_source(e)),
    }
}

#[cfg(test)]
mod tests {
    use sluice_connector_api::Value;
    use sluice_connector_api::testing::{FakeSinkControl, props};

    use super::*;

    /// Two tasks appending large batches (over tokio's 2 MiB write chunks) to one file at once:
    /// every line is whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_writing_one_file_never_interleave_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        let p = props(&[("file", path.to_str().expect("utf-8"))]);
        let control = FakeSinkControl::new();
        let mut tasks = Vec::new();
        for task in 0..2 {
            let mut t = FileStreamSinkTask::default();
            t.start(control.context("file", task), &p)
                .await
                .expect("starts");
            tasks.push(t);
        }
        let big = "x".repeat(1000);
        let batch = |task: u32| -> Vec<SinkRecord> {
            (0..5_000)
                .map(|o| {
                    let mut r = FakeSinkControl::record("t", 0, o, b"");
                    r.record.value = Value::String(format!("{task}-{o}-{big}"));
                    r
                })
                .collect()
        };
        let (mut a, mut b) = (tasks.remove(0), tasks.remove(0));
        for _ in 0..3 {
            let (ra, rb) = tokio::join!(a.put(batch(0)), b.put(batch(1)));
            ra.expect("put");
            rb.expect("put");
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 30_000);
        for line in lines {
            let value: String = serde_json::from_str(line).expect("a whole JSON string per line");
            assert!(
                value.ends_with(&big),
                "a cut line: {}",
                &line[..40.min(line.len())]
            );
        }
    }
}
