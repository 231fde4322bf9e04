//! The tables the source reads: how a table is named, quoted, and matched against
//! `table.whitelist`/`table.blacklist`. Listing and describing them is each database's
//! ([`super::db`]).

use super::sql::quote;
use super::url::Dialect;

/// A table: its schema and name, and the shape of its columns when it was listed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TableId {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// Its columns (name, type, precision, scale, nullability) as one string: a column added,
    /// dropped or changed makes the table list differ, so the tasks get new configs and read the
    /// new columns.
    #[serde(default)]
    pub shape: String,
}

impl TableId {
    /// `"schema"."name"` as `dialect` quotes identifiers.
    pub fn quoted(&self, dialect: Dialect, quoted: bool) -> String {
        format!(
            "{}.{}",
            quote(dialect, &self.schema, quoted),
            quote(dialect, &self.name, quoted)
        )
    }

    /// `schema.name`.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Whether a `table.whitelist`/`table.blacklist` entry names it: `name`, `schema.name` or
    /// `database.schema.name`.
    pub fn matches(&self, entry: &str, database: &str) -> bool {
        let entry = entry.trim();
        entry == self.name
            || entry == self.display()
            || entry == format!("{database}.{}", self.display())
    }
}
