//! What the sink and the source share about a stream: the AWS keys, the client, the service's
//! limits and the check that the stream exists and is ready.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::StreamStatus;
use sluice_connector_api::{ConfigDef, ConfigKey, ConfigType, ConnectError, Importance, Validator};

use crate::aws::{AwsKeys, AwsSettings, classify};

/// The AWS keys under the Kinesis connectors' names.
pub const AWS_KEYS: AwsKeys = AwsKeys {
    region: "kinesis.region",
    default_region: "",
    endpoint: Some("kinesis.endpoint"),
    retries: "aws.retries.max",
    default_retries: "3",
    group: "Kinesis",
};

/// Most records in one `PutRecords` call.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Most bytes (data and partition keys) in one `PutRecords` call.
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// Most bytes of one record: its data and its partition key.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Longest partition key, in Unicode scalar values.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// `kinesis.stream` and the AWS keys, for both connectors.
pub fn define(def: ConfigDef, stream_doc: &'static str) -> ConfigDef {
    AWS_KEYS.define(def).define(
        ConfigKey::new("kinesis.stream", ConfigType::String, stream_doc)
            .importance(Importance::High)
            .validator(Validator::NonEmpty)
            .group("Kinesis"),
    )
}

/// A stream and the client that reaches it.
#[derive(Clone, Debug)]
pub struct Stream {
    /// The client.
    pub client: Client,
    /// The stream's name.
    pub name: String,
    /// The region, for messages.
    pub region: String,
}

impl Stream {
    /// The client for `name` with these settings (no request is made).
    pub async fn connect(name: &str, aws: &AwsSettings) -> Self {
        let config = aws.sdk_config().await;
        let region = config
            .region()
            .map_or_else(|| "(no region)".to_owned(), ToString::to_string);
        Self {
            client: Client::new(&config),
            name: name.to_owned(),
            region,
        }
    }

    /// `stream orders in eu-west-1`, for messages.
    pub fn describe(&self) -> String {
        format!("stream {} in {}", self.name, self.region)
    }

    /// `operation` failed with `e`, as a connector error naming the stream and region.
    pub fn error<E>(&self, operation: &str, e: SdkError<E>) -> ConnectError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(operation, &self.describe(), e)
    }

    /// `Ok` once the stream can be written and read. A stream that is still being created gives a
    /// retriable error (the runtime tries again with back-off); one that does not exist, or is
    /// being deleted, a permanent one naming stream and region.
    pub async fn check_ready(&self) -> Result<(), ConnectError> {
        let summary = self
            .client
            .describe_stream_summary()
            .stream_name(&self.name)
            .send()
            .await;
        let summary = match summary {
            Ok(s) => s,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Err(ConnectError::external(format!(
                    "{} does not exist (check kinesis.stream and kinesis.region)",
                    self.describe()
                )));
            }
            Err(e) => return Err(self.error("DescribeStreamSummary", e)),
        };
        let status = summary
            .stream_description_summary()
            .map(|s| s.stream_status().clone());
        match status {
            // A stream being resharded (UPDATING) takes reads and writes.
            Some(StreamStatus::Active | StreamStatus::Updating) => Ok(()),
            Some(StreamStatus::Creating) | None => Err(ConnectError::retriable(format!(
                "{} is not ACTIVE yet; waiting for it",
                self.describe()
            ))),
            Some(other) => Err(ConnectError::external(format!(
                "{} is {}: it cannot be used",
                self.describe(),
                other.as_str()
            ))),
        }
    }
}
