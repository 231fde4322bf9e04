//! Topic routers: RegexRouter (rename topics by regular expression) and TimestampRouter (append the
//! record's time to the topic, for time-partitioned destinations).

use chrono::{DateTime, Utc};
use regex::Regex;
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

/// Converts a Java `SimpleDateFormat` pattern (`yyyyMMdd`, `yyyy-MM-dd'T'HH`) into a chrono format.
pub(crate) fn java_date_format(pattern: &str) -> Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '\'')
                .ok_or("unterminated quote")?;
            let literal: String = chars[i + 1..i + 1 + end].iter().collect();
            out.push_str(&literal.replace('%', "%%"));
            i += end + 2;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let spec = match (c, run) {
            ('y', 2) => "%y",
            ('y', _) => "%Y",
            ('M', 1 | 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', _) => "%d",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', _) => "%3f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('Z', _) => "%z",
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!("unsupported pattern letter {c}"));
            }
            (c, n) => {
                out.extend(std::iter::repeat_n(c, n));
                i += n;
                continue;
            }
        };
        out.push_str(spec);
        i += run;
    }
    Ok(out)
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
    match java_date_format(&pattern) {
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
