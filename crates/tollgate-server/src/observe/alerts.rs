//! Budget alerts for `alerting: ["webhook"]`: LiteLLM's `WebhookEvent` body, posted when a request takes an
//! entity's spend across its soft budget or its max budget (each crossing is seen by exactly one request:
//! `Admission::settle` reports the spend before and after in one critical section).

use serde::Serialize;
use tollgate_accounts::BudgetStatus;
use tollgate_core::Nanos;

/// LiteLLM's `WebhookEvent`.
#[derive(Debug, Serialize, PartialEq)]
pub struct WebhookEvent<'a> {
    pub spend: f64,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
    pub token: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub team_id: Option<&'a str>,
    pub organization_id: Option<&'a str>,
    pub user_email: Option<&'a str>,
    pub key_alias: Option<&'a str>,
    pub team_alias: Option<&'a str>,
    pub projected_exceeded_date: Option<&'a str>,
    pub projected_spend: Option<f64>,
    /// `"budget_crossed"`, `"threshold_crossed"` (85% and 95% of the max budget) or `"soft_budget_crossed"`.
    pub event: &'static str,
    /// `"key"`, `"user"` (LiteLLM's `internal_user`), `"team"`, `"organization"` or `"customer"`.
    pub event_group: &'static str,
    pub event_message: String,
}

fn dollars(n: Nanos) -> f64 {
    n.0 as f64 / 1e9
}

/// The alerts one settlement raises (usually none).
pub fn events(s: &BudgetStatus) -> Vec<WebhookEvent<'_>> {
    let mut out = Vec::new();
    let group = match s.kind {
        "key" => "key",
        "user" => "internal_user",
        "team" => "team",
        "organization" => "organization",
        _ => "customer",
    };
    let mut push = |event: &'static str, what: &str, limit: Nanos| {
        let name = s.alias.as_deref().unwrap_or(&s.id);
        out.push(WebhookEvent {
            spend: dollars(s.spend),
            max_budget: s.max_budget.map(dollars),
            soft_budget: s.soft_budget.map(dollars),
            token: (s.kind == "key").then_some(s.id.as_str()),
            customer_id: (s.kind == "end_user").then_some(s.id.as_str()),
            user_id: (s.kind == "user").then_some(s.id.as_str()),
            team_id: (s.kind == "team").then_some(s.id.as_str()),
            organization_id: (s.kind == "organization").then_some(s.id.as_str()),
            user_email: (s.kind == "user").then_some(s.alias.as_deref()).flatten(),
            key_alias: (s.kind == "key").then_some(s.alias.as_deref()).flatten(),
            team_alias: (s.kind == "team").then_some(s.alias.as_deref()).flatten(),
            projected_exceeded_date: None,
            projected_spend: None,
            event,
            event_group: group,
            event_message: format!(
                "{} {what} crossed: {group} {name} has spent ${:.6} of ${:.6}",
                title(group),
                dollars(s.spend),
                dollars(limit)
            ),
        });
    };
    if s.crossed_soft()
        && let Some(soft) = s.soft_budget
    {
        push("soft_budget_crossed", "soft budget", soft);
    }
    if let Some(max) = s.max_budget {
        if s.crossed_max() {
            push("budget_crossed", "budget", max);
        } else {
            // LiteLLM's "15% / 5% Threshold Crossed": spend reached 85% / 95% of the max budget.
            for (pct, what) in [(85, "85% threshold"), (95, "95% threshold")] {
                let mark = Nanos(max.0 / 100 * pct + max.0 % 100 * pct / 100);
                if s.spend_before < mark && s.spend >= mark {
                    push("threshold_crossed", what, max);
                }
            }
        }
    }
    out
}

fn title(group: &str) -> &'static str {
    match group {
        "key" => "Key",
        "internal_user" => "User",
        "team" => "Team",
        "organization" => "Organization",
        _ => "Customer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(before: i64, after: i64) -> BudgetStatus {
        BudgetStatus {
            kind: "team",
            id: "eng".into(),
            alias: Some("Engineering".into()),
            max_budget: Some(Nanos(1000)),
            soft_budget: Some(Nanos(500)),
            spend_before: Nanos(before),
            spend: Nanos(after),
        }
    }

    fn names(before: i64, after: i64) -> Vec<&'static str> {
        events(&status(before, after))
            .iter()
            .map(|e| e.event)
            .collect()
    }

    #[test]
    fn each_threshold_fires_on_the_request_that_crosses_it() {
        assert!(names(0, 499).is_empty());
        assert_eq!(names(499, 500), ["soft_budget_crossed"]);
        assert!(names(500, 849).is_empty());
        assert_eq!(names(849, 850), ["threshold_crossed"]);
        assert!(names(850, 949).is_empty());
        assert_eq!(names(949, 950), ["threshold_crossed"]);
        assert_eq!(names(999, 1000), ["budget_crossed"]);
        assert!(
            names(1000, 1200).is_empty(),
            "already over: no second alert"
        );
        // One request past several marks: each mark it passed, the max budget instead of its thresholds.
        assert_eq!(names(0, 900), ["soft_budget_crossed", "threshold_crossed"]);
        assert_eq!(names(0, 2000), ["soft_budget_crossed", "budget_crossed"]);
    }

    #[test]
    fn the_event_names_the_entity_in_litellm_fields() {
        let s = status(999, 1000);
        let e = &events(&s)[0];
        assert_eq!(e.event_group, "team");
        assert_eq!(e.team_id, Some("eng"));
        assert_eq!(e.team_alias, Some("Engineering"));
        assert_eq!(e.token, None);
        assert_eq!(e.max_budget, Some(1e-6));
        let json = serde_json::to_value(e).unwrap();
        for field in [
            "spend",
            "max_budget",
            "token",
            "customer_id",
            "user_id",
            "team_id",
            "user_email",
            "key_alias",
            "projected_exceeded_date",
            "projected_spend",
            "event",
            "event_group",
            "event_message",
        ] {
            assert!(json.get(field).is_some(), "{field} missing in {json}");
        }
        assert!(
            e.event_message.contains("Engineering"),
            "{}",
            e.event_message
        );
    }
}
