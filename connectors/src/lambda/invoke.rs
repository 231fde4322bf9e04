//! One `Invoke` call and what its answer means for the batch.
//!
//! Guarantees: every answer is exactly one [`Answer`], and the kinds are told apart the way a
//! retry decision needs them: throttling (429 `TooManyRequestsException`, `EC2ThrottledException`)
//! and service failures (5xx, timeouts, the network) are retriable; a payload Lambda finds too
//! large is split; the function's own failure (`X-Amz-Function-Error`) is the records'; a request
//! Lambda refuses for its content is the records'; anything else (the function does not exist,
//! access denied) fails the task, naming the function and region.

use std::time::{Duration, Instant};

use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType as SdkInvocationType;
use sluice_connector_api::ConnectError;

use super::config::{InvocationType, LambdaSinkConfig};
use crate::aws::classify;

/// A function and the client that reaches it.
#[derive(Clone, Debug)]
pub struct Function {
    client: Client,
    /// The function as configured (name, ARN, with a qualifier or not).
    pub name: String,
    /// The region, for messages.
    pub region: String,
    invocation: InvocationType,
}

/// What an invocation gave.
#[derive(Debug)]
pub enum Answer {
    /// The function ran (sync) or Lambda queued the batch (async).
    Done {
        /// The function's result (sync; empty for async).
        payload: Vec<u8>,
        /// Lambda's request id, when the endpoint gives one.
        request_id: Option<String>,
        /// The version that ran, when the endpoint gives one.
        version: Option<String>,
        /// How long the call took.
        latency: Duration,
    },
    /// The function failed (`X-Amz-Function-Error`): its error document in `payload`.
    FunctionError {
        /// `Unhandled` or `Handled`.
        kind: String,
        /// The function's error document (`errorType`, `errorMessage`, ...).
        payload: Vec<u8>,
        /// Lambda's request id, when the endpoint gives one.
        request_id: Option<String>,
    },
    /// Lambda refused the payload as too large: split the batch.
    TooLarge(ConnectError),
    /// A retry can help; `throttled` when Lambda asked to slow down.
    Retriable {
        /// What failed.
        error: ConnectError,
        /// Lambda throttled the call.
        throttled: bool,
    },
    /// Lambda refused this request's content: the batch's records go to the error policy.
    Refused(ConnectError),
    /// The function cannot be invoked at all: the task fails.
    Fatal(ConnectError),
}

/// Lambda's codes for "slow down".
const THROTTLING_CODES: &[&str] = &["TooManyRequestsException", "EC2ThrottledException"];

impl Function {
    /// The client for the configured function (no request is made).
    pub async fn connect(config: &LambdaSinkConfig) -> Self {
        let sdk = config.aws.sdk_config().await;
        let region = sdk
            .region()
            .map_or_else(|| "(no region)".to_owned(), ToString::to_string);
        Self {
            client: Client::new(&sdk),
            name: config.function.clone(),
            region,
            invocation: config.invocation,
        }
    }

    /// `function score in eu-west-1`, for messages.
    pub fn describe(&self) -> String {
        format!("function {} in {}", self.name, self.region)
    }

    /// Invokes the function with one batch.
    pub async fn invoke(&self, payload: Vec<u8>) -> Answer {
        let kind = match self.invocation {
            InvocationType::Sync => SdkInvocationType::RequestResponse,
            InvocationType::Async => SdkInvocationType::Event,
        };
        let started = Instant::now();
        let answer = self
            .client
            .invoke()
            .function_name(&self.name)
            .invocation_type(kind)
            .payload(Blob::new(payload))
            .send()
            .await;
        let latency = started.elapsed();
        match answer {
            Ok(out) => {
                let request_id = out.request_id().map(str::to_owned);
                let payload = out
                    .payload()
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_default();
                match out.function_error() {
                    Some(kind) => Answer::FunctionError {
                        kind: kind.to_owned(),
                        payload,
                        request_id,
                    },
                    None => Answer::Done {
                        payload,
                        request_id,
                        version: out.executed_version().map(str::to_owned),
                        latency,
                    },
                }
            }
            Err(e) => {
                let code = e.code().map(str::to_owned);
                let status = e.raw_response().map(|r| r.status().as_u16());
                let too_large = e
                    .as_service_error()
                    .is_some_and(|s| s.is_request_too_large_exception())
                    || status == Some(413);
                let refused = e.as_service_error().is_some_and(|s| {
                    s.is_invalid_request_content_exception()
                        || s.is_unsupported_media_type_exception()
                });
                let throttled = status == Some(429)
                    || code
                        .as_deref()
                        .is_some_and(|c| THROTTLING_CODES.contains(&c));
                let error = classify("Invoke", &self.describe(), e);
                if too_large {
                    Answer::TooLarge(error)
                } else if error.is_retriable() || throttled {
                    Answer::Retriable { error, throttled }
                } else if refused {
                    Answer::Refused(error)
                } else {
                    Answer::Fatal(error)
                }
            }
        }
    }
}

/// A function error as one line: `Error: boom` from the error document, or its text.
pub fn function_error_message(kind: &str, payload: &[u8]) -> String {
    let doc: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    match (doc["errorType"].as_str(), doc["errorMessage"].as_str()) {
        (Some(t), Some(m)) => format!("{kind} {t}: {m}"),
        (None, Some(m)) => format!("{kind}: {m}"),
        _ => format!(
            "{kind}: {}",
            String::from_utf8_lossy(&payload[..payload.len().min(500)])
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_errors_read_as_one_line() {
        let node = br#"{"errorMessage":"boom","errorType":"Error","trace":["Error: boom"]}"#;
        assert_eq!(
            function_error_message("Unhandled", node),
            "Unhandled Error: boom"
        );
        assert_eq!(
            function_error_message("Handled", b"not json"),
            "Handled: not json"
        );
    }
}
