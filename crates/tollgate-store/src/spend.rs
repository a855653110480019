//! Spend logs and daily aggregates: the batch write (one transaction, idempotent by request id, counters
//! updated in a fixed order so concurrent writers cannot deadlock) and the report queries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Row};

use crate::{EntityKind, Store, StoreError, with_pool};

/// One LLM request's spend record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendRow {
    pub request_id: String,
    /// Hash of the virtual key ('' when the master key or no key was used).
    pub api_key: String,
    pub key_alias: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    pub end_user: Option<String>,
    pub model_group: String,
    pub model: String,
    pub deployment_id: String,
    pub provider: String,
    pub call_type: String,
    pub status: i64,
    pub stream: bool,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    /// Nano-dollars.
    pub spend: i64,
    pub start_time: i64,
    pub end_time: i64,
    /// JSON array.
    pub tags: String,
    /// JSON object.
    pub metadata: String,
    /// The request's trace (16-byte trace id, 8-byte span id) when it was traced, for the span of its
    /// database write. Not stored, not journaled.
    #[serde(skip)]
    pub trace: Option<[u8; 24]>,
}

impl SpendRow {
    /// The entities this row's spend counts toward, with their kind.
    pub fn entities(&self) -> impl Iterator<Item = (EntityKind, &str)> {
        let key = (!self.api_key.is_empty()).then_some((EntityKind::Key, self.api_key.as_str()));
        [
            key,
            self.user_id.as_deref().map(|u| (EntityKind::User, u)),
            self.team_id.as_deref().map(|t| (EntityKind::Team, t)),
            self.organization_id
                .as_deref()
                .map(|o| (EntityKind::Organization, o)),
            self.end_user.as_deref().map(|e| (EntityKind::EndUser, e)),
        ]
        .into_iter()
        .flatten()
    }

    fn day(&self) -> String {
        day_of(self.start_time)
    }
}

/// `YYYY-MM-DD` (UTC) of a time in ms.
pub fn day_of(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Spend added to one entity by a written batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendDelta {
    pub kind: EntityKind,
    pub id: String,
    pub spend: i64,
}

/// Filters for [`Store::spend_logs`].
#[derive(Debug, Clone, Default)]
pub struct SpendLogFilter {
    pub api_key: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub request_id: Option<String>,
    /// Inclusive, ms.
    pub start: Option<i64>,
    /// Exclusive, ms.
    pub end: Option<i64>,
    pub limit: Option<i64>,
}

/// `tg_daily_spend.entity_kind` of the aggregate over all traffic.
pub const ALL_TRAFFIC: &str = "all";

/// Rows per INSERT statement: a batch is cut into chunks of these sizes, largest first (24 binds a row: 256
/// rows stay well under SQLite's and PostgreSQL's bind limits). A few fixed sizes mean a few statement texts,
/// prepared once and reused from the statement cache — one text per batch size would prepare a new
/// statement for most batches and fill the cache (memory) with them.
const CHUNK_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// `rows` cut into chunks of [`CHUNK_SIZES`].
fn chunks(rows: &[SpendRow]) -> impl Iterator<Item = &[SpendRow]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = CHUNK_SIZES
            .iter()
            .copied()
            .find(|s| *s <= rest.len())
            .unwrap_or(1);
        let (head, tail) = rest.split_at(size);
        rest = tail;
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> SpendRow {
        SpendRow {
            request_id: i.to_string(),
            api_key: String::new(),
            key_alias: None,
            user_id: None,
            team_id: None,
            organization_id: None,
            end_user: None,
            model_group: "m".into(),
            model: "m".into(),
            deployment_id: "d".into(),
            provider: "openai".into(),
            call_type: "acompletion".into(),
            status: 200,
            stream: false,
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            cached_tokens: 0,
            reasoning_tokens: 0,
            spend: 0,
            start_time: 0,
            end_time: 0,
            tags: "[]".into(),
            metadata: "{}".into(),
            trace: None,
        }
    }

    #[test]
    fn batches_are_cut_into_fixed_chunk_sizes() {
        let rows: Vec<SpendRow> = (0..599).map(row).collect();
        let sizes: Vec<usize> = chunks(&rows).map(<[SpendRow]>::len).collect();
        assert_eq!(sizes, vec![256, 256, 64, 16, 4, 1, 1, 1]);
        assert_eq!(sizes.iter().sum::<usize>(), 599);
        let ids: Vec<&str> = chunks(&rows)
            .flatten()
            .map(|r| r.request_id.as_str())
            .collect();
        assert_eq!(ids.len(), 599);
        assert_eq!(ids[598], "598");
        assert_eq!(chunks(&[]).count(), 0);
    }

    #[test]
    fn days() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_796_156_659_000), "2026-12-01");
        assert_eq!(days_from_civil(2026, 12, 1), 1_796_156_659_000 / 86_400_000);
    }
}

#[derive(Default)]
struct Agg {
    requests: i64,
    successes: i64,
    failures: i64,
    prompt: i64,
    completion: i64,
    spend: i64,
}

impl Store {
    /// Write a batch of spend rows in one transaction. Rows whose request id is already stored are skipped
    /// (so a batch can be retried or replayed safely) and only inserted rows add to the entity counters,
    /// the per-model counters and the daily aggregates. Counters are updated in one global order (table,
    /// then id) so concurrent writers — other instances — cannot deadlock. Returns the counter deltas
    /// applied (for the caller's in-memory view).
    pub async fn write_spend(&self, rows: &[SpendRow]) -> Result<Vec<SpendDelta>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // First as if every row is new (the common case: no RETURNING to read back); if any row was
        // already stored, that transaction is rolled back and the batch is written again, learning which.
        match self.write_spend_once(rows, false).await? {
            Some(deltas) => Ok(deltas),
            None => Ok(self.write_spend_once(rows, true).await?.unwrap_or_default()),
        }
    }

    /// One attempt. `returning: false` gives up (`None`, rolled back) when a row already exists.
    async fn write_spend_once(
        &self,
        rows: &[SpendRow],
        returning: bool,
    ) -> Result<Option<Vec<SpendDelta>>, StoreError> {
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            let mut inserted: std::collections::HashSet<&str> = std::collections::HashSet::new();
            for chunk in chunks(rows) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO tg_spend_logs (request_id, api_key, key_alias, user_id, team_id, organization_id, end_user, model_group, model, deployment_id, provider, call_type, status, stream, prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens, spend, start_time, end_time, tags, metadata) ",
                );
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(&r.request_id)
                        .push_bind(&r.api_key)
                        .push_bind(&r.key_alias)
                        .push_bind(&r.user_id)
                        .push_bind(&r.team_id)
                        .push_bind(&r.organization_id)
                        .push_bind(&r.end_user)
                        .push_bind(&r.model_group)
                        .push_bind(&r.model)
                        .push_bind(&r.deployment_id)
                        .push_bind(&r.provider)
                        .push_bind(&r.call_type)
                        .push_bind(r.status)
                        .push_bind(r.stream as i64)
                        .push_bind(r.prompt_tokens)
                        .push_bind(r.completion_tokens)
                        .push_bind(r.total_tokens)
                        .push_bind(r.cached_tokens)
                        .push_bind(r.reasoning_tokens)
                        .push_bind(r.spend)
                        .push_bind(r.start_time)
                        .push_bind(r.end_time)
                        .push_bind(&r.tags)
                        .push_bind(&r.metadata);
                });
                if returning {
                    qb.push(" ON CONFLICT (request_id) DO NOTHING RETURNING request_id");
                    let ids: Vec<String> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
                    let known: std::collections::HashSet<String> = ids.into_iter().collect();
                    inserted.extend(chunk.iter().filter(|r| known.contains(&r.request_id)).map(|r| r.request_id.as_str()));
                } else {
                    qb.push(" ON CONFLICT (request_id) DO NOTHING");
                    let n = qb.build().execute(&mut *tx).await?.rows_affected();
                    if n != chunk.len() as u64 {
                        // Dropping the transaction rolls it back.
                        return Ok(None);
                    }
                    inserted.extend(chunk.iter().map(|r| r.request_id.as_str()));
                }
            }
            let fresh: Vec<&SpendRow> = rows.iter().filter(|r| inserted.contains(r.request_id.as_str())).collect();

            // Aggregate in BTreeMaps: their iteration order is the lock order.
            let mut entity: BTreeMap<(EntityKind, &str), i64> = BTreeMap::new();
            let mut model: BTreeMap<(EntityKind, &str, &str), i64> = BTreeMap::new();
            // Daily aggregates per entity, plus one over all traffic (kind `all`, id '').
            let mut daily: BTreeMap<(String, &'static str, &str, &str), Agg> = BTreeMap::new();
            for r in &fresh {
                let ok = (200..300).contains(&r.status);
                let day = r.day();
                for (kind, id) in r.entities() {
                    *entity.entry((kind, id)).or_default() += r.spend;
                    *model.entry((kind, id, r.model_group.as_str())).or_default() += r.spend;
                }
                let everyone = std::iter::once((ALL_TRAFFIC, ""));
                for (kind, id) in r.entities().map(|(k, id)| (k.as_str(), id)).chain(everyone) {
                    let a = daily.entry((day.clone(), kind, id, r.model_group.as_str())).or_default();
                    a.requests += 1;
                    a.successes += ok as i64;
                    a.failures += (!ok) as i64;
                    a.prompt += r.prompt_tokens;
                    a.completion += r.completion_tokens;
                    a.spend += r.spend;
                }
            }
            let mut deltas = Vec::with_capacity(entity.len());
            for ((kind, id), spend) in &entity {
                if *kind == EntityKind::EndUser {
                    // End users (customers) exist from their first request, as in LiteLLM.
                    let now = crate::now_ms();
                    // A deleted end user who comes back starts again, as a new one.
                    let body = serde_json::json!({ "user_id": id }).to_string();
                    sqlx::query(
                        "INSERT INTO tg_end_users (id, spend, created_at, updated_at, body) VALUES ($1, $2, $3, $3, $4) \
                         ON CONFLICT (id) DO UPDATE SET \
                         spend = CASE WHEN tg_end_users.deleted = 1 THEN excluded.spend ELSE tg_end_users.spend + excluded.spend END, \
                         body = CASE WHEN tg_end_users.deleted = 1 THEN excluded.body ELSE tg_end_users.body END, \
                         updated_at = CASE WHEN tg_end_users.deleted = 1 THEN excluded.updated_at ELSE tg_end_users.updated_at END, \
                         deleted = 0",
                    )
                    .bind(*id)
                    .bind(*spend)
                    .bind(now)
                    .bind(body)
                    .execute(&mut *tx)
                    .await?;
                } else if *spend != 0 {
                    let sql = format!("UPDATE {} SET spend = spend + $1 WHERE id = $2", kind.table());
                    sqlx::query(&sql).bind(*spend).bind(*id).execute(&mut *tx).await?;
                }
                deltas.push(SpendDelta { kind: *kind, id: id.to_string(), spend: *spend });
            }
            for ((kind, id, m), spend) in &model {
                if *spend == 0 {
                    continue;
                }
                sqlx::query(
                    "INSERT INTO tg_model_spend (entity_kind, entity_id, model, spend) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (entity_kind, entity_id, model) DO UPDATE SET spend = tg_model_spend.spend + excluded.spend",
                )
                .bind(kind.as_str())
                .bind(*id)
                .bind(*m)
                .bind(*spend)
                .execute(&mut *tx)
                .await?;
            }
            for ((day, kind, id, m), a) in &daily {
                sqlx::query(
                    "INSERT INTO tg_daily_spend (day, entity_kind, entity_id, model, requests, successes, failures, prompt_tokens, completion_tokens, spend) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (day, entity_kind, entity_id, model) DO UPDATE SET \
                     requests = tg_daily_spend.requests + excluded.requests, \
                     successes = tg_daily_spend.successes + excluded.successes, \
                     failures = tg_daily_spend.failures + excluded.failures, \
                     prompt_tokens = tg_daily_spend.prompt_tokens + excluded.prompt_tokens, \
                     completion_tokens = tg_daily_spend.completion_tokens + excluded.completion_tokens, \
                     spend = tg_daily_spend.spend + excluded.spend",
                )
                .bind(day)
                .bind(*kind)
                .bind(*id)
                .bind(*m)
                .bind(a.requests)
                .bind(a.successes)
                .bind(a.failures)
                .bind(a.prompt)
                .bind(a.completion)
                .bind(a.spend)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(Some(deltas))
        })
    }

    /// Spend log rows, newest first.
    pub async fn spend_logs(&self, f: &SpendLogFilter) -> Result<Vec<SpendRow>, StoreError> {
        let sql = "SELECT * FROM tg_spend_logs WHERE ($1 IS NULL OR api_key = $1) AND ($2 IS NULL OR user_id = $2) \
                   AND ($3 IS NULL OR team_id = $3) AND ($4 IS NULL OR request_id = $4) \
                   AND ($5 IS NULL OR start_time >= $5) AND ($6 IS NULL OR start_time < $6) \
                   ORDER BY start_time DESC, request_id LIMIT $7";
        with_pool!(self, p => {
            let rows = sqlx::query(sql)
                .bind(&f.api_key)
                .bind(&f.user_id)
                .bind(&f.team_id)
                .bind(&f.request_id)
                .bind(f.start)
                .bind(f.end)
                .bind(f.limit.unwrap_or(10_000))
                .fetch_all(p)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(SpendRow {
                    request_id: r.try_get("request_id")?,
                    api_key: r.try_get("api_key")?,
                    key_alias: r.try_get("key_alias")?,
                    user_id: r.try_get("user_id")?,
                    team_id: r.try_get("team_id")?,
                    organization_id: r.try_get("organization_id")?,
                    end_user: r.try_get("end_user")?,
                    model_group: r.try_get("model_group")?,
                    model: r.try_get("model")?,
                    deployment_id: r.try_get("deployment_id")?,
                    provider: r.try_get("provider")?,
                    call_type: r.try_get("call_type")?,
                    status: r.try_get("status")?,
                    stream: r.try_get::<i64, _>("stream")? != 0,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    total_tokens: r.try_get("total_tokens")?,
                    cached_tokens: r.try_get("cached_tokens")?,
                    reasoning_tokens: r.try_get("reasoning_tokens")?,
                    spend: r.try_get("spend")?,
                    start_time: r.try_get("start_time")?,
                    end_time: r.try_get("end_time")?,
                    tags: r.try_get("tags")?,
                    metadata: r.try_get("metadata")?,
                    trace: None,
                });
            }
            Ok(out)
        })
    }

    /// Number of spend log rows (tests, and the `/spend/logs` summary).
    pub async fn spend_log_count(&self) -> Result<i64, StoreError> {
        with_pool!(self, p => Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tg_spend_logs").fetch_one(p).await?))
    }

    /// Daily aggregates over all traffic (master key and unbooked requests included), per model.
    pub async fn daily_spend_all(
        &self,
        start_day: &str,
        end_day: &str,
    ) -> Result<Vec<DailySpend>, StoreError> {
        self.daily_spend_of(ALL_TRAFFIC, start_day, end_day).await
    }

    /// Daily aggregates of one entity kind between two days (inclusive, `YYYY-MM-DD`), grouped by
    /// `(day, entity_id, model)`.
    pub async fn daily_spend(
        &self,
        kind: EntityKind,
        start_day: &str,
        end_day: &str,
    ) -> Result<Vec<DailySpend>, StoreError> {
        self.daily_spend_of(kind.as_str(), start_day, end_day).await
    }

    async fn daily_spend_of(
        &self,
        kind: &str,
        start_day: &str,
        end_day: &str,
    ) -> Result<Vec<DailySpend>, StoreError> {
        let sql = "SELECT day, entity_id, model, requests, successes, failures, prompt_tokens, completion_tokens, spend \
                   FROM tg_daily_spend WHERE entity_kind = $1 AND day >= $2 AND day <= $3 ORDER BY day, entity_id, model";
        with_pool!(self, p => {
            let rows = sqlx::query(sql).bind(kind).bind(start_day).bind(end_day).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(DailySpend {
                    day: r.try_get("day")?,
                    entity_id: r.try_get("entity_id")?,
                    model: r.try_get("model")?,
                    requests: r.try_get("requests")?,
                    successes: r.try_get("successes")?,
                    failures: r.try_get("failures")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    spend: r.try_get("spend")?,
                });
            }
            Ok(out)
        })
    }
}

/// One row of `tg_daily_spend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailySpend {
    pub day: String,
    pub entity_id: String,
    pub model: String,
    pub requests: i64,
    pub successes: i64,
    pub failures: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub spend: i64,
}
