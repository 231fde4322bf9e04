//! `connection.url`: a JDBC URL (`jdbc:postgresql://host:port/db?user=…`) or the driver's own
//! (`postgres://…`), split into where the database is and who connects, so that messages can name
//! the database without ever showing a password.

use std::fmt;

use sluice_connector_api::Password;

/// The database products the source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL (13 or later: the read bound uses `pg_current_snapshot`).
    Postgres,
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
        let dialect = match scheme.as_str() {
            "postgresql" | "postgres" => Dialect::Postgres,
            "mysql" | "mariadb" | "sqlite" => {
                return Err(format!(
                    "{scheme} is not read by this version of the JDBC source yet (PostgreSQL is)"
                ));
            }
            other => {
                return Err(format!(
                    "not a PostgreSQL URL (jdbc:postgresql://host:port/database): the scheme \
                     is {other:?}"
                ));
            }
        };
        let mut url = url::Url::parse(bare).map_err(|e| format!("not a URL: {e}"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err("names no host".to_owned());
        }
        let mut user = Some(url.username().to_owned()).filter(|u| !u.is_empty());
        let mut password = url.password().map(|p| Password::new(p.to_owned()));
        let mut kept = Vec::new();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "user" => user = Some(v.into_owned()),
                "password" => password = Some(Password::new(v.into_owned())),
                // The PostgreSQL JDBC driver's names for what the driver calls sslmode.
                "ssl" if v == "true" => kept.push(("sslmode".to_owned(), "require".to_owned())),
                "sslmode" | "sslrootcert" | "sslcert" | "sslkey" | "application_name"
                | "options" => kept.push((k.into_owned(), v.into_owned())),
                _ => {} // JDBC driver settings that mean nothing here
            }
        }
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        let _ = url.set_scheme("postgres");
        let place = format!(
            "{}:{}{}",
            url.host_str().unwrap_or_default(),
            url.port().unwrap_or(5432),
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

    /// `host:port/database`, for messages.
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
        let e = DatabaseUrl::parse("jdbc:mysql://db/x?password=topsecret").unwrap_err();
        assert!(e.contains("mysql") && !e.contains("topsecret"), "{e}");
        let e = DatabaseUrl::parse("jdbc:oracle:thin:@db:1521:x").unwrap_err();
        assert!(e.contains("oracle"), "{e}");
        assert!(DatabaseUrl::parse("postgres:///nohost").is_err());
    }
}
