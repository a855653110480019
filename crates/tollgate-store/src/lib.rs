//! Storage: the only crate that talks SQL — connection (PostgreSQL or SQLite), embedded migrations, the
//! entity tables (keys, users, teams, organizations, end users, budgets), spend logs and daily aggregates.

pub mod entities;
pub mod migrate;
pub mod spend;

pub use entities::{EntityKind, EntityRow, ListFilter};
pub use spend::{SpendDelta, SpendLogFilter, SpendRow};

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, PgConnection, PgPool, SqlitePool};

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database URL scheme `{0}` is not supported (use postgres://, postgresql:// or sqlite:)"
    )]
    UnsupportedScheme(String),
    #[error("database URL is invalid: {0}")]
    InvalidUrl(String),
    #[error("cannot connect to the {kind} database at {target}: {cause}")]
    Connect {
        kind: &'static str,
        target: String,
        cause: String,
    },
    #[error("database query failed: {0}")]
    Query(String),
    /// The database did not answer (connection lost or refused, pool exhausted): try again later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("a row with this id already exists")]
    Conflict,
    #[error("database migration failed: {0}")]
    Migrate(String),
    #[error(
        "the database schema is at version {found}, this build needs {expected} (run `tollgate migrate`, or start without --skip-migrations)"
    )]
    SchemaVersion { found: i64, expected: i64 },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e
            && d.is_unique_violation()
        {
            return StoreError::Conflict;
        }
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Query(e.to_string()),
        }
    }
}

/// Run the same statement code against whichever pool the store holds (the SQL is written once, in the
/// dialect both PostgreSQL and SQLite accept: `$N` placeholders in ascending order of first use).
macro_rules! with_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match $store {
            $crate::Store::Postgres($p) => $body,
            $crate::Store::Sqlite($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl StoreError {
    /// True when the URL itself is wrong (a configuration error), not the server unreachable.
    pub fn is_config_problem(&self) -> bool {
        matches!(
            self,
            StoreError::UnsupportedScheme(_) | StoreError::InvalidUrl(_)
        )
    }
}

/// A connection pool to the configured database.
#[derive(Debug, Clone)]
pub enum Store {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Pool settings (`database_connection_pool_limit`, `database_connection_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The URL with any password removed, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..s], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Connect and verify with a round trip. Fails within `connect_timeout` when the server is unreachable.
    pub async fn connect(url: &str, opts: PoolOptions) -> Result<Store, StoreError> {
        let scheme = url.split(':').next().unwrap_or("");
        let target = redact_url(url);
        match scheme {
            "postgres" | "postgresql" => {
                let connect = PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
                // One direct connection first: a refused or failing connection is reported at once (the
                // pool would retry it until its acquire timeout).
                let connect_err = |cause: String| StoreError::Connect {
                    kind: "PostgreSQL",
                    target: target.clone(),
                    cause,
                };
                let conn = tokio::time::timeout(
                    opts.connect_timeout,
                    PgConnection::connect_with(&connect),
                )
                .await
                .map_err(|_| connect_err(format!("no answer within {:?}", opts.connect_timeout)))?
                .map_err(|e| connect_err(e.to_string()))?;
                let _ = conn.close().await;
                let pool = PgPoolOptions::new()
                    .max_connections(opts.max_connections)
                    .acquire_timeout(opts.connect_timeout)
                    .connect_with(connect)
                    .await
                    .map_err(|e| connect_err(e.to_string()))?;
                let store = Store::Postgres(pool);
                store.ping().await?;
                Ok(store)
            }
            "sqlite" => {
                // WAL: readers (management API) never block the spend writer; NORMAL sync is durable
                // across process crashes (the journal is fsynced at checkpoints).
                let connect = SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(opts.max_connections)
                    .acquire_timeout(opts.connect_timeout)
                    .connect_with(connect)
                    .await
                    .map_err(|e| StoreError::Connect {
                        kind: "SQLite",
                        target,
                        cause: e.to_string(),
                    })?;
                let store = Store::Sqlite(pool);
                store.ping().await?;
                Ok(store)
            }
            other => Err(StoreError::UnsupportedScheme(other.to_string())),
        }
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let r = match self {
            Store::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
            Store::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
        };
        r.map_err(|e| StoreError::Query(e.to_string()))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Postgres(p) => p.close().await,
            Store::Sqlite(p) => p.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[tokio::test]
    async fn sqlite_in_memory_connects() {
        let s = Store::connect("sqlite::memory:", PoolOptions::default())
            .await
            .unwrap();
        s.ping().await.unwrap();
        assert_eq!(s.kind(), "sqlite");
    }

    #[tokio::test]
    async fn unreachable_postgres_fails_fast_with_a_clear_error() {
        let opts = PoolOptions {
            max_connections: 1,
            connect_timeout: Duration::from_secs(2),
        };
        let err = Store::connect("postgres://u:pw@127.0.0.1:1/db", opts)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("PostgreSQL") && msg.contains("127.0.0.1:1") && !msg.contains("pw"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn unsupported_scheme() {
        let err = Store::connect("mysql://x", PoolOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedScheme(_)));
    }
}
