//! Embedded schema migrations: applied at start-up (PostgreSQL: under sqlx's advisory lock, so instances
//! starting together do not race) or checked when migrations are skipped.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::{Store, StoreError, with_pool};

/// Every migration, in order. The SQL is shared by both backends.
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "init", include_str!("../migrations/0001_init.sql"))];

/// The schema version this build expects.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

fn migrator() -> Migrator {
    let migrations: Vec<Migration> = MIGRATIONS
        .iter()
        .map(|(version, name, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*name),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

impl Store {
    /// Apply every pending migration. Returns the schema version now in place.
    pub async fn migrate(&self) -> Result<i64, StoreError> {
        let m = migrator();
        with_pool!(self, p => m.run(p).await).map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(latest_version())
    }

    /// The highest successfully applied migration (0 when none is).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let sql = "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version DESC LIMIT 1";
        let r: Result<Option<i64>, sqlx::Error> =
            with_pool!(self, p => sqlx::query_scalar(sql).fetch_optional(p).await);
        match r {
            Ok(v) => Ok(v.unwrap_or(0)),
            // No migrations table at all: nothing was ever applied.
            Err(sqlx::Error::Database(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// With migrations skipped: fail unless the schema is exactly what this build expects.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let found = self.schema_version().await?;
        let expected = latest_version();
        if found != expected {
            return Err(StoreError::SchemaVersion { found, expected });
        }
        Ok(())
    }
}
