//! The shared AWS settings against real endpoints: a role assumed through STS (moto) signs the
//! connector's calls with the session STS issued, and an STS that cannot be reached is a retriable
//! failure of the call, not a permanent one.

use aws_credential_types::provider::ProvideCredentials;
use sluice_connector_api::{ConfigDef, ConfigErrors, ConnectorConfig, ParsedConfig, Props};
use sluice_connectors::aws::{AwsKeys, AwsSettings, classify};
use sluice_tests::moto::Moto;
use sluice_tests::{free_port, unique};

const KEYS: AwsKeys = AwsKeys {
    region: "test.region",
    default_region: "us-east-1",
    endpoint: Some("test.endpoint"),
    retries: "aws.retries.max",
    default_retries: "3",
    group: "AWS",
};

/// A connector config of only the AWS keys.
struct Settings(AwsSettings);

impl ConnectorConfig for Settings {
    fn def() -> ConfigDef {
        KEYS.define(ConfigDef::new())
    }
    fn build(p: &ParsedConfig, errors: &mut ConfigErrors) -> Self {
        Settings(KEYS.read(p, errors))
    }
}

fn settings(pairs: &[(&str, &str)]) -> AwsSettings {
    let props: Props = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_props(&props).expect("valid").0
}

fn s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

#[tokio::test]
async fn an_assumed_role_signs_calls_with_the_session_sts_issued() {
    let moto = Moto::start();
    let aws = settings(&[
        ("test.endpoint", &moto.endpoint),
        ("aws.access.key.id", "AKIDBASEKEY"),
        ("aws.secret.access.key", "base-secret"),
        ("aws.sts.role.arn", "arn:aws:iam::123456789012:role/ingest"),
        ("aws.sts.role.session.name", "sluice-test"),
        ("aws.sts.role.external.id", "ext-42"),
        ("aws.sts.endpoint", &moto.endpoint),
    ]);
    let config = aws.sdk_config().await;
    let credentials = config
        .credentials_provider()
        .expect("a provider")
        .provide_credentials()
        .await
        .expect("STS answered");
    assert_ne!(
        credentials.access_key_id(),
        "AKIDBASEKEY",
        "the role's, not the base keys"
    );
    assert!(credentials.session_token().is_some(), "a session");
    assert!(
        credentials.expiry().is_some(),
        "refreshed before it expires"
    );

    // A call of the connector's service goes out with them and succeeds.
    let client = s3(&config);
    let bucket = unique("assumed").to_ascii_lowercase();
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .map_err(|e| classify("CreateBucket", &bucket, e))
        .expect("created with the assumed role");
}

#[tokio::test]
async fn an_sts_that_cannot_be_reached_fails_the_call_retriably() {
    let moto = Moto::start();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let aws = settings(&[
        ("test.endpoint", &moto.endpoint),
        ("aws.access.key.id", "AKIDBASEKEY"),
        ("aws.secret.access.key", "base-secret"),
        ("aws.sts.role.arn", "arn:aws:iam::123456789012:role/ingest"),
        ("aws.sts.endpoint", &closed),
        ("aws.retries.max", "0"),
    ]);
    let client = s3(&aws.sdk_config().await);
    let error = client
        .list_buckets()
        .send()
        .await
        .map_err(|e| classify("ListBuckets", "", e))
        .expect_err("no credentials without STS");
    assert!(error.is_retriable(), "{}", error.trace());
}
