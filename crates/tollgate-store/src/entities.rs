//! The entity tables (keys, users, teams, organizations, end users, budgets): one row shape, one set of
//! statements; the LiteLLM object itself is the JSON `body` (serialized by the caller).

use sqlx::Row;

use crate::{Store, StoreError, now_ms, with_pool};

/// Which entity table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    Key,
    User,
    Team,
    Organization,
    EndUser,
    Budget,
}

impl EntityKind {
    pub const ALL: [EntityKind; 6] = [
        EntityKind::Key,
        EntityKind::User,
        EntityKind::Team,
        EntityKind::Organization,
        EntityKind::EndUser,
        EntityKind::Budget,
    ];

    pub fn table(self) -> &'static str {
        match self {
            EntityKind::Key => "tg_keys",
            EntityKind::User => "tg_users",
            EntityKind::Team => "tg_teams",
            EntityKind::Organization => "tg_organizations",
            EntityKind::EndUser => "tg_end_users",
            EntityKind::Budget => "tg_budgets",
        }
    }

    /// The name used in `tg_daily_spend.entity_kind` and `tg_model_spend.entity_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Key => "key",
            EntityKind::User => "user",
            EntityKind::Team => "team",
            EntityKind::Organization => "organization",
            EntityKind::EndUser => "end_user",
            EntityKind::Budget => "budget",
        }
    }

    pub fn parse(s: &str) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One row of an entity table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRow {
    pub id: String,
    pub alias: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    /// Nano-dollars, maintained by the spend writer.
    pub spend: i64,
    /// When the budget next resets (ms), if it has a `budget_duration`.
    pub budget_reset_at: Option<i64>,
    pub deleted: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The JSON document.
    pub body: String,
}

/// Filters for [`Store::list`]; `None` = any.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    pub alias: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

const COLUMNS: &str = "id, alias, user_id, team_id, organization_id, spend, budget_reset_at, deleted, created_at, updated_at, body";

macro_rules! entity_from_row {
    ($r:expr) => {{
        let r = $r;
        EntityRow {
            id: r.try_get("id")?,
            alias: r.try_get("alias")?,
            user_id: r.try_get("user_id")?,
            team_id: r.try_get("team_id")?,
            organization_id: r.try_get("organization_id")?,
            spend: r.try_get("spend")?,
            budget_reset_at: r.try_get("budget_reset_at")?,
            deleted: r.try_get::<i64, _>("deleted")? != 0,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            body: r.try_get("body")?,
        }
    }};
}

impl Store {
    /// Insert a new row; [`StoreError::Conflict`] when the id exists (a soft-deleted row with the same id is
    /// replaced).
    pub async fn insert(&self, kind: EntityKind, row: &EntityRow) -> Result<(), StoreError> {
        let t = kind.table();
        let purge = format!("DELETE FROM {t} WHERE id = $1 AND deleted = 1");
        let sql = format!(
            "INSERT INTO {t} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10)"
        );
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(&purge).bind(&row.id).execute(&mut *tx).await?;
            sqlx::query(&sql)
                .bind(&row.id)
                .bind(&row.alias)
                .bind(&row.user_id)
                .bind(&row.team_id)
                .bind(&row.organization_id)
                .bind(row.spend)
                .bind(row.budget_reset_at)
                .bind(row.created_at)
                .bind(row.updated_at)
                .bind(&row.body)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Replace the document and the indexed columns of a live row (not `spend`, which belongs to the spend
    /// writer). `false` when there is no such live row.
    pub async fn update(&self, kind: EntityKind, row: &EntityRow) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET alias = $1, user_id = $2, team_id = $3, organization_id = $4, budget_reset_at = $5, updated_at = $6, body = $7 WHERE id = $8 AND deleted = 0",
            kind.table()
        );
        let n = with_pool!(self, p => sqlx::query(&sql)
            .bind(&row.alias)
            .bind(&row.user_id)
            .bind(&row.team_id)
            .bind(&row.organization_id)
            .bind(row.budget_reset_at)
            .bind(row.updated_at)
            .bind(&row.body)
            .bind(&row.id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    /// Replace a live row's id (key regeneration), keeping its spend. `false` when there is no such row.
    pub async fn rename(
        &self,
        kind: EntityKind,
        old_id: &str,
        row: &EntityRow,
    ) -> Result<bool, StoreError> {
        let t = kind.table();
        let select = format!("SELECT spend FROM {t} WHERE id = $1 AND deleted = 0");
        let delete = format!("UPDATE {t} SET deleted = 1, updated_at = $1 WHERE id = $2");
        let insert = format!(
            "INSERT INTO {t} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10)"
        );
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            let spend: Option<i64> = sqlx::query_scalar(&select)
                .bind(old_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(spend) = spend else {
                return Ok(false);
            };
            sqlx::query(&delete).bind(row.updated_at).bind(old_id).execute(&mut *tx).await?;
            sqlx::query(&insert)
                .bind(&row.id)
                .bind(&row.alias)
                .bind(&row.user_id)
                .bind(&row.team_id)
                .bind(&row.organization_id)
                .bind(spend)
                .bind(row.budget_reset_at)
                .bind(row.created_at)
                .bind(row.updated_at)
                .bind(&row.body)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(true)
    }

    /// A live row by id.
    pub async fn get(&self, kind: EntityKind, id: &str) -> Result<Option<EntityRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE id = $1 AND deleted = 0",
            kind.table()
        );
        with_pool!(self, p => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(p).await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(entity_from_row!(&r))),
            }
        })
    }

    /// Live rows matching the filter, oldest first.
    pub async fn list(
        &self,
        kind: EntityKind,
        f: &ListFilter,
    ) -> Result<Vec<EntityRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE deleted = 0 \
             AND ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR team_id = $2) \
             AND ($3 IS NULL OR organization_id = $3) AND ($4 IS NULL OR alias = $4) \
             ORDER BY created_at, id LIMIT $5 OFFSET $6",
            kind.table()
        );
        let limit = f.limit.unwrap_or(i64::MAX);
        let offset = f.offset.unwrap_or(0);
        with_pool!(self, p => {
            let rows = sqlx::query(&sql)
                .bind(&f.user_id)
                .bind(&f.team_id)
                .bind(&f.organization_id)
                .bind(&f.alias)
                .bind(limit)
                .bind(offset)
                .fetch_all(p)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(entity_from_row!(r));
            }
            Ok(out)
        })
    }

    /// Every row (deleted ones included) changed at or after `since` (ms): the incremental cache refresh.
    pub async fn changed_since(
        &self,
        kind: EntityKind,
        since: i64,
    ) -> Result<Vec<EntityRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE updated_at >= $1 ORDER BY updated_at",
            kind.table()
        );
        with_pool!(self, p => {
            let rows = sqlx::query(&sql).bind(since).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(entity_from_row!(r));
            }
            Ok(out)
        })
    }

    /// Soft-delete live rows; returns the ids that were deleted.
    pub async fn delete(
        &self,
        kind: EntityKind,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "UPDATE {} SET deleted = 1, updated_at = $1 WHERE id = $2 AND deleted = 0",
            kind.table()
        );
        let now = now_ms();
        let mut done = Vec::new();
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            for id in ids {
                let n = sqlx::query(&sql).bind(now).bind(id).execute(&mut *tx).await?.rows_affected();
                if n > 0 {
                    done.push(id.clone());
                }
            }
            tx.commit().await?;
        });
        Ok(done)
    }

    /// Budget reset: spend back to zero and the next reset time recorded, only if the row is still due
    /// (`budget_reset_at` unchanged), so two instances resetting at once reset once. `true` when this call
    /// reset it.
    pub async fn reset_spend(
        &self,
        kind: EntityKind,
        id: &str,
        due_at: i64,
        next_reset_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET spend = 0, budget_reset_at = $1, updated_at = $2 WHERE id = $3 AND budget_reset_at = $4",
            kind.table()
        );
        let reset_models =
            "UPDATE tg_model_spend SET spend = 0 WHERE entity_kind = $1 AND entity_id = $2";
        let now = now_ms();
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(&sql)
                .bind(next_reset_at)
                .bind(now)
                .bind(id)
                .bind(due_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                sqlx::query(reset_models).bind(kind.as_str()).bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    /// Set a row's spend (the management API's `spend` field on update).
    pub async fn set_spend(
        &self,
        kind: EntityKind,
        id: &str,
        spend: i64,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE {} SET spend = $1, updated_at = $2 WHERE id = $3",
            kind.table()
        );
        with_pool!(self, p => sqlx::query(&sql).bind(spend).bind(now_ms()).bind(id).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// `(id, spend)` of every live row: the periodic spend sync (other instances' spend).
    pub async fn spends(&self, kind: EntityKind) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = format!("SELECT id, spend FROM {} WHERE deleted = 0", kind.table());
        with_pool!(self, p => {
            let rows = sqlx::query(&sql).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push((r.try_get("id")?, r.try_get("spend")?));
            }
            Ok(out)
        })
    }

    /// Spend per model of one entity (for `model_max_budget`).
    pub async fn model_spend(
        &self,
        kind: EntityKind,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let sql = "SELECT entity_id, model, spend FROM tg_model_spend WHERE entity_kind = $1";
        with_pool!(self, p => {
            let rows = sqlx::query(sql).bind(kind.as_str()).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push((r.try_get("entity_id")?, r.try_get("model")?, r.try_get("spend")?));
            }
            Ok(out)
        })
    }
}
