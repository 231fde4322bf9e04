//! The statements a reader runs, built once per table from its columns. Only identifiers are
//! written into the text (quoted unless `quote.sql.identifiers=never`); every value is a bind
//! parameter. A `query` is wrapped as a subquery, so its own WHERE, GROUP BY and ORDER BY stay
//! its own.

use super::columns::{Column, Kind};
use super::config::{JdbcSourceConfig, Mode};

/// The database's time, the start of the oldest transaction open in this database other than
/// the source's own (`$1` is their application name), and the transactions in progress, all in
/// the reading transaction's snapshot.
pub const BOUNDS: &str = "SELECT now(), \
     (SELECT min(xact_start) FROM pg_stat_activity \
       WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND backend_type = 'client backend' AND application_name <> $1), \
     ARRAY(SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x)";

/// A reader's statements. Parameters, in order: the offset's values, the bound, the limit.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Incrementing, no offset: `LIMIT $1`.
    pub first_ids: String,
    /// Incrementing: `id > $1 … LIMIT $2`.
    pub after_id: String,
    /// Timestamp modes, no offset: `ts < $1 … LIMIT $2`.
    pub first_times: String,
    /// Timestamp modes: `ts > $1 AND ts < $2 … LIMIT $3`.
    pub after_time: String,
    /// Timestamp and incrementing: `(ts, id) > ($1, $2) AND ts < $3 … LIMIT $4`.
    pub after_time_and_id: String,
    /// One run of equal timestamps, whole: `ts = $1 AND ts < $2`.
    pub at_time: String,
    /// Bulk: every row.
    pub bulk: String,
}

/// `name` as an identifier.
pub fn quote(name: &str, quoted: bool) -> String {
    if quoted {
        format!("\"{}\"", name.replace('"', "\"\""))
    } else {
        name.to_owned()
    }
}

impl Statement {
    /// The statements of a reader of `columns` from `from` (a quoted table, or a query as a
    /// subquery), ordered by the mode's columns.
    pub fn new(
        config: &JdbcSourceConfig,
        from: String,
        columns: &[Column],
        incrementing: Option<&str>,
        timestamps: &[&str],
    ) -> Self {
        let q = |n: &str| quote(n, config.quote_identifiers);
        let select = columns
            .iter()
            .map(|c| match c.kind {
                // PostgreSQL's own text, which keeps a numeric's declared digits ("10.50").
                None | Some(Kind::NumericText) => {
                    format!("{}::text AS {}", q(&c.name), q(&c.name))
                }
                Some(_) => q(&c.name),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let inc = incrementing.map(q).unwrap_or_default();
        let ts = match timestamps {
            [one] => q(one),
            many => format!(
                "COALESCE({})",
                many.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ")
            ),
        };
        let order = match config.mode {
            Mode::Incrementing => format!(" ORDER BY {inc} ASC"),
            Mode::Timestamp => format!(" ORDER BY {ts} ASC"),
            Mode::TimestampIncrementing => format!(" ORDER BY {ts} ASC, {inc} ASC"),
            Mode::Bulk => String::new(),
        };
        let suffix = config
            .query_suffix
            .as_deref()
            .map_or_else(String::new, |s| format!(" {s}"));
        let base = format!("SELECT {select} FROM {from}");
        let make = |filter: &str, limit: Option<u8>| {
            let limit = limit.map_or_else(String::new, |n| format!(" LIMIT ${n}"));
            format!("{base} WHERE {filter}{order}{limit}{suffix}")
        };
        Self {
            first_ids: format!("{base}{order} LIMIT $1{suffix}"),
            after_id: make(&format!("{inc} > $1"), Some(2)),
            first_times: make(&format!("{ts} < $1"), Some(2)),
            after_time: make(&format!("{ts} > $1 AND {ts} < $2"), Some(3)),
            after_time_and_id: make(
                &format!("({ts} > $1 OR ({ts} = $1 AND {inc} > $2)) AND {ts} < $3"),
                Some(4),
            ),
            at_time: make(&format!("{ts} = $1 AND {ts} < $2"), None),
            bulk: format!("{base}{suffix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_connector_api::ConnectorConfig;
    use sluice_connector_api::testing::props;

    use super::*;

    fn config(mode: &str) -> JdbcSourceConfig {
        JdbcSourceConfig::from_props(&props(&[
            ("connection.url", "postgres://db/x"),
            ("mode", mode),
            ("timestamp.column.name", "updated_at,created_at"),
            ("incrementing.column.name", "id"),
            ("topic.prefix", "t-"),
        ]))
        .unwrap()
    }

    fn columns() -> Vec<Column> {
        let c = |name: &str, kind| Column {
            name: name.to_owned(),
            kind,
            nullable: false,
        };
        vec![
            c("id", Some(Kind::Int64)),
            c("mood", None),
            c("we\"ird", Some(Kind::Text)),
        ]
    }

    #[test]
    fn timestamp_and_incrementing_resume_after_the_pair_with_every_value_bound() {
        let s = Statement::new(
            &config("timestamp+incrementing"),
            "\"public\".\"orders\"".to_owned(),
            &columns(),
            Some("id"),
            &["updated_at", "created_at"],
        );
        assert_eq!(
            s.after_time_and_id,
            "SELECT \"id\", \"mood\"::text AS \"mood\", \"we\"\"ird\" FROM \"public\".\"orders\" \
             WHERE (COALESCE(\"updated_at\", \"created_at\") > $1 OR (COALESCE(\"updated_at\", \
             \"created_at\") = $1 AND \"id\" > $2)) AND COALESCE(\"updated_at\", \"created_at\") \
             < $3 ORDER BY COALESCE(\"updated_at\", \"created_at\") ASC, \"id\" ASC LIMIT $4"
        );
    }

    #[test]
    fn a_query_with_its_own_where_and_order_by_is_wrapped_whole() {
        let from = "(SELECT id, mood FROM t WHERE mood <> 'sad' ORDER BY id DESC) AS sluice_query";
        let s = Statement::new(
            &config("incrementing"),
            from.to_owned(),
            &columns(),
            Some("id"),
            &[],
        );
        assert_eq!(
            s.after_id,
            format!(
                "SELECT \"id\", \"mood\"::text AS \"mood\", \"we\"\"ird\" FROM {from} WHERE \"id\" \
                 > $1 ORDER BY \"id\" ASC LIMIT $2"
            )
        );
    }
}
