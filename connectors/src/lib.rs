//! Sluice's built-in connectors, one folder each, each behind a cargo feature of its name
//! (`datagen`, `dlq-router`, `file`, `jdbc`, `kinesis`, `lambda`, `postgres-cdc`, `s3`; all on by default), and the kit they share: [`aws`]
//! (client settings and error classification for every AWS connector) and `dispatched` (the state
//! a sink task shares with its dispatcher, and its back-pressure).
//!
//! - [`datagen`]: generates realistic order, IoT or clickstream events at a set rate, each with a
//!   per-task sequence number so that tests and users can prove nothing was lost or duplicated.
//! - [`dlq_router`]: routes dead letters by rules over their error headers to retry tiers (and back
//!   to their topic when due), a parking lot, or an explicit discard.
//! - [`file`]: Kafka's FileStream source (lines in) and sink (JSON lines out), under Kafka's class
//!   names so existing configs work unchanged.
//! - [`jdbc`]: the JDBC source (PostgreSQL, MySQL/MariaDB, SQLite): tables or a query into Kafka under Confluent's
//!   class, config names and offsets, without the rows Confluent's connector is known to lose.
//! - [`kinesis`]: Kinesis Data Streams sink (ordered per partition key) and source (checkpointed
//!   per shard), with an envelope format that carries a Kafka record through Kinesis unchanged.
//! - [`lambda`]: the Lambda inference sink: batches, many invocations in flight, results back in
//!   Kafka in each partition's order, under Confluent's class and config names.
//! - [`postgres_cdc`]: the PostgreSQL CDC source: Debezium's change events from logical
//!   replication, under Debezium's class, config names, topics and offsets.
//! - [`s3`]: the S3 Parquet sink, exactly once, under Confluent's class name and config names.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "datagen")]
pub mod datagen;
#[cfg(any(feature = "kinesis", feature = "lambda"))]
pub mod dispatched;
#[cfg(feature = "dlq-router")]
pub mod dlq_router;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "jdbc")]
pub mod jdbc;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "postgres-cdc")]
pub mod postgres_cdc;
#[cfg(feature = "s3")]
pub mod s3;

use sluice_connector_api::{Plugin, PluginRegistry};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every built-in connector plugin compiled in (each is a cargo feature, all on by default).
pub fn builtin() -> PluginRegistry {
    let registry = PluginRegistry::new();
    #[cfg(feature = "datagen")]
    let registry = registry.with(Plugin::source::<datagen::DatagenConnector>(
        datagen::CLASS,
        &["Datagen", "DatagenSource"],
        VERSION,
    ));
    #[cfg(feature = "file")]
    let registry = registry
        .with(Plugin::source::<file::FileStreamSourceConnector>(
            file::SOURCE_CLASS,
            &["FileStreamSource", "FileSource"],
            VERSION,
        ))
        .with(Plugin::sink::<file::FileStreamSinkConnector>(
            file::SINK_CLASS,
            &["FileStreamSink", "FileSink"],
            VERSION,
        ));
    #[cfg(feature = "dlq-router")]
    let registry = registry.with(
        Plugin::sink::<dlq_router::DlqRouterConnector>(
            dlq_router::CLASS,
            &["DlqRouter", "DeadLetterRouter"],
            VERSION,
        )
        // Dead letters are passed on byte for byte, whatever the worker's converters.
        .with_default_converter(sluice_connector_api::convert::BYTE_ARRAY_CONVERTER),
    );
    #[cfg(feature = "jdbc")]
    let registry = registry.with(Plugin::source::<jdbc::JdbcSourceConnector>(
        jdbc::CLASS,
        &["JdbcSource", "JdbcSourceConnector"],
        VERSION,
    ));
    #[cfg(feature = "postgres-cdc")]
    let registry = registry.with(Plugin::source::<postgres_cdc::PostgresCdcConnector>(
        postgres_cdc::CLASS,
        &["PostgresCdc", "PostgresConnector"],
        VERSION,
    ));
    #[cfg(feature = "kinesis")]
    let registry = registry
        .with(
            Plugin::sink::<kinesis::KinesisSinkConnector>(
                kinesis::SINK_CLASS,
                &["KinesisSink", "KinesisSinkConnector"],
                VERSION,
            )
            // Bytes pass through unchanged unless the connector names its converters.
            .with_default_converter(sluice_connector_api::convert::BYTE_ARRAY_CONVERTER),
        )
        .with(
            Plugin::source::<kinesis::KinesisSourceConnector>(
                kinesis::SOURCE_CLASS,
                &["KinesisSource", "KinesisSourceConnector"],
                VERSION,
            )
            .with_default_converter(sluice_connector_api::convert::BYTE_ARRAY_CONVERTER),
        );
    #[cfg(feature = "lambda")]
    let registry = registry.with(Plugin::sink::<lambda::LambdaSinkConnector>(
        lambda::CLASS,
        &["LambdaSink", "AwsLambdaSinkConnector"],
        VERSION,
    ));
    #[cfg(feature = "s3")]
    let registry = registry.with(Plugin::sink::<s3::S3SinkConnector>(
        s3::CLASS,
        &["S3Sink", "S3SinkConnector", "S3ParquetSink"],
        VERSION,
    ));
    registry
}

#[cfg(all(test, feature = "datagen", feature = "file"))]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve() {
        let registry = builtin();
        assert_eq!(registry.find("Datagen").unwrap().class, datagen::CLASS);
        assert_eq!(
            registry.find("FileStreamSink").unwrap().class,
            file::SINK_CLASS
        );
        assert_eq!(
            registry
                .find("org.apache.kafka.connect.file.FileStreamSourceConnector")
                .unwrap()
                .class,
            file::SOURCE_CLASS
        );
        let err = registry.find("Jdbc").unwrap_err().to_string();
        assert!(
            err.contains(datagen::CLASS) && err.contains(file::SINK_CLASS),
            "{err}"
        );
    }
}
