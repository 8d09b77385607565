//! Test support: a fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server is `LOOPGATE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`, as on CI). There is no
//! skipping: without a server, creating the database fails the test.

use std::sync::atomic::{AtomicU32, Ordering};

/// A database that exists for as long as this value.
#[derive(Debug)]
pub struct TempDatabase {
    /// Its URL.
    pub url: String,
    admin: String,
    name: String,
}

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

impl TempDatabase {
    /// Creates an empty database on the test server.
    pub fn create() -> Result<TempDatabase, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin = std::env::var("LOOPGATE_TEST_POSTGRES")
            .unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let name = format!(
            "loopgate_t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let sql = format!("CREATE DATABASE {name}");
        run(&admin, sql).map_err(|e| {
            format!("cannot create a test database on {admin} (set LOOPGATE_TEST_POSTGRES): {e}")
        })?;
        let url = url_with_database(&admin, &name);
        Ok(TempDatabase { url, admin, name })
    }
}

/// `url` with its database replaced by `name`.
fn url_with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Runs `sql` on its own thread (the blocking client must not run on an
/// async worker).
fn run(url: &str, sql: String) -> Result<(), String> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client =
            postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
        client.batch_execute(&sql).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the database thread panicked".to_owned())?
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(error) = run(&self.admin, sql) {
            tracing::warn!(%error, database = self.name, "test database not dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::url_with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            url_with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            url_with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(url_with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
