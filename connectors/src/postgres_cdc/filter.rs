//! Debezium's include and exclude lists: comma-separated regexes, each matched against the whole
//! identifier (`schema`, `schema.table`, `schema.table.column`).

use regex::Regex;

/// Include and exclude lists of anchored regexes (Debezium's matching: the whole identifier).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl Filter {
    /// Lists of regexes (invalid ones are left out: validation reports them).
    pub fn new(include: &[String], exclude: &[String]) -> Self {
        let compile = |list: &[String]| -> Vec<Regex> {
            list.iter().filter_map(|r| anchored(r).ok()).collect()
        };
        Self {
            include: compile(include),
            exclude: compile(exclude),
        }
    }

    /// Whether `name` is selected: by the include list when it is set, else not by the exclude
    /// list.
    pub fn matches(&self, name: &str) -> bool {
        if !self.include.is_empty() {
            return self.include.iter().any(|r| r.is_match(name));
        }
        !self.exclude.iter().any(|r| r.is_match(name))
    }

    /// Whether no list is set (everything is selected).
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

fn anchored(raw: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{raw})$")).map_err(|e| format!("{raw:?} is not a regex: {e}"))
}

pub(super) fn check_regexes(raw: &str) -> Result<(), String> {
    split(raw).try_for_each(|r| anchored(r).map(|_| ()))
}

/// Debezium's lists are comma separated; a comma inside a regex is not supported there either.
fn split(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}
