//! `connection.url`: a JDBC URL (`jdbc:postgresql://host:port/db?user=…`,
//! `jdbc:mysql://…`/`jdbc:mariadb://…`, `jdbc:sqlite:path`) or the driver's own (`postgres://…`,
//! `mysql://…`, `sqlite:path`), split into where the database is and who connects, so that
//! messages can name the database without ever showing a password.

use std::fmt;

use sluice_connector_api::Password;

/// The database products the source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL (13 or later: the read bound uses `pg_current_snapshot`).
    Postgres,
    /// MySQL or MariaDB, InnoDB tables.
    MySql,
    /// A SQLite database file.
    Sqlite,
}

impl Dialect {
    /// The product's name, for messages.
    pub fn product(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL",
            Dialect::Sqlite => "SQLite",
        }
    }
}

/// A parsed `connection.url`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    /// Which database product.
    pub dialect: Dialect,
    /// The URL for the driver, without user and password.
    pub driver_url: String,
    /// `host:port/database`, for messages.
    place: String,
    /// The user given in the URL.
    pub user: Option<String>,
    /// The password given in the URL.
    pub password: Option<Password>,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} database at {}", self.dialect, self.place)
    }
}

impl DatabaseUrl {
    /// Parses a JDBC or driver URL; the error never repeats the URL (it may hold a password).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let bare = raw.strip_prefix("jdbc:").unwrap_or(raw);
        let scheme = bare
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "postgresql" | "postgres" => Self::server(bare, Dialect::Postgres),
            "mysql" | "mariadb" => Self::server(bare, Dialect::MySql),
            "sqlite" => Self::file(&bare["sqlite:".len()..]),
            other => Err(format!(
                "not a PostgreSQL, MySQL/MariaDB or SQLite URL (jdbc:postgresql://host:port/db, \
                 jdbc:mysql://host:port/db, jdbc:sqlite:path): the scheme is {other:?}"
            )),
        }
    }

    /// A database server's URL.
    fn server(bare: &str, dialect: Dialect) -> Result<Self, String> {
        let mut url = url::Url::parse(bare).map_err(|e| format!("not a URL: {e}"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err("names no host".to_owned());
        }
        let mut user = Some(url.username().to_owned()).filter(|u| !u.is_empty());
        let mut password = url.password().map(|p| Password::new(p.to_owned()));
        let mut kept = Vec::new();
        for (k, v) in url.query_pairs() {
            let mut keep = |k: &str, v: &str| kept.push((k.to_owned(), v.to_owned()));
            match (dialect, k.as_ref()) {
                (_, "user") => user = Some(v.into_owned()),
                (_, "password") => password = Some(Password::new(v.into_owned())),
                // The PostgreSQL JDBC driver's names for what the driver calls sslmode.
                (Dialect::Postgres, "ssl") if v == "true" => keep("sslmode", "require"),
                (
                    Dialect::Postgres,
                    "sslmode" | "sslrootcert" | "sslcert" | "sslkey" | "application_name"
                    | "options",
                ) => keep(&k, &v),
                // Connector/J's and MariaDB Connector/J's names for the driver's ssl-mode.
                (Dialect::MySql, "useSSL" | "useSsl" | "requireSSL") if v == "true" => {
                    keep("ssl-mode", "REQUIRED")
                }
                (Dialect::MySql, "sslMode" | "sslmode") => keep("ssl-mode", &v.to_uppercase()),
                (Dialect::MySql, "serverSslCert" | "trustCertificateKeyStoreUrl") => {
                    keep("ssl-ca", v.trim_start_matches("file:"))
                }
                _ => {} // JDBC driver settings that mean nothing here
            }
        }
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        let (scheme, default_port) = match dialect {
            Dialect::MySql => ("mysql", 3306),
            _ => ("postgres", 5432),
        };
        let _ = url.set_scheme(scheme);
        let place = format!(
            "{}:{}{}",
            url.host_str().unwrap_or_default(),
            url.port().unwrap_or(default_port),
            url.path()
        );
        Ok(Self {
            dialect,
            driver_url: url.to_string(),
            place,
            user,
            password,
        })
    }

    /// A SQLite file: `path`, `//path` or `file:path`, with JDBC-style `?…` settings dropped.
    fn file(rest: &str) -> Result<Self, String> {
        let path = rest.split('?').next().unwrap_or_default();
        let path = path.strip_prefix("file:").unwrap_or(path);
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() || path == ":memory:" || path.starts_with(":resource:") {
            return Err(
                "names no SQLite file (an in-memory database has no rows to read)".to_owned(),
            );
        }
        Ok(Self {
            dialect: Dialect::Sqlite,
            driver_url: path.to_owned(),
            place: path.to_owned(),
            user: None,
            password: None,
        })
    }

    /// Stands in for a URL that did not parse (its error is reported already).
    pub fn invalid() -> Self {
        Self {
            dialect: Dialect::Postgres,
            driver_url: String::new(),
            place: "(invalid connection.url)".to_owned(),
            user: None,
            password: None,
        }
    }

    /// `host:port/database` (a SQLite file's path), for messages.
    pub fn host(&self) -> &str {
        &self.place
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jdbc_url_loses_its_credentials_to_their_own_fields() {
        let u = DatabaseUrl::parse(
            "jdbc:postgresql://db.internal:6543/shop?user=app&password=s3cret&ssl=true&loginTimeout=5",
        )
        .unwrap();
        assert_eq!(u.dialect, Dialect::Postgres);
        assert_eq!(u.host(), "db.internal:6543/shop");
        assert_eq!(u.user.as_deref(), Some("app"));
        assert_eq!(u.password.as_ref().map(Password::expose), Some("s3cret"));
        assert_eq!(
            u.driver_url,
            "postgres://db.internal:6543/shop?sslmode=require"
        );
        assert!(!format!("{u:?}").contains("s3cret"));
        let plain = DatabaseUrl::parse("postgres://app:pw@localhost/db").unwrap();
        assert_eq!(plain.host(), "localhost:5432/db");
        assert_eq!(plain.driver_url, "postgres://localhost/db");
        assert_eq!(plain.password.as_ref().map(Password::expose), Some("pw"));
    }

    #[test]
    fn other_products_and_garbage_are_refused_without_repeating_the_url() {
        let e = DatabaseUrl::parse("jdbc:oracle:thin:@db:1521:x?password=topsecret").unwrap_err();
        assert!(!e.contains("topsecret"), "{e}");
        assert!(e.contains("oracle"), "{e}");
        assert!(DatabaseUrl::parse("postgres:///nohost").is_err());
        assert!(DatabaseUrl::parse("jdbc:sqlite::memory:").is_err());
    }

    #[test]
    fn mysql_mariadb_and_sqlite_urls_are_read() {
        let u = DatabaseUrl::parse(
            "jdbc:mariadb://db.internal/shop?user=app&password=s3cret&useSSL=true&useUnicode=true",
        )
        .unwrap();
        assert_eq!(u.dialect, Dialect::MySql);
        assert_eq!(u.host(), "db.internal:3306/shop");
        assert_eq!(u.driver_url, "mysql://db.internal/shop?ssl-mode=REQUIRED");
        assert_eq!(u.password.as_ref().map(Password::expose), Some("s3cret"));
        let m = DatabaseUrl::parse("mysql://app:pw@127.0.0.1:3307/x").unwrap();
        assert_eq!((m.dialect, m.host()), (Dialect::MySql, "127.0.0.1:3307/x"));
        for (raw, path) in [
            ("jdbc:sqlite:/var/db/app.db", "/var/db/app.db"),
            ("jdbc:sqlite:app.db?journal_mode=WAL", "app.db"),
            ("sqlite:///var/db/app.db", "/var/db/app.db"),
            ("sqlite:file:/tmp/x.db", "/tmp/x.db"),
        ] {
            let s = DatabaseUrl::parse(raw).unwrap();
            assert_eq!(
                (s.dialect, s.driver_url.as_str()),
                (Dialect::Sqlite, path),
                "{raw}"
            );
        }
    }
}
