//! Worker errors. Each says what failed in words an operator can act on.

use rdkafka::error::KafkaError;
use sluice_connector_api::ConnectError;

/// An error of the worker runtime.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// Kafka cannot be reached at all.
    #[error("cannot reach Kafka at {bootstrap}: {reason}")]
    Unreachable {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// What librdkafka reported.
        reason: String,
    },
    /// A Kafka operation failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The client error.
        source: KafkaError,
    },
    /// An internal topic exists with settings Sluice cannot use.
    #[error("{0}")]
    Topic(String),
    /// The embedded broker failed.
    #[error("embedded broker: {0}")]
    Broker(String),
    /// A connector failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl WorkerError {
    /// A Kafka error with context.
    pub fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> Self {
        let context = context.into();
        move |source| WorkerError::Kafka { context, source }
    }
}
