//! The shared AWS settings (every error at once, no secret shown) and the error classifier on
//! every kind of SDK failure. Calls against real endpoints are in the integration tests
//! (`tests/tests/aws.rs`: STS on moto, and S3 on s3s-fs through the S3 sink).

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::error::ErrorMetadata;
use sluice_connector_api::testing::props;
use sluice_connector_api::{ConfigErrors, ConfigType, ConnectorConfig};

use super::errors::is_retriable;
use super::*;

const KEYS: AwsKeys = AwsKeys {
    region: "kinesis.region",
    default_region: "",
    endpoint: Some("kinesis.endpoint"),
    retries: "aws.retries.max",
    default_retries: "3",
    group: "AWS",
};

/// A connector config holding only the AWS keys.
struct Only(AwsSettings);

impl ConnectorConfig for Only {
    fn def() -> ConfigDef {
        KEYS.define(ConfigDef::new())
    }
    fn build(p: &ParsedConfig, errors: &mut ConfigErrors) -> Self {
        Only(KEYS.read(p, errors))
    }
}

#[test]
fn every_aws_error_is_reported_at_once() {
    let errors = Only::from_props(&props(&[
        ("aws.access.key.id", "AKIAEXAMPLE"),
        ("kinesis.endpoint", "localhost:4566"),
        ("aws.sts.role.arn", "arn:aws:iam::12345:user/bob"),
        ("aws.sts.role.session.name", "a b"),
        ("aws.api.call.timeout.ms", "5000"),
        ("aws.api.call.attempt.timeout.ms", "10000"),
        ("aws.retries.max", "-1"),
    ]))
    .err()
    .expect("invalid");
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "aws.secret.access.key",
        "kinesis.endpoint",
        "aws.sts.role.arn",
        "aws.sts.role.session.name",
        "aws.api.call.attempt.timeout.ms",
        "aws.retries.max",
    ] {
        assert!(keys.contains(&key), "{key} missing: {errors}");
    }
}

#[test]
fn role_settings_without_a_role_are_refused() {
    let errors = Only::from_props(&props(&[("aws.sts.role.external.id", "x")]))
        .err()
        .expect("invalid");
    assert_eq!(errors.0[0].key, "aws.sts.role.external.id", "{errors}");
}

#[test]
fn settings_parse_and_never_show_the_secret() {
    let Only(s) = Only::from_props(&props(&[
        ("kinesis.region", "eu-west-1"),
        ("kinesis.endpoint", "http://127.0.0.1:4567"),
        ("aws.access.key.id", "AKIAEXAMPLE"),
        ("aws.secret.access.key", "very-secret-value"),
        ("aws.sts.role.arn", "arn:aws:iam::123456789012:role/ingest"),
        ("aws.sts.role.external.id", "ext-1"),
    ]))
    .expect("valid");
    assert_eq!(s.region.as_deref(), Some("eu-west-1"));
    assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:4567"));
    assert_eq!(s.retries, 3);
    assert_eq!(s.call_timeout, Duration::from_secs(30));
    let role = s.assume_role.as_ref().expect("a role");
    assert_eq!(role.session_name, "sluice");
    assert_eq!(role.external_id.as_deref(), Some("ext-1"));
    let shown = format!("{s:?}");
    assert!(!shown.contains("very-secret-value"), "{shown}");
    assert!(shown.contains("AKIAEXAMPLE"), "{shown}");
    // The REST API's definition marks the secret a password (hidden in /config/validate).
    let def = Only::def();
    let secret = def.key("aws.secret.access.key").expect("defined");
    assert_eq!(secret.kind, ConfigType::Password);
}

#[test]
fn no_keys_means_the_default_chain_and_the_environment_region() {
    let Only(s) = Only::from_props(&props(&[])).expect("valid");
    assert_eq!(s.credentials, AwsCredentials::DefaultChain);
    assert_eq!(s.region, None);
    assert_eq!(s.assume_role, None);
}

fn service_error(status: u16, code: &str) -> SdkError<PutObjectError, HttpResponse> {
    let err = PutObjectError::generic(ErrorMetadata::builder().code(code).build());
    let response = HttpResponse::new(
        StatusCode::try_from(status).expect("status"),
        SdkBody::empty(),
    );
    SdkError::service_error(err, response)
}

fn dispatch(error: ConnectorError) -> SdkError<PutObjectError, HttpResponse> {
    SdkError::dispatch_failure(error)
}

#[test]
fn throttling_5xx_timeouts_and_io_are_retriable() {
    assert!(is_retriable(&service_error(503, "ServiceUnavailable")));
    assert!(is_retriable(&service_error(500, "Whatever")));
    assert!(is_retriable(&service_error(400, "ThrottlingException")));
    assert!(is_retriable(&service_error(
        400,
        "ProvisionedThroughputExceededException"
    )));
    assert!(is_retriable(&service_error(400, "KMSThrottlingException")));
    assert!(is_retriable(&service_error(
        429,
        "TooManyRequestsException"
    )));
    assert!(is_retriable(
        &SdkError::<PutObjectError, HttpResponse>::timeout_error("slow")
    ));
    let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    assert!(is_retriable(&dispatch(ConnectorError::io(refused.into()))));
    // Credentials whose provider timed out, or could not reach STS, come back.
    let timed_out = CredentialsError::provider_timed_out(Duration::from_secs(5));
    assert!(is_retriable(&dispatch(ConnectorError::other(
        timed_out.into(),
        None
    ))));
    let unreachable = CredentialsError::provider_error(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "reset",
    ));
    assert!(is_retriable(&dispatch(ConnectorError::other(
        unreachable.into(),
        None
    ))));
}

#[test]
fn construction_credential_access_and_unknown_failures_are_permanent() {
    assert!(!is_retriable(
        &SdkError::<PutObjectError, HttpResponse>::construction_failure("bad")
    ));
    assert!(!is_retriable(&service_error(403, "AccessDenied")));
    assert!(!is_retriable(&service_error(404, "NoSuchBucket")));
    let none = CredentialsError::not_loaded("no credentials in the chain");
    assert!(!is_retriable(&dispatch(ConnectorError::other(
        none.into(),
        None
    ))));
    let invalid = CredentialsError::invalid_configuration("bad profile");
    assert!(!is_retriable(&dispatch(ConnectorError::other(
        invalid.into(),
        None
    ))));
    let unknown = std::fmt::Error;
    assert!(!is_retriable(&dispatch(ConnectorError::other(
        unknown.into(),
        None
    ))));
    let message = classify(
        "PutObject",
        "bucket/key",
        service_error(403, "AccessDenied"),
    );
    assert!(!message.is_retriable());
    assert!(
        message
            .message()
            .contains("PutObject bucket/key failed: AccessDenied"),
        "{message}"
    );
}
