//! Starts a real server on port 0 with a manual clock and typed helpers.

use std::sync::Arc;
use std::time::Duration;

use loopgate_core::Timestamp;
use loopgate_server::{AppState, Config, ManualClock};
use loopgate_store::testing::TempDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// 2026-11-18T11:06:40Z
pub(crate) const T0: i64 = 1_795_000_000_000;
pub(crate) const ADMIN_TOKEN: &str = "lgt_test_admin_token_0123456789";

pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) clock: ManualClock,
    pub(crate) app: AppState,
    pub(crate) http: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    dir: tempfile::TempDir,
    /// With `LOOPGATE_TEST_STORE=postgres`: the test's database.
    database: Option<Arc<TempDatabase>>,
}

/// The suite runs on SQLite, or on PostgreSQL with
/// `LOOPGATE_TEST_STORE=postgres` (`scripts/test` runs it both ways).
fn test_database() -> Option<Arc<TempDatabase>> {
    match std::env::var("LOOPGATE_TEST_STORE").as_deref() {
        Ok("postgres") => Some(Arc::new(TempDatabase::create().unwrap())),
        Ok("sqlite") | Err(_) => None,
        Ok(other) => panic!("LOOPGATE_TEST_STORE must be sqlite or postgres, not {other}"),
    }
}

pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) content_type: String,
}

/// A refused body: 422 with a problem, named with what was sent.
pub(crate) fn assert_unprocessable(response: &Response, sent: &Value) {
    assert_eq!(
        response.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{sent}: {}",
        response.body
    );
    assert_eq!(response.content_type, "application/problem+json");
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_with(|_| ()).await
}

pub(crate) async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    spawn_in(dir, test_database(), clock, configure).await
}

/// A server on a fresh data directory with the given clock.
pub(crate) async fn spawn_in_clock(
    clock: ManualClock,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    spawn_in(
        tempfile::tempdir().unwrap(),
        test_database(),
        clock,
        configure,
    )
    .await
}

/// A server on `listener` (bound first, so that its address can be in the
/// configuration) with the given clock.
pub(crate) async fn spawn_listening(
    listener: tokio::net::TcpListener,
    clock: ManualClock,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_on(Some(listener), dir, test_database(), clock, configure).await
}

async fn spawn_in(
    dir: tempfile::TempDir,
    database: Option<Arc<TempDatabase>>,
    clock: ManualClock,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    spawn_on(None, dir, database, clock, configure).await
}

async fn spawn_on(
    listener: Option<tokio::net::TcpListener>,
    dir: tempfile::TempDir,
    database: Option<Arc<TempDatabase>>,
    clock: ManualClock,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = Config::new(dir.path().to_path_buf());
    config.database_url = database.as_ref().map(|db| db.url.clone());
    config.database_readers = 2;
    config.bootstrap_token = Some(ADMIN_TOKEN.to_owned());
    config.timer_interval = Duration::from_secs(3600);
    configure(&mut config);
    let started = loopgate_server::start(config, Arc::new(clock.clone()))
        .await
        .unwrap();
    let listener = match listener {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let addr = listener.local_addr().unwrap();
    let app = started.app.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(loopgate_server::serve(listener, started.app, async move {
        let _ = stopped.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        clock,
        app,
        http: reqwest::Client::new(),
        stop,
        server,
        dir,
        database,
    }
}

impl TestApp {
    /// Stops the server (gracefully) and starts a new one on the same data
    /// directory and clock, on a new port, with the same fence for webhooks.
    pub(crate) async fn restart(self) -> TestApp {
        let allow = self.app.config.webhook_allow_private.clone();
        self.restart_with(move |config| config.webhook_allow_private = allow)
            .await
    }

    /// Signals shutdown (as SIGTERM does) and waits for `serve` to return.
    pub(crate) async fn shut_down(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.server.await.unwrap()
    }

    /// Waits for `serve` to return by itself (at most `within`).
    pub(crate) async fn served(self, within: Duration) -> std::io::Result<()> {
        tokio::time::timeout(within, self.server)
            .await
            .expect("serve returns by itself")
            .unwrap()
    }

    /// [`TestApp::restart`] with a configuration of its own.
    pub(crate) async fn restart_with(self, configure: impl FnOnce(&mut Config)) -> TestApp {
        let TestApp {
            clock,
            stop,
            server,
            dir,
            app,
            database,
            ..
        } = self;
        let _ = stop.send(());
        app.shutdown.cancel();
        server.await.unwrap().unwrap();
        drop(app);
        spawn_in(dir, database, clock, configure).await
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_response(request.send().await.unwrap()).await
    }

    pub(crate) async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Vec<u8>,
    ) -> Response {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body);
        into_response(request.send().await.unwrap()).await
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Response {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Registers a `high` risk system and returns an API key for it.
    pub(crate) async fn system(&self, id: &str, oversight: &str) -> String {
        self.system_of_tier(id, oversight, "high").await
    }

    /// Registers a system of a risk tier and returns an API key for it.
    pub(crate) async fn system_of_tier(&self, id: &str, oversight: &str, tier: &str) -> String {
        let body = json!({"id": id, "name": id, "owner": "team", "purpose": "tests", "risk_tier": tier, "oversight": oversight});
        let created = self.post("/v1/systems", ADMIN_TOKEN, body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let key = self
            .post(&format!("/v1/systems/{id}/keys"), ADMIN_TOKEN, json!({}))
            .await;
        assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
        key.body["secret"].as_str().unwrap().to_owned()
    }

    /// Creates a user and returns a personal token.
    pub(crate) async fn user(&self, username: &str, roles: &[&str], groups: &[&str]) -> String {
        let created = self
            .post(
                "/v1/users",
                ADMIN_TOKEN,
                json!({"username": username, "roles": roles, "groups": groups}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let token = self
            .post(&format!("/v1/users/{id}/tokens"), ADMIN_TOKEN, json!({}))
            .await;
        assert_eq!(token.status, StatusCode::CREATED, "{}", token.body);
        token.body["secret"].as_str().unwrap().to_owned()
    }

    /// Creates a user who logs in to the web UI with `password`; returns their id.
    pub(crate) async fn user_with_password(
        &self,
        username: &str,
        roles: &[&str],
        groups: &[&str],
        password: &str,
    ) -> String {
        let body =
            json!({"username": username, "roles": roles, "groups": groups, "password": password});
        let created = self.post("/v1/users", ADMIN_TOKEN, body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        created.body["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn publish(&self, text: &str) -> Response {
        self.post(
            "/v1/policies",
            ADMIN_TOKEN,
            json!({"text": text, "description": "test"}),
        )
        .await
    }

    /// Submits a proposal with the given output and context.
    pub(crate) async fn submit(
        &self,
        key: &str,
        action: &str,
        output: Value,
        context: Value,
    ) -> Response {
        self.post("/v1/proposals", key, proposal(action, output, context))
            .await
    }

    /// The open tasks a reviewer sees.
    pub(crate) async fn tasks(&self, token: &str) -> Vec<Value> {
        let page = self.get("/v1/tasks", token).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        page.body["items"].as_array().unwrap().clone()
    }

    /// The task of a proposal, from the reviewer's queue.
    pub(crate) async fn task_of(&self, token: &str, proposal_id: &str) -> Value {
        let tasks = self.tasks(token).await;
        tasks
            .into_iter()
            .find(|t| t["proposal_id"] == proposal_id)
            .unwrap_or_else(|| panic!("no open task for {proposal_id}"))
    }

    pub(crate) async fn decide(&self, token: &str, task: &Value, verdict: &str) -> Response {
        let body = json!({"verdict": verdict, "rationale": "test", "seen_digest": task["digest"]});
        self.post(
            &format!("/v1/tasks/{}/decision", task["id"].as_str().unwrap()),
            token,
            body,
        )
        .await
    }

    /// The system `fraud-detector` (returns its key) whose every proposal
    /// goes to the `ops` group, and `ann` of `ops` (returns her token).
    pub(crate) async fn ops_review(&self) -> (String, String) {
        let key = self.system("fraud-detector", "in_the_loop").await;
        let published = self
            .publish(r#"@reviewers("ops") permit(principal, action, resource);"#)
            .await;
        assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
        let ann = self.user("ann", &["reviewer"], &["ops"]).await;
        (key, ann)
    }

    /// `PATCH /v1/users/{id}` as the admin.
    pub(crate) async fn patch_user(&self, id: &str, body: Value) -> Response {
        self.call(
            Method::PATCH,
            &format!("/v1/users/{id}"),
            Some(ADMIN_TOKEN),
            Some(body),
        )
        .await
    }

    /// A user's id, by username.
    pub(crate) async fn user_id(&self, username: &str) -> String {
        let users = self.get("/v1/users", ADMIN_TOKEN).await;
        users.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == username)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Moves the clock and runs the deadline worker.
    pub(crate) async fn advance(&self, by: Duration) -> usize {
        self.clock.advance(by);
        loopgate_server::timers::run_due(&self.app).await.unwrap()
    }
}

pub(crate) fn proposal(action: &str, output: Value, context: Value) -> Value {
    json!({
        "action": action,
        "subject": {"type": "Account", "id": "acct-1", "attributes": {"country": "DE"}},
        "input": {"transaction_id": "tx-1"},
        "output": output,
        "confidence": 0.8,
        "context": context,
    })
}

async fn into_response(response: reqwest::Response) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Response {
        status,
        body,
        content_type,
    }
}
