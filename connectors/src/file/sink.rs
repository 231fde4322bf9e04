//! The FileStream sink.

use std::sync::Arc;

use sluice_connector_api::convert::AsJson;
use sluice_connector_api::{
    ConfigDef, ConfigKey, ConfigType, ConnectError, ConnectResult, Connector, ConnectorContext,
    Importance, Offsets, Props, SinkConnector, SinkRecord, SinkTask, SinkTaskContext, Validator,
    async_trait,
};
use tokio::io::AsyncWriteExt;

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

/// Appends record values to a file as JSON lines.
#[derive(Default)]
pub struct FileStreamSinkConnector {
    props: Props,
}

#[async_trait]
impl Connector for FileStreamSinkConnector {
    fn config_def(&self) -> ConfigDef {
        def()
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        def().parse(props)?;
        self.props = props.clone();
        Ok(())
    }

    /// Every task appends whole batches to the same file with `O_APPEND`, so lines never interleave.
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
    buffer: Vec<u8>,
    file: Option<tokio::fs::File>,
}

#[async_trait]
impl SinkTask for FileStreamSinkTask {
    async fn start(&mut self, _ctx: SinkTaskContext, props: &Props) -> ConnectResult<()> {
        self.path = def().parse(props)?.string("file");
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|e| ConnectError::from(e).context(format!("opening {}", self.path)))?;
        self.file = Some(file);
        Ok(())
    }

    /// Appends the batch with one write, so concurrent tasks never interleave lines.
    async fn put(&mut self, records: Vec<SinkRecord>) -> ConnectResult<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(ConnectError::internal("put before start"));
        };
        self.buffer.clear();
        for r in records {
            serde_json::to_writer(&mut self.buffer, &AsJson::schemaless(&r.record.value))
                .map_err(|e| ConnectError::internal("encoding JSON").with_source(e))?;
            self.buffer.push(b'\n');
        }
        file.write_all(&self.buffer)
            .await
            .map_err(|e| ConnectError::from(e).context(format!("writing {}", self.path)))
    }

    /// Makes every line written so far durable; offsets are committed only after this.
    async fn flush(&mut self, _offsets: &Offsets) -> ConnectResult<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(ConnectError::internal("flush before start"));
        };
        file.sync_data()
            .await
            .map_err(|e| ConnectError::from(e).context(format!("syncing {}", self.path)))
    }
}
