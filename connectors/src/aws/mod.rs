//! AWS in one place: the client settings every AWS connector takes, and one classifier of SDK
//! errors.
//!
//! Guarantees:
//! - One key set for every AWS connector: the region and endpoint override under the connector's
//!   own names ([`AwsKeys`]: `s3.region`, `kinesis.region`, `aws.lambda.region`, ...), and the
//!   shared `aws.access.key.id` / `aws.secret.access.key` (a password: never echoed, logged or
//!   shown in `Debug`), `aws.sts.role.arn` / `aws.sts.role.external.id` /
//!   `aws.sts.role.session.name` / `aws.sts.endpoint` to assume a role, and the call timeouts and
//!   SDK retries.
//! - Validation is pure: [`AwsKeys::read`] checks every key (ARN shape, endpoint URL, keys set
//!   together) without network I/O, and reports every error with the connector's other errors.
//! - Without static keys the SDK's default chain is used (environment, profile, web identity,
//!   container and instance roles), resolved lazily on the first call; an assumed role is
//!   refreshed by the SDK before it expires.
//! - [`classify`] turns any SDK error into a [`ConnectError`] that says whether a retry can help:
//!   throttling, 5xx answers, timeouts and I/O failures are retriable; a request that cannot be
//!   built, missing or invalid credentials, a role that may not be assumed and any error it does
//!   not recognise are not, so a permanent failure fails the task with a readable trace instead
//!   of retrying for ever.

mod errors;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, Importance, ParsedConfig, Password, Validator,
};

pub use errors::classify;

/// The connector-specific names of the AWS keys, and their defaults.
#[derive(Debug, Clone, Copy)]
pub struct AwsKeys {
    /// The region key (`kinesis.region`).
    pub region: &'static str,
    /// The region when the key is not set; `""` takes it from the environment (`AWS_REGION`, the
    /// profile).
    pub default_region: &'static str,
    /// The endpoint override key (`kinesis.endpoint`), for emulators and VPC endpoints; `None`
    /// when the connector reads its endpoint itself (the S3 sink's `store.url`).
    pub endpoint: Option<&'static str>,
    /// The key of the SDK's retries within one call (`s3.part.retries`, `aws.retries.max`).
    pub retries: &'static str,
    /// Its default: `"3"` where the SDK's retries help, `"0"` where the connector retries every
    /// call itself and counts each failure (the Lambda sink's throttles).
    pub default_retries: &'static str,
    /// The group the keys are listed under.
    pub group: &'static str,
}

/// Access key id.
pub const ACCESS_KEY_ID: &str = "aws.access.key.id";
/// Secret access key (a password).
pub const SECRET_ACCESS_KEY: &str = "aws.secret.access.key";
/// Role to assume.
pub const ROLE_ARN: &str = "aws.sts.role.arn";
/// External id the role's trust policy requires.
pub const ROLE_EXTERNAL_ID: &str = "aws.sts.role.external.id";
/// Session name of the assumed role, as CloudTrail shows it.
pub const ROLE_SESSION_NAME: &str = "aws.sts.role.session.name";
/// STS endpoint override.
pub const STS_ENDPOINT: &str = "aws.sts.endpoint";
/// Longest time one call may take, retries included.
pub const CALL_TIMEOUT: &str = "aws.api.call.timeout.ms";
/// Longest time one attempt of a call may take.
pub const ATTEMPT_TIMEOUT: &str = "aws.api.call.attempt.timeout.ms";

/// How the connector authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum AwsCredentials {
    /// The SDK's default chain.
    DefaultChain,
    /// Static keys from the connector's config.
    Static {
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: Password,
    },
}

/// A role assumed on top of the base credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct AssumeRole {
    /// The role's ARN.
    pub arn: String,
    /// External id, when the trust policy requires one.
    pub external_id: Option<String>,
    /// Session name.
    pub session_name: String,
    /// STS endpoint override.
    pub sts_endpoint: Option<String>,
}

/// Typed AWS client settings of one connector.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsSettings {
    /// Region; `None` takes it from the environment.
    pub region: Option<String>,
    /// Endpoint override of the connector's service.
    pub endpoint: Option<String>,
    /// Base credentials.
    pub credentials: AwsCredentials,
    /// A role to assume, if any.
    pub assume_role: Option<AssumeRole>,
    /// Longest time one call may take, retries included.
    pub call_timeout: Duration,
    /// Longest time one attempt may take.
    pub attempt_timeout: Duration,
    /// SDK retries within one call (attempts = retries + 1).
    pub retries: u32,
}

/// The default call timeout: well inside a consumer's session timeout, so that a task does not act
/// minutes after it lost its partitions.
const DEFAULT_CALL_TIMEOUT_MS: &str = "30000";
/// The default attempt timeout (a 25 MiB S3 part needs 1.3 MB/s).
const DEFAULT_ATTEMPT_TIMEOUT_MS: &str = "20000";
/// Connection set-up timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl AwsKeys {
    /// Adds the AWS keys to a connector's definition.
    pub fn define(&self, mut def: ConfigDef) -> ConfigDef {
        let g = self.group;
        let key = |name, kind, doc| ConfigKey::new(name, kind, doc).group(g);
        def = def.define(
            key(
                self.region,
                ConfigType::String,
                "AWS region; empty takes it from the environment (AWS_REGION, the profile).",
            )
            .default_value(self.default_region)
            .importance(Importance::High),
        );
        if let Some(endpoint) = self.endpoint {
            def = def.define(
                key(
                    endpoint,
                    ConfigType::String,
                    "Endpoint URL override (an emulator, a VPC endpoint); empty uses AWS's.",
                )
                .default_value(""),
            );
        }
        def.define(
            key(
                ACCESS_KEY_ID,
                ConfigType::String,
                "Access key; empty uses the default AWS credential chain (environment, profile, \
                web identity, container or instance role).",
            )
            .default_value(""),
        )
        .define(
            key(
                SECRET_ACCESS_KEY,
                ConfigType::Password,
                "Secret key for aws.access.key.id.",
            )
            .default_value(""),
        )
        .define(
            key(
                ROLE_ARN,
                ConfigType::String,
                "IAM role to assume with STS on top of the base credentials; empty for none. \
                The SDK refreshes the session before it expires.",
            )
            .default_value(""),
        )
        .define(
            key(
                ROLE_EXTERNAL_ID,
                ConfigType::String,
                "External id the role's trust policy requires, if any.",
            )
            .default_value(""),
        )
        .define(
            key(
                ROLE_SESSION_NAME,
                ConfigType::String,
                "Session name of the assumed role, as CloudTrail shows it.",
            )
            .default_value("sluice"),
        )
        .define(
            key(
                STS_ENDPOINT,
                ConfigType::String,
                "STS endpoint URL override; empty uses AWS's.",
            )
            .default_value(""),
        )
        .define(
            key(
                CALL_TIMEOUT,
                ConfigType::Long,
                "Longest time in ms one AWS call may take, SDK retries included.",
            )
            .default_value(DEFAULT_CALL_TIMEOUT_MS)
            .validator(Validator::between(1_000.0, 600_000.0)),
        )
        .define(
            key(
                ATTEMPT_TIMEOUT,
                ConfigType::Long,
                "Longest time in ms one attempt of an AWS call may take.",
            )
            .default_value(DEFAULT_ATTEMPT_TIMEOUT_MS)
            .validator(Validator::between(1_000.0, 600_000.0)),
        )
        .define(
            key(
                self.retries,
                ConfigType::Int,
                "Retries of a failed AWS call by the SDK, within aws.api.call.timeout.ms; the \
                connector retries further with its own back-off.",
            )
            .default_value(self.default_retries)
            .validator(Validator::between(0.0, 20.0)),
        )
    }

    /// The typed settings; pushes every error that spans keys.
    pub fn read(&self, p: &ParsedConfig, errors: &mut ConfigErrors) -> AwsSettings {
        let id = p.string(ACCESS_KEY_ID);
        let secret = p.password(SECRET_ACCESS_KEY);
        let credentials = match (id.trim(), secret) {
            ("", None) => AwsCredentials::DefaultChain,
            (id, Some(secret)) if !id.is_empty() => AwsCredentials::Static {
                access_key_id: id.to_owned(),
                secret_access_key: secret,
            },
            _ => {
                errors.push(
                    SECRET_ACCESS_KEY,
                    "aws.access.key.id and aws.secret.access.key are set together or not at all",
                );
                AwsCredentials::DefaultChain
            }
        };
        let endpoint = self.endpoint.and_then(|k| url_key(p, k, errors));
        let arn = p.string(ROLE_ARN).trim().to_owned();
        let assume_role = if arn.is_empty() {
            for k in [ROLE_EXTERNAL_ID, STS_ENDPOINT] {
                if p.optional_string(k).is_some() {
                    errors.push(k, format!("{k} applies only with {ROLE_ARN}"));
                }
            }
            None
        } else {
            if let Err(e) = check_role_arn(&arn) {
                errors.push(ROLE_ARN, e);
            }
            let session_name = p.string(ROLE_SESSION_NAME);
            if let Err(e) = check_session_name(&session_name) {
                errors.push(ROLE_SESSION_NAME, e);
            }
            Some(AssumeRole {
                arn,
                external_id: p.optional_string(ROLE_EXTERNAL_ID),
                session_name,
                sts_endpoint: url_key(p, STS_ENDPOINT, errors),
            })
        };
        let call_timeout = p.duration_ms(CALL_TIMEOUT);
        let attempt_timeout = p.duration_ms(ATTEMPT_TIMEOUT);
        if attempt_timeout > call_timeout {
            errors.push(
                ATTEMPT_TIMEOUT,
                format!("{ATTEMPT_TIMEOUT} must not be more than {CALL_TIMEOUT}"),
            );
        }
        AwsSettings {
            region: p.optional_string(self.region).map(|r| r.trim().to_owned()),
            endpoint,
            credentials,
            assume_role,
            call_timeout,
            attempt_timeout,
            retries: p.int(self.retries).max(0) as u32,
        }
    }
}

/// `errors.retry.timeout` (the worker checked it): a positive value bounds how long calls the
/// service refuses with a retriable error (throttling, 5xx) are retried before their records go
/// to the error policy. Throttling is not a record's fault, so with the default 0 (which in Kafka
/// Connect governs converters and transforms) and with -1 the connector retries as long as it
/// takes, pausing its partitions once its buffer is full.
pub fn retry_timeout(p: &ParsedConfig) -> Option<Duration> {
    p.originals()
        .get("errors.retry.timeout")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|ms| *ms > 0)
        .map(|ms| Duration::from_millis(ms as u64))
}

/// An optional `http(s)://` URL key.
fn url_key(p: &ParsedConfig, key: &str, errors: &mut ConfigErrors) -> Option<String> {
    let value = p.optional_string(key)?.trim().to_owned();
    match url::Url::parse(&value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(value),
        _ => {
            errors.push(
                key,
                format!("{value} is not an http:// or https:// URL with a host"),
            );
            None
        }
    }
}

/// `arn:<partition>:iam::<12-digit account>:role/<path/name>`.
fn check_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = matches!(parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{arn} is not an IAM role ARN (arn:aws:iam::123456789012:role/name)"
        ))
    }
}

/// STS's rule for session names: 2 to 64 of `[\w+=,.@-]`.
fn check_session_name(name: &str) -> Result<(), String> {
    let ok = (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: a session name is 2 to 64 letters, digits or _+=,.@-"
        ))
    }
}

impl AwsSettings {
    /// The SDK configuration every client of the connector is built from. Makes no request:
    /// credentials (and the assumed role) are resolved on the first call.
    pub async fn sdk_config(&self) -> SdkConfig {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.call_timeout)
            .build();
        let retries =
            aws_config::retry::RetryConfig::standard().with_max_attempts(self.retries + 1);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts)
            .retry_config(retries);
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let AwsCredentials::Static {
            access_key_id,
            secret_access_key,
        } = &self.credentials
        {
            loader = loader.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key.expose(),
                None,
                None,
                "sluice-config",
            ));
        }
        let mut config = loader.load().await;
        if let Some(role) = &self.assume_role {
            let mut sts = config.to_builder();
            if let Some(endpoint) = &role.sts_endpoint {
                sts.set_endpoint_url(Some(endpoint.clone()));
            }
            let mut provider = aws_config::sts::AssumeRoleProvider::builder(&role.arn)
                .session_name(&role.session_name)
                .configure(&sts.build());
            if let Some(id) = &role.external_id {
                provider = provider.external_id(id);
            }
            let provider = provider.build().await;
            config = config
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build();
        }
        if let Some(endpoint) = &self.endpoint {
            config = config.into_builder().endpoint_url(endpoint).build();
        }
        config
    }
}

#[cfg(test)]
mod tests;
