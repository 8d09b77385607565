//! Durability: SIGKILL the real binary while systems submit and reviewers
//! decide, restart it on the same data directory, and check that nothing
//! acknowledged was lost, nothing was resolved twice, and the audit log
//! holds every acknowledged change and verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

mod common;

use common::{ADMIN, assert_replayed, call, export_and_verify, start, system_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loses_nothing_acknowledged_and_resolves_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let post = reqwest::Method::POST;
    let key = system_key(&http, &base).await;
    let user = call(
        &http,
        post.clone(),
        format!("{base}/v1/users"),
        ADMIN,
        Some(json!({"username": "rev", "roles": ["reviewer"], "groups": ["reviewers"]})),
    )
    .await
    .unwrap()
    .1;
    let reviewer = call(
        &http,
        post.clone(),
        format!("{base}/v1/users/{}/tokens", user["id"].as_str().unwrap()),
        ADMIN,
        None,
    )
    .await
    .unwrap()
    .1["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    // Acknowledged submissions (idempotency key → id) and decisions (proposal id).
    let accepted: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let decided: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (http, base, key, accepted) = (
            http.clone(),
            base.clone(),
            key.clone(),
            Arc::clone(&accepted),
        );
        workers.push(tokio::spawn(async move {
            for n in 0.. {
                let idem = format!("w{worker}-{n}");
                let body = json!({"action": "a", "subject": {"type": "T", "id": idem}, "output": {"n": n}, "idempotency_key": idem});
                match call(&http, reqwest::Method::POST, format!("{base}/v1/proposals"), &key, Some(body)).await {
                    Ok((201 | 200, body)) => drop(accepted.lock().unwrap().insert(idem, body["id"].as_str().unwrap().to_owned())),
                    Ok((status, body)) => panic!("unexpected {status}: {body}"),
                    Err(_) => return,
                }
            }
        }));
    }
    {
        let (http, base, reviewer, decided) = (
            http.clone(),
            base.clone(),
            reviewer.clone(),
            Arc::clone(&decided),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let Ok((200, page)) = call(
                    &http,
                    reqwest::Method::GET,
                    format!("{base}/v1/tasks?limit=20"),
                    &reviewer,
                    None,
                )
                .await
                else {
                    return;
                };
                for task in page["items"].as_array().unwrap() {
                    let body = json!({"verdict": "approve", "seen_digest": task["digest"]});
                    match call(
                        &http,
                        reqwest::Method::POST,
                        format!("{base}/v1/tasks/{}/decision", task["id"].as_str().unwrap()),
                        &reviewer,
                        Some(body),
                    )
                    .await
                    {
                        Ok((200, _)) => drop(
                            decided
                                .lock()
                                .unwrap()
                                .insert(task["proposal_id"].as_str().unwrap().to_owned()),
                        ),
                        Ok(_) => (),
                        Err(_) => return,
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let child = &mut server.child;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for worker in workers {
        let _ = worker.await;
    }
    let accepted = accepted.lock().unwrap().clone();
    let decided = decided.lock().unwrap().clone();
    assert!(
        20 < accepted.len(),
        "too little load to mean anything: {}",
        accepted.len()
    );
    assert!(!decided.is_empty());

    let server = start(dir.path());
    let base = server.base.clone();
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
        assert!(
            proposal["resolution"]["decisions"]
                .as_array()
                .is_none_or(|d| d.len() <= 1)
        );
        // A retry after the crash finds the same proposal.
        assert_replayed(&http, &base, &key, idem, &proposal).await;
    }
    for id in &decided {
        let (_, proposal) = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v1/proposals/{id}"),
            &key,
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            proposal["status"], "approved",
            "acknowledged decision on {id} is gone"
        );
        assert_eq!(
            proposal["resolution"]["decisions"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    // A waiter that reconnects after the restart gets the resolution.
    let (_, page) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/v1/tasks?limit=1"),
        &reviewer,
        None,
    )
    .await
    .unwrap();
    if let Some(task) = page["items"].as_array().unwrap().first().cloned() {
        let proposal_id = task["proposal_id"].as_str().unwrap().to_owned();
        let waiter = {
            let (http, base, key, proposal_id) =
                (http.clone(), base.clone(), key.clone(), proposal_id.clone());
            tokio::spawn(async move {
                call(
                    &http,
                    reqwest::Method::GET,
                    format!("{base}/v1/proposals/{proposal_id}?wait=20s"),
                    &key,
                    None,
                )
                .await
                .unwrap()
                .1
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let body = json!({"verdict": "reject", "seen_digest": task["digest"]});
        assert_eq!(
            call(
                &http,
                reqwest::Method::POST,
                format!("{base}/v1/tasks/{}/decision", task["id"].as_str().unwrap()),
                &reviewer,
                Some(body)
            )
            .await
            .unwrap()
            .0,
            200
        );
        assert_eq!(waiter.await.unwrap()["status"], "rejected");
    }

    // The audit log survived the crash: every acknowledged change is in it,
    // and an export verifies offline.
    let (status, _) = call(
        &http,
        post.clone(),
        format!("{base}/v1/audit/checkpoint"),
        ADMIN,
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
    for id in accepted.values().chain(&decided) {
        let (_, trail) = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v1/proposals/{id}/audit"),
            ADMIN,
            None,
        )
        .await
        .unwrap();
        let entries = trail["entries"].as_array().unwrap();
        let has = |type_: &str| {
            entries.iter().any(|e| {
                e["entry"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("\"type\":\"{type_}\""))
            })
        };
        assert!(
            has("proposal.submitted"),
            "acknowledged proposal {id} is not in the audit log"
        );
        assert!(entries.iter().all(|e| e["inclusion_proof"].is_array()));
        if decided.contains(id) {
            assert!(
                has("decision.recorded") && has("proposal.resolved"),
                "acknowledged decision on {id} is not in the audit log"
            );
        }
    }
    export_and_verify(&base, &dir.path().join("export"));
    drop(server);
}
