//! The store conformance suite: each behaviour is written once against
//! `&dyn Store` and run on every backend: SQLite in a temporary file, and
//! PostgreSQL in a fresh database per case (`LOOPGATE_TEST_POSTGRES`; the
//! cases fail, never skip, without a server).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use loopgate_core::digest::DigestParts;
use loopgate_core::review::{DecisionInput, ReviewError};
use loopgate_core::routing::{AutoLimit, EvaluationError, Rate, ReviewPlan, Routing};
use loopgate_core::{
    Digest, EventKind, Grantable, Oversight, ProposalId, ProposalStatus, RiskTier, Route, SystemId,
    TaskId, TaskState, Timestamp, Verdict,
};
use loopgate_store::aggregates::metric;
use loopgate_store::sql::{PgOptions, SqlStore};
use loopgate_store::testing::TempDatabase;
use loopgate_store::{
    ActivationMode, AnalyticsFilter, AttemptResult, DeliveryFilter, DeliveryState, NewPolicy,
    NewProposal, NewSystem, ProposalFilter, ReviewerRef, ShadowOutcome, Store, StoreError,
    SubmitError, Submitted, TaskFilter, TotalsQuery, TxError, WebhookConfig,
};
use serde_json::json;

const T0: Timestamp = Timestamp::from_millis(1_795_000_000_000);

struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _database: Option<TempDatabase>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(&dir.path().join("loopgate.db")).unwrap();
    Backend {
        store: Arc::new(store),
        _dir: Some(dir),
        _database: None,
    }
}

async fn postgres() -> Backend {
    let database = TempDatabase::create().unwrap();
    let store = SqlStore::connect(&database.url, PgOptions::default())
        .await
        .unwrap();
    Backend {
        store: Arc::new(store),
        _dir: None,
        _database: Some(database),
    }
}

/// Instantiates each case once per backend.
macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        conformance!(@backend sqlite_backend, sqlite, $($case),+);
        conformance!(@backend postgres_backend, postgres, $($case),+);
    };
    (@backend $module:ident, $open:ident, $($case:ident),+) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::$open().await;
                    super::$case(backend.store.as_ref()).await;
                }
            )+
        }
    };
}

conformance!(
    submit_is_idempotent_per_key_and_digest,
    a_lease_is_exclusive,
    a_reviewer_decides_a_proposal_once,
    terminal_states_never_change,
    cursor_paging_is_stable,
    a_queue_of_several_groups_pages_in_queue_order,
    racing_claims_have_one_winner,
    every_change_writes_its_event,
    the_log_grows_in_order_and_proves_inclusion,
    erasure_keeps_the_log_and_drops_the_payload,
    activations_decide_the_live_and_shadow_versions,
    automation_caps_hold_under_concurrency,
    shadow_disagreements_are_recorded_and_replay_reads_history,
    policy_errors_stay_with_the_proposal_and_its_routed_event,
    analytics_counts_follow_every_change,
    analytics_counts_stay_current_across_folds,
    the_queue_depth_follows_every_change,
    the_webhook_outbox_delivers_each_proposal_in_order,
    a_second_webhook_gets_only_what_comes_after_it,
    an_api_write_costs_at_most_three_round_trips,
    outboxes_without_settings_queue_nothing,
);

async fn setup(store: &dyn Store) -> SystemId {
    create_system(store, "sys").await
}

async fn create_system(store: &dyn Store, id: &str) -> SystemId {
    let system = SystemId::parse(id).unwrap();
    let new = NewSystem {
        id: system.clone(),
        name: id.into(),
        owner: "team".into(),
        purpose: "tests".into(),
        risk_tier: RiskTier::High,
        oversight: Oversight::InTheLoop,
        shape: None,
    };
    store.create_system(new, "user:admin", T0).await.unwrap();
    system
}

fn new_proposal(
    system: &SystemId,
    n: u32,
    key: Option<&str>,
    output: serde_json::Value,
    required: u32,
) -> NewProposal {
    let subject = json!({"type": "T", "id": format!("s{n}"), "attributes": {}});
    let input = json!({"n": n});
    // A fresh salt per call, as the server makes one per submission.
    let salt: Vec<u8> = (0..32)
        .map(|i| (n as u8).wrapping_mul(31).wrapping_add(i) ^ key.map_or(0, |k| k.len() as u8))
        .collect();
    let parts = DigestParts {
        system: system.as_str(),
        action: "act",
        subject: &subject,
        input: &input,
        output: &output,
        salt: &salt,
    };
    let digest = Digest::of(parts);
    let fingerprint = Digest::of(DigestParts { salt: &[], ..parts });
    let review = ReviewPlan {
        group: "g".into(),
        approvals: required,
        ..ReviewPlan::default_review()
    };
    let routing = Routing {
        route: Route::Review,
        matched: vec![],
        policy_version: "v".into(),
        review,
        sample_rate: 0.0,
        limits: vec![],
        errors: vec![],
    };
    NewProposal {
        id: ProposalId::from_unique(&format!("P{n}{}", key.unwrap_or(""))),
        task_id: TaskId::from_unique(&format!("T{n}{}", key.unwrap_or(""))),
        system: system.clone(),
        action: "act".into(),
        subject,
        input,
        output,
        confidence: Some(0.5),
        explanation: None,
        model: None,
        context: Default::default(),
        idempotency_key: key.map(str::to_owned),
        batch: None,
        trace_context: None,
        digest,
        fingerprint,
        salt,
        submitted_by: "system:sys".into(),
        routing,
        sampled: false,
        shadow: None,
    }
}

/// Group `group` hears about its tasks at `team@example.com`.
fn group_email(group: &str) -> loopgate_store::GroupNotifications {
    loopgate_store::GroupNotifications {
        group: group.into(),
        channels: loopgate_core::notify::GroupChannels {
            email: vec!["team@example.com".into()],
            slack_channel: None,
            teams_webhook: None,
            events: loopgate_core::NotifyEvent::ALL.to_vec(),
        },
        updated_at: T0,
    }
}

/// `store`, after its sequencer ran: the outboxes follow the log, and on
/// PostgreSQL a committed event waits for the sequencer to be in it.
async fn sequenced<S: Store + ?Sized>(store: &S) -> &S {
    settled(store).await.sequence(100_000).await.unwrap();
    store
}

/// A webhook of `system` for `types` (its endpoint never answers).
fn webhook_of(system: &SystemId, types: Vec<EventKind>) -> WebhookConfig {
    WebhookConfig {
        system: system.clone(),
        url: "http://127.0.0.1:9/hook".into(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        types,
        created_at: T0,
        updated_at: T0,
    }
}

/// Two stores on one fresh PostgreSQL database, as two replicas (the
/// database lives as long as the first).
async fn two_replicas() -> (TempDatabase, SqlStore, SqlStore) {
    let database = TempDatabase::create().unwrap();
    let here = SqlStore::connect(&database.url, PgOptions::default())
        .await
        .unwrap();
    let there = SqlStore::connect(&database.url, PgOptions::default())
        .await
        .unwrap();
    (database, here, there)
}

/// Queues every delivery the log calls for.
async fn drain_deliveries(store: &dyn Store) {
    while sequenced(store)
        .await
        .enqueue_deliveries(T0, 1000)
        .await
        .unwrap()
        == 1000
    {}
}

/// `store`, once every committed event has its log position (on
/// PostgreSQL the sequencer gives them after the commit).
async fn settled<S: Store + ?Sized>(store: &S) -> &S {
    store.settle_log().await.unwrap();
    store
}

fn reviewer(name: &str) -> ReviewerRef {
    ReviewerRef {
        name: name.into(),
        groups: vec!["g".into()],
    }
}

fn approve(digest: &Digest) -> DecisionInput {
    DecisionInput {
        verdict: Verdict::Approve,
        rationale: None,
        output: None,
        labels: None,
        message: None,
        grant: None,
        seen_digest: digest.clone(),
    }
}

async fn submit_is_idempotent_per_key_and_digest(store: &dyn Store) {
    let system = setup(store).await;
    let first = store
        .submit(new_proposal(&system, 1, Some("k"), json!({"a": 1}), 1), T0)
        .await
        .unwrap();
    let Submitted::Created(created) = first else {
        panic!("expected a new proposal")
    };
    let mut again = new_proposal(&system, 1, Some("k"), json!({"a": 1}), 1);
    again.id = ProposalId::from_unique("other");
    match store.submit(again, T0).await.unwrap() {
        Submitted::Existing(existing) => assert_eq!(existing.id, created.id),
        Submitted::Created(_) => panic!("a replay created a second proposal"),
    }
    let mut different = new_proposal(&system, 1, Some("k"), json!({"a": 2}), 1);
    different.id = ProposalId::from_unique("third");
    match store.submit(different, T0).await {
        Err(TxError::Refused(SubmitError::IdempotencyConflict { existing, .. })) => {
            assert_eq!(existing, created.id)
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let page = store
        .proposals(ProposalFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

async fn a_lease_is_exclusive(store: &dyn Store) {
    let system = setup(store).await;
    let new = new_proposal(&system, 1, None, json!({}), 1);
    let task_id = new.task_id.clone();
    store.submit(new, T0).await.unwrap();
    let lease = Duration::from_secs(60);
    store
        .claim(&task_id, &reviewer("ann"), lease, T0)
        .await
        .unwrap();
    let held = store.claim(&task_id, &reviewer("bob"), lease, T0).await;
    assert!(
        matches!(held, Err(TxError::Refused(ReviewError::LeaseHeld { .. }))),
        "{held:?}"
    );
    let later = T0.plus(Duration::from_secs(61));
    let taken = store
        .claim(&task_id, &reviewer("bob"), lease, later)
        .await
        .unwrap();
    assert_eq!(taken.task.claimed_by.as_deref(), Some("bob"));
}

async fn a_reviewer_decides_a_proposal_once(store: &dyn Store) {
    let system = setup(store).await;
    let new = new_proposal(&system, 1, None, json!({}), 2);
    let (task_id, digest) = (new.task_id.clone(), new.digest.clone());
    store.submit(new, T0).await.unwrap();
    let first = store
        .decide(&task_id, &reviewer("ann"), approve(&digest), T0)
        .await
        .unwrap();
    assert_eq!(first.proposal.status, ProposalStatus::Pending);
    let twice = store
        .decide(&task_id, &reviewer("ann"), approve(&digest), T0)
        .await;
    assert!(
        matches!(
            twice,
            Err(TxError::Refused(ReviewError::AlreadyVoted { .. }))
        ),
        "{twice:?}"
    );
    let second = store
        .decide(&task_id, &reviewer("bob"), approve(&digest), T0)
        .await
        .unwrap();
    assert_eq!(second.proposal.status, ProposalStatus::Approved);
    assert_eq!(second.proposal.decisions.len(), 2);
}

async fn terminal_states_never_change(store: &dyn Store) {
    let system = setup(store).await;
    let new = new_proposal(&system, 1, None, json!({}), 1);
    let (id, task_id, digest) = (new.id.clone(), new.task_id.clone(), new.digest.clone());
    store.submit(new, T0).await.unwrap();
    store.cancel(&id, "system:sys", T0).await.unwrap();
    let late = store
        .decide(&task_id, &reviewer("ann"), approve(&digest), T0)
        .await;
    assert!(
        matches!(
            late,
            Err(TxError::Refused(ReviewError::AlreadyDecided { .. }))
        ),
        "{late:?}"
    );
    let again = store.cancel(&id, "system:sys", T0).await;
    assert!(matches!(
        again,
        Err(TxError::Refused(ReviewError::AlreadyDecided { .. }))
    ));
    let stored = store.proposal(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, ProposalStatus::Cancelled);
    let task = store.task(&task_id).await.unwrap().unwrap();
    assert_eq!(task.task.state, TaskState::Cancelled);
    assert!(
        store
            .run_timers(T0.plus(Duration::from_secs(1_000_000)), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A reviewer of two groups pages through both in queue order (each group
/// is read from its own index), without the third group's tasks, without
/// claimed ones, and with a claim whose lease lapsed.
async fn a_queue_of_several_groups_pages_in_queue_order(store: &dyn Store) {
    let system = setup(store).await;
    let ann = ReviewerRef {
        name: "ann".into(),
        groups: vec!["a".into(), "b".into()],
    };
    let mut expected = Vec::new();
    for n in 0..15 {
        let mut new = new_proposal(&system, n, None, json!({}), 1);
        let group = ["a", "b", "c"][n as usize % 3];
        new.routing.review.group = group.into();
        let task = new.task_id.clone();
        store.submit(new, T0).await.unwrap();
        match (group, n) {
            ("c", _) => (),
            // Claimed, with a lease that has not lapsed by T0 + 1 s.
            (_, 4) => {
                store
                    .claim(&task, &ann, Duration::from_secs(60), T0)
                    .await
                    .unwrap();
            }
            // Claimed, lapsed by then: open again.
            (_, 7) => {
                store
                    .claim(&task, &ann, Duration::from_millis(10), T0)
                    .await
                    .unwrap();
                expected.push(task.to_string());
            }
            _ => expected.push(task.to_string()),
        }
    }
    let now = T0.plus(Duration::from_secs(1));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let filter = TaskFilter {
            groups: Some(vec!["b".into(), "a".into()]),
            state: Some(TaskState::Open),
            after_seq: after,
            limit: 3,
            ..Default::default()
        };
        let page = store.tasks(filter, now).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|t| t.task.id.to_string()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected);
}

async fn cursor_paging_is_stable(store: &dyn Store) {
    let system = setup(store).await;
    for n in 0..10 {
        store
            .submit(new_proposal(&system, n, None, json!({}), 1), T0)
            .await
            .unwrap();
    }
    let first = store
        .tasks(
            TaskFilter {
                limit: 4,
                state: Some(TaskState::Open),
                ..Default::default()
            },
            T0,
        )
        .await
        .unwrap();
    // Inserts after the first page do not shift what comes next.
    store
        .submit(new_proposal(&system, 99, None, json!({}), 1), T0)
        .await
        .unwrap();
    let mut seen: Vec<String> = first.items.iter().map(|t| t.task.id.to_string()).collect();
    let mut cursor = first.next;
    while let Some(after) = cursor {
        let page = store
            .tasks(
                TaskFilter {
                    limit: 4,
                    after_seq: Some(after),
                    state: Some(TaskState::Open),
                    ..Default::default()
                },
                T0,
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|t| t.task.id.to_string()));
        cursor = page.next;
    }
    assert_eq!(seen.len(), 11);
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen);
}

async fn racing_claims_have_one_winner(store: &dyn Store) {
    let system = setup(store).await;
    let new = new_proposal(&system, 1, None, json!({}), 1);
    let task_id = new.task_id.clone();
    store.submit(new, T0).await.unwrap();
    let claims = (0..20).map(|i| {
        let task_id = task_id.clone();
        async move {
            store
                .claim(
                    &task_id,
                    &reviewer(&format!("r{i}")),
                    Duration::from_secs(60),
                    T0,
                )
                .await
        }
    });
    let results = futures::future::join_all(claims).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
}

async fn policy_errors_stay_with_the_proposal_and_its_routed_event(store: &dyn Store) {
    let system = setup(store).await;
    let mut new = new_proposal(&system, 1, None, json!({}), 1);
    let errors = vec![EvaluationError {
        policy: "deny-big".into(),
        kind: "type_error".into(),
        message: "type error: expected long, got decimal".into(),
    }];
    new.routing.route = Route::Deny;
    new.routing.matched = vec!["deny-big".into()];
    new.routing.errors = errors.clone();
    let id = new.id.clone();
    let Submitted::Created(created) = store.submit(new, T0).await.unwrap() else {
        panic!("a new proposal")
    };
    assert_eq!(created.policy_errors, errors);
    let stored = store.proposal(&id).await.unwrap().unwrap();
    assert_eq!(stored.policy_errors, errors);
    assert_eq!(stored.status, ProposalStatus::Rejected);
    let plain = new_proposal(&system, 2, None, json!({}), 1);
    let plain_id = plain.id.clone();
    store.submit(plain, T0).await.unwrap();
    assert!(
        store
            .proposal(&plain_id)
            .await
            .unwrap()
            .unwrap()
            .policy_errors
            .is_empty()
    );

    let sequenced = settled(store).await.sequence(1000).await.unwrap();
    let entries = store.entries(0, sequenced.head.size).await.unwrap();
    let routed: Vec<serde_json::Value> = entries
        .iter()
        .map(|entry| serde_json::from_slice::<serde_json::Value>(entry).unwrap())
        .filter(|entry| entry["type"] == "proposal.routed")
        .collect();
    // The message may quote the request's values: the log keeps its salted hash.
    let salt = store.proposal(&id).await.unwrap().unwrap().salt;
    let hash = loopgate_core::audit::entry::salted_hash(
        &salt,
        "policy_error",
        &json!("type error: expected long, got decimal"),
    );
    assert_eq!(
        routed[0]["data"]["policy_errors"],
        json!([{"policy": "deny-big", "kind": "type_error", "message": hash.to_string()}])
    );
    assert!(
        routed[1]["data"].get("policy_errors").is_none(),
        "{}",
        routed[1]
    );
}

async fn every_change_writes_its_event(store: &dyn Store) {
    let system = setup(store).await;
    let new = new_proposal(&system, 1, None, json!({}), 1);
    let (task_id, digest) = (new.task_id.clone(), new.digest.clone());
    store.submit(new, T0).await.unwrap();
    store
        .decide(&task_id, &reviewer("ann"), approve(&digest), T0)
        .await
        .unwrap();
    let sequenced = settled(store).await.sequence(1000).await.unwrap();
    assert_eq!(sequenced.appended, 6);
    let entries = store.entries(0, sequenced.head.size).await.unwrap();
    let heads: Vec<(u64, String)> = entries
        .iter()
        .map(|entry| {
            let head = loopgate_core::audit::entry::parse_head(entry).unwrap();
            (head.index, head.type_.into_owned())
        })
        .collect();
    let types: Vec<&str> = heads.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "system.created",
            "proposal.submitted",
            "proposal.routed",
            "task.created",
            "decision.recorded",
            "proposal.resolved"
        ]
    );
    assert!(
        heads
            .iter()
            .enumerate()
            .all(|(i, (index, _))| *index == i as u64)
    );
    // Entries carry digests and salted hashes, never payloads.
    assert!(
        entries
            .iter()
            .all(|e| !String::from_utf8_lossy(e).contains("\"n\":1"))
    );
    assert_eq!(
        sequenced.head.root,
        loopgate_core::audit::merkle::root_of(&entries)
    );
}

async fn the_log_grows_in_order_and_proves_inclusion(store: &dyn Store) {
    let system = setup(store).await;
    let mut previous = store.tree_head().await.unwrap();
    for n in 0..40 {
        let new = new_proposal(&system, n, None, json!({"n": n}), 1);
        store.submit(new, T0).await.unwrap();
        if n % 7 == 0 {
            let step = settled(store).await.sequence(5).await.unwrap();
            assert!(step.head.size >= previous.size);
            previous = step.head;
        }
    }
    while settled(store).await.sequence(100).await.unwrap().appended > 0 {}
    let head = store.tree_head().await.unwrap();
    assert_eq!(head.size, 1 + 40 * 3);
    let entries = store.entries(0, head.size).await.unwrap();
    assert_eq!(loopgate_core::audit::merkle::root_of(&entries), head.root);
    let indexes: Vec<u64> = (0..head.size).collect();
    let proofs = store.inclusion_proofs(indexes, head.size).await.unwrap();
    for (index, proof) in proofs.iter().enumerate() {
        let leaf = loopgate_core::audit::leaf_hash(&entries[index]);
        loopgate_core::audit::merkle::verify_inclusion(
            index as u64,
            head.size,
            &leaf,
            proof,
            &head.root,
        )
        .unwrap();
    }
    let old = loopgate_core::audit::merkle::root_of(&entries[..previous.size as usize]);
    let proof = store
        .consistency_proof(previous.size, head.size)
        .await
        .unwrap();
    loopgate_core::audit::merkle::verify_consistency(
        previous.size,
        head.size,
        &old,
        &head.root,
        &proof,
    )
    .unwrap();
    assert!(
        store
            .inclusion_proofs(vec![0], head.size + 1)
            .await
            .is_err()
    );
}

async fn erasure_keeps_the_log_and_drops_the_payload(store: &dyn Store) {
    let system = setup(store).await;
    let new = new_proposal(&system, 1, Some("k"), json!({"secret": "x"}), 1);
    let (id, task_id, digest) = (new.id.clone(), new.task_id.clone(), new.digest.clone());
    store.submit(new, T0).await.unwrap();
    assert!(matches!(
        store.erase(&id, "user:admin", "gdpr", T0).await,
        Err(TxError::Refused(_))
    ));
    store
        .decide(&task_id, &reviewer("ann"), approve(&digest), T0)
        .await
        .unwrap();
    settled(store).await.sequence(1000).await.unwrap();
    let before = store.tree_head().await.unwrap();
    let erased = store.erase(&id, "user:admin", "gdpr", T0).await.unwrap();
    assert!(erased.salt.is_empty() && erased.erased_at.is_some());
    assert_eq!(
        (erased.input.clone(), erased.output.clone()),
        (json!(null), json!(null))
    );
    assert_eq!(
        erased.digest, digest,
        "the salted digest stays; it no longer links"
    );
    let after = settled(store).await.sequence(1000).await.unwrap();
    assert_eq!(after.appended, 1);
    let proof = store
        .consistency_proof(before.size, after.head.size)
        .await
        .unwrap();
    let entries = store.entries(0, before.size).await.unwrap();
    let old = loopgate_core::audit::merkle::root_of(&entries);
    loopgate_core::audit::merkle::verify_consistency(
        before.size,
        after.head.size,
        &old,
        &after.head.root,
        &proof,
    )
    .unwrap();
}

fn new_policy(text: &str) -> NewPolicy {
    NewPolicy {
        version: format!("v-{text}"),
        text: text.into(),
        description: format!("publish {text}"),
        policy_ids: vec![],
    }
}

async fn activations_decide_the_live_and_shadow_versions(store: &dyn Store) {
    assert_eq!(store.policy_state().await.unwrap().live, None);
    let a = store
        .publish_policy(new_policy("a"), ActivationMode::Live, "user:ann", T0)
        .await
        .unwrap();
    let b = store
        .publish_policy(new_policy("b"), ActivationMode::Live, "user:ann", T0)
        .await
        .unwrap();
    let state = store.policy_state().await.unwrap();
    assert_eq!(state.live.unwrap().version, b.version);
    assert_eq!(state.shadow, None);

    // Publishing the same text again stores nothing new.
    let again = store
        .publish_policy(new_policy("a"), ActivationMode::Shadow, "user:ann", T0)
        .await
        .unwrap();
    assert_eq!(again.seq, a.seq);
    assert_eq!(store.policies().await.unwrap().len(), 2);
    let state = store.policy_state().await.unwrap();
    assert_eq!(state.live.as_ref().unwrap().version, b.version);
    assert_eq!(state.shadow.as_ref().unwrap().0.version, a.version);

    // Promoting the shadow ends it; rolling back makes an old version live.
    let state = store
        .activate_policy(&a.version, ActivationMode::Live, "promote", "user:ann", T0)
        .await
        .unwrap();
    assert_eq!(state.live.unwrap().version, a.version);
    assert_eq!(state.shadow, None);
    let state = store
        .activate_policy(
            &b.version,
            ActivationMode::Live,
            "roll back",
            "user:bob",
            T0,
        )
        .await
        .unwrap();
    assert_eq!(state.live.unwrap().version, b.version);
    assert!(matches!(
        store
            .activate_policy("nope", ActivationMode::Live, "x", "user:bob", T0)
            .await,
        Err(loopgate_store::StoreError::NotFound)
    ));
    assert!(
        store
            .activate_policy("", ActivationMode::ShadowOff, "x", "user:bob", T0)
            .await
            .is_err()
    );
    store
        .activate_policy(&a.version, ActivationMode::Shadow, "try a", "user:bob", T0)
        .await
        .unwrap();
    let state = store
        .activate_policy("", ActivationMode::ShadowOff, "enough", "user:bob", T0)
        .await
        .unwrap();
    assert_eq!(state.shadow, None);

    // One text published by writers at once is stored once (on PostgreSQL
    // the writers run in parallel).
    let together =
        (0..8).map(|_| store.publish_policy(new_policy("c"), ActivationMode::Live, "user:ann", T0));
    let stored: HashSet<i64> = futures::future::join_all(together)
        .await
        .into_iter()
        .map(|record| record.unwrap().seq)
        .collect();
    assert_eq!(stored.len(), 1, "one row for one text: {stored:?}");
    assert_eq!(store.policies().await.unwrap().len(), 3);
    store
        .activate_policy(&b.version, ActivationMode::Live, "back", "user:ann", T0)
        .await
        .unwrap();

    let history = store.activations().await.unwrap();
    let modes: Vec<(String, String, String)> = history
        .iter()
        .map(|it| (it.mode.clone(), it.reason.clone(), it.actor.clone()))
        .collect();
    assert_eq!(modes[0], ("live".into(), "back".into(), "user:ann".into()));
    assert_eq!(
        modes[9],
        ("shadow_off".into(), "enough".into(), "user:bob".into())
    );
    assert_eq!(
        modes[11],
        ("live".into(), "roll back".into(), "user:bob".into())
    );
    assert_eq!(history.len(), 16);
}

async fn automation_caps_hold_under_concurrency(store: &dyn Store) {
    let system = setup(store).await;
    // Twenty submissions in flight at once, each allowed under a cap of 5/h.
    let submissions = (0..20).map(|n| {
        let mut new = new_proposal(&system, n, None, json!({"n": n}), 1);
        let mut allow = new.routing.clone();
        allow.route = Route::Allow;
        // Over the cap: the review the test's routing had.
        allow.limits = vec![AutoLimit {
            policy: "cap".into(),
            rate: Rate {
                limit: 5,
                window: Duration::from_secs(3600),
            },
            review: new.routing.review.clone(),
        }];
        new.routing = allow;
        store.submit(new, T0)
    });
    let mut approved = 0;
    for result in futures::future::join_all(submissions).await {
        match result.unwrap() {
            Submitted::Created(record) if record.status == ProposalStatus::Approved => {
                approved += 1;
            }
            Submitted::Created(record) => assert_eq!(record.status, ProposalStatus::Pending),
            Submitted::Existing(_) => panic!("no keys"),
        }
    }
    assert_eq!(approved, 5, "exactly the cap is automated");
}

/// What a write reads goes out in one round trip, its writes with the
/// commit: at most three round trips to PostgreSQL for each API write
/// (SQLite runs in the process and counts none).
async fn an_api_write_costs_at_most_three_round_trips(store: &dyn Store) {
    let system = setup(store).await;
    let trips = || store.write_stats().round_trips;
    let spent_on = |what: &str, before: u64| {
        let spent = trips() - before;
        assert!(spent <= 3, "{what} took {spent} round trips");
    };
    // A submission that reads all admission can: its idempotency key, a
    // cap's use, and the grants its review allows.
    let with_all = |n: u32| {
        let key = format!("key{n}");
        let mut new = new_proposal(&system, n, Some(&key), json!({}), 1);
        new.routing.review.grant = Grantable::UpTo(Duration::from_secs(3_600));
        new.routing.limits = vec![AutoLimit {
            policy: "cap".into(),
            rate: Rate {
                limit: 5,
                window: Duration::from_secs(3_600),
            },
            review: new.routing.review.clone(),
        }];
        new
    };
    for n in 1..=3 {
        let new = with_all(n);
        let before = trips();
        store.submit(new, T0).await.unwrap();
        spent_on("a submission", before);
    }
    let first = with_all(1);
    let before = trips();
    let replayed = store.submit(first.clone(), T0).await.unwrap();
    assert!(matches!(replayed, Submitted::Existing(_)), "{replayed:?}");
    spent_on("a replayed submission", before);
    let lease = Duration::from_secs(60);
    let before_claim = trips();
    store
        .claim(&first.task_id, &reviewer("ann"), lease, T0)
        .await
        .unwrap();
    spent_on("a claim", before_claim);
    let before = trips();
    store
        .release(&first.task_id, &reviewer("ann"), T0)
        .await
        .unwrap();
    spent_on("a release", before);
    let mut offer = approve(&first.digest);
    offer.grant = Some(loopgate_core::GrantTerms {
        duration: Duration::from_secs(600),
        uses: None,
        scope: loopgate_core::GrantScope::SameSubject,
    });
    let before = trips();
    let decided = store
        .decide(&first.task_id, &reviewer("ann"), offer, T0)
        .await
        .unwrap();
    spent_on("a decision that makes a grant", before);
    assert!(decided.grant.is_some());
    let second = with_all(2);
    let before = trips();
    store.cancel(&second.id, "system:sys", T0).await.unwrap();
    spent_on("a cancellation", before);
}

async fn shadow_disagreements_are_recorded_and_replay_reads_history(store: &dyn Store) {
    let system = setup(store).await;
    for n in 0..4 {
        let mut new = new_proposal(&system, n, None, json!({"n": n}), 1);
        new.shadow = Some(ShadowOutcome {
            version: "shadow-v".into(),
            route: if n % 2 == 0 {
                Route::Allow
            } else {
                Route::Review
            },
            matched: vec!["p".into()],
            group: (n % 2 == 1).then(|| "g".into()),
            errors: (n < 3)
                .then(|| EvaluationError {
                    policy: "limit".into(),
                    kind: "type_error".into(),
                    message: format!("type error {n}"),
                })
                .into_iter()
                .collect(),
        });
        store.submit(new, T0).await.unwrap();
    }
    let summary = store.shadow_summary("shadow-v", T0, 10).await.unwrap();
    assert_eq!(summary.evaluated, 4);
    assert_eq!(summary.disagreements, 2);
    assert_eq!(
        summary.transitions,
        vec![("review".into(), "allow".into(), 2)]
    );
    assert_eq!(summary.recent.len(), 2);
    let [errors] = summary.errors.as_slice() else {
        panic!("{:?}", summary.errors)
    };
    assert_eq!((errors.policy.as_str(), errors.count), ("limit", 3));
    assert_eq!(errors.examples.len(), 3);
    assert!(errors.message.starts_with("type error"), "{errors:?}");

    assert_eq!(store.count_since(T0).await.unwrap(), 4);
    let first = store.replay_rows(T0, 0, 3).await.unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(first[0].route, Route::Review);
    assert_eq!(first[0].group.as_deref(), Some("g"));
    assert_eq!(first[0].subject["id"], "s0");
    let rest = store.replay_rows(T0, first[2].seq, 3).await.unwrap();
    assert_eq!(rest.len(), 1);
    let later = Timestamp::from_millis(T0.millis() + 1);
    assert_eq!(store.count_since(later).await.unwrap(), 0);
}

/// Every count the store keeps, by metric and key.
async fn all_counts(store: &dyn Store, system: &SystemId) -> Vec<(String, String, i64, f64, f64)> {
    let metrics = vec![
        metric::ROUTE,
        metric::STATUS,
        metric::DECIDER,
        metric::SUBMITTED,
        metric::RESOLVED,
        metric::REVIEW,
        metric::TIME,
        metric::TASK,
        metric::QUEUE_OPENED,
        metric::QUEUE_CLOSED,
        metric::CALIBRATION,
        metric::THRESHOLD,
        metric::AUTO,
        metric::QA,
        metric::FAIR_ALL,
        metric::FAIR,
        metric::MULTI,
        metric::PAIR,
        metric::FLEISS,
        metric::FLEISS_CATEGORY,
        metric::KRIPPENDORFF,
        metric::KRIPPENDORFF_VALUE,
        metric::REVIEWER,
        metric::REVIEWER_TIME,
    ];
    let query = TotalsQuery {
        system: system.clone(),
        action: None,
        from_day: i64::MIN,
        metrics,
    };
    let mut rows: Vec<_> = store
        .analytics_totals(query)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.n != 0 || t.a.abs() > 1e-9 || t.b.abs() > 1e-9)
        .map(|t| (t.metric, t.key, t.n, t.a, t.b))
        .collect();
    rows.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    rows
}

/// The count `n` of `metric` and `key` among `counts` (0 when absent).
fn count_of(counts: &[(String, String, i64, f64, f64)], metric: &str, key: &str) -> i64 {
    counts
        .iter()
        .find(|c| c.0 == metric && c.1 == key)
        .map_or(0, |c| c.2)
}

/// Rebuilds the counts from the proposals and checks that they equal
/// `counts`, the ones kept change by change.
async fn assert_a_rebuild_gives(
    store: &dyn Store,
    system: &SystemId,
    counts: &[(String, String, i64, f64, f64)],
) {
    store.rebuild_analytics().await.unwrap();
    let rebuilt = all_counts(store, system).await;
    assert_eq!(counts.len(), rebuilt.len(), "{counts:#?}\n{rebuilt:#?}");
    for (kept, fresh) in counts.iter().zip(&rebuilt) {
        assert_eq!((&kept.0, &kept.1, kept.2), (&fresh.0, &fresh.1, fresh.2));
        assert!(
            (kept.3 - fresh.3).abs() < 1e-6 && (kept.4 - fresh.4).abs() < 1e-6,
            "{kept:?} {fresh:?}"
        );
    }
}

async fn analytics_counts_follow_every_change(store: &dyn Store) {
    let system = setup(store).await;
    let mut ids = Vec::new();
    let mut submissions = Vec::new();
    for n in 0..8 {
        let mut new = new_proposal(&system, n, None, json!({"n": n}), 1 + n % 2);
        new.confidence = Some(f64::from(n) / 8.0 + 0.01);
        new.subject["attributes"] =
            json!({"region": if n % 2 == 0 { "eu" } else { "us" }, "age": n});
        if n == 7 {
            new.routing.review.sla = Some(Duration::from_secs(60));
        }
        ids.push((new.id.clone(), new.task_id.clone(), new.digest.clone()));
        submissions.push(store.submit(new, T0));
    }
    // At once: the writer sums the counts of a group before its commit.
    for submitted in futures::future::join_all(submissions).await {
        submitted.unwrap();
    }
    let at = |s: u64| T0.plus(Duration::from_secs(s));
    let verdict = |verdict: Verdict, digest: &Digest| DecisionInput {
        verdict,
        output: (verdict == Verdict::Modify).then(|| json!({"edited": true})),
        ..approve(digest)
    };
    // One reviewer approves, rejects, modifies; two reviewers agree and disagree.
    for (i, who, v) in [
        (0, "ann", Verdict::Approve),
        (2, "ann", Verdict::Reject),
        (4, "bob", Verdict::Modify),
        (1, "ann", Verdict::Approve),
        (1, "bob", Verdict::Approve),
        (3, "ann", Verdict::Approve),
        (3, "bob", Verdict::Reject),
        (5, "bob", Verdict::Approve),
    ] {
        let (_, task, digest) = &ids[i];
        store
            .decide(
                task,
                &reviewer(who),
                verdict(v, digest),
                at(5 * i as u64 + 1),
            )
            .await
            .unwrap();
    }
    store.cancel(&ids[6].0, "system:sys", at(50)).await.unwrap();
    store.run_timers(at(3_600), 100).await.unwrap();
    store
        .erase(&ids[0].0, "user:admin", "asked", at(4_000))
        .await
        .unwrap();

    let counts = all_counts(store, &system).await;
    let n = |metric: &str, key: &str| count_of(&counts, metric, key);
    assert_eq!(n(metric::ROUTE, "review"), 8);
    assert_eq!(n(metric::REVIEW, "judged"), 6);
    assert_eq!(n(metric::REVIEW, "overridden"), 3);
    assert_eq!(n(metric::MULTI, ""), 2);
    assert_eq!(n(metric::STATUS, "cancelled"), 1);
    assert_eq!(n(metric::TASK, "breach"), 1, "the expired task");
    assert_eq!(
        n(metric::FAIR, "region\u{1f}us\u{1f}13\u{1f}1"),
        1,
        "the second proposal, approved twice"
    );
    // Erasure dropped the first proposal's attributes.
    assert!(
        !counts
            .iter()
            .any(|c| c.0 == metric::FAIR && c.1.starts_with("age\u{1f}0\u{1f}"))
    );
    let filter = AnalyticsFilter {
        system: system.clone(),
        action: None,
        from: T0,
        to: at(10_000),
    };
    let disagreed = store.disagreements(filter, 10).await.unwrap();
    assert_eq!(disagreed, vec![ids[3].0.clone()]);

    // The counts kept change by change equal the counts rebuilt from scratch.
    assert_a_rebuild_gives(store, &system, &counts).await;
}

/// Writers append their count differences and fold them into the counts
/// every `FOLD_EVERY` (64) rows they appended: 600 submissions and 300
/// decisions, eight at a time, make more than 64 groups on SQLite and more
/// than 64 jobs for each of PostgreSQL's eight writers, which then fold
/// side by side. What is read before and after the folds is what a rebuild
/// from the proposals gives.
async fn analytics_counts_stay_current_across_folds(store: &dyn Store) {
    let system = setup(store).await;
    let at = |s: u64| T0.plus(Duration::from_secs(s));
    let made = enough_writes_for_every_writer_to_fold(store, &system).await;
    // Half of them decided, a third of those rejected.
    let ann = reviewer("ann");
    let decided: Vec<_> = made.iter().step_by(2).enumerate().collect();
    for (i, chunk) in decided.chunks(8).enumerate() {
        let decisions = chunk.iter().map(|(k, (task, digest))| {
            let mut input = approve(digest);
            if k % 3 == 0 {
                input.verdict = Verdict::Reject;
            }
            store.decide(task, &ann, input, at(1_000 + i as u64))
        });
        for decided in futures::future::join_all(decisions.collect::<Vec<_>>()).await {
            decided.unwrap();
        }
    }
    let counts = all_counts(store, &system).await;
    let n = |metric: &str, key: &str| count_of(&counts, metric, key);
    assert_eq!(n(metric::ROUTE, "review"), 600);
    assert_eq!(n(metric::STATUS, "pending"), 300);
    assert_eq!(n(metric::STATUS, "approved"), 200);
    assert_eq!(n(metric::STATUS, "rejected"), 100);
    assert_eq!(n(metric::REVIEW, "judged"), 300);
    let now = at(2_000);
    assert_eq!(
        store.queue_depth(now).await.unwrap(),
        vec![("g".to_owned(), 300)]
    );

    assert_a_rebuild_gives(store, &system, &counts).await;
    assert_eq!(
        store.queue_depth(now).await.unwrap(),
        vec![("g".to_owned(), 300)]
    );
}

/// A row of analytics differences that does not read as the writers write
/// them (here: the database edited by hand) fails no write, and does not
/// wait for ever: the fold that meets it rebuilds the counts from the
/// proposals, which empties the table. On both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_row_of_analytics_differences_is_rebuilt_over() {
    const SPOIL: &str = r#"INSERT INTO analytics_deltas (rows) VALUES ('[["x"]]')"#;
    const LEFT: &str =
        r#"SELECT CAST(COUNT(*) AS BIGINT) FROM analytics_deltas WHERE rows = '[["x"]]'"#;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loopgate.db");
    let store = SqlStore::open(&path).unwrap();
    let system = setup(&store).await;
    let sqlite = rusqlite::Connection::open(&path).unwrap();
    sqlite.busy_timeout(Duration::from_secs(5)).unwrap();
    sqlite.execute_batch(SPOIL).unwrap();
    enough_writes_for_every_writer_to_fold(&store, &system).await;
    let left: i64 = sqlite.query_row(LEFT, [], |row| row.get(0)).unwrap();
    assert_eq!(left, 0, "a fold met the row and rebuilt the counts");
    assert_the_counts_of_600_pending(&store, &system).await;

    let database = TempDatabase::create().unwrap();
    let store = SqlStore::connect(&database.url, PgOptions::default())
        .await
        .unwrap();
    let system = setup(&store).await;
    let pg = |sql: &'static str| {
        let url = database.url.clone();
        tokio::task::spawn_blocking(move || {
            let mut pg = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            pg.batch_execute(sql).unwrap();
            pg.query_one(LEFT, &[]).unwrap().get::<_, i64>(0)
        })
    };
    assert_eq!(pg(SPOIL).await.unwrap(), 1);
    enough_writes_for_every_writer_to_fold(&store, &system).await;
    assert_eq!(
        pg("").await.unwrap(),
        0,
        "a fold met the row and rebuilt the counts"
    );
    assert_the_counts_of_600_pending(&store, &system).await;
}

/// 600 submissions (proposal `n` at `T0 + n` seconds, with a confidence
/// and a region, each with a task), eight at a time: more than 64 groups on
/// SQLite and more than 64 jobs for each of PostgreSQL's eight writers, so
/// that each folds. Returns each one's task and digest.
async fn enough_writes_for_every_writer_to_fold(
    store: &dyn Store,
    system: &SystemId,
) -> Vec<(TaskId, Digest)> {
    let mut made = Vec::new();
    for chunk in (0..600_u32).collect::<Vec<_>>().chunks(8) {
        let submissions = chunk.iter().map(|&n| {
            let mut new = new_proposal(system, n, None, json!({"n": n}), 1);
            new.confidence = Some(f64::from(n % 100) / 100.0);
            let region = ["eu", "us", "apac"][n as usize % 3];
            new.subject["attributes"] = json!({ "region": region });
            made.push((new.task_id.clone(), new.digest.clone()));
            store.submit(new, T0.plus(Duration::from_secs(u64::from(n))))
        });
        for submitted in futures::future::join_all(submissions.collect::<Vec<_>>()).await {
            submitted.unwrap();
        }
    }
    made
}

/// The counts after [`enough_writes_for_every_writer_to_fold`], read and
/// rebuilt.
async fn assert_the_counts_of_600_pending(store: &dyn Store, system: &SystemId) {
    let counts = all_counts(store, system).await;
    assert_eq!(count_of(&counts, metric::ROUTE, "review"), 600);
    assert_eq!(count_of(&counts, metric::STATUS, "pending"), 600);
    assert_a_rebuild_gives(store, system, &counts).await;
}

/// What `queue_depth` must answer: the tasks waiting for a reviewer (open,
/// or claimed with a lapsed lease), counted one by one.
async fn waiting_tasks(store: &dyn Store, now: Timestamp) -> Vec<(String, u64)> {
    let mut by_group = std::collections::BTreeMap::new();
    let filter = TaskFilter {
        limit: 1000,
        ..TaskFilter::default()
    };
    for record in store.tasks(filter, now).await.unwrap().items {
        let task = &record.task;
        let lapsed = task.lease_expires_at.is_some_and(|at| at <= now);
        if task.state == TaskState::Open || (task.state == TaskState::Claimed && lapsed) {
            *by_group.entry(task.group.clone()).or_insert(0) += 1;
        }
    }
    by_group.into_iter().collect()
}

async fn the_queue_depth_follows_every_change(store: &dyn Store) {
    let system = setup(store).await;
    let at = |s: u64| T0.plus(Duration::from_secs(s));
    let mut tasks = Vec::new();
    let mut submissions = Vec::new();
    for n in 0..6 {
        let mut new = new_proposal(&system, n, None, json!({"n": n}), 1);
        if n == 5 {
            // Escalates from `g` to `h` after a minute.
            new.routing.review.sla = Some(Duration::from_secs(60));
            new.routing.review.escalate_to = vec!["h".into()];
        }
        tasks.push((new.id.clone(), new.task_id.clone(), new.digest.clone()));
        submissions.push(store.submit(new, T0));
    }
    for submitted in futures::future::join_all(submissions).await {
        submitted.unwrap();
    }
    let check = async |now: Timestamp, expected: &[(&str, u64)]| {
        let depth = store.queue_depth(now).await.unwrap();
        let expected: Vec<(String, u64)> = expected
            .iter()
            .map(|(g, n)| ((*g).to_owned(), *n))
            .collect();
        assert_eq!(depth, expected, "at {now:?}");
        assert_eq!(depth, waiting_tasks(store, now).await, "at {now:?}");
    };
    check(at(1), &[("g", 6)]).await;

    // A claim holds a task out of the queue until its lease lapses.
    let lease = Duration::from_secs(30);
    store
        .claim(&tasks[0].1, &reviewer("ann"), lease, at(1))
        .await
        .unwrap();
    check(at(2), &[("g", 5)]).await;
    check(at(40), &[("g", 6)]).await;
    store
        .claim(&tasks[1].1, &reviewer("bob"), lease, at(2))
        .await
        .unwrap();
    store
        .release(&tasks[1].1, &reviewer("bob"), at(3))
        .await
        .unwrap();
    check(at(4), &[("g", 5)]).await;

    // Decisions and a cancellation take tasks out; a deadline moves one.
    let decide = async |i: usize, s: u64| {
        let (_, task, digest) = &tasks[i];
        store
            .decide(task, &reviewer("ann"), approve(digest), at(s))
            .await
            .unwrap();
    };
    decide(0, 5).await;
    decide(2, 6).await;
    store
        .cancel(&tasks[3].0, "system:sys", at(7))
        .await
        .unwrap();
    check(at(8), &[("g", 3)]).await;
    store.run_timers(at(61), 100).await.unwrap();
    check(at(62), &[("g", 2), ("h", 1)]).await;

    // The counts kept change by change equal the counts rebuilt.
    store.rebuild_analytics().await.unwrap();
    check(at(62), &[("g", 2), ("h", 1)]).await;
    decide(1, 63).await;
    decide(4, 64).await;
    check(at(65), &[("h", 1)]).await;
}

async fn the_webhook_outbox_delivers_each_proposal_in_order(store: &dyn Store) {
    let system = setup(store).await;
    // Before the webhook: not delivered.
    store
        .submit(new_proposal(&system, 0, None, json!({}), 1), T0)
        .await
        .unwrap();
    let webhook = webhook_of(
        &system,
        vec![EventKind::ProposalResolved, EventKind::TaskCreated],
    );
    drain_deliveries(store).await;
    store
        .set_webhook(webhook.clone(), "user:admin", T0)
        .await
        .unwrap();
    assert_eq!(
        store.webhook(&system).await.unwrap().unwrap().types,
        webhook.types
    );

    let mut tasks = Vec::new();
    for n in 1..=3 {
        let new = new_proposal(&system, n, None, json!({}), 1);
        tasks.push((new.task_id.clone(), new.digest.clone()));
        store.submit(new, T0).await.unwrap();
    }
    let (task, digest) = &tasks[0];
    store
        .decide(task, &reviewer("ann"), approve(digest), T0)
        .await
        .unwrap();
    // Twice over the same events queues nothing twice.
    assert!(
        sequenced(store)
            .await
            .enqueue_deliveries(T0, 2)
            .await
            .unwrap()
            == 2
    );
    while sequenced(store)
        .await
        .enqueue_deliveries(T0, 2)
        .await
        .unwrap()
        == 2
    {}
    assert_eq!(
        sequenced(store)
            .await
            .enqueue_deliveries(T0, 1000)
            .await
            .unwrap(),
        0
    );

    let filter = |state| DeliveryFilter {
        system: system.clone(),
        state,
        before: None,
        limit: 50,
    };
    let all = store.deliveries(filter(None)).await.unwrap().items;
    let kinds: Vec<&str> = all.iter().rev().map(|d| d.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "task.created",
            "task.created",
            "task.created",
            "proposal.resolved"
        ]
    );

    // One due delivery per proposal: the resolution waits for its task.created.
    let due = store.due_deliveries(T0, vec![], 100).await.unwrap();
    assert_eq!(due.len(), 3);
    assert!(
        due.iter()
            .all(|d| d.event.kind == "task.created" && d.url == webhook.url)
    );
    let first = due
        .iter()
        .find(|d| d.event.subject == all[0].subject.clone().into())
        .unwrap()
        .id;
    let result = |id, state, next_at| AttemptResult {
        id,
        time: T0,
        status: Some(500),
        error: Some("the endpoint answered HTTP 500".into()),
        duration_ms: 3,
        state,
        next_at,
    };
    let later = T0.plus(Duration::from_secs(5));
    store
        .record_attempts(vec![result(first, DeliveryState::Pending, later)])
        .await
        .unwrap();
    let due = store.due_deliveries(T0, vec![], 100).await.unwrap();
    assert_eq!(
        due.len(),
        2,
        "the failed one waits for its retry, and so does what follows it"
    );
    assert!(
        store
            .due_deliveries(T0, vec![system.clone()], 100)
            .await
            .unwrap()
            .is_empty()
    );
    let mut done = result(first, DeliveryState::Delivered, later);
    (done.status, done.error) = (Some(204), None);
    store.record_attempts(vec![done]).await.unwrap();
    let due = store.due_deliveries(later, vec![], 100).await.unwrap();
    assert!(
        due.iter().any(|d| d.event.kind == "proposal.resolved"),
        "{due:?}"
    );

    let one = store.delivery(&system, first).await.unwrap().unwrap();
    assert_eq!(
        (one.state, one.attempts, one.history.len()),
        (DeliveryState::Delivered, 2, 2)
    );
    assert_eq!(one.history[0].status, Some(500));
    let delivered = store
        .deliveries(filter(Some(DeliveryState::Delivered)))
        .await
        .unwrap();
    assert_eq!(delivered.items.len(), 1);

    // Redelivery revives a delivered message; removal fails what is pending.
    let again = store.redeliver(&system, first, later).await.unwrap();
    assert_eq!(again.state, DeliveryState::Pending);
    assert!(
        store
            .remove_webhook(&system, "user:admin", later)
            .await
            .unwrap()
    );
    let failed = store
        .deliveries(filter(Some(DeliveryState::Failed)))
        .await
        .unwrap()
        .items;
    assert_eq!(failed.len(), 4);
    assert!(
        failed
            .iter()
            .all(|d| d.last_error.as_deref() == Some("webhook removed"))
    );
    assert!(
        store
            .due_deliveries(later, vec![], 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// With no webhook and no group's notifications set, the outbox workers'
/// wake-ups pass no event (the cursors wait for the first settings), twice
/// in a row: the second time from what the store remembers.
async fn outboxes_without_settings_queue_nothing(store: &dyn Store) {
    let system = setup(store).await;
    store
        .submit(new_proposal(&system, 0, None, json!({}), 1), T0)
        .await
        .unwrap();
    let store = sequenced(store).await;
    for _ in 0..2 {
        assert_eq!(store.enqueue_deliveries(T0, 1000).await.unwrap(), 0);
        assert_eq!(
            store.enqueue_notifications(T0, None, 1000).await.unwrap(),
            0
        );
        assert_eq!(
            store
                .enqueue_notifications(T0, Some(0.5), 1000)
                .await
                .unwrap(),
            0
        );
    }
}

async fn a_second_webhook_gets_only_what_comes_after_it(store: &dyn Store) {
    let first = setup(store).await;
    let second = create_system(store, "other").await;
    let webhook = |system: &SystemId| webhook_of(system, vec![EventKind::TaskCreated]);
    store
        .set_webhook(webhook(&first), "user:admin", T0)
        .await
        .unwrap();
    // The second system's proposal comes before its webhook…
    store
        .submit(new_proposal(&second, 1, None, json!({}), 1), T0)
        .await
        .unwrap();
    drain_deliveries(store).await;
    store
        .set_webhook(webhook(&second), "user:admin", T0)
        .await
        .unwrap();
    // …and one after it.
    store
        .submit(new_proposal(&second, 2, None, json!({}), 1), T0)
        .await
        .unwrap();
    drain_deliveries(store).await;
    let queued = store
        .deliveries(DeliveryFilter {
            system: second.clone(),
            state: None,
            before: None,
            limit: 50,
        })
        .await
        .unwrap();
    let proposal = new_proposal(&second, 2, None, json!({}), 1).id;
    let subjects: Vec<&str> = queued.items.iter().map(|d| d.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [proposal.as_str()],
        "setting a webhook must not replay the past"
    );
}

/// `loopgate migrate-data`: an embedded install moves to PostgreSQL with
/// every row, its audit log verifying across the move, and the moved store
/// carrying on where the old one stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_install_moves_to_postgres_and_its_log_still_verifies() {
    use loopgate_core::audit::merkle;
    use loopgate_store::sql::admin::{self, Database};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loopgate.db");
    let (pending_task, pending_digest, before) = {
        let store = SqlStore::open(&path).unwrap();
        let system = setup(&store).await;
        // The group hears by email: the copy moves the outbox too.
        store
            .set_group_notifications(group_email("g"), "user:admin", T0)
            .await
            .unwrap();
        for n in 0..5 {
            let new = new_proposal(&system, n, None, json!({"n": n}), 1);
            let (task, digest) = (new.task_id.clone(), new.digest.clone());
            store.submit(new, T0).await.unwrap();
            store
                .decide(&task, &reviewer("ann"), approve(&digest), T0)
                .await
                .unwrap();
        }
        let pending = new_proposal(&system, 9, Some("k"), json!({}), 1);
        let (task, digest) = (pending.task_id.clone(), pending.digest.clone());
        store.submit(pending, T0).await.unwrap();
        assert!(
            0 < sequenced(&store)
                .await
                .enqueue_notifications(T0, None, 1000)
                .await
                .unwrap()
        );
        settled(&store).await.sequence(1000).await.unwrap();
        (task, digest, store.tree_head().await.unwrap())
    };

    let database = TempDatabase::create().unwrap();
    let from = Database::parse(&format!("sqlite://{}", path.display())).unwrap();
    let to = Database::parse(&database.url).unwrap();
    let report = admin::copy(&from, &to).await.unwrap();
    let count = |table: &str| report.iter().find(|(t, _)| t == table).unwrap().1;
    assert_eq!((count("proposals"), count("decisions")), (6, 5));
    assert_eq!(count("notifications"), 6, "one email per task");
    assert_eq!(count("group_notifications"), 1);
    assert_eq!(count("events"), before.size);
    // A second copy into the same database is refused: it is in use.
    assert!(admin::copy(&from, &to).await.is_err());

    let store = SqlStore::connect(&database.url, PgOptions::default())
        .await
        .unwrap();
    assert_eq!(store.tree_head().await.unwrap(), before);
    let entries = store.entries(0, before.size).await.unwrap();
    assert_eq!(merkle::root_of(&entries), before.root);
    // It carries on: the pending review is decided, the log grows consistently.
    store
        .decide(
            &pending_task,
            &reviewer("ann"),
            approve(&pending_digest),
            T0,
        )
        .await
        .unwrap();
    let new = new_proposal(&SystemId::parse("sys").unwrap(), 10, None, json!({}), 1);
    store.submit(new, T0).await.unwrap();
    // The outbox carries on too: new messages get new ids.
    assert!(
        0 < sequenced(&store)
            .await
            .enqueue_notifications(T0, None, 1000)
            .await
            .unwrap()
    );
    let outbox = store
        .notifications(loopgate_store::NotificationFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(outbox.items.len(), 7, "{:?}", outbox.items);
    let after = settled(&store).await.sequence(1000).await.unwrap().head;
    assert!(after.size > before.size);
    let proof = store
        .consistency_proof(before.size, after.size)
        .await
        .unwrap();
    merkle::verify_consistency(before.size, after.size, &before.root, &after.root, &proof).unwrap();
    let page = store
        .proposals(ProposalFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 7);
    assert!(
        page.items[0].seq > page.items[1].seq,
        "new rows come after the copied ones"
    );
}

/// PostgreSQL faults: every connection of the store is killed (as by a
/// server restart). Calls on a dead connection fail as `Unavailable`, and
/// the store recovers by itself: the next calls reconnect, what was
/// acknowledged is there, and the replica leads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_recovers_when_postgres_drops_its_connections() {
    let database = TempDatabase::create().unwrap();
    let writers = PgOptions::default().writers;
    let store = SqlStore::connect(&database.url, PgOptions::default())
        .await
        .unwrap();
    let system = setup(&store).await;
    store
        .submit(new_proposal(&system, 1, None, json!({}), 1), T0)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !store.leads() {
        assert!(std::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let url = database.url.clone();
    let killed = tokio::task::spawn_blocking(move || {
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap()
            .len()
    })
    .await
    .unwrap();
    assert!(3 <= killed, "killed {killed} sessions");

    // Each call fails at most once per dead writer connection (the writers
    // take jobs in turn), then works.
    let mut n = 2;
    let mut refusals = 0;
    loop {
        match store
            .submit(new_proposal(&system, n, None, json!({}), 1), T0)
            .await
        {
            Ok(_) => break,
            Err(TxError::Store(StoreError::Unavailable(_))) => refusals += 1,
            Err(other) => panic!("expected Unavailable, got {other:?}"),
        }
        n += 1;
        assert!(
            refusals <= writers,
            "the writers do not reconnect: {refusals} refusals from {writers} writers"
        );
    }
    let mut reads = 0;
    let listed = loop {
        match store
            .proposals(ProposalFilter {
                limit: 100,
                ..Default::default()
            })
            .await
        {
            Ok(page) => break page,
            Err(StoreError::Unavailable(_)) => reads += 1,
            Err(other) => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(reads < 20, "the readers do not reconnect");
    };
    assert_eq!(
        listed.items.len(),
        2,
        "the acknowledged proposals are there"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !store.leads() {
        assert!(
            std::time::Instant::now() < deadline,
            "leadership did not come back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// PostgreSQL replicas: a waiter on one replica wakes from the commit that
/// settled its proposal on another, before any sequencer step gave the
/// events positions (the log is still empty here: no sequencer runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_proposal_wakes_other_replicas_from_its_commit() {
    let (_database, here, there) = two_replicas().await;
    let (sender, mut woken) = tokio::sync::mpsc::unbounded_channel();
    here.watch_settled(Box::new(move |id| {
        let _ = sender.send(id.clone());
    }));
    let system = setup(&there).await;
    let approved = new_proposal(&system, 1, None, json!({}), 1);
    let (task_id, digest, approved_id) = (
        approved.task_id.clone(),
        approved.digest.clone(),
        approved.id.clone(),
    );
    let cancelled = new_proposal(&system, 2, None, json!({}), 1);
    let cancelled_id = cancelled.id.clone();
    there.submit(approved, T0).await.unwrap();
    there.submit(cancelled, T0).await.unwrap();
    there
        .decide(&task_id, &reviewer("ann"), approve(&digest), T0)
        .await
        .unwrap();
    there.cancel(&cancelled_id, "ann", T0).await.unwrap();
    for expected in [approved_id.clone(), cancelled_id] {
        let id = tokio::time::timeout(Duration::from_secs(5), woken.recv())
            .await
            .expect("no wake-up within 5 s")
            .unwrap();
        assert_eq!(id, expected);
    }
    assert_eq!(here.last_event_seq().await.unwrap(), 0, "no step ran");
    assert_eq!(
        here.proposal(&approved_id).await.unwrap().unwrap().status,
        ProposalStatus::Approved,
        "what woke the waiter is committed"
    );
}

/// The dispatcher skips its read while it knows no webhook is set: a
/// webhook set through this replica counts at once, one set through
/// another within a second (`known::TRUSTED_FOR`), and no event is lost
/// meanwhile (the cursor waits for the first webhook).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_set_on_another_replica_is_served_within_a_second() {
    let (_database, here, there) = two_replicas().await;
    let system = setup(&there).await;
    let webhook = |system: &SystemId| webhook_of(system, vec![EventKind::ProposalSubmitted]);
    // `here` looks, finds no webhook, and remembers it.
    assert_eq!(here.enqueue_deliveries(T0, 1000).await.unwrap(), 0);
    there
        .set_webhook(webhook(&system), "user:admin", T0)
        .await
        .unwrap();
    there
        .submit(new_proposal(&system, 1, None, json!({}), 1), T0)
        .await
        .unwrap();
    let set_at = std::time::Instant::now();
    let mut queued = 0;
    while queued == 0 && set_at.elapsed() < Duration::from_secs(5) {
        queued = sequenced(&here)
            .await
            .enqueue_deliveries(T0, 1000)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        0 < queued,
        "the submission's events after the webhook are queued"
    );
    assert!(
        set_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        set_at.elapsed()
    );

    // On the replica that set it, a webhook counts at once.
    let other = create_system(&here, "other-system").await;
    here.remove_webhook(&system, "user:admin", T0)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(here.enqueue_deliveries(T0, 1000).await.unwrap(), 0);
    here.set_webhook(webhook(&other), "user:admin", T0)
        .await
        .unwrap();
    here.submit(new_proposal(&other, 2, None, json!({}), 1), T0)
        .await
        .unwrap();
    let queued = sequenced(&here)
        .await
        .enqueue_deliveries(T0, 1000)
        .await
        .unwrap();
    assert!(0 < queued, "queued at once");
}

/// Before `policies.version` was unique, two writers publishing one text at
/// once on PostgreSQL could both store it. The migration that makes it
/// unique keeps the first copy of each text; its SQL runs here on both
/// stores, against tables that hold such copies.
#[tokio::test]
async fn the_policy_version_migration_keeps_the_first_copy_of_a_text() {
    const COPIES: &str = "INSERT INTO policies (version, text, description, policy_ids, created_by, created_at)
        VALUES ('v1', 't', 'first', '[]', 'u', 1), ('v1', 't', 'second', '[]', 'u', 2), ('v2', 't2', 'other', '[]', 'u', 3)";
    let expected = vec![
        ("v1".to_owned(), "first".to_owned()),
        ("v2".to_owned(), "other".to_owned()),
    ];

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loopgate.db");
    drop(SqlStore::open(&path).unwrap());
    let sqlite = rusqlite::Connection::open(&path).unwrap();
    sqlite
        .execute_batch(&format!("DROP INDEX policies_version; {COPIES};"))
        .unwrap();
    sqlite
        .execute_batch(include_str!(
            "../migrations/sqlite/0021_policy_versions.sql"
        ))
        .unwrap();
    let mut statement = sqlite
        .prepare("SELECT version, description FROM policies ORDER BY seq")
        .unwrap();
    let kept: Vec<(String, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kept, expected);
    assert!(
        sqlite.execute_batch(COPIES).is_err(),
        "the version is unique"
    );

    let database = TempDatabase::create().unwrap();
    drop(
        SqlStore::connect(&database.url, PgOptions::default())
            .await
            .unwrap(),
    );
    let url = database.url.clone();
    let kept = tokio::task::spawn_blocking(move || {
        let mut pg = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        pg.batch_execute(&format!("DROP INDEX policies_version; {COPIES};"))
            .unwrap();
        pg.batch_execute(include_str!(
            "../migrations/postgres/0016_policy_versions.sql"
        ))
        .unwrap();
        let kept: Vec<(String, String)> = pg
            .query(
                "SELECT version, description FROM policies ORDER BY seq",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        assert!(pg.batch_execute(COPIES).is_err(), "the version is unique");
        kept
    })
    .await
    .unwrap();
    assert_eq!(kept, expected);
}
