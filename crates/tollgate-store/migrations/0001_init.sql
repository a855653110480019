-- tollgate schema v1. One file for PostgreSQL and SQLite: only types and syntax both understand.
-- Money is BIGINT nano-dollars (1e-9 USD); times are BIGINT milliseconds since the Unix epoch.
--
-- Entity tables (keys, users, teams, organizations, end users, budgets) share one shape: the columns the
-- gateway filters, joins or updates concurrently (ids, spend, reset time, soft-delete flag, change time) are
-- real columns; the rest of the LiteLLM object is the JSON document in `body`. `spend` is written only by the
-- spend batch writer and the budget reset job; `body` only by the management API. `updated_at` drives the
-- incremental cache refresh of other instances; deletes are soft (deleted = 1) so they propagate the same way.

CREATE TABLE tg_keys (
    id              TEXT PRIMARY KEY,      -- sha256 hex of the secret key
    alias           TEXT,
    user_id         TEXT,
    team_id         TEXT,
    organization_id TEXT,
    spend           BIGINT NOT NULL DEFAULT 0,
    budget_reset_at BIGINT,
    deleted         BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX tg_keys_user ON tg_keys (user_id);
CREATE INDEX tg_keys_team ON tg_keys (team_id);
CREATE INDEX tg_keys_updated ON tg_keys (updated_at);

CREATE TABLE tg_users (
    id              TEXT PRIMARY KEY,
    alias           TEXT,                  -- user_email
    user_id         TEXT,
    team_id         TEXT,
    organization_id TEXT,
    spend           BIGINT NOT NULL DEFAULT 0,
    budget_reset_at BIGINT,
    deleted         BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX tg_users_updated ON tg_users (updated_at);

CREATE TABLE tg_teams (
    id              TEXT PRIMARY KEY,
    alias           TEXT,
    user_id         TEXT,
    team_id         TEXT,
    organization_id TEXT,
    spend           BIGINT NOT NULL DEFAULT 0,
    budget_reset_at BIGINT,
    deleted         BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    body            TEXT NOT NULL          -- includes members_with_roles
);
CREATE INDEX tg_teams_org ON tg_teams (organization_id);
CREATE INDEX tg_teams_updated ON tg_teams (updated_at);

CREATE TABLE tg_organizations (
    id              TEXT PRIMARY KEY,
    alias           TEXT,
    user_id         TEXT,
    team_id         TEXT,
    organization_id TEXT,
    spend           BIGINT NOT NULL DEFAULT 0,
    budget_reset_at BIGINT,
    deleted         BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX tg_organizations_updated ON tg_organizations (updated_at);

CREATE TABLE tg_end_users (
    id              TEXT PRIMARY KEY,      -- the request's `user` field
    alias           TEXT,
    user_id         TEXT,
    team_id         TEXT,
    organization_id TEXT,
    spend           BIGINT NOT NULL DEFAULT 0,
    budget_reset_at BIGINT,
    deleted         BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX tg_end_users_updated ON tg_end_users (updated_at);

CREATE TABLE tg_budgets (
    id              TEXT PRIMARY KEY,
    alias           TEXT,
    user_id         TEXT,
    team_id         TEXT,
    organization_id TEXT,
    spend           BIGINT NOT NULL DEFAULT 0,
    budget_reset_at BIGINT,
    deleted         BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX tg_budgets_updated ON tg_budgets (updated_at);

-- Spend per (entity, model) since the entity's last model-budget reset (`model_max_budget`).
CREATE TABLE tg_model_spend (
    entity_kind TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    model       TEXT NOT NULL,
    spend       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (entity_kind, entity_id, model)
);

-- One row per LLM request. `request_id` is the primary key: writing a batch twice (a retry after a lost
-- commit acknowledgement, a journal replay) inserts nothing the second time, and only inserted rows add to
-- the spend counters.
CREATE TABLE tg_spend_logs (
    request_id        TEXT PRIMARY KEY,
    api_key           TEXT NOT NULL,       -- key hash ('' for the master key / no key)
    key_alias         TEXT,
    user_id           TEXT,
    team_id           TEXT,
    organization_id   TEXT,
    end_user          TEXT,
    model_group       TEXT NOT NULL,
    model             TEXT NOT NULL,       -- upstream model
    deployment_id     TEXT NOT NULL,
    provider          TEXT NOT NULL,
    call_type         TEXT NOT NULL,       -- route, e.g. /chat/completions
    status            BIGINT NOT NULL,     -- HTTP status the client got (499: client went away)
    stream            BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens      BIGINT NOT NULL,
    cached_tokens     BIGINT NOT NULL,
    reasoning_tokens  BIGINT NOT NULL,
    spend             BIGINT NOT NULL,
    start_time        BIGINT NOT NULL,
    end_time          BIGINT NOT NULL,
    tags              TEXT NOT NULL,       -- JSON array
    metadata          TEXT NOT NULL        -- JSON object
);
CREATE INDEX tg_spend_logs_key ON tg_spend_logs (api_key, start_time);
CREATE INDEX tg_spend_logs_user ON tg_spend_logs (user_id, start_time);
CREATE INDEX tg_spend_logs_team ON tg_spend_logs (team_id, start_time);
CREATE INDEX tg_spend_logs_start ON tg_spend_logs (start_time);

-- Daily aggregates per entity and model (entity_kind: key, user, team, organization, end_user).
CREATE TABLE tg_daily_spend (
    day               TEXT NOT NULL,       -- YYYY-MM-DD (UTC)
    entity_kind       TEXT NOT NULL,
    entity_id         TEXT NOT NULL,
    model             TEXT NOT NULL,
    requests          BIGINT NOT NULL,
    successes         BIGINT NOT NULL,
    failures          BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    spend             BIGINT NOT NULL,
    PRIMARY KEY (day, entity_kind, entity_id, model)
);
