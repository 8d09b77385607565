//! Webhooks over real HTTP: a receiver on a loopback port checks every
//! signature with the Standard Webhooks reference library, goes down and up,
//! and the outbox delivers what it missed after a retry (and a restart).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use loopgate_core::Timestamp;
use loopgate_server::ManualClock;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_in_clock};

/// One message as the receiver took it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
}

/// A webhook receiver on a loopback port; it refuses what it cannot verify.
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    secret: Arc<Mutex<Option<String>>>,
}

impl Receiver {
    fn new() -> Receiver {
        Receiver {
            got: Arc::default(),
            secret: Arc::default(),
        }
    }

    fn verify_with(&self, secret: &str) {
        *self.secret.lock().unwrap() = Some(secret.to_owned());
    }

    /// Serves on `listener` until the returned handle is aborted.
    fn serve(&self, listener: TcpListener) -> tokio::task::JoinHandle<()> {
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(take))
            .with_state(self.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        })
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` messages arrived.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..400 {
            let got = self.got();
            if n <= got.len() {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{n} messages expected, got {:?}", self.got());
    }
}

async fn take(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(secret) = receiver.secret.lock().unwrap().clone() else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    let webhook = standardwebhooks::Webhook::new(&secret).unwrap();
    if let Err(error) = webhook.verify(&body, &headers) {
        panic!("signature check failed: {error:?}");
    }
    let id = headers["webhook-id"].to_str().unwrap().to_owned();
    let body = serde_json::from_slice(&body).unwrap();
    receiver.got.lock().unwrap().push(Received { id, body });
    StatusCode::NO_CONTENT
}

/// The server's clock starts at the real time: receivers check
/// `webhook-timestamp` against theirs (5 minutes of tolerance).
async fn spawn() -> TestApp {
    #[expect(
        clippy::disallowed_methods,
        reason = "receivers compare with the real time"
    )]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(now.as_millis() as i64));
    spawn_in_clock(clock, |config| {
        config.webhook_retry_base = Duration::from_secs(2);
        // The receivers listen on loopback, which the fence refuses by default.
        config.webhook_allow_private = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await
}

async fn setup() -> (TestApp, String, String) {
    let app = spawn().await;
    let (key, ann) = app.ops_review().await;
    (app, key, ann)
}

async fn put_webhook(app: &TestApp, url: &str) -> crate::harness::Response {
    app.call(
        reqwest::Method::PUT,
        "/v1/systems/fraud-detector/webhook",
        Some(ADMIN_TOKEN),
        Some(json!({"url": url})),
    )
    .await
}

async fn set_webhook(app: &TestApp, url: &str) -> Value {
    let set = put_webhook(app, url).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    set.body
}

async fn deliveries(app: &TestApp, token: &str) -> Vec<Value> {
    let page = app
        .get("/v1/systems/fraud-detector/webhook/deliveries", token)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["items"].as_array().unwrap().clone()
}

/// The delivery history once every delivery's answer is recorded: a
/// receiver has its message before the dispatcher has written the answer.
async fn recorded_deliveries(app: &TestApp, token: &str) -> Vec<Value> {
    for _ in 0..200 {
        let history = deliveries(app, token).await;
        if history.iter().all(|d| d["state"] == "delivered") {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    deliveries(app, token).await
}

#[tokio::test]
async fn signed_events_arrive_in_order_with_the_resolution() {
    let (app, key, ann) = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = Receiver::new();
    let _serving = receiver.serve(listener);
    let webhook = set_webhook(&app, &url).await;
    let secret = webhook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{webhook}");
    receiver.verify_with(secret);
    let shown = app
        .get("/v1/systems/fraud-detector/webhook", ADMIN_TOKEN)
        .await;
    assert_eq!(shown.body["url"], json!(url));
    assert!(
        shown.body.get("secret").is_none(),
        "shown once: {}",
        shown.body
    );

    let submitted = app
        .submit(&key, "flag", json!({"fraud": true}), json!({}))
        .await;
    let id = submitted.body["id"].as_str().unwrap().to_owned();
    let task = app.task_of(&ann, &id).await;
    assert_eq!(
        app.decide(&ann, &task, "approve").await.status,
        StatusCode::OK
    );

    let got = receiver.wait_for(2).await;
    let kinds: Vec<&str> = got
        .iter()
        .map(|m| m.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["task.created", "proposal.resolved"]);
    let resolved = &got[1].body;
    assert_eq!(resolved["data"]["event"]["proposal"], json!(id));
    assert_eq!(resolved["data"]["proposal"]["status"], "approved");
    assert_eq!(
        resolved["data"]["proposal"]["output"],
        json!({"fraud": true})
    );
    assert_eq!(
        got[1].id,
        format!("msg_{}", resolved["data"]["event"]["id"])
    );

    // The history, as the admin and as the system itself sees it.
    let history = recorded_deliveries(&app, &key).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["id"], json!(got[1].id), "newest first");
    assert!(
        history.iter().all(|d| d["state"] == "delivered"),
        "{history:?}"
    );
    let one = app
        .get(
            &format!(
                "/v1/systems/fraud-detector/webhook/deliveries/{}",
                got[1].id
            ),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(one.body["history"][0]["status"], 204, "{}", one.body);

    // Manual redelivery sends the same message again.
    let again = app
        .post(
            &format!(
                "/v1/systems/fraud-detector/webhook/deliveries/{}/redeliver",
                got[1].id
            ),
            ADMIN_TOKEN,
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    let got = receiver.wait_for(3).await;
    assert_eq!(got[2].id, got[1].id);
    assert_eq!(got[2].body["data"], got[1].body["data"]);
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_everything_after_a_retry_and_a_restart() {
    let (app, key, ann) = setup().await;
    // A port with nothing listening: connections are refused.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let webhook = set_webhook(&app, &format!("http://{addr}/hook")).await;

    let mut ids = Vec::new();
    for n in 0..3 {
        let submitted = app.submit(&key, "flag", json!({"n": n}), json!({})).await;
        ids.push(submitted.body["id"].as_str().unwrap().to_owned());
    }
    let task = app.task_of(&ann, &ids[0]).await;
    app.decide(&ann, &task, "reject").await;

    // Every attempt so far failed and is kept for a retry.
    let mut failed = Vec::new();
    for _ in 0..200 {
        failed = deliveries(&app, ADMIN_TOKEN).await;
        if failed.len() == 4 && failed.iter().any(|d| d["attempts"] == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(failed.len(), 4, "{failed:?}");
    assert!(failed.iter().all(|d| d["state"] == "pending"), "{failed:?}");
    let tried = failed.iter().find(|d| d["attempts"] == 1).unwrap();
    assert!(
        tried["last_error"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{tried}"
    );

    // loopgate restarts; the receiver comes up; the retries deliver all of it.
    let app = app.restart().await;
    let receiver = Receiver::new();
    receiver.verify_with(webhook["secret"].as_str().unwrap());
    let _serving = receiver.serve(TcpListener::bind(addr).await.unwrap());
    app.clock.advance(Duration::from_secs(120));
    let got = receiver.wait_for(4).await;
    let history = recorded_deliveries(&app, ADMIN_TOKEN).await;
    let got_ids: std::collections::BTreeSet<&str> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(got_ids.len(), 4, "no other messages: {got:?}");
    // In order per proposal: the first proposal's task came before its resolution.
    let first: Vec<&str> = got
        .iter()
        .filter(|m| m.body["data"]["event"]["proposal"] == json!(ids[0]))
        .map(|m| m.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["task.created", "proposal.resolved"]);
    assert!(
        history.iter().all(|d| d["state"] == "delivered"),
        "{history:?}"
    );
}

#[tokio::test]
async fn webhook_settings_are_checked_and_scoped() {
    let (app, key, _) = setup().await;
    let put = |body: Value| {
        app.call(
            reqwest::Method::PUT,
            "/v1/systems/fraud-detector/webhook",
            Some(ADMIN_TOKEN),
            Some(body),
        )
    };
    let bad_url = put(json!({"url": "ftp://example.com/hook"})).await;
    assert_eq!(bad_url.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad_url.body["detail"],
        "`url` must use http or https, not `ftp://example.com/hook`"
    );
    let bad_type = put(json!({"url": "https://93.184.215.14/h", "types": ["user.created"]})).await;
    assert_eq!(bad_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_type.body["help"]
            .as_str()
            .unwrap()
            .contains("proposal.resolved")
    );
    let bad_secret = put(json!({"url": "https://93.184.215.14/h", "secret": "hunter2"})).await;
    assert_eq!(bad_secret.status, StatusCode::UNPROCESSABLE_ENTITY);

    let missing = app
        .get("/v1/systems/fraud-detector/webhook", ADMIN_TOKEN)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // A given secret is kept; a change without one keeps it too.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let set = put(json!({"url": "https://93.184.215.14/h", "secret": secret})).await;
    assert_eq!(set.body["secret"], secret);
    let changed = put(
        json!({"url": "https://93.184.215.14/other", "types": ["task.created", "task.created"]}),
    )
    .await;
    assert_eq!(
        (&changed.body["secret"], &changed.body["types"]),
        (&json!(secret), &json!(["task.created"]))
    );

    // A system reads its own webhook but changes nothing; others see nothing.
    assert_eq!(
        app.get("/v1/systems/fraud-detector/webhook", &key)
            .await
            .status,
        StatusCode::OK
    );
    let by_system = app
        .call(
            reqwest::Method::PUT,
            "/v1/systems/fraud-detector/webhook",
            Some(&key),
            Some(json!({"url": "https://evil.example/h"})),
        )
        .await;
    assert_eq!(by_system.status, StatusCode::FORBIDDEN);
    let other = app.system("triage", "in_the_loop").await;
    assert_eq!(
        app.get("/v1/systems/fraud-detector/webhook/deliveries", &other)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let removed = app
        .call(
            reqwest::Method::DELETE,
            "/v1/systems/fraud-detector/webhook",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(
            "/v1/systems/fraud-detector/webhook/deliveries/msg_1",
            ADMIN_TOKEN
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn internal_destinations_are_refused_unless_allowed() {
    let app = crate::harness::spawn_app().await;
    app.system("fraud-detector", "in_the_loop").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://10.0.0.1/hook",
        "http://192.168.1.1/hook",
        "http://[fd00:ec2::254]/hook",
        "http://0.0.0.0:8460/v1/proposals",
        "http://no-such-host.invalid/hook",
    ] {
        let set = put_webhook(&app, url).await;
        assert_eq!(
            set.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {}",
            set.body
        );
        assert!(
            set.body["detail"].as_str().unwrap().contains("refused"),
            "{url}: {}",
            set.body
        );
    }
    assert_eq!(
        app.get("/healthz", ADMIN_TOKEN).await.status,
        StatusCode::OK
    );
}

/// The delivery history once the first attempt is recorded.
async fn attempted(app: &TestApp) -> Vec<Value> {
    for _ in 0..200 {
        let history = deliveries(app, ADMIN_TOKEN).await;
        if history.iter().any(|d| d["attempts"].as_u64().unwrap() > 0) {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    deliveries(app, ADMIN_TOKEN).await
}

/// Answers every request with a redirect to `to`, counting them.
async fn redirector(to: String, hits: Arc<Mutex<usize>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let router = axum::Router::new().fallback(move || {
        let (to, hits) = (to.clone(), hits.clone());
        async move {
            *hits.lock().unwrap() += 1;
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, to)],
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

#[tokio::test]
async fn redirects_are_not_followed_and_the_log_holds_no_url() {
    let (app, key, _) = setup().await;
    let target_hits: Arc<Mutex<usize>> = Arc::default();
    let target = redirector("http://127.0.0.1:9/".into(), target_hits.clone()).await;
    let first_hits: Arc<Mutex<usize>> = Arc::default();
    let url = redirector(format!("{target}?token=s3cret"), first_hits.clone()).await;
    let url = format!("{url}?token=hook-secret-in-url");
    set_webhook(&app, &url).await;
    app.submit(&key, "flag", json!({"fraud": true}), json!({}))
        .await;
    let history = attempted(&app).await;
    assert_eq!(history[0]["last_status"], 307, "{history:?}");
    assert_eq!(*first_hits.lock().unwrap(), 1);
    assert_eq!(*target_hits.lock().unwrap(), 0, "the redirect was followed");

    app.app.store.settle_log().await.unwrap();
    let events = app.app.store.events_after(0, 1000).await.unwrap();
    let set = events
        .iter()
        .find(|e| e.kind == "system.webhook_set")
        .unwrap();
    let data = set.data.to_string();
    assert!(!data.contains("hook-secret-in-url"), "{data}");
    assert!(data.contains("\"host\":\"127.0.0.1:"), "{data}");
    assert!(data.contains("\"url_hash\":\"sha256:"), "{data}");
}

#[tokio::test]
async fn a_destination_allowed_when_set_is_checked_again_at_connect_time() {
    let (app, key, _) = setup().await;
    let hits: Arc<Mutex<usize>> = Arc::default();
    let url = redirector("http://127.0.0.1:9/".into(), hits.clone()).await;
    // Set while loopback is allowed, by name; then the fence closes.
    let url = url.replace("127.0.0.1", "localhost");
    set_webhook(&app, &url).await;
    let app = app.restart_with(|_| ()).await;
    app.submit(&key, "flag", json!({"fraud": true}), json!({}))
        .await;
    let history = attempted(&app).await;
    assert!(
        history[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{history:?}"
    );
    assert_eq!(*hits.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_reviewers_message_reaches_the_long_poll_and_the_webhook() {
    let (app, key, ann) = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = Receiver::new();
    let _serving = receiver.serve(listener);
    let webhook = set_webhook(&app, &url).await;
    receiver.verify_with(webhook["secret"].as_str().unwrap());

    let submitted = app
        .submit(&key, "refund", json!({"amount": 900}), json!({}))
        .await;
    let id = submitted.body["id"].as_str().unwrap().to_owned();
    let task = app.task_of(&ann, &id).await;
    // The AI waits.
    let waiting = {
        let (http, base, key, id) = (app.http.clone(), app.base.clone(), key.clone(), id.clone());
        tokio::spawn(async move {
            http.get(format!("{base}/v1/proposals/{id}?wait=30s"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let path = format!("/v1/tasks/{}/decision", task["id"].as_str().unwrap());
    let message = "ask the customer for the invoice first";
    // Words go back only with `respond`, and `respond` needs words.
    let silent = app
        .post(
            &path,
            &ann,
            json!({"verdict": "respond", "seen_digest": task["digest"]}),
        )
        .await;
    assert_eq!(
        silent.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        silent.body
    );
    let chatty = app
        .post(
            &path,
            &ann,
            json!({"verdict": "approve", "message": message, "seen_digest": task["digest"]}),
        )
        .await;
    assert_eq!(
        chatty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        chatty.body
    );
    // Bounded before any work; the server goes on serving.
    let huge = "x".repeat(10_001);
    let too_long = app
        .post(
            &path,
            &ann,
            json!({"verdict": "respond", "message": huge, "seen_digest": task["digest"]}),
        )
        .await;
    assert_eq!(
        too_long.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        too_long.body
    );
    assert!(
        too_long.body["detail"]
            .as_str()
            .unwrap()
            .contains("10000 bytes")
    );
    let answered = app
        .post(
            &path,
            &ann,
            json!({"verdict": "respond", "message": message, "seen_digest": task["digest"]}),
        )
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
    assert_eq!(answered.body["proposal"]["status"], "returned");

    let polled = waiting.await.unwrap();
    assert_eq!(polled["status"], "returned", "{polled}");
    assert_eq!(polled["resolution"]["outcome"], "returned");
    assert_eq!(polled["resolution"]["message"], message);
    assert_eq!(polled["resolution"]["decisions"][0]["verdict"], "respond");

    let got = receiver.wait_for(2).await;
    let resolved = &got[1].body;
    assert_eq!(resolved["type"], "proposal.resolved");
    assert_eq!(resolved["data"]["proposal"]["status"], "returned");
    assert_eq!(
        resolved["data"]["proposal"]["resolution"]["message"],
        message
    );

    // The audit log holds a salted hash of the message, never the words.
    let audit = app
        .get(&format!("/v1/proposals/{id}/audit"), ADMIN_TOKEN)
        .await;
    let text = audit.body.to_string();
    assert!(!text.contains("invoice"), "{text}");
    assert!(text.contains("returned"), "{text}");
}
