//! Races between replicas on one PostgreSQL database, whose writers run in
//! parallel (no lock is shared by all of them): two replicas deciding the
//! same task at once, reviewers racing for one claim, submissions hitting a
//! `@max_auto` cap together and policies published together. Each race is
//! run many times at once; what must hold afterwards is checked through
//! the API and in the audit log, which must still verify offline.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use std::collections::HashSet;

use loopgate_store::testing::TempDatabase;
use serde_json::{Value, json};

mod common;

use common::{ADMIN, Server, call, export_and_verify, start_with, system_key};

const RACES: usize = 40;

/// Two replicas of one fresh database, sharing a data directory (and so
/// the audit signing key).
struct Pair {
    _database: TempDatabase,
    _dir: tempfile::TempDir,
    _servers: Vec<Server>,
    bases: Vec<String>,
    http: reqwest::Client,
}

fn pair() -> Pair {
    let database = TempDatabase::create().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = database.url.clone();
    let flags = ["--database-url", url.as_str()];
    let servers = vec![
        start_with(dir.path(), &flags),
        start_with(dir.path(), &flags),
    ];
    let bases = servers.iter().map(|s| s.base.clone()).collect();
    Pair {
        _database: database,
        _dir: dir,
        _servers: servers,
        bases,
        http: reqwest::Client::new(),
    }
}

impl Pair {
    async fn post(
        &self,
        replica: usize,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        call(
            &self.http,
            reqwest::Method::POST,
            format!("{}{path}", self.bases[replica % 2]),
            token,
            body,
        )
        .await
        .unwrap()
    }

    async fn get(&self, replica: usize, path: &str, token: &str) -> (u16, Value) {
        call(
            &self.http,
            reqwest::Method::GET,
            format!("{}{path}", self.bases[replica % 2]),
            token,
            None,
        )
        .await
        .unwrap()
    }

    /// A reviewer in group `reviewers`, and their token.
    async fn reviewer(&self, name: &str) -> String {
        let body = json!({"username": name, "roles": ["reviewer"], "groups": ["reviewers"]});
        let (status, user) = self.post(0, "/v1/users", ADMIN, Some(body)).await;
        assert_eq!(status, 201, "{user}");
        let path = format!("/v1/users/{}/tokens", user["id"].as_str().unwrap());
        let (status, token) = self.post(1, &path, ADMIN, None).await;
        assert_eq!(status, 201, "{token}");
        token["secret"].as_str().unwrap().to_owned()
    }

    /// Publishes `text` on replica 0 and waits until both replicas route
    /// by it (probing with `key`).
    async fn publish(&self, key: &str, text: &str) {
        let body = json!({"text": text, "description": "concurrency"});
        let (status, published) = self.post(0, "/v1/policies", ADMIN, Some(body)).await;
        assert_eq!(status, 201, "{published}");
        let version = published["version"].clone();
        for replica in 0..2 {
            for probe in 0.. {
                let body = json!({"action": "probe", "subject": {"type": "T", "id": format!("p{replica}-{probe}")}, "output": {}});
                let (status, proposal) = self.post(replica, "/v1/proposals", key, Some(body)).await;
                assert_eq!(status, 201, "{proposal}");
                if proposal["policy_version"] == version {
                    break;
                }
                assert!(
                    probe < 200,
                    "replica {replica} does not route by the new policy"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }

    /// `n` proposals waiting for review; their tasks' ids, as the
    /// reviewer with `token` lists them.
    async fn tasks(&self, key: &str, token: &str, n: usize) -> Vec<String> {
        for i in 0..n {
            let body = json!({"action": "refund", "subject": {"type": "Order", "id": format!("o{i}")}, "output": {"i": i}});
            let (status, proposal) = self.post(i, "/v1/proposals", key, Some(body)).await;
            assert_eq!(status, 201, "{proposal}");
            assert_eq!(proposal["status"], "pending", "{proposal}");
        }
        let (status, page) = self.get(1, "/v1/tasks?limit=100", token).await;
        assert_eq!(status, 200, "{page}");
        let ids: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            // (Probes made before the policy applied are waiting too.)
            .filter(|task| task["action"] == "refund")
            .map(|task| task["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), n, "{page}");
        ids
    }

    /// The audit log exports and verifies offline after a checkpoint.
    async fn verifies(&self) {
        let (status, _) = self.post(1, "/v1/audit/checkpoint", ADMIN, None).await;
        assert_eq!(status, 201);
        let out = self._dir.path().join("export.jsonl");
        export_and_verify(&self.bases[0], &out);
    }
}

const REVIEW: &str = "@id(\"review\") @reviewers(\"reviewers\")\npermit (principal, action == Action::\"refund\", resource);\n@id(\"probe\") @route(\"allow\")\npermit (principal, action == Action::\"probe\", resource);";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_deciding_one_task_record_one_decision() {
    let pair = pair();
    let key = system_key(&pair.http, &pair.bases[0]).await;
    pair.publish(&key, REVIEW).await;
    let (ann, bob) = (pair.reviewer("ann").await, pair.reviewer("bob").await);
    let tasks = pair.tasks(&key, &ann, RACES).await;
    let pair = std::sync::Arc::new(pair);
    // For each task, ann on one replica and bob on the other approve at once.
    let mut races = Vec::new();
    for task in &tasks {
        for (replica, token) in [(0, ann.clone()), (1, bob.clone())] {
            let (pair, task) = (std::sync::Arc::clone(&pair), task.clone());
            races.push(tokio::spawn(async move {
                let (_, view) = pair
                    .get(replica, &format!("/v1/tasks/{task}"), &token)
                    .await;
                let body = json!({"verdict": "approve", "seen_digest": view["digest"]});
                let path = format!("/v1/tasks/{task}/decision");
                pair.post(replica, &path, &token, Some(body)).await
            }));
        }
    }
    let mut outcomes = Vec::new();
    for race in races {
        outcomes.push(race.await.unwrap());
    }
    let won = outcomes.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(won, RACES, "one decision per task wins: {outcomes:?}");
    for (status, body) in &outcomes {
        assert!(
            *status == 200 || *status == 409,
            "the loser is told the task was decided, not an error: {status} {body}"
        );
    }
    for task in &tasks {
        let (_, view) = pair.get(0, &format!("/v1/tasks/{task}"), ADMIN).await;
        let proposal = view["proposal_id"].as_str().unwrap();
        let (_, proposal) = pair
            .get(1, &format!("/v1/proposals/{proposal}"), ADMIN)
            .await;
        assert_eq!(proposal["status"], "approved", "{proposal}");
        let decisions = proposal["resolution"]["decisions"].as_array().unwrap();
        assert_eq!(decisions.len(), 1, "{proposal}");
    }
    pair.verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reviewers_racing_for_a_claim_leave_one_holder() {
    let pair = pair();
    let key = system_key(&pair.http, &pair.bases[0]).await;
    pair.publish(&key, REVIEW).await;
    let mut tokens = Vec::new();
    for name in ["ann", "bob", "cat", "dan"] {
        tokens.push((name, pair.reviewer(name).await));
    }
    let tasks = pair.tasks(&key, &tokens[0].1, RACES).await;
    let pair = std::sync::Arc::new(pair);
    let mut races = Vec::new();
    for task in &tasks {
        for (i, (name, token)) in tokens.iter().enumerate() {
            let (pair, task, token, name) = (
                std::sync::Arc::clone(&pair),
                task.clone(),
                token.clone(),
                *name,
            );
            races.push(tokio::spawn(async move {
                let path = format!("/v1/tasks/{task}/claim");
                let (status, body) = pair.post(i, &path, &token, None).await;
                (task, name, status, body)
            }));
        }
    }
    let mut holders = std::collections::HashMap::new();
    for race in races {
        let (task, name, status, body) = race.await.unwrap();
        match status {
            200 => assert!(
                holders.insert(task, name).is_none(),
                "two claims of one task won"
            ),
            409 => assert_eq!(body["code"], "lease_held", "{body}"),
            other => panic!("a claim answered {other}: {body}"),
        }
    }
    assert_eq!(holders.len(), RACES, "every task has its one holder");
    for (task, name) in &holders {
        let (_, view) = pair.get(1, &format!("/v1/tasks/{task}"), ADMIN).await;
        assert_eq!(view["claimed_by"], json!(name), "{view}");
    }
    pair.verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cap_holds_when_replicas_hit_it_together() {
    const CAP: usize = 25;
    let pair = pair();
    let key = system_key(&pair.http, &pair.bases[0]).await;
    // And caps of one: each lets exactly one of many at once through.
    const SINGLES: usize = 8;
    let mut policy = format!(
        "@id(\"capped\") @route(\"allow\") @max_auto(\"{CAP}/d\") @reviewers(\"reviewers\")\npermit (principal, action == Action::\"refund\", resource);\n@id(\"probe\") @route(\"allow\")\npermit (principal, action == Action::\"probe\", resource);"
    );
    for n in 0..SINGLES {
        policy.push_str(&format!(
            "\n@id(\"single{n}\") @route(\"allow\") @max_auto(\"1/d\") @reviewers(\"reviewers\")\npermit (principal, action == Action::\"single{n}\", resource);"
        ));
    }
    pair.publish(&key, &policy).await;
    let pair = std::sync::Arc::new(pair);
    let mut submissions = Vec::new();
    for i in 0..(2 * CAP + 10) {
        let (pair, key) = (std::sync::Arc::clone(&pair), key.clone());
        submissions.push(tokio::spawn(async move {
            let body = json!({"action": "refund", "subject": {"type": "Order", "id": format!("o{i}")}, "output": {}});
            pair.post(i, "/v1/proposals", &key, Some(body)).await
        }));
    }
    let mut singles = Vec::new();
    for i in 0..(SINGLES * 6) {
        let (pair, key) = (std::sync::Arc::clone(&pair), key.clone());
        singles.push(tokio::spawn(async move {
            let action = format!("single{}", i % SINGLES);
            let body = json!({"action": action, "subject": {"type": "Order", "id": format!("s{i}")}, "output": {}});
            (i % SINGLES, pair.post(i, "/v1/proposals", &key, Some(body)).await)
        }));
    }
    let mut approved = 0;
    let mut reviewed = 0;
    for submission in submissions {
        let (status, proposal) = submission.await.unwrap();
        assert_eq!(status, 201, "{proposal}");
        match proposal["status"].as_str().unwrap() {
            "approved" => approved += 1,
            "pending" => reviewed += 1,
            other => panic!("unexpected status {other}: {proposal}"),
        }
    }
    assert_eq!(approved, CAP, "the cap lets exactly {CAP} through");
    assert_eq!(reviewed, CAP + 10);
    let mut through = [0; SINGLES];
    for single in singles {
        let (n, (status, proposal)) = single.await.unwrap();
        assert_eq!(status, 201, "{proposal}");
        if proposal["status"] == "approved" {
            through[n] += 1;
        }
    }
    assert_eq!(through, [1; SINGLES], "each cap of one lets one through");
    pair.verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policies_published_together_leave_one_live_version() {
    let pair = pair();
    let key = system_key(&pair.http, &pair.bases[0]).await;
    let pair = std::sync::Arc::new(pair);
    let mut publishes = Vec::new();
    for i in 0..10 {
        let pair = std::sync::Arc::clone(&pair);
        publishes.push(tokio::spawn(async move {
            // Two publishes of each text, on both replicas at once.
            let text = format!(
                "@id(\"p{}\") @route(\"allow\")\npermit (principal, action, resource);",
                i / 2
            );
            let body = json!({"text": text, "description": format!("publish {i}")});
            pair.post(i, "/v1/policies", ADMIN, Some(body)).await
        }));
    }
    let mut versions = HashSet::new();
    for publish in publishes {
        let (status, body) = publish.await.unwrap();
        assert!(
            status == 201 || status == 200,
            "a publish answered {status}: {body}"
        );
        versions.insert(body["version"].as_str().unwrap().to_owned());
    }
    assert_eq!(versions.len(), 5, "one version per text");
    let (status, policies) = pair.get(0, "/v1/policies", ADMIN).await;
    assert_eq!(status, 200, "{policies}");
    let live: Vec<&Value> = policies["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["active"] == json!(true))
        .collect();
    assert_eq!(live.len(), 1, "one live version: {policies}");
    let live = live[0]["version"].clone();
    // Both replicas route by it.
    for replica in 0..2 {
        let mut routed = Value::Null;
        for probe in 0..200 {
            let body = json!({"action": "x", "subject": {"type": "T", "id": format!("q{replica}-{probe}")}, "output": {}});
            let (status, proposal) = pair.post(replica, "/v1/proposals", &key, Some(body)).await;
            assert_eq!(status, 201, "{proposal}");
            routed = proposal["policy_version"].clone();
            if routed == live {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(routed, live, "replica {replica} routes by another version");
    }
    pair.verifies().await;
}
