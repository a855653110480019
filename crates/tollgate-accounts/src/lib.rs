//! Virtual keys, users, teams, organizations, end users and budgets: the in-memory view every request is
//! checked against (kept consistent with the database by the management API, an incremental refresh and
//! the spend writer), admission (budgets with reservations, rpm/tpm/parallel limits) and the spend ledger.

pub mod access;
pub mod counters;
pub mod duration;
pub mod ledger;
pub mod model;
pub mod secret;
pub mod shared;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tollgate_core::{GatewayError, Nanos};
use tollgate_store::{EntityKind, EntityRow, ListFilter, SpendRow, Store, StoreError, now_ms};

pub use counters::{Counters, Refusal, Remaining};
pub use ledger::{Ledger, LedgerOptions};
use model::{BudgetDoc, EndUserDoc, KeyDoc, Limits, OrgDoc, Role, TeamDoc, UserDoc};
use shared::{SharedAsk, SharedLimits, SharedRefusal};

/// A document kept in an entity table.
pub trait Doc: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: EntityKind;
    fn id(&self) -> &str;
    fn alias(&self) -> Option<&str> {
        None
    }
    fn user_id(&self) -> Option<&str> {
        None
    }
    fn team_id(&self) -> Option<&str> {
        None
    }
    fn organization_id(&self) -> Option<&str> {
        None
    }
    fn limits(&self) -> Option<&Limits> {
        None
    }
    /// A referenced budget (`/budget/new`) whose limits fill what the entity leaves unset.
    fn budget_id(&self) -> Option<&str> {
        None
    }
}

impl Doc for KeyDoc {
    const KIND: EntityKind = EntityKind::Key;
    fn id(&self) -> &str {
        &self.token
    }
    fn alias(&self) -> Option<&str> {
        self.key_alias.as_deref()
    }
    fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }
    fn team_id(&self) -> Option<&str> {
        self.team_id.as_deref()
    }
    fn organization_id(&self) -> Option<&str> {
        self.organization_id.as_deref()
    }
    fn limits(&self) -> Option<&Limits> {
        Some(&self.limits)
    }
    fn budget_id(&self) -> Option<&str> {
        self.budget_id.as_deref()
    }
}
impl Doc for UserDoc {
    const KIND: EntityKind = EntityKind::User;
    fn id(&self) -> &str {
        &self.user_id
    }
    fn alias(&self) -> Option<&str> {
        self.user_email.as_deref()
    }
    fn organization_id(&self) -> Option<&str> {
        self.organization_id.as_deref()
    }
    fn limits(&self) -> Option<&Limits> {
        Some(&self.limits)
    }
}
impl Doc for TeamDoc {
    const KIND: EntityKind = EntityKind::Team;
    fn id(&self) -> &str {
        &self.team_id
    }
    fn alias(&self) -> Option<&str> {
        self.team_alias.as_deref()
    }
    fn organization_id(&self) -> Option<&str> {
        self.organization_id.as_deref()
    }
    fn limits(&self) -> Option<&Limits> {
        Some(&self.limits)
    }
}
impl Doc for OrgDoc {
    const KIND: EntityKind = EntityKind::Organization;
    fn id(&self) -> &str {
        &self.organization_id
    }
    fn alias(&self) -> Option<&str> {
        self.organization_alias.as_deref()
    }
    fn limits(&self) -> Option<&Limits> {
        Some(&self.limits)
    }
    fn budget_id(&self) -> Option<&str> {
        self.budget_id.as_deref()
    }
}
impl Doc for EndUserDoc {
    const KIND: EntityKind = EntityKind::EndUser;
    fn id(&self) -> &str {
        &self.user_id
    }
    fn alias(&self) -> Option<&str> {
        self.alias.as_deref()
    }
    fn limits(&self) -> Option<&Limits> {
        Some(&self.limits)
    }
    fn budget_id(&self) -> Option<&str> {
        self.budget_id.as_deref()
    }
}
impl Doc for BudgetDoc {
    const KIND: EntityKind = EntityKind::Budget;
    fn id(&self) -> &str {
        &self.budget_id
    }
}

/// A cached entity: its document, its counters (shared across document updates) and row metadata.
#[derive(Debug)]
pub struct Entry<D> {
    pub doc: D,
    pub counters: Arc<Counters>,
    pub created_at: i64,
    pub updated_at: i64,
    pub budget_reset_at: Option<i64>,
}

/// One entity table in memory.
pub struct Table<D> {
    map: RwLock<HashMap<String, Arc<Entry<D>>>>,
}

impl<D: Doc> Default for Table<D> {
    fn default() -> Self {
        Table {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<D: Doc> Table<D> {
    pub fn get(&self, id: &str) -> Option<Arc<Entry<D>>> {
        self.read().get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Entry<D>>> {
        self.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Entry<D>>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Entry<D>>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Bring a row into memory (or drop it, if deleted). Counters survive document updates; the written
    /// spend is taken from the row.
    pub fn apply(&self, row: &EntityRow) -> Option<Arc<Entry<D>>> {
        if row.deleted {
            self.write().remove(&row.id);
            return None;
        }
        let doc: D = match serde_json::from_str(&row.body) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(kind = D::KIND.as_str(), id = %row.id, error = %e, "unreadable entity document; ignored");
                return None;
            }
        };
        let mut map = self.write();
        let counters = match map.get(&row.id) {
            Some(old) => {
                old.counters.set_written(row.spend);
                old.counters.clone()
            }
            None => Arc::new(Counters::with_spend(row.spend)),
        };
        let entry = Arc::new(Entry {
            doc,
            counters,
            created_at: row.created_at,
            updated_at: row.updated_at,
            budget_reset_at: row.budget_reset_at,
        });
        map.insert(row.id.clone(), entry.clone());
        Some(entry)
    }

    fn remove(&self, id: &str) {
        self.write().remove(id);
    }
}

/// Who is calling.
#[derive(Clone)]
pub enum Principal {
    /// The master key.
    Master,
    /// No master key is configured: everything is open (a start-up warning says so).
    Open,
    /// A virtual key.
    Key(Arc<Entry<KeyDoc>>),
    /// A verified JWT (`general_settings.enable_jwt_auth`): the entities its claims name.
    Jwt(Arc<JwtIdentity>),
}

/// Who a verified JWT names, by the `litellm_jwtauth` claim fields. Only entities that exist (or were just
/// created by `user_id_upsert` / `team_id_upsert`) are named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtIdentity {
    /// The token's `sub`, for logs.
    pub subject: Option<String>,
    /// The token holds `admin_jwt_scope`: a proxy admin.
    pub admin: bool,
    pub user_id: Option<String>,
    pub email: Option<String>,
    /// The teams the token names, in order; a request is booked to the first whose models allow it
    /// ([`Accounts::jwt_team_for`]).
    pub team_ids: Vec<String>,
    pub organization_id: Option<String>,
    pub end_user_id: Option<String>,
    pub roles: Vec<String>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Master => f.write_str("Master"),
            Principal::Open => f.write_str("Open"),
            Principal::Key(k) => write!(f, "Key({})", k.doc.key_name),
            Principal::Jwt(j) => write!(f, "Jwt(sub={})", j.subject.as_deref().unwrap_or("-")),
        }
    }
}

impl Principal {
    pub fn key(&self) -> Option<&KeyDoc> {
        match self {
            Principal::Key(k) => Some(&k.doc),
            _ => None,
        }
    }

    /// Whether model lists apply to this caller (virtual keys and non-admin JWTs; the master key, an
    /// open gateway and admin JWTs may use every model).
    pub fn has_model_limits(&self) -> bool {
        match self {
            Principal::Key(_) => true,
            Principal::Jwt(j) => !j.admin,
            Principal::Master | Principal::Open => false,
        }
    }

    /// The user the caller acts as, if any.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Principal::Key(k) => k.doc.user_id.as_deref(),
            Principal::Jwt(j) => j.user_id.as_deref(),
            Principal::Master | Principal::Open => None,
        }
    }
}

/// Settings of the accounts subsystem.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often other instances' changes are read (the bound on how long a key deleted elsewhere keeps
    /// working here).
    pub refresh_interval: Duration,
    pub ledger: LedgerOptions,
    /// `general_settings.allow_requests_on_db_unavailable`: keys already in memory keep working while the
    /// database is down (default on); off: requests get 503 while spend rows cannot be written.
    pub allow_requests_on_db_unavailable: bool,
    /// Run the budget reset job (`general_settings.disable_reset_budget` turns it off on this instance).
    pub reset_budgets: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            refresh_interval: Duration::from_secs(2),
            ledger: LedgerOptions::default(),
            allow_requests_on_db_unavailable: true,
            reset_budgets: true,
        }
    }
}

/// Unknown-key lookups are remembered this long, so a flood of bad keys cannot become a flood of queries.
const NEGATIVE_TTL_MS: i64 = 2_000;
const NEGATIVE_MAX: usize = 10_000;

/// The accounts subsystem.
pub struct Accounts {
    pub store: Store,
    pub keys: Table<KeyDoc>,
    pub users: Table<UserDoc>,
    pub teams: Table<TeamDoc>,
    pub orgs: Table<OrgDoc>,
    pub end_users: Table<EndUserDoc>,
    pub budgets: Table<BudgetDoc>,
    pub ledger: Ledger,
    pub settings: Settings,
    negative: Mutex<HashMap<String, i64>>,
    /// Highest `updated_at` seen by the refresh.
    seen: AtomicI64,
    /// Rate limits shared with other instances through Redis, when configured.
    pub shared: Option<Arc<SharedLimits>>,
    /// Told of every committed batch of spend rows (the server's tracing): set once at start-up.
    pub write_observer: std::sync::OnceLock<WriteObserver>,
}

/// See [`Accounts::write_observer`]: the rows and the time their write began.
pub type WriteObserver = Arc<dyn Fn(&[SpendRow], std::time::SystemTime) + Send + Sync>;

/// The ids a request's spend is booked to.
#[derive(Debug, Clone, Default)]
pub struct Booking {
    pub api_key: String,
    pub key_alias: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    /// The team's `team_alias`, read at admission (for metric labels and logs; not stored with the spend).
    pub team_alias: Option<String>,
    pub organization_id: Option<String>,
    pub end_user: Option<String>,
    pub tags: Vec<String>,
}

/// An admitted request's hold on its entities' limits. Settle it with the cost; dropped unsettled, it
/// gives everything back.
pub struct Admission {
    held: Vec<(Arc<Counters>, bool)>,
    /// The held entities that have a `max_budget` or `soft_budget` (usually none: no allocation).
    watch: Vec<Watch>,
    model: String,
    estimate: Nanos,
    pub remaining: Remaining,
    pub booking: Booking,
    settled: bool,
    /// The shared (Redis) limits taken, with the minute they were taken in.
    shared: Option<(Arc<SharedLimits>, Vec<SharedAsk>, i64)>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("entities", &self.held.len())
            .field("model", &self.model)
            .field("estimate", &self.estimate)
            .finish()
    }
}

impl Admission {
    /// An admission that holds nothing (no accounts configured for this caller).
    pub fn unlimited(booking: Booking) -> Admission {
        Admission {
            held: Vec::new(),
            watch: Vec::new(),
            model: String::new(),
            estimate: Nanos::ZERO,
            remaining: Remaining::default(),
            booking,
            settled: false,
            shared: None,
        }
    }

    /// The request finished: its estimate is replaced by its cost, its tokens count toward tpm. Returns
    /// the budgeted entities' spend before and after (empty when none has a budget).
    pub fn settle(mut self, cost: Nanos, tokens: u64) -> Vec<BudgetStatus> {
        let now = now_ms();
        let mut spends = [(Nanos::ZERO, Nanos::ZERO); 5];
        for (i, (c, mb)) in self.held.iter().enumerate() {
            let s = c.settle(&self.model, self.estimate, *mb, cost, tokens, now);
            if let Some(slot) = spends.get_mut(i) {
                *slot = s;
            }
        }
        if let Some((shared, asks, minute)) = self.shared.take() {
            shared.settle(asks, minute, tokens);
        }
        self.settled = true;
        std::mem::take(&mut self.watch)
            .into_iter()
            .map(|w| {
                let (before, after) = spends.get(w.held).copied().unwrap_or_default();
                BudgetStatus {
                    kind: w.kind,
                    id: w.id,
                    alias: w.alias,
                    max_budget: w.max_budget,
                    soft_budget: w.soft_budget,
                    spend_before: before,
                    spend: after,
                }
            })
            .collect()
    }
}

/// A held entity with a budget, noted at admission.
#[derive(Debug)]
struct Watch {
    kind: &'static str,
    id: String,
    alias: Option<String>,
    max_budget: Option<Nanos>,
    soft_budget: Option<Nanos>,
    /// Index into `Admission::held`.
    held: usize,
}

/// A budgeted entity's spend around one request's settlement (from [`Admission::settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStatus {
    /// `"key"`, `"user"`, `"team"`, `"organization"` or `"end_user"`.
    pub kind: &'static str,
    /// The key's hash (`token`), or the user/team/organization/end-user id.
    pub id: String,
    /// `key_alias`, `team_alias`, `organization_alias` or the user's email.
    pub alias: Option<String>,
    pub max_budget: Option<Nanos>,
    pub soft_budget: Option<Nanos>,
    pub spend_before: Nanos,
    pub spend: Nanos,
}

impl BudgetStatus {
    /// This request took the spend from below `max_budget` to at or above it.
    #[must_use]
    pub fn crossed_max(&self) -> bool {
        self.max_budget
            .is_some_and(|m| self.spend_before < m && self.spend >= m)
    }

    /// This request took the spend from below `soft_budget` to at or above it.
    #[must_use]
    pub fn crossed_soft(&self) -> bool {
        self.soft_budget
            .is_some_and(|m| self.spend_before < m && self.spend >= m)
    }

    /// `max_budget - spend` (may be negative), if there is a max budget.
    #[must_use]
    pub fn remaining(&self) -> Option<Nanos> {
        self.max_budget.map(|m| Nanos(m.0 - self.spend.0))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.settled {
            let now = now_ms();
            for (c, mb) in &self.held {
                c.release(&self.model, self.estimate, *mb, now);
            }
            if let Some((shared, asks, minute)) = self.shared.take() {
                shared.release(asks, minute);
            }
        }
    }
}

/// The `&'static` name of an entity kind used in `take`.
fn watch_kind(kind: &str) -> &'static str {
    match kind {
        "key" => "key",
        "user" => "user",
        "team" => "team",
        "organization" => "organization",
        _ => "end_user",
    }
}

fn refusal_error(kind: &str, id: &str, r: Refusal, reset_at: Option<i64>) -> GatewayError {
    match r {
        Refusal::Budget { spend, max } => GatewayError::BudgetExceeded {
            message: format!(
                "Budget has been exceeded! {kind}={id} Current cost: {spend}, Max budget: {max}"
            ),
            retry_after: reset_at.map(|t| Duration::from_millis((t - now_ms()).max(1000) as u64)),
        },
        Refusal::ModelBudget { model, spend, max } => GatewayError::BudgetExceeded {
            message: format!(
                "Budget has been exceeded! {kind}={id} model={model} Current cost: {spend}, Max budget: {max}"
            ),
            retry_after: None,
        },
        Refusal::Parallel { limit } => GatewayError::RateLimited {
            message: format!(
                "Max parallel request limit reached for {kind}={id}: max_parallel_requests={limit}"
            ),
            retry_after: Some(Duration::from_secs(1)),
        },
        Refusal::Rpm { limit, retry_after } => GatewayError::RateLimited {
            message: format!(
                "Rate limit exceeded for {kind}={id}: rpm_limit={limit} requests per minute"
            ),
            retry_after: Some(retry_after),
        },
        Refusal::Tpm { limit, retry_after } => GatewayError::RateLimited {
            message: format!(
                "Rate limit exceeded for {kind}={id}: tpm_limit={limit} tokens per minute"
            ),
            retry_after: Some(retry_after),
        },
    }
}

/// `model_max_budget` entry for a model: `{"budget_limit": 0.5, "time_period": "1d"}` or a bare number.
pub fn model_budget(
    map: &serde_json::Map<String, serde_json::Value>,
    model: &str,
) -> Option<Nanos> {
    let v = map.get(model)?;
    let usd = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::Object(o) => o
            .get("budget_limit")
            .or_else(|| o.get("max_budget"))
            .and_then(|b| b.as_f64())?,
        _ => return None,
    };
    Nanos::from_usd_f64(usd)
}

impl Accounts {
    /// Replay a journal left by an earlier run, then load every table into memory.
    pub async fn load(store: Store, settings: Settings) -> Result<Accounts, StoreError> {
        let ledger = Ledger::new(settings.ledger.clone());
        ledger.replay_at_start(&store).await?;
        let a = Accounts {
            store,
            keys: Table::default(),
            users: Table::default(),
            teams: Table::default(),
            orgs: Table::default(),
            end_users: Table::default(),
            budgets: Table::default(),
            ledger,
            settings,
            negative: Mutex::new(HashMap::new()),
            seen: AtomicI64::new(0),
            shared: None,
            write_observer: std::sync::OnceLock::new(),
        };
        let started = now_ms();
        for kind in EntityKind::ALL {
            for row in a.store.list(kind, &ListFilter::default()).await? {
                a.apply_row(kind, &row);
            }
        }
        for (id, model, spend) in a.store.model_spend(EntityKind::Key).await? {
            if let Some(k) = a.keys.get(&id) {
                k.counters.set_model_spend(&model, spend);
            }
        }
        a.seen.store(started, Ordering::Relaxed);
        Ok(a)
    }

    fn apply_row(&self, kind: EntityKind, row: &EntityRow) {
        match kind {
            EntityKind::Key => {
                self.keys.apply(row);
            }
            EntityKind::User => {
                self.users.apply(row);
            }
            EntityKind::Team => {
                self.teams.apply(row);
            }
            EntityKind::Organization => {
                self.orgs.apply(row);
            }
            EntityKind::EndUser => {
                self.end_users.apply(row);
            }
            EntityKind::Budget => {
                self.budgets.apply(row);
            }
        }
    }

    fn counters_of(&self, kind: EntityKind, id: &str) -> Option<Arc<Counters>> {
        match kind {
            EntityKind::Key => self.keys.get(id).map(|e| e.counters.clone()),
            EntityKind::User => self.users.get(id).map(|e| e.counters.clone()),
            EntityKind::Team => self.teams.get(id).map(|e| e.counters.clone()),
            EntityKind::Organization => self.orgs.get(id).map(|e| e.counters.clone()),
            EntityKind::EndUser => self.end_users.get(id).map(|e| e.counters.clone()),
            EntityKind::Budget => self.budgets.get(id).map(|e| e.counters.clone()),
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Authentication

    /// Look a presented secret up: memory first, the database on a miss (remembering misses briefly).
    pub async fn authenticate(&self, secret: &str) -> Result<Arc<Entry<KeyDoc>>, GatewayError> {
        let hash = secret::hash_secret(secret);
        let entry = match self.keys.get(&hash) {
            Some(e) => e,
            None => self.lookup_key(&hash).await?,
        };
        self.check_key(&entry)?;
        Ok(entry)
    }

    async fn lookup_key(&self, hash: &str) -> Result<Arc<Entry<KeyDoc>>, GatewayError> {
        let invalid = || {
            GatewayError::Unauthorized(
                "Authentication Error, Invalid proxy server token passed. Pass a valid key as `Authorization: Bearer <key>`.".into(),
            )
        };
        let now = now_ms();
        {
            let neg = self.negative.lock().unwrap_or_else(|p| p.into_inner());
            if neg.get(hash).is_some_and(|t| now - t < NEGATIVE_TTL_MS) {
                return Err(invalid());
            }
        }
        // Every way a presented key is not a usable key (never issued, deleted, unreadable) ends in the same
        // 401 and the same negative-cache entry: the answer must not tell them apart.
        let row = match self.store.get(EntityKind::Key, hash).await {
            Ok(row) => row,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look a key up: database unavailable");
                return Err(GatewayError::Unavailable(
                    "Cannot verify this key right now: the database is unavailable. Keys already in use keep working.".into(),
                ));
            }
        };
        match row.and_then(|row| self.keys.apply(&row)) {
            Some(entry) => Ok(entry),
            None => {
                let mut neg = self.negative.lock().unwrap_or_else(|p| p.into_inner());
                if neg.len() >= NEGATIVE_MAX {
                    neg.retain(|_, t| now - *t < NEGATIVE_TTL_MS);
                    if neg.len() >= NEGATIVE_MAX {
                        neg.clear();
                    }
                }
                neg.insert(hash.to_string(), now);
                Err(invalid())
            }
        }
    }

    /// The refusals of a key that exists. These may say why (blocked, expired, team blocked): only the
    /// key's holder gets them, having proved possession of it. A key that does not exist (never issued,
    /// deleted, mistyped) always gets the one "invalid token" answer of `lookup_key`.
    fn check_key(&self, e: &Entry<KeyDoc>) -> Result<(), GatewayError> {
        let k = &e.doc;
        if k.blocked {
            return Err(GatewayError::Unauthorized(
                "Authentication Error, This key has been blocked. Unblock it with /key/unblock"
                    .into(),
            ));
        }
        if let Some(exp) = k.expires {
            let now = now_ms();
            if exp <= now {
                return Err(GatewayError::Unauthorized(format!(
                    "Authentication Error - Expired Key. Key Expiry time {} and current time {}",
                    duration::rfc3339(exp),
                    duration::rfc3339(now)
                )));
            }
        }
        if let Some(team) = k.team_id.as_deref().and_then(|t| self.teams.get(t))
            && team.doc.blocked
        {
            return Err(GatewayError::Unauthorized(format!(
                "Authentication Error - Team={} is blocked. Unblock it with /team/unblock",
                team.doc.team_id
            )));
        }
        Ok(())
    }

    /// The proxy role of a caller.
    pub fn role(&self, p: &Principal) -> Role {
        match p {
            Principal::Master | Principal::Open => Role::ProxyAdmin,
            Principal::Jwt(j) if j.admin => Role::ProxyAdmin,
            Principal::Key(_) | Principal::Jwt(_) => p
                .user_id()
                .and_then(|u| self.users.get(u))
                .map(|u| u.doc.user_role)
                .unwrap_or(Role::InternalUser),
        }
    }

    /// The team a JWT caller's request to `model` is booked to: the first of the token's teams whose
    /// models allow it. `None` when the token names no team, or none of its teams may use the model.
    pub fn jwt_team_for(
        &self,
        j: &JwtIdentity,
        model: &str,
        access_groups: &[String],
    ) -> Option<String> {
        j.team_ids
            .iter()
            .filter_map(|t| self.teams.get(t))
            .find(|t| access::list_allows(&t.doc.models, model, access_groups))
            .map(|t| t.doc.team_id.clone())
    }

    /// May this caller use `model` (a model group; `access_groups` of its deployments)?
    pub fn may_use_model(&self, p: &Principal, model: &str, access_groups: &[String]) -> bool {
        if let Principal::Jwt(j) = p {
            if j.admin {
                return true;
            }
            if !j.team_ids.is_empty() {
                return self.jwt_team_for(j, model, access_groups).is_some();
            }
            return match j.user_id.as_deref().and_then(|u| self.users.get(u)) {
                Some(u) => access::list_allows(&u.doc.models, model, access_groups),
                None => true,
            };
        }
        let Principal::Key(k) = p else { return true };
        let team = k.doc.team_id.as_deref().and_then(|t| self.teams.get(t));
        let user = match team {
            Some(_) => None,
            None => k.doc.user_id.as_deref().and_then(|u| self.users.get(u)),
        };
        access::allowed(
            &k.doc.models,
            team.as_ref().map(|t| t.doc.models.as_slice()),
            user.as_ref().map(|u| u.doc.models.as_slice()),
            model,
            access_groups,
        )
    }

    /// The key's (then team's) alias for a requested model, if any.
    pub fn alias_for(&self, p: &Principal, requested: &str) -> Option<String> {
        let from = |m: &serde_json::Map<String, serde_json::Value>| {
            m.get(requested)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        if let Principal::Jwt(j) = p {
            return j
                .team_ids
                .iter()
                .filter_map(|t| self.teams.get(t))
                .find_map(|t| from(&t.doc.model_aliases));
        }
        let Principal::Key(k) = p else { return None };
        from(&k.doc.aliases).or_else(|| {
            k.doc
                .team_id
                .as_deref()
                .and_then(|t| self.teams.get(t))
                .and_then(|t| from(&t.doc.model_aliases))
        })
    }

    // ------------------------------------------------------------------------------------------------
    // Admission

    /// Check and take every limit that applies to this request — key, user, team, organization, end user
    /// — reserving `estimate` against each budget. All or nothing.
    ///
    /// With Redis configured, the rpm/tpm/parallel limits are also checked and taken there, for all
    /// instances together (this instance's own counters are checked too: they never exceed the shared
    /// ones, and they are what is left when Redis does not answer).
    pub async fn admit(
        &self,
        p: &Principal,
        model: &str,
        end_user: Option<&str>,
        estimate: Nanos,
        tags: Vec<String>,
    ) -> Result<Admission, GatewayError> {
        let mut asks = Vec::new();
        let mut adm = self.admit_local(p, model, end_user, estimate, tags, &mut asks)?;
        let Some(shared) = self.shared.as_ref().filter(|_| !asks.is_empty()) else {
            return Ok(adm);
        };
        let now = now_ms();
        let minute = now.div_euclid(60_000);
        match shared.acquire(&asks, minute).await {
            Ok(None) => {
                adm.shared = Some((shared.clone(), asks, minute));
                Ok(adm)
            }
            Ok(Some(refusal)) => {
                let retry_after =
                    Duration::from_millis((60_000 - now.rem_euclid(60_000)).max(1) as u64);
                let (i, r) = match refusal {
                    SharedRefusal::Rpm(i) => (
                        i,
                        asks.get(i)
                            .and_then(|a| a.rpm)
                            .map(|limit| Refusal::Rpm { limit, retry_after }),
                    ),
                    SharedRefusal::Tpm(i) => (
                        i,
                        asks.get(i)
                            .and_then(|a| a.tpm)
                            .map(|limit| Refusal::Tpm { limit, retry_after }),
                    ),
                    SharedRefusal::Parallel(i) => (
                        i,
                        asks.get(i)
                            .and_then(|a| a.parallel)
                            .map(|limit| Refusal::Parallel { limit }),
                    ),
                };
                let (kind, id) = asks
                    .get(i)
                    .and_then(|a| a.entity.split_once(':'))
                    .unwrap_or(("entity", "?"));
                let shown;
                let id = match (kind, p.key()) {
                    ("key", Some(k)) => {
                        shown = k.key_name.clone();
                        shown.as_str()
                    }
                    _ => id,
                };
                let refusal = r.unwrap_or(Refusal::Parallel { limit: 0 });
                Err(refusal_error(kind, id, refusal, None))
            }
            // Redis did not answer: the local limits (already taken) stand in; logged by `shared`.
            Err(()) => Ok(adm),
        }
    }

    /// [`Accounts::admit`] with this instance's counters only (no Redis round trip): for callers that cannot
    /// wait, and tests.
    pub fn admit_unshared(
        &self,
        p: &Principal,
        model: &str,
        end_user: Option<&str>,
        estimate: Nanos,
        tags: Vec<String>,
    ) -> Result<Admission, GatewayError> {
        self.admit_local(p, model, end_user, estimate, tags, &mut Vec::new())
    }

    fn admit_local(
        &self,
        p: &Principal,
        model: &str,
        end_user: Option<&str>,
        estimate: Nanos,
        tags: Vec<String>,
        asks: &mut Vec<SharedAsk>,
    ) -> Result<Admission, GatewayError> {
        let sharing = self.shared.is_some();
        if !self.settings.allow_requests_on_db_unavailable && self.ledger.is_down() {
            return Err(GatewayError::Unavailable(
                "The database is unavailable and allow_requests_on_db_unavailable is off".into(),
            ));
        }
        let mut booking = Booking {
            end_user: end_user.map(str::to_string),
            tags,
            ..Booking::default()
        };
        let now = now_ms();
        let mut adm = Admission {
            held: Vec::with_capacity(5),
            watch: Vec::new(),
            model: model.to_string(),
            estimate,
            remaining: Remaining::default(),
            booking: Booking::default(),
            settled: false,
            shared: None,
        };
        let mut take = |kind: &str,
                        id: &str,
                        uid: &str,
                        c: &Arc<Counters>,
                        limits: &Limits,
                        model_budget: Option<Nanos>,
                        reset_at: Option<i64>,
                        alias: Option<&String>,
                        adm: &mut Admission|
         -> Result<(), GatewayError> {
            let ask = counters::Ask {
                limits,
                model_budget: model_budget.map(|b| (model, b)),
                model,
                estimate,
                now_ms: now,
            };
            match c.try_acquire(&ask) {
                Ok(r) => {
                    if limits.max_budget.is_some() || limits.soft_budget.is_some() {
                        adm.watch.push(Watch {
                            kind: watch_kind(kind),
                            id: uid.to_string(),
                            alias: alias.cloned(),
                            max_budget: limits.max_budget,
                            soft_budget: limits.soft_budget,
                            held: adm.held.len(),
                        });
                    }
                    adm.held.push((c.clone(), model_budget.is_some()));
                    merge_remaining(&mut adm.remaining, r);
                    if sharing
                        && (limits.rpm_limit.is_some()
                            || limits.tpm_limit.is_some()
                            || limits.max_parallel_requests.is_some())
                    {
                        asks.push(SharedAsk {
                            entity: format!("{kind}:{uid}"),
                            rpm: limits.rpm_limit,
                            tpm: limits.tpm_limit,
                            parallel: limits.max_parallel_requests,
                        });
                    }
                    Ok(())
                }
                Err(refusal) => Err(refusal_error(kind, id, refusal, reset_at)),
            }
        };
        // The entities above the caller: (user, team, organization named directly).
        let (user_id, team_id, direct_org) = match p {
            Principal::Key(k) => {
                let d = &k.doc;
                booking.api_key = d.token.clone();
                booking.key_alias = d.key_alias.clone();
                let mb = model_budget(&d.model_max_budget, model).or_else(|| {
                    d.budget_id
                        .as_deref()
                        .and_then(|b| self.budgets.get(b))
                        .and_then(|b| model_budget(&b.doc.model_max_budget, model))
                });
                let key_limits = match d.budget_id.as_deref().and_then(|b| self.budgets.get(b)) {
                    Some(b) => merged(&d.limits, &b.doc.limits),
                    None => d.limits.clone(),
                };
                take(
                    "key",
                    &d.key_name,
                    &d.token,
                    &k.counters,
                    &key_limits,
                    mb,
                    k.budget_reset_at,
                    d.key_alias.as_ref(),
                    &mut adm,
                )?;
                (
                    d.user_id.clone(),
                    d.team_id.clone(),
                    d.organization_id.clone(),
                )
            }
            // The handler narrowed `team_ids` to the team chosen for this model (`jwt_team_for`).
            Principal::Jwt(j) => (
                j.user_id.clone(),
                j.team_ids.first().cloned(),
                j.organization_id.clone(),
            ),
            Principal::Master | Principal::Open => (None, None, None),
        };
        booking.user_id = user_id.clone();
        booking.team_id = team_id.clone();
        let mut org_id = None;
        if let Some(u) = user_id.as_deref().and_then(|u| self.users.get(u)) {
            take(
                "user",
                &u.doc.user_id,
                &u.doc.user_id,
                &u.counters,
                &u.doc.limits,
                None,
                u.budget_reset_at,
                u.doc.user_email.as_ref(),
                &mut adm,
            )?;
            org_id = u.doc.organization_id.clone();
        }
        if let Some(t) = team_id.as_deref().and_then(|t| self.teams.get(t)) {
            take(
                "team",
                &t.doc.team_id,
                &t.doc.team_id,
                &t.counters,
                &t.doc.limits,
                None,
                t.budget_reset_at,
                t.doc.team_alias.as_ref(),
                &mut adm,
            )?;
            booking.team_alias = t.doc.team_alias.clone();
            org_id = t.doc.organization_id.clone().or(org_id);
        }
        org_id = direct_org.or(org_id);
        if let Some(o) = org_id.as_deref().and_then(|o| self.orgs.get(o)) {
            if o.doc.blocked {
                return Err(GatewayError::Forbidden(format!(
                    "Organization={} is blocked",
                    o.doc.organization_id
                )));
            }
            let limits = match o.doc.budget_id.as_deref().and_then(|b| self.budgets.get(b)) {
                Some(b) => merged(&o.doc.limits, &b.doc.limits),
                None => o.doc.limits.clone(),
            };
            take(
                "organization",
                &o.doc.organization_id,
                &o.doc.organization_id,
                &o.counters,
                &limits,
                None,
                o.budget_reset_at,
                o.doc.organization_alias.as_ref(),
                &mut adm,
            )?;
        }
        booking.organization_id = org_id;
        if let Some(eu) = end_user.and_then(|e| self.end_users.get(e)) {
            if eu.doc.blocked {
                return Err(GatewayError::Forbidden(format!(
                    "End user={} is blocked. Unblock it with /customer/unblock",
                    eu.doc.user_id
                )));
            }
            let limits = match eu
                .doc
                .budget_id
                .as_deref()
                .and_then(|b| self.budgets.get(b))
            {
                Some(b) => merged(&eu.doc.limits, &b.doc.limits),
                None => eu.doc.limits.clone(),
            };
            take(
                "end_user",
                &eu.doc.user_id,
                &eu.doc.user_id,
                &eu.counters,
                &limits,
                None,
                eu.budget_reset_at,
                eu.doc.alias.as_ref(),
                &mut adm,
            )?;
        }
        adm.booking = booking;
        Ok(adm)
    }

    /// Share rate limits with other instances through Redis.
    pub fn with_shared(mut self, shared: Option<SharedLimits>) -> Accounts {
        self.shared = shared.map(Arc::new);
        self
    }

    /// Hand a finished request's row to the ledger.
    pub fn record(&self, row: SpendRow) {
        self.ledger.record(row);
    }

    /// Move written rows' spend from pending to written in memory; tell the write observer.
    pub fn on_written(&self, rows: &[SpendRow], began: std::time::SystemTime) {
        if let Some(observe) = self.write_observer.get() {
            observe(rows, began);
        }
        for r in rows {
            for (kind, id) in r.entities() {
                if let Some(c) = self.counters_of(kind, id) {
                    c.written(r.spend);
                }
            }
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Writes from the management API: database first, then memory.

    fn row_of<D: Doc>(
        doc: &D,
        created_at: i64,
        budget_reset_at: Option<i64>,
    ) -> Result<EntityRow, StoreError> {
        Ok(EntityRow {
            id: doc.id().to_string(),
            alias: doc.alias().map(str::to_string),
            user_id: doc.user_id().map(str::to_string),
            team_id: doc.team_id().map(str::to_string),
            organization_id: doc.organization_id().map(str::to_string),
            spend: 0,
            budget_reset_at,
            deleted: false,
            created_at,
            updated_at: now_ms(),
            body: serde_json::to_string(doc).map_err(|e| StoreError::Query(e.to_string()))?,
        })
    }

    fn table_apply<D: Doc>(&self, row: &EntityRow) {
        self.apply_row(D::KIND, row);
    }

    /// An entity's `budget_duration`: its own, else its referenced budget's.
    pub fn budget_duration_of<D: Doc>(&self, doc: &D) -> Option<String> {
        doc.limits()
            .and_then(|l| l.budget_duration.clone())
            .or_else(|| {
                doc.budget_id()
                    .and_then(|b| self.budgets.get(b))
                    .and_then(|b| b.doc.limits.budget_duration.clone())
            })
    }

    /// Create an entity. `StoreError::Conflict` if the id exists.
    pub async fn create<D: Doc>(&self, doc: &D) -> Result<EntityRow, StoreError> {
        let now = now_ms();
        let reset = self
            .budget_duration_of(doc)
            .as_deref()
            .and_then(duration::parse)
            .map(|p| p.next_after(now));
        let row = Self::row_of(doc, now, reset)?;
        self.store.insert(D::KIND, &row).await?;
        self.table_apply::<D>(&row);
        self.forget_negative(D::KIND, doc.id());
        Ok(row)
    }

    /// Replace an entity's document. A changed `budget_duration` schedules a new reset. `false` when the
    /// entity does not exist.
    pub async fn update<D: Doc>(&self, doc: &D, old: &Entry<D>) -> Result<bool, StoreError> {
        let now = now_ms();
        let old_duration = self.budget_duration_of(&old.doc);
        let new_duration = self.budget_duration_of(doc);
        let reset = if old_duration == new_duration {
            old.budget_reset_at
        } else {
            new_duration
                .as_deref()
                .and_then(duration::parse)
                .map(|p| p.next_after(now))
        };
        let row = Self::row_of(doc, old.created_at, reset)?;
        if !self.store.update(D::KIND, &row).await? {
            return Ok(false);
        }
        self.refetch(D::KIND, doc.id()).await?;
        Ok(true)
    }

    /// Re-read one entity from the database into memory.
    pub async fn refetch(&self, kind: EntityKind, id: &str) -> Result<(), StoreError> {
        match self.store.get(kind, id).await? {
            Some(row) => self.apply_row(kind, &row),
            None => self.remove(kind, id),
        }
        Ok(())
    }

    fn remove(&self, kind: EntityKind, id: &str) {
        match kind {
            EntityKind::Key => self.keys.remove(id),
            EntityKind::User => self.users.remove(id),
            EntityKind::Team => self.teams.remove(id),
            EntityKind::Organization => self.orgs.remove(id),
            EntityKind::EndUser => self.end_users.remove(id),
            EntityKind::Budget => self.budgets.remove(id),
        }
    }

    fn forget_negative(&self, kind: EntityKind, id: &str) {
        if kind == EntityKind::Key {
            self.negative
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
    }

    /// Delete entities (soft, so other instances see it); they stop working here at once.
    pub async fn delete(
        &self,
        kind: EntityKind,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let done = self.store.delete(kind, ids).await?;
        for id in &done {
            self.remove(kind, id);
        }
        Ok(done)
    }

    /// Key regeneration: the same key under a new secret; the old one stops working at once.
    pub async fn rekey(&self, old: &Entry<KeyDoc>, doc: &KeyDoc) -> Result<bool, StoreError> {
        // Spend recorded but not written yet must be in the row the new id inherits.
        self.flush().await?;
        let row = Self::row_of(doc, old.created_at, old.budget_reset_at)?;
        if !self
            .store
            .rename(EntityKind::Key, &old.doc.token, &row)
            .await?
        {
            return Ok(false);
        }
        self.keys.remove(&old.doc.token);
        self.refetch(EntityKind::Key, &doc.token).await?;
        Ok(true)
    }

    /// Set an entity's spend (the management API's `spend` field).
    pub async fn set_spend(
        &self,
        kind: EntityKind,
        id: &str,
        spend: Nanos,
    ) -> Result<(), StoreError> {
        self.store.set_spend(kind, id, spend.0).await?;
        self.refetch(kind, id).await
    }

    // ------------------------------------------------------------------------------------------------
    // Background jobs

    /// Read what other instances changed since the last refresh (documents, deletes, resets) and every
    /// entity's written spend.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        // Rows carry stored spend: no spend write may commit between reading it and applying it here,
        // or that write would be counted twice in memory.
        let _writes = self.ledger.lock_writes().await;
        let since = self.seen.load(Ordering::Relaxed) - 5_000;
        let mut max_seen = self.seen.load(Ordering::Relaxed);
        for kind in EntityKind::ALL {
            for row in self.store.changed_since(kind, since).await? {
                max_seen = max_seen.max(row.updated_at);
                self.apply_row(kind, &row);
            }
        }
        self.seen.store(max_seen, Ordering::Relaxed);
        for kind in [
            EntityKind::Key,
            EntityKind::User,
            EntityKind::Team,
            EntityKind::Organization,
            EntityKind::EndUser,
        ] {
            for (id, spend) in self.store.spends(kind).await? {
                if let Some(c) = self.counters_of(kind, &id) {
                    c.set_written(spend);
                }
            }
        }
        Ok(())
    }

    /// Reset every budget whose `budget_duration` has elapsed and record the next reset time.
    pub async fn reset_due_budgets(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut due: Vec<(EntityKind, String, i64, Option<String>)> = Vec::new();
        fn collect<D: Doc>(
            a: &Accounts,
            t: &Table<D>,
            now: i64,
            out: &mut Vec<(EntityKind, String, i64, Option<String>)>,
        ) {
            for e in t.all() {
                if let Some(at) = e.budget_reset_at
                    && at <= now
                {
                    let d = a.budget_duration_of(&e.doc);
                    out.push((D::KIND, e.doc.id().to_string(), at, d));
                }
            }
        }
        collect(self, &self.keys, now, &mut due);
        collect(self, &self.users, now, &mut due);
        collect(self, &self.teams, now, &mut due);
        collect(self, &self.orgs, now, &mut due);
        collect(self, &self.end_users, now, &mut due);
        if due.is_empty() {
            return Ok(0);
        }
        // Spend recorded in the period that just ended is written first, so the reset clears it.
        self.flush().await?;
        let mut n = 0;
        for (kind, id, at, dur) in due {
            let next = dur
                .as_deref()
                .and_then(duration::parse)
                .map(|p| p.next_after(now));
            if self.store.reset_spend(kind, &id, at, next).await? {
                n += 1;
                tracing::info!(kind = kind.as_str(), id = %id, next_reset = ?next.map(duration::rfc3339), "budget reset");
            }
            if let Some(c) = self.counters_of(kind, &id) {
                c.reset();
            }
            self.refetch(kind, &id).await?;
        }
        Ok(n)
    }

    /// Run the refresh and budget-reset jobs until `stop`.
    pub async fn run_jobs(&self, stop: CancellationToken) {
        let mut refresh = tokio::time::interval(self.settings.refresh_interval);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resets = tokio::time::interval(Duration::from_secs(1));
        resets.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = refresh.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::debug!(error = %e, "accounts refresh failed; will retry");
                    }
                }
                _ = resets.tick(), if self.settings.reset_budgets => {
                    if let Err(e) = self.reset_due_budgets().await {
                        tracing::debug!(error = %e, "budget reset failed; will retry");
                    }
                }
            }
        }
    }

    /// The spend writer loop until `stop`.
    pub async fn run_ledger(&self, stop: CancellationToken) {
        self.ledger
            .run(
                &self.store,
                &|rows, began| self.on_written(rows, began),
                stop,
            )
            .await
    }

    /// Final flush at shutdown.
    pub async fn close_ledger(&self, limit: Duration) {
        self.ledger
            .close(
                &self.store,
                &|rows, began| self.on_written(rows, began),
                limit,
            )
            .await
    }

    /// Write what is buffered now (tests, `/spend/logs` freshness).
    pub async fn flush(&self) -> Result<usize, StoreError> {
        self.ledger
            .flush(&self.store, &|rows, began| self.on_written(rows, began))
            .await
    }
}

/// An entity's own limits, with a referenced budget's filling what it leaves unset.
fn merged(own: &Limits, budget: &Limits) -> Limits {
    Limits {
        max_budget: own.max_budget.or(budget.max_budget),
        soft_budget: own.soft_budget.or(budget.soft_budget),
        budget_duration: own
            .budget_duration
            .clone()
            .or_else(|| budget.budget_duration.clone()),
        rpm_limit: own.rpm_limit.or(budget.rpm_limit),
        tpm_limit: own.tpm_limit.or(budget.tpm_limit),
        max_parallel_requests: own.max_parallel_requests.or(budget.max_parallel_requests),
    }
}

/// The tightest remaining capacity over the entities.
fn merge_remaining(acc: &mut Remaining, r: Remaining) {
    fn tighter(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<(u64, u64)> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.1 < x.1 { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        }
    }
    acc.requests = tighter(acc.requests, r.requests);
    acc.tokens = tighter(acc.tokens, r.tokens);
}
