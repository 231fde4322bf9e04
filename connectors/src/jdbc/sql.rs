//! The statements a reader runs, built once per table from its columns, in the SQL of its
//! database (placeholders, identifier quotes, text casts). Only identifiers are written into the
//! text (quoted unless `quote.sql.identifiers=never`); every value is a bind parameter. A `query` is wrapped as a subquery, so its own WHERE, GROUP BY and ORDER BY stay
//! its own.

use super::columns::{Column, Kind};
use super::config::{JdbcSourceConfig, Mode};
use super::db::sqlite;
use super::url::Dialect;

/// What a statement's placeholder stands for, in the order of the placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// The offset's timestamp.
    Time,
    /// The offset's incrementing value.
    Id,
    /// The read's bound.
    Bound,
    /// The batch's row limit.
    Limit,
}

/// A statement and what its placeholders stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Its SQL.
    pub sql: String,
    /// Its placeholders, in order.
    pub params: Vec<Param>,
}

/// A reader's statements, ordered by the mode's columns.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Incrementing, no offset: `LIMIT`.
    pub first_ids: Query,
    /// Incrementing: `id > ? … LIMIT ?`.
    pub after_id: Query,
    /// Timestamp modes, no offset: `ts < bound … LIMIT ?`.
    pub first_times: Query,
    /// Timestamp modes: `ts > ? AND ts < bound … LIMIT ?`.
    pub after_time: Query,
    /// Timestamp and incrementing: `(ts, id) > (?, ?) AND ts < bound … LIMIT ?`.
    pub after_time_and_id: Query,
    /// One run of equal timestamps, whole: `ts = ? AND ts < bound`.
    pub at_time: Query,
    /// Bulk: every row.
    pub bulk: Query,
}

/// `name` as an identifier of `dialect`.
pub fn quote(dialect: Dialect, name: &str, quoted: bool) -> String {
    match (quoted, dialect) {
        (false, _) => name.to_owned(),
        (true, Dialect::MySql) => format!("`{}`", name.replace('`', "``")),
        (true, _) => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// `expression` as the database's text of it.
fn as_text(dialect: Dialect, expression: &str) -> String {
    match dialect {
        // PostgreSQL's own text, which keeps a numeric's declared digits ("10.50").
        Dialect::Postgres => format!("{expression}::text"),
        Dialect::MySql => format!("CAST({expression} AS CHAR)"),
        Dialect::Sqlite => format!("CAST({expression} AS TEXT)"),
    }
}

/// Writes SQL with placeholders, recording what each stands for.
struct Writer {
    dialect: Dialect,
    sql: String,
    params: Vec<Param>,
}

impl Writer {
    fn new(dialect: Dialect, start: &str) -> Self {
        Self {
            dialect,
            sql: start.to_owned(),
            params: Vec::new(),
        }
    }

    fn text(mut self, text: &str) -> Self {
        self.sql.push_str(text);
        self
    }

    fn param(mut self, param: Param) -> Self {
        self.params.push(param);
        match self.dialect {
            Dialect::Postgres => self.sql.push_str(&format!("${}", self.params.len())),
            _ => self.sql.push('?'),
        }
        self
    }

    fn done(self) -> Query {
        Query {
            sql: self.sql,
            params: self.params,
        }
    }
}

impl Statement {
    /// The statements of a reader of `columns` from `from` (a quoted table, or a query as a
    /// subquery), ordered by the mode's columns.
    pub fn new(
        config: &JdbcSourceConfig,
        dialect: Dialect,
        from: String,
        columns: &[Column],
        incrementing: Option<&str>,
        timestamps: &[&str],
    ) -> Self {
        let q = |n: &str| quote(dialect, n, config.quote_identifiers);
        let select = columns
            .iter()
            .map(|c| match c.as_text {
                true => format!("{} AS {}", as_text(dialect, &q(&c.name)), q(&c.name)),
                false => q(&c.name),
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
        let sqlite_times = dialect == Dialect::Sqlite
            && timestamps.iter().any(|t| {
                columns
                    .iter()
                    .any(|c| c.name == *t && c.kind == Kind::Timestamp)
            });
        // SQLite compares its times as it formats them, whatever text they were stored as.
        let ts = if sqlite_times {
            sqlite::time_expression(&ts)
        } else {
            ts
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
        let filtered = || Writer::new(dialect, &format!("{base} WHERE "));
        let limited = |w: Writer| {
            w.text(&format!("{order} LIMIT "))
                .param(Param::Limit)
                .text(&suffix)
                .done()
        };
        let below_bound = |w: Writer| w.text(&format!(" AND {ts} < ")).param(Param::Bound);
        Self {
            first_ids: limited(Writer::new(dialect, &base)),
            after_id: limited(filtered().text(&format!("{inc} > ")).param(Param::Id)),
            first_times: limited(filtered().text(&format!("{ts} < ")).param(Param::Bound)),
            after_time: limited(below_bound(
                filtered().text(&format!("{ts} > ")).param(Param::Time),
            )),
            after_time_and_id: limited(below_bound(
                filtered()
                    .text(&format!("({ts} > "))
                    .param(Param::Time)
                    .text(&format!(" OR ({ts} = "))
                    .param(Param::Time)
                    .text(&format!(" AND {inc} > "))
                    .param(Param::Id)
                    .text("))"),
            )),
            at_time: below_bound(filtered().text(&format!("{ts} = ")).param(Param::Time))
                .text(&format!("{order}{suffix}"))
                .done(),
            bulk: Writer::new(dialect, &format!("{base}{suffix}")).done(),
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
        vec![
            Column::new("id", Kind::Int64),
            Column::text("mood"),
            Column::new("we\"ird", Kind::Text),
        ]
    }

    #[test]
    fn timestamp_and_incrementing_resume_after_the_pair_with_every_value_bound() {
        let s = Statement::new(
            &config("timestamp+incrementing"),
            Dialect::Postgres,
            "\"public\".\"orders\"".to_owned(),
            &columns(),
            Some("id"),
            &["updated_at", "created_at"],
        );
        assert_eq!(
            s.after_time_and_id.params,
            [
                Param::Time,
                Param::Time,
                Param::Id,
                Param::Bound,
                Param::Limit
            ]
        );
        assert_eq!(
            s.after_time_and_id.sql,
            "SELECT \"id\", \"mood\"::text AS \"mood\", \"we\"\"ird\" FROM \"public\".\"orders\" \
             WHERE (COALESCE(\"updated_at\", \"created_at\") > $1 OR (COALESCE(\"updated_at\", \
             \"created_at\") = $2 AND \"id\" > $3)) AND COALESCE(\"updated_at\", \"created_at\") \
             < $4 ORDER BY COALESCE(\"updated_at\", \"created_at\") ASC, \"id\" ASC LIMIT $5"
        );
    }

    #[test]
    fn a_query_with_its_own_where_and_order_by_is_wrapped_whole() {
        let from = "(SELECT id, mood FROM t WHERE mood <> 'sad' ORDER BY id DESC) AS sluice_query";
        let s = Statement::new(
            &config("incrementing"),
            Dialect::Postgres,
            from.to_owned(),
            &columns(),
            Some("id"),
            &[],
        );
        assert_eq!(
            s.after_id.sql,
            format!(
                "SELECT \"id\", \"mood\"::text AS \"mood\", \"we\"\"ird\" FROM {from} WHERE \"id\" \
                 > $1 ORDER BY \"id\" ASC LIMIT $2"
            )
        );
    }

    #[test]
    fn mysql_and_sqlite_statements_use_their_own_quotes_placeholders_and_casts() {
        let mut columns = columns();
        columns.push(Column::new("ts", Kind::Timestamp));
        let my = Statement::new(
            &config("timestamp+incrementing"),
            Dialect::MySql,
            "`shop`.`orders`".to_owned(),
            &columns,
            Some("id"),
            &["ts"],
        );
        assert_eq!(
            my.after_time_and_id.sql,
            "SELECT `id`, CAST(`mood` AS CHAR) AS `mood`, `we\"ird`, `ts` FROM `shop`.`orders` \
             WHERE (`ts` > ? OR (`ts` = ? AND `id` > ?)) AND `ts` < ? ORDER BY `ts` ASC, `id` ASC \
             LIMIT ?"
        );
        let lite = Statement::new(
            &config("timestamp"),
            Dialect::Sqlite,
            "\"main\".\"orders\"".to_owned(),
            &columns,
            None,
            &["ts"],
        );
        let ts = "strftime('%Y-%m-%d %H:%M:%f', \"ts\")";
        assert_eq!(
            lite.at_time.sql,
            format!(
                "SELECT \"id\", CAST(\"mood\" AS TEXT) AS \"mood\", \"we\"\"ird\", \"ts\" FROM \
                 \"main\".\"orders\" WHERE {ts} = ? AND {ts} < ? ORDER BY {ts} ASC"
            )
        );
        assert_eq!(lite.at_time.params, [Param::Time, Param::Bound]);
    }
}
