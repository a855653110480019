//! The LiteLLM-shaped entity documents (key, user, team, organization, end user, budget) as stored in the
//! entity tables' `body`, and the roles.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tollgate_core::Nanos;

/// Proxy-wide roles (`user_role`), as LiteLLM names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    ProxyAdmin,
    ProxyAdminViewer,
    #[default]
    InternalUser,
    InternalUserViewer,
    /// LiteLLM's `customer` role (end users with a login); treated as an internal user viewer.
    Customer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "proxy_admin" => Role::ProxyAdmin,
            "proxy_admin_viewer" => Role::ProxyAdminViewer,
            "internal_user" => Role::InternalUser,
            "internal_user_viewer" => Role::InternalUserViewer,
            "customer" => Role::Customer,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProxyAdmin => "proxy_admin",
            Role::ProxyAdminViewer => "proxy_admin_viewer",
            Role::InternalUser => "internal_user",
            Role::InternalUserViewer => "internal_user_viewer",
            Role::Customer => "customer",
        }
    }

    /// May read everything.
    pub fn is_admin_reader(self) -> bool {
        matches!(self, Role::ProxyAdmin | Role::ProxyAdminViewer)
    }

    /// May change everything.
    pub fn is_admin(self) -> bool {
        self == Role::ProxyAdmin
    }

    /// May create and manage their own keys.
    pub fn can_write_own(self) -> bool {
        matches!(self, Role::ProxyAdmin | Role::InternalUser)
    }
}

/// A team member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TeamRole {
    Admin,
    #[default]
    User,
}

/// `members_with_roles` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default)]
    pub role: TeamRole,
}

/// The limits every budgeted entity can carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<Nanos>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_budget: Option<Nanos>,
    /// `"30s"`, `"1h"`, `"1d"`, `"7d"`, `"30d"`, `"1mo"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<u64>,
}

/// A virtual key. The secret itself is never stored: `token` is its SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct KeyDoc {
    pub token: String,
    /// `sk-...abcd`: enough to recognise a key, not to use it.
    #[serde(default)]
    pub key_name: String,
    #[serde(default)]
    pub key_alias: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub budget_id: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub aliases: Map<String, Value>,
    #[serde(flatten)]
    pub limits: Limits,
    /// `{"model": {"budget_limit": 0.5, "time_period": "1d"}}` or `{"model": 0.5}`.
    #[serde(default)]
    pub model_max_budget: Map<String, Value>,
    /// Expiry (ms since the epoch).
    #[serde(default)]
    pub expires: Option<i64>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub updated_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UserDoc {
    pub user_id: String,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default)]
    pub user_alias: Option<String>,
    #[serde(default)]
    pub user_role: Role,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(flatten)]
    pub limits: Limits,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TeamDoc {
    pub team_id: String,
    #[serde(default)]
    pub team_alias: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub members_with_roles: Vec<Member>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(flatten)]
    pub limits: Limits,
    #[serde(default)]
    pub model_aliases: Map<String, Value>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub blocked: bool,
}

impl TeamDoc {
    pub fn role_of(&self, user_id: &str) -> Option<TeamRole> {
        self.members_with_roles
            .iter()
            .find(|m| m.user_id.as_deref() == Some(user_id))
            .map(|m| m.role)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OrgDoc {
    pub organization_id: String,
    #[serde(default)]
    pub organization_alias: Option<String>,
    #[serde(default)]
    pub budget_id: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(flatten)]
    pub limits: Limits,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub blocked: bool,
}

/// An end user (LiteLLM "customer"): the `user` field of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EndUserDoc {
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub budget_id: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
    #[serde(default)]
    pub allowed_model_region: Option<String>,
    #[serde(default)]
    pub default_model: Option<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub blocked: bool,
}

/// A reusable budget (`/budget/new`), referenced by `budget_id` from end users, organizations and keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BudgetDoc {
    pub budget_id: String,
    #[serde(flatten)]
    pub limits: Limits,
    #[serde(default)]
    pub model_max_budget: Map<String, Value>,
    #[serde(default)]
    pub created_by: Option<String>,
}
