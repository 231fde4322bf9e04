//! Topic routers: RegexRouter (rename topics by regular expression) and TimestampRouter (append the
//! record's time to the topic, for time-partitioned destinations).

use chrono::{DateTime, Utc};
use regex::Regex;
use sluice_connector_api::date_pattern::{Style, to_strftime};
use sluice_connector_api::{ConnectError, Props, Record};

use crate::util::{Errors, required};
use crate::{Target, Transform};

struct RegexRouter {
    regex: Regex,
    replacement: String,
}

/// Java's `$1` group references become `${1}` so that a following letter is not read as part of the
/// group name.
fn java_replacement(replacement: &str) -> String {
    let re = Regex::new(r"\$(\d+)").expect("static regex");
    re.replace_all(replacement, "$${$1}").into_owned()
}

pub(crate) fn regex_router(_: Option<Target>, props: &Props) -> Result<Box<dyn Transform>, Errors> {
    let mut errors = Errors::new();
    let regex = required(props, "regex", &mut errors);
    // The whole topic must match, as with Java's Matcher.matches().
    let compiled = match Regex::new(&format!("^(?:{regex})$")) {
        Ok(r) => Some(r),
        Err(e) if !regex.is_empty() => {
            errors.push(("regex".into(), format!("Invalid regex {regex}: {e}")));
            None
        }
        Err(_) => None,
    };
    let replacement = props.get("replacement").cloned();
    if replacement.is_none() {
        errors.push((
            "replacement".into(),
            "Missing required configuration \"replacement\" which has no default value.".into(),
        ));
    }
    match (compiled, replacement) {
        (Some(regex), Some(replacement)) if errors.is_empty() => Ok(Box::new(RegexRouter {
            regex,
            replacement: java_replacement(&replacement),
        })),
        _ => Err(errors),
    }
}

impl Transform for RegexRouter {
    fn apply(&self, mut record: Record) -> Result<Option<Record>, ConnectError> {
        if self.regex.is_match(&record.topic) {
            record.topic = self
                .regex
                .replace(&record.topic, self.replacement.as_str())
                .into_owned();
        }
        Ok(Some(record))
    }
}

struct TimestampRouter {
    topic_format: String,
    timestamp_format: String,
}

pub(crate) fn timestamp_router(
    _: Option<Target>,
    props: &Props,
) -> Result<Box<dyn Transform>, Errors> {
    let topic_format = props
        .get("topic.format")
        .cloned()
        .unwrap_or_else(|| "${topic}-${timestamp}".to_owned());
    let pattern = props
        .get("timestamp.format")
        .cloned()
        .unwrap_or_else(|| "yyyyMMdd".to_owned());
    match to_strftime(&pattern, Style::SimpleDateFormat) {
        Ok(timestamp_format) => Ok(Box::new(TimestampRouter {
            topic_format,
            timestamp_format,
        })),
        Err(e) => Err(vec![(
            "timestamp.format".into(),
            format!("Invalid timestamp.format {pattern}: {e}"),
        )]),
    }
}

impl Transform for TimestampRouter {
    fn apply(&self, mut record: Record) -> Result<Option<Record>, ConnectError> {
        let ts = record.timestamp.ok_or_else(|| {
            ConnectError::user(format!(
                "TimestampRouter: record in topic {} has no timestamp",
                record.topic
            ))
        })?;
        let time: DateTime<Utc> = DateTime::from_timestamp_millis(ts).ok_or_else(|| {
            ConnectError::user(format!("TimestampRouter: timestamp {ts} out of range"))
        })?;
        let formatted = time.format(&self.timestamp_format).to_string();
        record.topic = self
            .topic_format
            .replace("${topic}", &record.topic)
            .replace("${timestamp}", &formatted);
        Ok(Some(record))
    }
}
