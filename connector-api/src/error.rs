//! Errors that connectors report to the runtime.
//!
//! Every error says two things the runtime acts on, never by parsing strings:
//! who is at fault ([`Fault`]: the user's config or data, the external system, or Sluice itself) and
//! whether trying again can help ([`ConnectError::is_retriable`]). The runtime retries retriable errors
//! within the connector's retry budget and sends the others straight to its error policy.

use std::fmt;

/// Who is responsible for an error. It decides what an operator must do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The user's configuration or data is wrong: fix the config or the record.
    User,
    /// An external system (a database, S3, Kafka, a network) misbehaved or is unavailable.
    External,
    /// A bug or broken invariant in Sluice or a connector.
    Internal,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::User => "user",
            Fault::External => "external",
            Fault::Internal => "internal",
        })
    }
}

/// An error raised by a connector, a task, a converter or a transform.
#[derive(Debug)]
pub struct ConnectError {
    fault: Fault,
    retriable: bool,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Shorthand for results whose error is a [`ConnectError`].
pub type ConnectResult<T> = Result<T, ConnectError>;

impl ConnectError {
    /// A problem with the user's configuration or data. Not retriable.
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(Fault::User, false, message)
    }

    /// A failure of an external system that may succeed if tried again (timeouts, throttling,
    /// unavailability).
    pub fn retriable(message: impl Into<String>) -> Self {
        Self::new(Fault::External, true, message)
    }

    /// A failure of an external system that will not go away by itself (access denied, missing
    /// bucket).
    pub fn external(message: impl Into<String>) -> Self {
        Self::new(Fault::External, false, message)
    }

    /// A bug or a broken invariant. Not retriable.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Fault::Internal, false, message)
    }

    /// An error with every attribute given explicitly.
    pub fn new(fault: Fault, retriable: bool, message: impl Into<String>) -> Self {
        Self {
            fault,
            retriable,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause; it is shown in traces.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with context, keeping fault and retriability.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    /// The message without the cause chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A multi-line trace: the message, then each cause on its own line, as shown in task status.
    pub fn trace(&self) -> String {
        let mut out = format!(
            "{} (fault: {}, retriable: {})",
            self.message, self.fault, self.retriable
        );
        let mut cause = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(err) = cause {
            out.push_str("\nCaused by: ");
            out.push_str(&err.to_string());
            cause = err.source();
        }
        out
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for ConnectError {
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let retriable = matches!(
            err.kind(),
            Interrupted | TimedOut | WouldBlock | ConnectionReset | ConnectionAborted | BrokenPipe
        );
        let fault = match err.kind() {
            NotFound | PermissionDenied | InvalidInput => Fault::User,
            _ => Fault::External,
        };
        ConnectError::new(fault, retriable, "I/O error").with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lists_causes_and_classification() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "socket timed out");
        let err = ConnectError::from(io).context("writing batch");
        assert!(err.is_retriable());
        assert_eq!(err.fault(), Fault::External);
        let trace = err.trace();
        assert!(trace.starts_with("writing batch: I/O error"), "{trace}");
        assert!(trace.contains("Caused by: socket timed out"), "{trace}");
    }

    #[test]
    fn user_errors_are_not_retriable() {
        let err = ConnectError::user("field 'x' missing");
        assert!(!err.is_retriable());
        assert_eq!(err.fault(), Fault::User);
    }
}
