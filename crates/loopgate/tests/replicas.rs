//! Replicas: three real servers on one PostgreSQL database, submitters and
//! reviewers spread over them (a two-approval quorum, so one proposal's
//! approvals land on different replicas) and waiters long-polling on a
//! replica other than the one that decides. One replica is SIGKILLed in the
//! middle. Afterwards every invariant is checked through a survivor: each
//! acknowledged proposal and decision is there, nothing is resolved twice,
//! quorums count distinct reviewers, every waiter was answered, and the
//! audit log exports and verifies offline.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopgate_store::testing::TempDatabase;
use serde_json::{Value, json};

mod common;

use common::{ADMIN, assert_replayed, call, export_and_verify, start_with, system_key};

const SUBMITTERS: usize = 25;
const REVIEWERS: usize = 25;
const USERS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_lose_nothing_when_one_is_killed() {
    let database = TempDatabase::create().unwrap();
    // One data directory: the replicas share the audit signing key in it.
    let dir = tempfile::tempdir().unwrap();
    let url = database.url.clone();
    let flags = ["--database-url", url.as_str()];
    let first = start_with(dir.path(), &flags);
    let mut replicas = vec![
        first,
        start_with(dir.path(), &flags),
        start_with(dir.path(), &flags),
    ];
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;

    let key = system_key(&http, &bases[0]).await;
    let mut tokens = Vec::new();
    for n in 0..USERS {
        let (status, user) = call(&http, post.clone(), format!("{}/v1/users", bases[n % 3]), ADMIN,
            Some(json!({"username": format!("rev{n}"), "roles": ["reviewer"], "groups": ["reviewers"]}))).await.unwrap();
        assert_eq!(status, 201, "{user}");
        let (_, token) = call(
            &http,
            post.clone(),
            format!(
                "{}/v1/users/{}/tokens",
                bases[n % 3],
                user["id"].as_str().unwrap()
            ),
            ADMIN,
            None,
        )
        .await
        .unwrap();
        tokens.push((
            format!("rev{n}"),
            token["secret"].as_str().unwrap().to_owned(),
        ));
    }
    // Published on one replica, applied by all (they follow each other's events).
    let policy = "@id(\"quorum\") @reviewers(\"reviewers\") @approvals(\"2\")\npermit (principal, action, resource);";
    let (status, body) = call(
        &http,
        post.clone(),
        format!("{}/v1/policies", bases[1]),
        ADMIN,
        Some(json!({"text": policy, "description": "two approvals"})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let version = body["version"].as_str().unwrap().to_owned();
    // Every replica routes by it within moments: probes until each does.
    for (i, base) in bases.iter().enumerate() {
        let mut probes = 0;
        loop {
            probes += 1;
            let body = json!({"action": "probe", "subject": {"type": "T", "id": format!("probe{i}-{probes}")}, "output": {}});
            let (status, probe) = call(
                &http,
                post.clone(),
                format!("{base}/v1/proposals"),
                &key,
                Some(body),
            )
            .await
            .unwrap();
            assert_eq!(status, 201, "{probe}");
            if probe["policy_version"] == json!(version) {
                break;
            }
            assert!(
                probes < 100,
                "replica {i} still routes by {} after 2 s",
                probe["policy_version"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let dead: Arc<AtomicBool> = Arc::default();
    let stop: Arc<AtomicBool> = Arc::default();
    // Acknowledged: idempotency key → proposal id; (proposal, reviewer) decisions.
    let accepted: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let decided: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    // What each waiter was told in the end: proposal → status.
    let answers: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    // Replica `i` unless it is the killed one.
    let pick = {
        let dead = Arc::clone(&dead);
        let bases = bases.clone();
        move |i: usize| -> String {
            let i = i % 3;
            match dead.load(Ordering::SeqCst) && i == 2 {
                true => bases[i - 1].clone(),
                false => bases[i].clone(),
            }
        }
    };

    let mut workers = Vec::new();
    for s in 0..SUBMITTERS {
        let (http, key, accepted, answers, stop, pick) = (
            http.clone(),
            key.clone(),
            Arc::clone(&accepted),
            Arc::clone(&answers),
            Arc::clone(&stop),
            pick.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let idem = format!("s{s}-{n}");
                let body = json!({"action": "a", "subject": {"type": "T", "id": idem}, "output": {"n": n}, "idempotency_key": idem});
                let id = match call(&http, reqwest::Method::POST, format!("{}/v1/proposals", pick(s)), &key, Some(body)).await {
                    Ok((201 | 200, body)) => body["id"].as_str().unwrap().to_owned(),
                    // The replica died under the request: retry elsewhere with the same key.
                    Ok((503, _)) | Err(_) => continue,
                    Ok((status, body)) => panic!("submit: unexpected {status}: {body}"),
                };
                accepted.lock().unwrap().insert(idem, id.clone());
                // Wait on another replica than the one it was submitted to.
                let mut attempt = s + 1;
                let answer = loop {
                    match call(&http, reqwest::Method::GET, format!("{}/v1/proposals/{id}?wait=2s", pick(attempt)), &key, None).await {
                        Ok((200, body)) => break body["status"].as_str().unwrap().to_owned(),
                        Ok((503, _)) | Err(_) => attempt += 1,
                        Ok((status, body)) => panic!("wait: unexpected {status}: {body}"),
                    }
                };
                answers.lock().unwrap().push((id, answer));
            }
        }));
    }
    for r in 0..REVIEWERS {
        let (http, decided, stop, pick) = (
            http.clone(),
            Arc::clone(&decided),
            Arc::clone(&stop),
            pick.clone(),
        );
        let (name, token) = tokens[r % USERS].clone();
        workers.push(tokio::spawn(async move {
            let mut replica = r;
            while !stop.load(Ordering::SeqCst) {
                let base = pick(replica);
                let page = match call(
                    &http,
                    reqwest::Method::GET,
                    format!("{base}/v1/tasks?limit=10"),
                    &token,
                    None,
                )
                .await
                {
                    Ok((200, page)) => page,
                    _ => {
                        replica += 1;
                        continue;
                    }
                };
                for task in page["items"].as_array().unwrap() {
                    let body = json!({"verdict": "approve", "seen_digest": task["digest"]});
                    let url = format!("{base}/v1/tasks/{}/decision", task["id"].as_str().unwrap());
                    // Other answers: decided already (by this reviewer or the
                    // quorum), or the replica died.
                    if let Ok((200, _)) =
                        call(&http, reqwest::Method::POST, url, &token, Some(body)).await
                    {
                        let proposal = task["proposal_id"].as_str().unwrap().to_owned();
                        decided.lock().unwrap().insert((proposal, name.clone()));
                    }
                }
                // Spread over the replicas.
                replica += 1;
            }
        }));
    }

    // Load before and after the kill: at least 1.5 s each and enough
    // proposals to mean something however slow the machine is today.
    let load = |at_least: usize| {
        let (accepted, decided) = (Arc::clone(&accepted), Arc::clone(&decided));
        async move {
            let started = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            while (accepted.lock().unwrap().len() < at_least
                || decided.lock().unwrap().len() < at_least / 2)
                && started.elapsed() < Duration::from_secs(30)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    load(30).await;
    let mut killed = replicas.pop().unwrap();
    let killed = &mut killed.child;
    dead.store(true, Ordering::SeqCst);
    killed.kill().unwrap(); // SIGKILL
    killed.wait().unwrap();
    load(60).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(30), worker)
            .await
            .expect("every waiter is answered")
            .unwrap();
    }

    let accepted = accepted.lock().unwrap().clone();
    let decided = decided.lock().unwrap().clone();
    let answers = answers.lock().unwrap().clone();
    assert!(
        50 < accepted.len(),
        "too little load to mean anything: {}",
        accepted.len()
    );
    assert!(
        20 < decided.len(),
        "too few decisions to mean anything: {}",
        decided.len()
    );
    assert_eq!(answers.len(), accepted.len(), "a waiter was never answered");

    let base = bases[0].clone();
    let mut finals = HashMap::new();
    for (idem, id) in &accepted {
        let (status, proposal) = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v1/proposals/{id}"),
            &key,
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "acknowledged proposal {id} is gone");
        let decisions: Vec<Value> = proposal["resolution"]["decisions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let reviewers: HashSet<&str> = decisions
            .iter()
            .map(|d| d["reviewer"].as_str().unwrap())
            .collect();
        assert_eq!(
            reviewers.len(),
            decisions.len(),
            "{id}: a reviewer decided twice"
        );
        assert!(
            decisions.len() <= 2,
            "{id}: more decisions than the quorum: {decisions:?}"
        );
        if proposal["status"] == "approved" {
            assert_eq!(decisions.len(), 2, "{id} approved without its quorum");
        }
        finals.insert(id.clone(), proposal["status"].as_str().unwrap().to_owned());
        // A retry finds the same proposal.
        assert_replayed(&http, &base, &key, idem, &proposal).await;
    }
    for (id, answer) in &answers {
        if answer != "pending" {
            assert_eq!(
                Some(answer),
                finals.get(id),
                "a waiter of {id} was told something else"
            );
        }
    }

    // The audit log: each proposal resolved at most once, and the export
    // (checkpoints signed by whichever replica led) verifies.
    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/audit/checkpoint"),
        ADMIN,
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
    // Decisions of pending proposals are only in the log: read them there.
    let ids: HashSet<&String> = accepted
        .values()
        .chain(decided.iter().map(|(id, _)| id))
        .collect();
    for id in ids {
        let (_, trail) = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v1/proposals/{id}/audit"),
            ADMIN,
            None,
        )
        .await
        .unwrap();
        let entries: Vec<Value> = trail["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| serde_json::from_str(e["entry"].as_str().unwrap()).unwrap())
            .collect();
        let of = |kind: &str| {
            entries
                .iter()
                .filter(|e| e["type"] == json!(kind))
                .collect::<Vec<_>>()
        };
        let resolved = of("proposal.resolved").len();
        assert!(resolved <= 1, "{id} resolved {resolved} times");
        if let Some(status) = finals.get(id) {
            assert_eq!(
                resolved == 1,
                status != "pending",
                "{id}: the log and the status disagree"
            );
        }
        let deciders: Vec<&str> = of("decision.recorded")
            .iter()
            .map(|e| e["actor"].as_str().unwrap())
            .collect();
        let distinct: HashSet<&&str> = deciders.iter().collect();
        assert_eq!(
            distinct.len(),
            deciders.len(),
            "{id}: a reviewer decided twice: {deciders:?}"
        );
        assert!(
            deciders.len() <= 2,
            "{id}: more decisions than the quorum: {deciders:?}"
        );
        for (_, reviewer) in decided.iter().filter(|(d, _)| d == id) {
            assert!(
                deciders.contains(&format!("user:{reviewer}").as_str()),
                "acknowledged decision of {reviewer} on {id} is gone"
            );
        }
    }
    export_and_verify(&base, &dir.path().join("export"));
    drop(replicas);
}

/// A replica with another audit key than the one that signed the log
/// refuses to start, saying which file to copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_audit_key_refuses_to_start() {
    let database = TempDatabase::create().unwrap();
    let flags = ["--database-url", database.url.as_str()];
    let first_dir = tempfile::tempdir().unwrap();
    let first = start_with(first_dir.path(), &flags);
    let http = reqwest::Client::new();
    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/audit/checkpoint", first.base),
        ADMIN,
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
    let other_dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loopgate"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(other_dir.path())
        .args(flags)
        .env("LOOPGATE_BOOTSTRAP_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("signed with another key"), "{stderr}");
    drop(first);
}

/// Polls `url` with `token` until it answers `want` (at most `within`).
async fn answers(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    want: u16,
    within: Duration,
) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (status, _) = call(http, reqwest::Method::GET, url.to_owned(), token, None)
            .await
            .unwrap();
        if status == want {
            return true;
        }
        if deadline < std::time::Instant::now() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_or_a_disabled_user_is_refused_at_once_on_every_replica() {
    let database = TempDatabase::create().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = database.url.clone();
    let flags = ["--database-url", url.as_str()];
    let a = start_with(dir.path(), &flags);
    let b = start_with(dir.path(), &flags);
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;

    let key = system_key(&http, &a.base).await;
    let (_, user) = call(
        &http,
        post.clone(),
        format!("{}/v1/users", a.base),
        ADMIN,
        Some(json!({"username": "ann", "roles": ["reviewer"], "groups": ["ops"]})),
    )
    .await
    .unwrap();
    let user_id = user["id"].as_str().unwrap().to_owned();
    let (_, token) = call(
        &http,
        post.clone(),
        format!("{}/v1/users/{user_id}/tokens", a.base),
        ADMIN,
        None,
    )
    .await
    .unwrap();
    let token = token["secret"].as_str().unwrap().to_owned();
    // Replica B knows (and caches) both credentials.
    let on_b = format!("{}/v1/proposals?limit=1", b.base);
    assert!(answers(&http, &on_b, &key, 200, Duration::from_secs(5)).await);
    assert!(answers(&http, &on_b, &token, 200, Duration::from_secs(5)).await);

    // Revoked on A: refused on B within a second (no waiting for its cache).
    let (_, keys) = call(
        &http,
        reqwest::Method::GET,
        format!("{}/v1/systems/sys/keys", a.base),
        ADMIN,
        None,
    )
    .await
    .unwrap();
    let key_id = keys["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &http,
        reqwest::Method::DELETE,
        format!("{}/v1/systems/sys/keys/{key_id}", a.base),
        ADMIN,
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(answers(&http, &on_b, &key, 401, Duration::from_secs(1)).await);

    // Disabled on A: refused on B within a second.
    let (status, _) = call(
        &http,
        reqwest::Method::PATCH,
        format!("{}/v1/users/{user_id}", a.base),
        ADMIN,
        Some(json!({"disabled": true})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(answers(&http, &on_b, &token, 401, Duration::from_secs(1)).await);
    drop((a, b));
}
