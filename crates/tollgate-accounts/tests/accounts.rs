//! Integration tests of the accounts subsystem against both backends: SQLite (a temp file) and PostgreSQL
//! (a fresh database on 127.0.0.1:5432; skipped when the server is not running unless
//! TOLLGATE_REQUIRE_SERVICES=1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
// The store's test harness (temp SQLite files, fresh PostgreSQL databases) serves both crates.
#[path = "../../tollgate-store/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestDb, line_count};
use tollgate_accounts::model::{BudgetDoc, EndUserDoc, KeyDoc, Limits, OrgDoc, TeamDoc, UserDoc};
use tollgate_accounts::{Accounts, Admission, Booking, LedgerOptions, Principal, Settings, secret};
use tollgate_core::{GatewayError, Nanos};
use tollgate_store::{EntityKind, SpendLogFilter, SpendRow, now_ms};

/// One request's cost in the budget tests: $0.001.
const C: Nanos = Nanos(1_000_000);
const MODEL: &str = "gpt-4o";

fn settings(db: &TestDb) -> Settings {
    Settings {
        ledger: LedgerOptions {
            journal: db.path("spend.journal"),
            ..LedgerOptions::default()
        },
        ..Settings::default()
    }
}

async fn load(db: &TestDb) -> Accounts {
    Accounts::load(db.store.clone(), settings(db))
        .await
        .unwrap()
}

/// A new secret and a key document for it (no limits).
fn new_key() -> (String, KeyDoc) {
    let s = secret::generate().unwrap();
    let doc = KeyDoc {
        token: secret::hash_secret(&s),
        key_name: secret::display_name(&s),
        ..KeyDoc::default()
    };
    (s, doc)
}

fn budget(max: Nanos) -> Limits {
    Limits {
        max_budget: Some(max),
        ..Limits::default()
    }
}

/// Create `doc` and authenticate with its secret.
async fn principal(a: &Accounts, secret: &str, doc: &KeyDoc) -> Principal {
    a.create(doc).await.unwrap();
    Principal::Key(a.authenticate(secret).await.unwrap())
}

fn unauthorized(r: Result<impl std::fmt::Debug, GatewayError>) -> String {
    match r {
        Err(GatewayError::Unauthorized(m)) => m,
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

fn budget_exceeded(r: Result<Admission, GatewayError>) -> String {
    match r {
        Err(GatewayError::BudgetExceeded { message, .. }) => {
            assert!(message.contains("Budget has been exceeded!"), "{message}");
            message
        }
        other => panic!("expected BudgetExceeded, got {other:?}"),
    }
}

fn rate_limited(r: Result<Admission, GatewayError>) -> (String, Option<Duration>) {
    match r {
        Err(GatewayError::RateLimited {
            message,
            retry_after,
        }) => (message, retry_after),
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

fn admit(
    a: &Accounts,
    p: &Principal,
    end_user: Option<&str>,
    estimate: Nanos,
) -> Result<Admission, GatewayError> {
    a.admit_unshared(p, MODEL, end_user, estimate, Vec::new())
}

/// The spend row of a finished request booked as `b`.
fn spend_row(b: &Booking, request_id: &str, cost: Nanos) -> SpendRow {
    let now = now_ms();
    SpendRow {
        request_id: request_id.to_string(),
        api_key: b.api_key.clone(),
        key_alias: b.key_alias.clone(),
        user_id: b.user_id.clone(),
        team_id: b.team_id.clone(),
        organization_id: b.organization_id.clone(),
        end_user: b.end_user.clone(),
        model_group: MODEL.to_string(),
        model: "openai/gpt-4o".to_string(),
        deployment_id: "dep-1".to_string(),
        provider: "openai".to_string(),
        call_type: "/chat/completions".to_string(),
        status: 200,
        stream: false,
        prompt_tokens: 10,
        completion_tokens: 5,
        total_tokens: 15,
        cached_tokens: 0,
        reasoning_tokens: 0,
        spend: cost.0,
        start_time: now,
        end_time: now + 10,
        tags: serde_json::to_string(&b.tags).unwrap(),
        metadata: "{}".to_string(),
        trace: None,
    }
}

/// Admit, settle at `cost` and record the spend row: one finished request. Returns the row.
fn request(
    a: &Accounts,
    p: &Principal,
    end_user: Option<&str>,
    request_id: &str,
    cost: Nanos,
) -> SpendRow {
    let adm = admit(a, p, end_user, cost).unwrap();
    let row = spend_row(&adm.booking, request_id, cost);
    adm.settle(cost, 15);
    a.record(row.clone());
    row
}

async fn db_spend(db: &TestDb, kind: EntityKind, id: &str) -> i64 {
    db.store
        .get(kind, id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{kind:?} {id} in the database"))
        .spend
}

fn request_id(n: usize) -> String {
    format!("req-{}-{n:04}", uuid::Uuid::now_v7().simple())
}

// ------------------------------------------------------------------------------------------------------
// 6. Authentication

async fn authentication(db: &TestDb) {
    let a = load(db).await;
    let (s1, k1) = new_key();
    a.create(&k1).await.unwrap();
    let e = a.authenticate(&s1).await.unwrap();
    assert_eq!(e.doc.token, k1.token);
    assert_eq!(e.doc.key_name, secret::display_name(&s1));
    // The hash is not a secret that works.
    unauthorized(a.authenticate(&k1.token).await);
    // Creating the same key twice is a conflict.
    assert!(matches!(
        a.create(&k1).await,
        Err(tollgate_store::StoreError::Conflict)
    ));

    // Unknown secrets, twice (the second from the negative cache).
    let m = unauthorized(a.authenticate("sk-not-a-key").await);
    assert!(m.contains("Invalid proxy server token"), "{m}");
    unauthorized(a.authenticate("sk-not-a-key").await);

    // Blocked and expired keys.
    let (sb, mut kb) = new_key();
    kb.blocked = true;
    a.create(&kb).await.unwrap();
    let m = unauthorized(a.authenticate(&sb).await);
    assert!(m.contains("blocked"), "{m}");
    let (se, mut ke) = new_key();
    ke.expires = Some(now_ms() - 60_000);
    a.create(&ke).await.unwrap();
    let m = unauthorized(a.authenticate(&se).await);
    assert!(m.contains("Expired"), "{m}");
    let (sf, mut kf) = new_key();
    kf.expires = Some(now_ms() + 3_600_000);
    a.create(&kf).await.unwrap();
    a.authenticate(&sf).await.unwrap();
    // A key of a blocked team.
    a.create(&TeamDoc {
        team_id: "blocked-team".into(),
        blocked: true,
        ..TeamDoc::default()
    })
    .await
    .unwrap();
    let (st, mut kt) = new_key();
    kt.team_id = Some("blocked-team".into());
    a.create(&kt).await.unwrap();
    let m = unauthorized(a.authenticate(&st).await);
    assert!(m.contains("blocked"), "{m}");

    // Deleted: stops working at once, here and from the database.
    assert_eq!(
        a.delete(EntityKind::Key, std::slice::from_ref(&k1.token))
            .await
            .unwrap(),
        std::slice::from_ref(&k1.token)
    );
    unauthorized(a.authenticate(&s1).await);
    assert!(a.keys.get(&k1.token).is_none());
    let fresh = load(db).await;
    unauthorized(fresh.authenticate(&s1).await);
    fresh.authenticate(&sf).await.unwrap();

    // A second instance on the same database.
    let b = Accounts::load(db.connect_again().await, settings(db))
        .await
        .unwrap();
    let (s2, k2) = new_key();
    b.create(&k2).await.unwrap();
    assert!(a.keys.get(&k2.token).is_none());
    let e = a.authenticate(&s2).await.unwrap();
    assert_eq!(e.doc.token, k2.token);
    assert!(a.keys.get(&k2.token).is_some());
    // Deleted by B: A learns it at its next refresh.
    b.delete(EntityKind::Key, std::slice::from_ref(&k2.token))
        .await
        .unwrap();
    unauthorized(b.authenticate(&s2).await);
    a.refresh().await.unwrap();
    unauthorized(a.authenticate(&s2).await);
    assert!(a.keys.get(&k2.token).is_none());

    // Created by B: A's refresh brings it into memory (even after A remembered it as unknown).
    let (s3, k3) = new_key();
    unauthorized(a.authenticate(&s3).await);
    b.create(&k3).await.unwrap();
    a.refresh().await.unwrap();
    assert!(a.keys.get(&k3.token).is_some());
    a.authenticate(&s3).await.unwrap();

    // Blocked by B (a document update): A refuses it after its refresh.
    let mut k3b = k3.clone();
    k3b.blocked = true;
    let old = b.keys.get(&k3.token).unwrap();
    assert!(b.update(&k3b, &old).await.unwrap());
    a.refresh().await.unwrap();
    let m = unauthorized(a.authenticate(&s3).await);
    assert!(m.contains("blocked"), "{m}");
}

/// Key regeneration: the old secret stops working at once, the new one carries the spend.
async fn rekey(db: &TestDb) {
    let a = load(db).await;
    let (s, mut k) = new_key();
    k.limits = budget(Nanos(10 * C.0));
    let p = principal(&a, &s, &k).await;
    request(&a, &p, None, &request_id(0), C);
    assert_eq!(a.flush().await.unwrap(), 1);
    let (s2, k2) = regenerated(&k);
    let old = a.keys.get(&k.token).unwrap();
    assert!(a.rekey(&old, &k2).await.unwrap());
    unauthorized(a.authenticate(&s).await);
    let e = a.authenticate(&s2).await.unwrap();
    assert_eq!(e.counters.spend(), C);
    assert_eq!(db_spend(db, EntityKind::Key, &k2.token).await, C.0);
    assert_eq!(db.store.get(EntityKind::Key, &k.token).await.unwrap(), None);
    // Regenerating the old one again finds nothing.
    assert!(!a.rekey(&old, &regenerated(&k).1).await.unwrap());
}

fn regenerated(k: &KeyDoc) -> (String, KeyDoc) {
    let (s2, fresh) = new_key();
    let mut k2 = k.clone();
    k2.token = fresh.token;
    k2.key_name = fresh.key_name;
    (s2, k2)
}

/// Spend recorded under the old secret but not yet written when the key is regenerated still counts for
/// the key (`Accounts::rekey` writes the ledger before the new row inherits the stored spend).
async fn rekey_with_pending_spend(db: &TestDb) {
    let a = load(db).await;
    let (s, k) = new_key();
    let p = principal(&a, &s, &k).await;
    request(&a, &p, None, &request_id(0), C);
    let (s2, k2) = regenerated(&k);
    let old = a.keys.get(&k.token).unwrap();
    assert!(a.rekey(&old, &k2).await.unwrap());
    let e = a.authenticate(&s2).await.unwrap();
    assert_eq!(
        e.counters.spend(),
        C,
        "in memory, right after the regeneration"
    );
    a.flush().await.unwrap();
    assert_eq!(e.counters.spend(), C, "in memory, after the write");
    assert_eq!(
        db_spend(db, EntityKind::Key, &k2.token).await,
        C.0,
        "stored, after the write"
    );
}

// ------------------------------------------------------------------------------------------------------
// 7. Budget admission

async fn key_budget(db: &TestDb) {
    let a = load(db).await;
    let (s, mut k) = new_key();
    k.limits = budget(Nanos(10 * C.0));
    k.limits.soft_budget = Some(Nanos(4 * C.0));
    k.key_alias = Some("alias-1".into());
    let p = principal(&a, &s, &k).await;
    let counters = a.keys.get(&k.token).unwrap().counters.clone();

    let mut admitted = 0;
    let (mut soft_crossed_at, mut max_crossed_at) = (Vec::new(), Vec::new());
    let refusal = loop {
        match admit(&a, &p, None, C) {
            Ok(adm) => {
                let statuses = adm.settle(C, 20);
                admitted += 1;
                // One status (the key), reporting the spend around this very request.
                assert_eq!(statuses.len(), 1, "{statuses:?}");
                let st = &statuses[0];
                assert_eq!((st.kind, st.id.as_str()), ("key", k.token.as_str()));
                assert_eq!(st.alias.as_deref(), Some("alias-1"));
                assert_eq!(st.spend, Nanos(admitted * C.0));
                assert_eq!(st.spend_before, Nanos((admitted - 1) * C.0));
                assert_eq!(st.remaining(), Some(Nanos((10 - admitted) * C.0)));
                if st.crossed_soft() {
                    soft_crossed_at.push(admitted);
                }
                if st.crossed_max() {
                    max_crossed_at.push(admitted);
                }
                assert!(admitted <= 10, "admitted past the budget");
            }
            Err(e) => break Err(e),
        }
    };
    // Each threshold is crossed by exactly one request.
    assert_eq!(soft_crossed_at, [4]);
    assert_eq!(max_crossed_at, [10]);
    let msg = budget_exceeded(refusal);
    assert!(msg.contains(&format!("key={}", k.key_name)), "{msg}");
    assert_eq!(admitted, 10);
    assert_eq!(counters.spend(), Nanos(10 * C.0));
    assert_eq!(counters.reserved(), Nanos::ZERO);
    assert_eq!(counters.in_flight(), 0);
    // Still refused (nothing was taken by the refusals).
    budget_exceeded(admit(&a, &p, None, Nanos::ZERO));
}

async fn key_budget_reservations(db: &TestDb) {
    let a = Arc::new(load(db).await);
    let (s, mut k) = new_key();
    k.limits = budget(Nanos(10 * C.0));
    let p = principal(&a, &s, &k).await;
    let counters = a.keys.get(&k.token).unwrap().counters.clone();

    // 200 concurrent admissions, none settled: the reservations stop them at the budget.
    let results: Vec<Result<Admission, GatewayError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| (0..25).map(|_| admit(&a, &p, None, C)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(results.len(), 200);
    let mut held = Vec::new();
    for r in results {
        match r {
            Ok(adm) => held.push(adm),
            Err(e) => {
                budget_exceeded(Err(e));
            }
        }
    }
    assert!(held.len() <= 10, "{} admitted", held.len());
    assert_eq!(held.len(), 10);
    assert_eq!(counters.reserved(), Nanos(10 * C.0));
    assert_eq!(counters.in_flight(), 10);
    assert_eq!(counters.spend(), Nanos::ZERO);

    // Dropped unsettled: the reservation is given back.
    drop(held.pop());
    assert_eq!(counters.reserved(), Nanos(9 * C.0));
    held.push(admit(&a, &p, None, C).unwrap());
    budget_exceeded(admit(&a, &p, None, C));

    for adm in held {
        adm.settle(C, 10);
    }
    assert_eq!(counters.spend(), Nanos(10 * C.0));
    assert_eq!(counters.reserved(), Nanos::ZERO);
    assert_eq!(counters.in_flight(), 0);
    budget_exceeded(admit(&a, &p, None, C));
}

// ------------------------------------------------------------------------------------------------------
// 8. Other entities' budgets, rate limits

/// Two requests at `C` fit a budget of 2 x C; the third is refused naming `needle`.
fn exhaust(a: &Accounts, p: &Principal, end_user: Option<&str>, needle: &str) {
    let key_counters = match p {
        Principal::Key(k) => k.counters.clone(),
        _ => unreachable!(),
    };
    for _ in 0..2 {
        admit(a, p, end_user, C).unwrap().settle(C, 10);
    }
    let msg = budget_exceeded(admit(a, p, end_user, C));
    assert!(msg.contains(needle), "{msg} should name {needle}");
    // The key's hold was given back when a later entity refused.
    assert_eq!(key_counters.in_flight(), 0);
    assert_eq!(key_counters.reserved(), Nanos::ZERO);
}

async fn entity_budgets(db: &TestDb) {
    let a = load(db).await;
    let two = Nanos(2 * C.0);

    // User.
    a.create(&UserDoc {
        user_id: "u-budget".into(),
        limits: budget(two),
        ..UserDoc::default()
    })
    .await
    .unwrap();
    let (s, mut k) = new_key();
    k.user_id = Some("u-budget".into());
    let p = principal(&a, &s, &k).await;
    exhaust(&a, &p, None, "user=u-budget");
    assert_eq!(a.users.get("u-budget").unwrap().counters.spend(), two);

    // Team, used up through its stored spend (another instance's spend, the management API).
    a.create(&TeamDoc {
        team_id: "t-budget".into(),
        limits: budget(two),
        ..TeamDoc::default()
    })
    .await
    .unwrap();
    let (s, mut k) = new_key();
    k.team_id = Some("t-budget".into());
    let p = principal(&a, &s, &k).await;
    admit(&a, &p, None, C).unwrap().settle(C, 10);
    a.set_spend(EntityKind::Team, "t-budget", two)
        .await
        .unwrap();
    assert_eq!(db_spend(db, EntityKind::Team, "t-budget").await, two.0);
    let msg = budget_exceeded(admit(&a, &p, None, Nanos::ZERO));
    assert!(msg.contains("team=t-budget"), "{msg}");
    // A key under the same team is refused as well; a key under no team is not.
    let (s2, mut k2) = new_key();
    k2.team_id = Some("t-budget".into());
    let p2 = principal(&a, &s2, &k2).await;
    budget_exceeded(admit(&a, &p2, None, Nanos::ZERO));
    let (s3, k3) = new_key();
    let p3 = principal(&a, &s3, &k3).await;
    admit(&a, &p3, None, C).unwrap().settle(C, 10);

    // Organization, directly on the key and through the key's team.
    a.create(&OrgDoc {
        organization_id: "o-budget".into(),
        limits: budget(two),
        ..OrgDoc::default()
    })
    .await
    .unwrap();
    let (s, mut k) = new_key();
    k.organization_id = Some("o-budget".into());
    let p = principal(&a, &s, &k).await;
    exhaust(&a, &p, None, "organization=o-budget");
    a.create(&TeamDoc {
        team_id: "t-in-org".into(),
        organization_id: Some("o-budget".into()),
        ..TeamDoc::default()
    })
    .await
    .unwrap();
    let (s, mut k) = new_key();
    k.team_id = Some("t-in-org".into());
    let p = principal(&a, &s, &k).await;
    let msg = budget_exceeded(admit(&a, &p, None, C));
    assert!(msg.contains("organization=o-budget"), "{msg}");

    // End user (the request's `user`).
    a.create(&EndUserDoc {
        user_id: "eu-budget".into(),
        limits: budget(two),
        ..EndUserDoc::default()
    })
    .await
    .unwrap();
    let (s, k) = new_key();
    let p = principal(&a, &s, &k).await;
    exhaust(&a, &p, Some("eu-budget"), "end_user=eu-budget");
    // The same key without that end user is not limited.
    admit(&a, &p, None, C).unwrap().settle(C, 10);
    admit(&a, &p, Some("someone-else"), C)
        .unwrap()
        .settle(C, 10);
}

/// Wait out the end of the current minute if it is close (rate windows are calendar minutes).
async fn away_from_minute_edge() {
    let into = now_ms().rem_euclid(60_000);
    if into > 50_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - into + 200) as u64)).await;
    }
}

async fn rate_limits(db: &TestDb) {
    let a = load(db).await;

    // rpm_limit on the key's user.
    a.create(&UserDoc {
        user_id: "u-rpm".into(),
        limits: Limits {
            rpm_limit: Some(3),
            ..Limits::default()
        },
        ..UserDoc::default()
    })
    .await
    .unwrap();
    let (s, mut k) = new_key();
    k.user_id = Some("u-rpm".into());
    let p = principal(&a, &s, &k).await;
    away_from_minute_edge().await;
    // Admissions dropped before the request was sent give their slot back.
    for _ in 0..5 {
        drop(admit(&a, &p, None, Nanos::ZERO).unwrap());
    }
    for i in 0..3 {
        let adm = admit(&a, &p, None, Nanos::ZERO).unwrap();
        assert_eq!(adm.remaining.requests, Some((3, 2 - i)));
        adm.settle(Nanos::ZERO, 1);
    }
    let (msg, retry_after) = rate_limited(admit(&a, &p, None, Nanos::ZERO));
    assert!(
        msg.contains("rpm_limit=3") && msg.contains("user=u-rpm"),
        "{msg}"
    );
    let retry_after = retry_after.expect("a retry_after");
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60),
        "{retry_after:?}"
    );
    // Another user's key is not limited by it.
    let (s2, k2) = new_key();
    let p2 = principal(&a, &s2, &k2).await;
    for _ in 0..5 {
        admit(&a, &p2, None, Nanos::ZERO)
            .unwrap()
            .settle(Nanos::ZERO, 1);
    }

    // max_parallel_requests on a key.
    let (s, mut k) = new_key();
    k.limits.max_parallel_requests = Some(2);
    let p = principal(&a, &s, &k).await;
    let first = admit(&a, &p, None, Nanos::ZERO).unwrap();
    let second = admit(&a, &p, None, Nanos::ZERO).unwrap();
    let (msg, retry_after) = rate_limited(admit(&a, &p, None, Nanos::ZERO));
    assert!(msg.contains("max_parallel_requests=2"), "{msg}");
    assert!(retry_after.is_some());
    first.settle(C, 10);
    let third = admit(&a, &p, None, Nanos::ZERO).unwrap();
    rate_limited(admit(&a, &p, None, Nanos::ZERO));
    drop(second);
    let fourth = admit(&a, &p, None, Nanos::ZERO).unwrap();
    third.settle(C, 1);
    fourth.settle(C, 1);
    assert_eq!(a.keys.get(&k.token).unwrap().counters.in_flight(), 0);
}

// ------------------------------------------------------------------------------------------------------
// 9. The ledger

async fn ledger_writes(db: &TestDb) {
    let a = load(db).await;
    a.create(&UserDoc {
        user_id: "u-l".into(),
        ..UserDoc::default()
    })
    .await
    .unwrap();
    a.create(&TeamDoc {
        team_id: "t-l".into(),
        ..TeamDoc::default()
    })
    .await
    .unwrap();
    let (s, mut k) = new_key();
    k.user_id = Some("u-l".into());
    k.team_id = Some("t-l".into());
    k.key_alias = Some("ledger-key".into());
    let p = principal(&a, &s, &k).await;

    let mut sum = 0;
    let mut rows = Vec::new();
    for i in 0..25 {
        let cost = Nanos(1_000 + i as i64);
        sum += cost.0;
        rows.push(request(&a, &p, Some("eu-l"), &request_id(i), cost));
    }
    assert_eq!(a.ledger.buffered(), 25);
    assert_eq!(db.store.spend_log_count().await.unwrap(), 0);
    assert_eq!(a.flush().await.unwrap(), 25);
    assert_eq!(a.ledger.buffered(), 0);
    assert_eq!(db.store.spend_log_count().await.unwrap(), 25);
    let key = a.keys.get(&k.token).unwrap();
    let user = a.users.get("u-l").unwrap();
    let team = a.teams.get("t-l").unwrap();
    for (c, kind, id) in [
        (&key.counters, EntityKind::Key, k.token.as_str()),
        (&user.counters, EntityKind::User, "u-l"),
        (&team.counters, EntityKind::Team, "t-l"),
    ] {
        assert_eq!(c.spend(), Nanos(sum), "{kind:?} in memory");
        assert_eq!(
            db_spend(db, kind, id).await,
            sum,
            "{kind:?} in the database"
        );
    }
    assert_eq!(key.counters.model_spend(MODEL), Nanos(sum));
    // The end user was created by the spend write; the refresh brings it into memory.
    assert_eq!(db_spend(db, EntityKind::EndUser, "eu-l").await, sum);
    a.refresh().await.unwrap();
    assert_eq!(
        a.end_users.get("eu-l").unwrap().counters.spend(),
        Nanos(sum)
    );
    // The refresh reads the written spend: nothing counted twice.
    assert_eq!(key.counters.spend(), Nanos(sum));
    let logged = db
        .store
        .spend_logs(&SpendLogFilter {
            api_key: Some(k.token.clone()),
            ..SpendLogFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(logged.len(), 25);
    let mut logged_ids: Vec<_> = logged.iter().map(|r| r.request_id.clone()).collect();
    logged_ids.sort();
    let mut want: Vec<_> = rows.iter().map(|r| r.request_id.clone()).collect();
    want.sort();
    assert_eq!(logged_ids, want);
    assert!(
        logged
            .iter()
            .all(|r| r.key_alias.as_deref() == Some("ledger-key"))
    );
    assert_eq!(a.flush().await.unwrap(), 0);

    // Shutdown: close_ledger writes what is buffered.
    for i in 0..7 {
        sum += 500;
        request(&a, &p, None, &request_id(100 + i), Nanos(500));
    }
    a.close_ledger(Duration::from_secs(10)).await;
    assert_eq!(a.ledger.buffered(), 0);
    assert_eq!(db.store.spend_log_count().await.unwrap(), 32);
    assert_eq!(db_spend(db, EntityKind::Key, &k.token).await, sum);
    assert_eq!(key.counters.spend(), Nanos(sum));
    assert!(!db.path("spend.journal").exists());
    assert_eq!(
        a.ledger
            .stats
            .written
            .load(std::sync::atomic::Ordering::Relaxed),
        32
    );
}

fn journal_ids(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<SpendRow>(l).unwrap().request_id)
        .collect()
}

async fn ledger_journal(db: &TestDb) {
    let journal = db.path("j");
    let opts = Settings {
        ledger: LedgerOptions {
            journal: journal.clone(),
            max_buffered: 10,
            ..LedgerOptions::default()
        },
        ..Settings::default()
    };
    // This instance's pool is closed below: the database becomes unwritable for it.
    let a = Accounts::load(db.connect_again().await, opts.clone())
        .await
        .unwrap();
    let (s, k) = new_key();
    let p = principal(&a, &s, &k).await;
    a.store.close().await;

    let mut rows = Vec::new();
    for i in 0..50 {
        rows.push(request(&a, &p, None, &request_id(i), C));
    }
    assert!(a.flush().await.is_err());
    assert!(a.ledger.is_down());
    assert!(
        a.ledger.buffered() <= 10,
        "{} buffered",
        a.ledger.buffered()
    );
    assert_eq!(a.ledger.buffered(), 10);
    // The oldest 40 spilled, in order.
    let want: Vec<String> = rows.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(journal_ids(&journal), want[..40]);
    // Failing again keeps the bound and appends nothing twice.
    assert!(a.flush().await.is_err());
    assert_eq!(a.ledger.buffered(), 10);
    assert_eq!(line_count(&journal), 40);

    // A new instance on a working connection replays the journal at start-up.
    let b = Accounts::load(db.store.clone(), opts.clone())
        .await
        .unwrap();
    assert!(!journal.exists());
    assert_eq!(db.store.spend_log_count().await.unwrap(), 40);
    assert_eq!(db_spend(db, EntityKind::Key, &k.token).await, 40 * C.0);
    assert_eq!(
        b.keys.get(&k.token).unwrap().counters.spend(),
        Nanos(40 * C.0)
    );

    // The first instance shuts down with the database still unreachable: the rest goes to the journal.
    a.close_ledger(Duration::from_millis(500)).await;
    assert_eq!(a.ledger.buffered(), 0);
    assert_eq!(journal_ids(&journal), want[40..]);
    drop(b);
    let c = Accounts::load(db.store.clone(), opts).await.unwrap();
    assert!(!journal.exists());
    assert_eq!(db.store.spend_log_count().await.unwrap(), 50);
    assert_eq!(db_spend(db, EntityKind::Key, &k.token).await, 50 * C.0);
    assert_eq!(
        c.keys.get(&k.token).unwrap().counters.spend(),
        Nanos(50 * C.0)
    );
}

async fn ledger_close_with_db_down(db: &TestDb) {
    let mut opts = settings(db);
    opts.ledger.journal = db.path("close.journal");
    let a = Accounts::load(db.connect_again().await, opts.clone())
        .await
        .unwrap();
    let (s, k) = new_key();
    let p = principal(&a, &s, &k).await;
    for i in 0..30 {
        request(&a, &p, None, &request_id(i), C);
    }
    a.store.close().await;
    let started = std::time::Instant::now();
    a.close_ledger(Duration::from_millis(600)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.ledger.buffered(), 0);
    assert_eq!(line_count(&opts.ledger.journal), 30);
    assert_eq!(db.store.spend_log_count().await.unwrap(), 0);
    // Replayed by the next start.
    let b = Accounts::load(db.store.clone(), opts.clone())
        .await
        .unwrap();
    assert!(!opts.ledger.journal.exists());
    assert_eq!(db.store.spend_log_count().await.unwrap(), 30);
    assert_eq!(
        b.keys.get(&k.token).unwrap().counters.spend(),
        Nanos(30 * C.0)
    );
}

// ------------------------------------------------------------------------------------------------------
// 10. Budget resets

/// An end user whose `budget_id` budget has the `budget_duration` gets the reset schedule from it.
async fn referenced_budget_schedules_the_reset(db: &TestDb) {
    let a = load(db).await;
    let budget = BudgetDoc {
        budget_id: "daily".into(),
        limits: Limits {
            max_budget: Some(C),
            budget_duration: Some("1d".into()),
            ..Limits::default()
        },
        ..BudgetDoc::default()
    };
    a.create(&budget).await.unwrap();
    let customer = EndUserDoc {
        user_id: "cust".into(),
        budget_id: Some("daily".into()),
        ..EndUserDoc::default()
    };
    let row = a.create(&customer).await.unwrap();
    let next_midnight = (now_ms().div_euclid(86_400_000) + 1) * 86_400_000;
    assert_eq!(row.budget_reset_at, Some(next_midnight));
    assert_eq!(a.budget_duration_of(&customer).as_deref(), Some("1d"));
    // Without a budget and without its own duration: no reset.
    let plain = EndUserDoc {
        user_id: "plain".into(),
        ..EndUserDoc::default()
    };
    assert_eq!(a.create(&plain).await.unwrap().budget_reset_at, None);
}

async fn budget_reset(db: &TestDb) {
    let a = load(db).await;
    let other = Accounts::load(db.connect_again().await, settings(db))
        .await
        .unwrap();
    let (s, mut k) = new_key();
    k.limits = Limits {
        max_budget: Some(Nanos(3 * C.0)),
        budget_duration: Some("1s".into()),
        ..Limits::default()
    };
    let before = now_ms();
    let row = a.create(&k).await.unwrap();
    let first_reset = row.budget_reset_at.expect("create schedules the reset");
    assert!(
        first_reset >= before + 1_000 && first_reset <= now_ms() + 1_000,
        "{first_reset}"
    );
    let p = Principal::Key(a.authenticate(&s).await.unwrap());
    assert_eq!(
        a.keys.get(&k.token).unwrap().budget_reset_at,
        Some(first_reset)
    );
    other.refresh().await.unwrap();
    assert_eq!(
        other.keys.get(&k.token).unwrap().budget_reset_at,
        Some(first_reset)
    );

    for i in 0..3 {
        request(&a, &p, None, &request_id(i), C);
    }
    assert_eq!(a.flush().await.unwrap(), 3);
    budget_exceeded(admit(&a, &p, None, Nanos::ZERO));
    assert_eq!(db_spend(db, EntityKind::Key, &k.token).await, 3 * C.0);
    assert_eq!(a.reset_due_budgets().await.unwrap(), 0, "not due yet");
    assert_eq!(db_spend(db, EntityKind::Key, &k.token).await, 3 * C.0);

    let wait = first_reset - now_ms() + 200;
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let reset_at = now_ms();
    assert!(a.reset_due_budgets().await.unwrap() >= 1);
    let entry = a.keys.get(&k.token).unwrap();
    assert_eq!(entry.counters.spend(), Nanos::ZERO);
    assert_eq!(entry.counters.model_spend(MODEL), Nanos::ZERO);
    let stored = db
        .store
        .get(EntityKind::Key, &k.token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.spend, 0);
    let next = stored.budget_reset_at.expect("the next reset is scheduled");
    assert!(
        next > first_reset && next >= reset_at + 1_000,
        "{next} after {first_reset}"
    );
    assert_eq!(entry.budget_reset_at, Some(next));
    let model = db.store.model_spend(EntityKind::Key).await.unwrap();
    assert!(
        model.iter().filter(|m| m.0 == k.token).all(|m| m.2 == 0),
        "{model:?}"
    );
    // The budget is available again, through the old principal too (shared counters).
    admit(&a, &p, None, C).unwrap().settle(C, 1);

    // Another instance, still holding the old due time, does not reset a second time.
    assert_eq!(other.reset_due_budgets().await.unwrap(), 0);
    let stored = db
        .store
        .get(EntityKind::Key, &k.token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.budget_reset_at, Some(next));
    assert_eq!(
        other.keys.get(&k.token).unwrap().budget_reset_at,
        Some(next)
    );
}

/// Spend recorded (not yet written) before the reset belongs to the period that ended: after the reset
/// and the next write, the new period starts from zero (`reset_due_budgets` writes the ledger first).
async fn budget_reset_with_pending_spend(db: &TestDb) {
    let a = load(db).await;
    let (s, mut k) = new_key();
    k.limits.budget_duration = Some("1s".into());
    let row = a.create(&k).await.unwrap();
    let p = Principal::Key(a.authenticate(&s).await.unwrap());
    request(&a, &p, None, &request_id(0), C);
    let wait = row.budget_reset_at.unwrap() - now_ms() + 200;
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    assert!(a.reset_due_budgets().await.unwrap() >= 1);
    let counters = a.keys.get(&k.token).unwrap().counters.clone();
    assert_eq!(
        counters.spend(),
        Nanos::ZERO,
        "in memory, right after the reset"
    );
    a.flush().await.unwrap();
    assert_eq!(db.store.spend_log_count().await.unwrap(), 1);
    assert_eq!(
        db_spend(db, EntityKind::Key, &k.token).await,
        0,
        "stored, after the write"
    );
    assert_eq!(counters.spend(), Nanos::ZERO, "in memory, after the write");
}

both_backends!(
    authentication,
    referenced_budget_schedules_the_reset,
    key_budget,
    key_budget_reservations,
    entity_budgets,
    rate_limits,
    ledger_writes,
    ledger_journal,
    ledger_close_with_db_down,
    budget_reset,
    rekey,
    rekey_with_pending_spend,
    budget_reset_with_pending_spend,
);
