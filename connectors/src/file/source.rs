//! The FileStream source.

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectError, ConnectResult, Connector,
    ConnectorConfig, ConnectorContext, Importance, ParsedConfig, Props, Record, Schema, SchemaType,
    SourceConnector, SourceRecord, SourceTask, SourceTaskContext, Validator, Value, async_trait,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Typed FileStream source settings (Kafka's names).
#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    /// The file read.
    pub file: String,
    /// The topic lines go to.
    pub topic: String,
    /// Most lines per poll.
    pub batch_size: usize,
}

impl ConnectorConfig for FileSourceConfig {
    fn def() -> ConfigDef {
        ConfigDef::new()
            .define(
                ConfigKey::new("file", ConfigType::String, "Path of the file to read.")
                    .importance(Importance::High)
                    .validator(Validator::NonEmpty),
            )
            .define(
                ConfigKey::new("topic", ConfigType::String, "Topic to write lines to.")
                    .importance(Importance::High)
                    .validator(Validator::NonEmpty),
            )
            .define(
                ConfigKey::new(
                    "batch.size",
                    ConfigType::Int,
                    "Largest number of lines per poll.",
                )
                .default_value("2000")
                .validator(Validator::at_least(1.0)),
            )
    }

    fn build(p: &ParsedConfig, _errors: &mut ConfigErrors) -> Self {
        Self {
            file: p.string("file"),
            topic: p.string("topic"),
            batch_size: p.int("batch.size").max(1) as usize,
        }
    }
}

/// Reads lines from a file.
#[derive(Default)]
pub struct FileStreamSourceConnector {
    props: Props,
}

#[async_trait]
impl Connector for FileStreamSourceConnector {
    fn config_def(&self) -> ConfigDef {
        FileSourceConfig::def()
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        FileSourceConfig::from_props(props)?;
        self.props = props.clone();
        Ok(())
    }

    /// One task: a file has one reader.
    fn task_configs(&self, _max_tasks: usize) -> ConnectResult<Vec<Props>> {
        Ok(vec![self.props.clone()])
    }
}

impl SourceConnector for FileStreamSourceConnector {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(FileStreamSourceTask::default())
    }
}

/// Reads lines from its file.
#[derive(Default)]
pub struct FileStreamSourceTask {
    path: String,
    topic: String,
    batch_size: usize,
    /// Byte position after the last complete line returned.
    position: u64,
    /// Bytes read past `position` that do not end in a newline yet.
    partial: Vec<u8>,
    file: Option<tokio::fs::File>,
}

/// The source partition: Kafka's `{"filename": <path>}`.
#[derive(Debug, Serialize)]
struct FilePartition<'a> {
    filename: &'a str,
}

/// The offset: Kafka's `{"position": <byte position after the last line returned>}`.
#[derive(Debug, Serialize, Deserialize)]
struct FileOffset {
    position: u64,
}

#[async_trait]
impl SourceTask for FileStreamSourceTask {
    async fn start(&mut self, ctx: SourceTaskContext, props: &Props) -> ConnectResult<()> {
        let config = FileSourceConfig::from_props(props)?;
        self.path = config.file;
        self.topic = config.topic;
        self.batch_size = config.batch_size;
        let partition = FilePartition {
            filename: &self.path,
        };
        self.position = ctx
            .offset_as::<FileOffset>(&partition)?
            .map_or(0, |o| o.position);
        Ok(())
    }

    async fn poll(&mut self) -> ConnectResult<Vec<SourceRecord>> {
        if self.file.is_none() {
            match tokio::fs::File::open(&self.path).await {
                Ok(mut f) => {
                    f.seek(SeekFrom::Start(self.position)).await?;
                    self.file = Some(f);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    return Ok(Vec::new());
                }
                Err(e) => {
                    return Err(ConnectError::from(e).context(format!("opening {}", self.path)));
                }
            }
        }
        let Some(mut file) = self.file.take() else {
            return Ok(Vec::new());
        };
        let partition = FilePartition {
            filename: &self.path,
        };
        let mut records = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while records.len() < self.batch_size {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    return Err(ConnectError::from(e).context(format!("reading {}", self.path)));
                }
            };
            if n == 0 {
                break;
            }
            self.partial.extend_from_slice(&buf[..n]);
            while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                self.position += line.len() as u64;
                let text = String::from_utf8_lossy(&line[..line.len() - 1])
                    .trim_end_matches('\r')
                    .to_owned();
                let record = Record {
                    topic: self.topic.clone(),
                    value_schema: Some(Arc::new(Schema::new(SchemaType::String))),
                    value: Value::String(text),
                    ..Record::default()
                };
                let offset = FileOffset {
                    position: self.position,
                };
                records.push(SourceRecord::new(record, &partition, &offset)?);
            }
        }
        self.file = Some(file);
        if records.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(records)
    }
}
