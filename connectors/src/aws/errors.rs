//! One classifier of AWS SDK errors into retriable or not, for every AWS connector.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use sluice_connector_api::ConnectError;

/// Error codes that mean "slow down" or "try again" on every AWS service (the SDK's own lists,
/// plus the service-specific throttling codes of the services Sluice calls).
const RETRIABLE_CODES: &[&str] = &[
    // Throttling, as the SDK's standard retry strategy lists it.
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    // Transient.
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeTooSkewed",
    // Kinesis and KMS (a stream encrypted with a throttled key).
    "KMSThrottlingException",
    // Lambda (a function being updated).
    "ResourceConflictException",
];

/// Whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Retriable,
    Permanent,
}

/// `operation` on `target` failed with `e`: a [`ConnectError`] whose message names both, with
/// the service's code and message, retriable only where a retry can help.
pub fn classify<E>(operation: &str, target: &str, e: SdkError<E, HttpResponse>) -> ConnectError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let message = match &e {
        SdkError::ServiceError(s) => format!(
            "{operation} {target} failed: {} {}",
            s.err().code().unwrap_or("error"),
            s.err().message().unwrap_or_default()
        ),
        other => format!(
            "{operation} {target} failed: {}",
            aws_smithy_types::error::display::DisplayErrorContext(other)
        ),
    };
    match verdict(&e) {
        Verdict::Retriable => ConnectError::retriable(message),
        Verdict::Permanent => ConnectError::external(message),
    }
}

fn verdict<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Verdict {
    match e {
        SdkError::ServiceError(s) => response_verdict(s.raw().status().as_u16(), s.err().code()),
        SdkError::ResponseError(r) => response_verdict(r.raw().status().as_u16(), None),
        SdkError::TimeoutError(_) => Verdict::Retriable,
        SdkError::DispatchFailure(d) => match d.as_connector_error() {
            Some(c) => connector_verdict(c),
            None => Verdict::Permanent,
        },
        // A request that cannot be built (bad settings) fails the same way every time; so does
        // anything this classifier does not know.
        SdkError::ConstructionFailure(_) => Verdict::Permanent,
        _ => Verdict::Permanent,
    }
}

fn response_verdict(status: u16, code: Option<&str>) -> Verdict {
    if status >= 500 || status == 429 || code.is_some_and(|c| RETRIABLE_CODES.contains(&c)) {
        Verdict::Retriable
    } else {
        Verdict::Permanent
    }
}

/// A request that was not answered: the network and timeouts are worth a retry; credentials that
/// cannot be resolved are so only when resolving them hit the network or STS throttling.
fn connector_verdict(c: &ConnectorError) -> Verdict {
    if c.is_io() || c.is_timeout() {
        return Verdict::Retriable;
    }
    if c.is_user() {
        return Verdict::Permanent;
    }
    chain_verdict(c.source()).unwrap_or(Verdict::Permanent)
}

/// The verdict of the first error in the chain that tells.
fn chain_verdict(mut next: Option<&(dyn StdError + 'static)>) -> Option<Verdict> {
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(match c {
                CredentialsError::ProviderTimedOut(_) => Verdict::Retriable,
                // STS (or IMDS, or a container endpoint) answered or did not: look deeper.
                CredentialsError::ProviderError(_) => {
                    chain_verdict(c.source()).unwrap_or(Verdict::Permanent)
                }
                // No credentials anywhere, or settings that are wrong.
                _ => Verdict::Permanent,
            });
        }
        if let Some(sts) = e.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>() {
            return Some(verdict(sts));
        }
        if let Some(c) = e.downcast_ref::<ConnectorError>() {
            return Some(connector_verdict(c));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return Some(match io.kind() {
                ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected
                | BrokenPipe | TimedOut | Interrupted | UnexpectedEof | WouldBlock => {
                    Verdict::Retriable
                }
                _ => Verdict::Permanent,
            });
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
pub(super) fn is_retriable<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    verdict(e) == Verdict::Retriable
}
