//! `GET /v1/events`: the durable event stream over real HTTP, resumed with
//! `Last-Event-ID` across a server restart.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_app};

/// An open SSE stream, read event by event.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, query: &str, token: &str, last_id: Option<i64>) -> Stream {
        let mut request = app
            .http
            .get(format!("{}/v1/events{query}", app.base))
            .bearer_auth(token);
        if let Some(id) = last_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's `id` and `data` (keep-alive comments skipped).
    async fn next(&mut self) -> (i64, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut data) = (None, None);
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        id = value.trim().parse::<i64>().ok();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str::<Value>(value.trim()).unwrap());
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    assert_eq!(data["id"], id, "the SSE id is the event's id");
                    return (id, data);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk())
                .await
                .expect("an event within 20 s")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until one of type `kind` (included).
    async fn until(&mut self, kind: &str) -> Vec<(i64, Value)> {
        let mut out = Vec::new();
        loop {
            let event = self.next().await;
            let done = event.1["type"] == kind;
            out.push(event);
            if done {
                return out;
            }
        }
    }
}

fn types(events: &[(i64, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn setup() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let (key, ann) = app.ops_review().await;
    (app, key, ann)
}

#[tokio::test]
async fn a_client_resumes_after_a_restart_and_misses_nothing() {
    let (app, key, ann) = setup().await;
    let mut live = Stream::open(&app, "", ADMIN_TOKEN, None).await;
    let first = app.submit(&key, "flag", json!({"n": 1}), json!({})).await;
    let first_id = first.body["id"].as_str().unwrap().to_owned();
    let seen = live.until("task.created").await;
    assert_eq!(
        types(&seen),
        ["proposal.submitted", "proposal.routed", "task.created"]
    );
    let created = &seen[2].1;
    assert_eq!(
        (&created["proposal"], &created["system"], &created["group"]),
        (&json!(first_id), &json!("fraud-detector"), &json!("ops"))
    );
    assert!(created["task"].is_string(), "{created}");
    let last = seen[2].0;
    drop(live);

    // While nobody listens: a restart, a decision, another proposal.
    let app = app.restart().await;
    let task = app.task_of(&ann, &first_id).await;
    assert_eq!(
        app.decide(&ann, &task, "approve").await.status,
        StatusCode::OK
    );
    app.submit(&key, "flag", json!({"n": 2}), json!({})).await;

    let mut resumed = Stream::open(&app, "", ADMIN_TOKEN, Some(last)).await;
    let missed = resumed.until("task.created").await;
    assert_eq!(
        types(&missed),
        [
            "decision.recorded",
            "proposal.resolved",
            "proposal.submitted",
            "proposal.routed",
            "task.created"
        ]
    );
    let ids: Vec<i64> = missed.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    assert!(last < ids[0], "nothing seen twice");

    // The full history from the start has the same events, in the same order.
    let mut replay = Stream::open(&app, "?after=0&system=fraud-detector", ADMIN_TOKEN, None).await;
    let mut all = Vec::new();
    while all.len() < seen.len() + missed.len() {
        all.push(replay.next().await);
    }
    let expected: Vec<i64> = seen.iter().chain(&missed).map(|(id, _)| *id).collect();
    assert_eq!(all.iter().map(|(id, _)| *id).collect::<Vec<_>>(), expected);

    // Live again: a new decision arrives on the open stream.
    let second = app.tasks(&ann).await;
    app.decide(&ann, &second[0], "reject").await;
    let live = resumed.until("proposal.resolved").await;
    assert_eq!(live.last().unwrap().1["data"]["outcome"], "rejected");
}

#[tokio::test]
async fn filters_and_roles_narrow_the_stream() {
    let (app, key, ann) = setup().await;
    let bob = app.user("bob", &["reviewer"], &["medics"]).await;
    let first = app.submit(&key, "flag", json!({}), json!({})).await;
    let task = app.task_of(&ann, first.body["id"].as_str().unwrap()).await;
    app.decide(&ann, &task, "approve").await;

    // Types, with a prefix wildcard; the history is replayed from 0.
    let mut decisions = Stream::open(
        &app,
        "?after=0&type=decision.*,proposal.resolved",
        ADMIN_TOKEN,
        None,
    )
    .await;
    let got = [decisions.next().await, decisions.next().await];
    assert_eq!(types(&got), ["decision.recorded", "proposal.resolved"]);

    // A system sees its own proposals; a reviewer their groups'; others nothing
    // of them (the next thing bob sees is from his own group).
    let mut system = Stream::open(&app, "?after=0", &key, None).await;
    assert_eq!(system.next().await.1["type"], "proposal.submitted");
    let mut stranger = Stream::open(&app, "?after=0", &bob, None).await;
    let other = app.system("triage", "in_the_loop").await;
    app.publish(r#"@reviewers("medics") permit(principal, action == Action::"triage", resource); @reviewers("ops") permit(principal, action == Action::"flag", resource);"#)
        .await;
    app.submit(&other, "triage", json!({}), json!({})).await;
    let (_, event) = stranger.next().await;
    assert_eq!(
        (&event["system"], &event["group"]),
        (&json!("triage"), &json!("medics"))
    );
    assert_eq!(event["type"], "proposal.submitted");

    // A bad resume point is refused plainly.
    let bad = app
        .http
        .get(format!("{}/v1/events", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = bad.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Last-Event-ID"),
        "{problem}"
    );
}

#[tokio::test]
async fn live_streams_of_each_system_get_their_own_events_in_order() {
    let (app, fraud, _) = setup().await;
    let triage = app.system("triage", "in_the_loop").await;
    app.publish(r#"@reviewers("medics") permit(principal, action == Action::"triage", resource); @reviewers("ops") permit(principal, action == Action::"flag", resource);"#)
        .await;
    // Live (no resume point): each stream starts at the newest event.
    let mut as_fraud = Stream::open(&app, "", &fraud, None).await;
    let mut as_triage = Stream::open(&app, "", &triage, None).await;
    let mut admin_on_triage = Stream::open(&app, "?system=triage", ADMIN_TOKEN, None).await;
    let mut routed_only = Stream::open(&app, "?type=proposal.routed", &fraud, None).await;
    let mut admins: Vec<Stream> = Vec::new();
    for _ in 0..8 {
        admins.push(Stream::open(&app, "", ADMIN_TOKEN, None).await);
    }

    let t = app.submit(&triage, "triage", json!({}), json!({})).await;
    let f = app.submit(&fraud, "flag", json!({}), json!({})).await;
    let (t, f) = (&t.body["id"], &f.body["id"]);

    for stream in [&mut as_triage, &mut admin_on_triage] {
        let seen = stream.until("task.created").await;
        assert_eq!(
            types(&seen),
            ["proposal.submitted", "proposal.routed", "task.created"]
        );
        assert!(seen.iter().all(|(_, e)| &e["proposal"] == t), "{seen:?}");
    }
    let seen = as_fraud.until("task.created").await;
    assert_eq!(seen.len(), 3, "nothing of another system: {seen:?}");
    assert!(seen.iter().all(|(_, e)| &e["proposal"] == f), "{seen:?}");
    let (_, routed) = routed_only.next().await;
    assert_eq!(
        (&routed["type"], &routed["proposal"]),
        (&json!("proposal.routed"), f)
    );

    let mut first = None;
    for stream in &mut admins {
        let mut seen = stream.until("task.created").await;
        seen.extend(stream.until("task.created").await);
        let ids: Vec<i64> = seen.iter().map(|(id, _)| *id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] + 1 == w[1]),
            "every event, in order: {ids:?}"
        );
        assert_eq!(
            *first.get_or_insert(ids.clone()),
            ids,
            "each admin sees the same"
        );
    }
}

#[tokio::test]
async fn a_returned_proposal_streams_as_resolved_returned() {
    let (app, key, ann) = setup().await;
    let mut live = Stream::open(&app, "", &key, None).await;
    let submitted = app.submit(&key, "refund", json!({"n": 1}), json!({})).await;
    let id = submitted.body["id"].as_str().unwrap().to_owned();
    live.until("task.created").await;
    let task = app.task_of(&ann, &id).await;
    let body =
        json!({"verdict": "respond", "message": "not this one", "seen_digest": task["digest"]});
    let answered = app
        .post(
            &format!("/v1/tasks/{}/decision", task["id"].as_str().unwrap()),
            &ann,
            body,
        )
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
    let seen = live.until("proposal.resolved").await;
    let resolved = &seen.last().unwrap().1;
    assert_eq!(resolved["proposal"], json!(id));
    assert_eq!(resolved["data"]["outcome"], "returned", "{resolved}");
}
