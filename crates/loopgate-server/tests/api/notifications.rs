//! Notifications over real protocols on loopback: a real SMTP server
//! (Python's aiosmtpd, from the test virtual environment), a Slack Web API
//! stand-in that answers the documented methods and records every call,
//! and a Teams workflow receiver. Slack interactions are posted to loopgate
//! signed exactly as Slack signs them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as AxumResponse};
use hmac::{Hmac, Mac as _};
use loopgate_server::Config;
use loopgate_server::clock::Clock as _;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

use crate::harness::{ADMIN_TOKEN, TestApp, assert_unprocessable, spawn_with};

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN: &str = "xoxb-test-bot-token";
const PUBLIC_URL: &str = "http://loopgate.test";

// ---------------------------------------------------------------- SMTP

/// aiosmtpd on a loopback port, writing each message to a directory.
pub(crate) struct SmtpSink {
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

/// The test virtual environment's Python (`scripts/test` makes it).
fn python() -> PathBuf {
    if let Ok(python) = std::env::var("LOOPGATE_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join("target/pyvenv/bin/python");
    assert!(
        python.exists(),
        "the SMTP tests need the test virtual environment: run scripts/test, or \
         `python3 -m venv target/pyvenv && target/pyvenv/bin/pip install -r tests/requirements.txt`"
    );
    python
}

impl SmtpSink {
    pub(crate) async fn start() -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/notify/smtp_sink.py");
        let mut child = tokio::process::Command::new(python())
            .arg(script)
            .arg(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the SMTP sink starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await.unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the SMTP sink said `{line}`"));
        SmtpSink {
            port,
            dir,
            _child: child,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn messages(&self) -> Vec<Vec<u8>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        paths.sort();
        paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    /// Waits until `n` messages arrived; returns them parsed.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Mail> {
        for _ in 0..600 {
            let got = self.messages();
            if n <= got.len() {
                return got.iter().map(|raw| Mail::parse(raw)).collect();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{n} emails expected, got {}", self.messages().len());
    }
}

/// A received email's parts.
#[derive(Debug, Clone)]
pub(crate) struct Mail {
    pub(crate) to: String,
    pub(crate) subject: String,
    pub(crate) text: String,
    pub(crate) html: String,
}

impl Mail {
    fn parse(raw: &[u8]) -> Mail {
        let message = mail_parser::MessageParser::default().parse(raw).unwrap();
        Mail {
            to: message
                .to()
                .and_then(|to| to.first())
                .and_then(|a| a.address())
                .unwrap_or_default()
                .to_owned(),
            subject: message.subject().unwrap_or_default().to_owned(),
            text: message.body_text(0).unwrap_or_default().into_owned(),
            html: message.body_html(0).unwrap_or_default().into_owned(),
        }
    }

    /// The decision link's path (`/ui/links/lgl_…`), if the mail has one.
    pub(crate) fn link_path(&self) -> Option<String> {
        let at = self.text.find("/ui/links/")?;
        let rest = &self.text[at..];
        let end = rest.find(['?', '\n', ' ']).unwrap_or(rest.len());
        Some(rest[..end].to_owned())
    }
}

// ---------------------------------------------------------------- Slack

/// Slack's Web API as far as loopgate uses it, recording every call.
#[derive(Clone, Default)]
struct SlackApi {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    /// `chat.postMessage` calls still to answer 429.
    limited: Arc<AtomicU32>,
}

async fn slack_method(
    State(slack): State<SlackApi>,
    UrlPath(method): UrlPath<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> AxumResponse {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {BOT_TOKEN}"))
    {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    if method == "chat.postMessage"
        && slack
            .limited
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
    }
    let n = {
        let mut calls = slack.calls.lock().unwrap();
        calls.push((method.clone(), body.clone()));
        calls.len()
    };
    let answer = match method.as_str() {
        "chat.postMessage" => {
            json!({"ok": true, "channel": body["channel"], "ts": format!("1700000000.{n:06}")})
        }
        "users.info" => {
            let user = body["user"].as_str().unwrap_or_default();
            json!({"ok": true, "user": {"id": user, "is_email_confirmed": true,
                   "profile": {"email": format!("{}@slack.example", user.to_lowercase())}}})
        }
        "chat.update" | "views.open" | "chat.postEphemeral" => json!({"ok": true}),
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    Json(answer).into_response()
}

impl SlackApi {
    async fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .route("/api/{method}", axum::routing::post(slack_method))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        url
    }

    fn calls(&self, method: &str) -> Vec<Value> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, body)| body.clone())
            .collect()
    }

    async fn wait_for(&self, method: &str, n: usize) -> Vec<Value> {
        for _ in 0..400 {
            let got = self.calls(method);
            if n <= got.len() {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{n} `{method}` calls expected, got {:?}",
            self.calls(method)
        );
    }
}

/// Slack's documented limits on what loopgate posts.
fn check_block_kit(blocks: &Value) {
    let blocks = blocks.as_array().expect("blocks are an array");
    assert!(blocks.len() <= 50, "at most 50 blocks: {}", blocks.len());
    for block in blocks {
        match block["type"].as_str().unwrap() {
            "header" => assert!(block["text"]["text"].as_str().unwrap().chars().count() <= 150),
            "section" => {
                if let Some(text) = block["text"]["text"].as_str() {
                    assert!(text.chars().count() <= 3000, "section text ≤ 3000");
                }
                for field in block["fields"].as_array().into_iter().flatten() {
                    assert!(field["text"].as_str().unwrap().chars().count() <= 2000);
                }
                assert!(block["fields"].as_array().is_none_or(|f| f.len() <= 10));
            }
            "actions" => {
                let elements = block["elements"].as_array().unwrap();
                assert!(elements.len() <= 25);
                for element in elements {
                    assert!(element["text"]["text"].as_str().unwrap().chars().count() <= 75);
                    if let Some(value) = element["value"].as_str() {
                        assert!(value.len() <= 2000, "button value ≤ 2000");
                    }
                    assert!(element["action_id"].as_str().unwrap().len() <= 255);
                }
            }
            "context" => assert!(block["elements"].as_array().unwrap().len() <= 10),
            other => panic!("unexpected block type {other}"),
        }
    }
}

fn button<'a>(blocks: &'a Value, action: &str) -> Option<&'a Value> {
    blocks
        .as_array()?
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().into_iter().flatten())
        .find(|e| e["action_id"] == action)
}

/// Posts an interaction payload signed as Slack signs it.
async fn interact(app: &TestApp, payload: &Value, timestamp: i64) -> (StatusCode, Value, String) {
    let body = format!(
        "payload={}",
        form_urlencoded::byte_serialize(payload.to_string().as_bytes()).collect::<String>()
    );
    let signature = sign(SIGNING_SECRET, timestamp, &body);
    post_interaction(app, &body, Some(timestamp), Some(&signature)).await
}

fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_interaction(
    app: &TestApp,
    body: &str,
    timestamp: Option<i64>,
    signature: Option<&str>,
) -> (StatusCode, Value, String) {
    let mut request = app
        .http
        .post(format!("{}/integrations/slack/interactions", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(timestamp) = timestamp {
        request = request.header("x-slack-request-timestamp", timestamp.to_string());
    }
    if let Some(signature) = signature {
        request = request.header("x-slack-signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

// ---------------------------------------------------------------- Teams

#[derive(Clone, Default)]
struct Teams(Arc<Mutex<Vec<Value>>>);

async fn teams_take(State(teams): State<Teams>, Json(body): Json<Value>) -> StatusCode {
    teams.0.lock().unwrap().push(body);
    StatusCode::ACCEPTED
}

impl Teams {
    async fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/workflows/ops", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .route("/workflows/ops", axum::routing::post(teams_take))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        url
    }

    async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..400 {
            let got = self.0.lock().unwrap().clone();
            if n <= got.len() {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{n} Teams cards expected");
    }
}

/// An Adaptive Card as Teams takes it from a workflow.
fn check_card(message: &Value, link: &str) {
    assert_eq!(message["type"], "message");
    let attachment = &message["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    let version: f64 = card["version"].as_str().unwrap().parse().unwrap();
    assert!(1.4 <= version, "Adaptive Card 1.4 or later");
    let body = card["body"].as_array().unwrap();
    assert!(
        body.iter()
            .all(|b| matches!(b["type"].as_str(), Some("TextBlock" | "FactSet")))
    );
    assert!(
        body[1]["facts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| { f["title"].is_string() && f["value"].is_string() })
    );
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(card["actions"][0]["url"], link);
}

// ---------------------------------------------------------------- helpers

fn configure(config: &mut Config, smtp: Option<&SmtpSink>, slack: Option<&str>) {
    config.public_url = Some(PUBLIC_URL.to_owned());
    config.smtp_url = smtp.map(SmtpSink::url);
    config.email_from = Some("loopgate <loopgate@example.com>".to_owned());
    if let Some(slack) = slack {
        config.slack_bot_token = Some(BOT_TOKEN.to_owned());
        config.slack_signing_secret = Some(SIGNING_SECRET.to_owned());
        config.slack_api_url = slack.to_owned();
    }
    config.webhook_retry_base = Duration::from_secs(1);
    // The Teams receiver listens on loopback, which the fence refuses by default.
    config.webhook_allow_private = vec!["127.0.0.0/8".parse().unwrap()];
}

/// `PATCH` of a user, by username, as the admin.
async fn patch_user(app: &TestApp, username: &str, body: Value) -> crate::harness::Response {
    app.patch_user(&app.user_id(username).await, body).await
}

async fn set_group(app: &TestApp, group: &str, body: Value) -> crate::harness::Response {
    app.call(
        Method::PUT,
        &format!("/v1/groups/{group}/notifications"),
        Some(ADMIN_TOKEN),
        Some(body),
    )
    .await
}

fn seconds(app: &TestApp) -> i64 {
    app.clock.now().millis().div_euclid(1000)
}

/// Waits until every message of a task is recorded as sent.
async fn history(app: &TestApp, task: &str, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let page = app
            .get(&format!("/v1/notifications?task={task}"), ADMIN_TOKEN)
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let items = page.body["items"].as_array().unwrap().clone();
        if n <= items.len() && items.iter().all(|i| i["state"] != "pending") {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{n} settled messages expected for {task}");
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_task_reaches_email_slack_and_teams_and_a_slack_click_decides_it() {
    let smtp = SmtpSink::start().await;
    let slack = SlackApi::default();
    let slack_url = slack.serve().await;
    let teams = Teams::default();
    let teams_url = teams.serve().await;
    let app = spawn_with(|config| configure(config, Some(&smtp), Some(&slack_url))).await;
    let (key, _ann) = app.ops_review().await;
    let patched = patch_user(
        &app,
        "ann",
        json!({"email": "ann@example.com", "slack_user_id": "UANN",
               "notify": {"slack": {"mode": "each"}}}),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["email"], "ann@example.com");
    let set = set_group(
        &app,
        "ops",
        json!({"email": ["ops-team@example.com"], "slack_channel": "COPS", "teams_webhook": teams_url}),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(
        set.body["events"],
        json!(["task.created", "task.escalated", "task.sla_warning"])
    );

    let submitted = app
        .submit(
            &key,
            "flag",
            json!({"fraud": true, "amount": 120}),
            json!({}),
        )
        .await;
    let proposal = submitted.body["id"].as_str().unwrap().to_owned();
    let task = app.task_of(&_ann, &proposal).await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let link = format!("{PUBLIC_URL}/ui/tasks/{task_id}");

    // Email: one to the member, one to the group's address.
    let mut mails = smtp.wait_for(2).await;
    mails.sort_by(|a, b| a.to.cmp(&b.to));
    assert_eq!(mails[0].to, "ann@example.com");
    assert_eq!(mails[1].to, "ops-team@example.com");
    for mail in &mails {
        assert_eq!(mail.subject, "Review needed: fraud-detector · flag");
        assert!(mail.text.contains("Output · fraud: true"), "{}", mail.text);
        assert!(mail.text.contains("Confidence: 0.80"), "{}", mail.text);
        assert!(
            mail.text.contains(&format!("Open in loopgate: {link}")),
            "{}",
            mail.text
        );
        assert!(
            mail.html.contains(&format!("href=\"{link}\"")),
            "{}",
            mail.html
        );
    }
    assert!(
        mails[0].link_path().is_some(),
        "a member gets decision links"
    );
    assert!(mails[1].link_path().is_none(), "an address is nobody's");

    // Slack: one message in the group's channel and one to Ann, who asked
    // for direct messages; within Slack's limits.
    let posted = slack.wait_for("chat.postMessage", 2).await;
    let mut to: Vec<&str> = posted
        .iter()
        .map(|p| p["channel"].as_str().unwrap())
        .collect();
    to.sort_unstable();
    assert_eq!(to, ["COPS", "UANN"]);
    let blocks = &posted[0]["blocks"];
    check_block_kit(blocks);
    check_block_kit(&posted[1]["blocks"]);
    let value = button(blocks, "approve").unwrap()["value"]
        .as_str()
        .unwrap();
    assert_eq!(
        value,
        format!("{task_id}|{}", task["digest"].as_str().unwrap())
    );
    assert_eq!(button(blocks, "open").unwrap()["url"], json!(link));

    // Teams: an Adaptive Card with the summary and an Open action.
    let cards = teams.wait_for(1).await;
    check_card(&cards[0], &link);

    // Interactions that are not Slack's are refused.
    let click = |user: &str| {
        json!({"type": "block_actions", "user": {"id": user}, "trigger_id": "trig-1",
               "channel": {"id": "COPS"}, "actions": [{"action_id": "approve", "value": value}]})
    };
    let now = seconds(&app);
    let body = format!(
        "payload={}",
        form_urlencoded::byte_serialize(click("UANN").to_string().as_bytes()).collect::<String>()
    );
    let unsigned = post_interaction(&app, &body, None, None).await;
    assert_eq!(unsigned.0, StatusCode::UNAUTHORIZED, "{}", unsigned.2);
    let wrong = sign("another-secret", now, &body);
    let wrong = post_interaction(&app, &body, Some(now), Some(&wrong)).await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    let old = now - 301;
    let stale = post_interaction(
        &app,
        &body,
        Some(old),
        Some(&sign(SIGNING_SECRET, old, &body)),
    )
    .await;
    assert_eq!(stale.0, StatusCode::UNAUTHORIZED);
    assert_eq!(stale.1["code"], "unauthenticated", "{}", stale.2);

    // A member Slack cannot map to a reviewer of the group: an ephemeral
    // refusal, nothing decided.
    let (status, ..) = interact(&app, &click("UNOBODY"), now).await;
    assert_eq!(status, StatusCode::OK);
    let refusals = slack.wait_for("chat.postEphemeral", 1).await;
    assert_eq!(refusals[0]["user"], "UNOBODY");
    assert!(refusals[0]["text"].as_str().unwrap().contains("not linked"));
    assert!(slack.calls("views.open").is_empty());

    // A member of another group: the same.
    app.user("bob", &["reviewer"], &["payments"]).await;
    patch_user(&app, "bob", json!({"slack_user_id": "UBOB"})).await;
    let (status, ..) = interact(&app, &click("UBOB"), now).await;
    assert_eq!(status, StatusCode::OK);
    let refusals = slack.wait_for("chat.postEphemeral", 2).await;
    assert_eq!(refusals[1]["user"], "UBOB");
    let text = refusals[1]["text"].as_str().unwrap();
    assert!(text.contains("not a reviewer of the group `ops`"), "{text}");
    assert!(slack.calls("views.open").is_empty());

    // Ann's click opens the rationale modal; its replay is refused.
    let signed_at = now;
    let (status, ..) = interact(&app, &click("UANN"), signed_at).await;
    assert_eq!(status, StatusCode::OK);
    let views = slack.wait_for("views.open", 1).await;
    assert_eq!(views[0]["trigger_id"], "trig-1");
    let view = &views[0]["view"];
    assert_eq!(view["callback_id"], "loopgate_decision");
    let replay = interact(&app, &click("UANN"), signed_at).await;
    assert_eq!(replay.0, StatusCode::UNAUTHORIZED, "{}", replay.2);

    // The modal's submission decides, as Ann, through the API's rules.
    let submission = json!({"type": "view_submission", "user": {"id": "UANN"},
        "view": {"callback_id": "loopgate_decision", "private_metadata": view["private_metadata"],
                 "state": {"values": {"rationale": {"text": {"type": "plain_text_input", "value": "matches the card pattern"}}}}}});
    let (status, answer, text) = interact(&app, &submission, now + 1).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(answer, json!({"response_action": "clear"}));
    let decided = app
        .get(&format!("/v1/proposals/{proposal}"), ADMIN_TOKEN)
        .await;
    assert_eq!(decided.body["status"], "approved", "{}", decided.body);
    let decision = &decided.body["resolution"]["decisions"][0];
    assert_eq!(decision["reviewer"], "ann");
    assert_eq!(decision["rationale"], "matches the card pattern");

    // Every message about the task now says who decided what.
    let updates = slack.wait_for("chat.update", 2).await;
    let mut rewritten: Vec<&str> = updates
        .iter()
        .map(|u| u["channel"].as_str().unwrap())
        .collect();
    rewritten.sort_unstable();
    assert_eq!(rewritten, ["COPS", "UANN"]);
    for update in &updates {
        // (The stand-in answered each post with `ts` 1700000000.<call number>.)
        assert!(update["ts"].as_str().unwrap().starts_with("1700000000."));
        let text = update["blocks"].to_string();
        assert!(text.contains("Approved by ann"), "{text}");
        assert!(button(&update["blocks"], "approve").is_none());
        check_block_kit(&update["blocks"]);
    }

    // The history: each message, sent once.
    let sent = history(&app, &task_id, 6).await;
    let mut channels: Vec<&str> = sent
        .iter()
        .map(|m| m["channel"].as_str().unwrap())
        .collect();
    channels.sort_unstable();
    assert_eq!(
        channels,
        ["email", "email", "slack", "slack", "slack_update", "teams"],
        "{sent:?}"
    );
    assert!(sent.iter().all(|m| m["state"] == "delivered"), "{sent:?}");
    let one = app
        .get(&format!("/v1/notifications/{}", sent[0]["id"]), ADMIN_TOKEN)
        .await;
    assert_eq!(one.body["history"][0]["n"], 1, "{}", one.body);
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    let metrics = metrics.body.as_str().unwrap();
    assert!(
        metrics
            .contains("loopgate_notification_attempts_total{channel=\"email\",result=\"sent\"} 2"),
        "{metrics}"
    );

    // The audit log has the group's settings, without the addresses.
    let entries = app
        .get("/v1/audit/entries?start=0&end=100", ADMIN_TOKEN)
        .await;
    let log = entries.body.to_string();
    assert!(!log.contains("ops-team@example.com"));
    assert!(!log.contains("ann@example.com"));
}

#[tokio::test]
async fn a_decision_link_confirms_before_it_decides_and_works_once() {
    let smtp = SmtpSink::start().await;
    let app = spawn_with(|config| configure(config, Some(&smtp), None)).await;
    let (key, _ann) = app.ops_review().await;
    patch_user(&app, "ann", json!({"email": "ann@example.com"})).await;
    let set = set_group(&app, "ops", json!({"events": ["task.created"]})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let submitted = app
        .submit(&key, "flag", json!({"fraud": true}), json!({}))
        .await;
    let proposal = submitted.body["id"].as_str().unwrap().to_owned();
    let mails = smtp.wait_for(1).await;
    let path = mails[0].link_path().expect("a decision link");
    let page = |path: String| {
        let http = app.http.clone();
        let base = app.base.clone();
        async move {
            let response = http.get(format!("{base}{path}")).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    let confirm = |path: String, verdict: &str| {
        let http = app.http.clone();
        let base = app.base.clone();
        let form = [
            ("verdict", verdict.to_owned()),
            ("rationale", "ok".to_owned()),
        ];
        async move {
            let response = http
                .post(format!("{base}{path}"))
                .form(&form)
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };

    // A GET (what a mail scanner does) shows the task and decides nothing.
    let (status, html) = page(format!("{path}?verdict=approve")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("id=\"link-form\""));
    assert!(html.contains("value=\"approve\" checked"), "{html}");
    let pending = app
        .get(&format!("/v1/proposals/{proposal}"), ADMIN_TOKEN)
        .await;
    assert_eq!(pending.body["status"], "pending");

    // The POST decides, as the user the link was made for.
    let (status, html) = confirm(path.clone(), "approve").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Approved as ann"), "{html}");
    let decided = app
        .get(&format!("/v1/proposals/{proposal}"), ADMIN_TOKEN)
        .await;
    assert_eq!(decided.body["status"], "approved");
    assert_eq!(
        decided.body["resolution"]["decisions"][0]["reviewer"],
        "ann"
    );

    // Once.
    let (status, html) = page(path.clone()).await;
    assert_eq!(status, StatusCode::GONE, "{html}");
    assert!(html.contains("already used"), "{html}");
    let (status, _) = confirm(path.clone(), "reject").await;
    assert_eq!(status, StatusCode::GONE);

    // Unknown and malformed tokens explain themselves; nothing is looked up
    // for a malformed one.
    let (status, html) = page(format!("/ui/links/lgl_{}", "0".repeat(64))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("not one loopgate made"));
    let (status, _) = page("/ui/links/..%2f..%2fetc".to_owned()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An expired link.
    let second = app
        .submit(&key, "flag", json!({"fraud": false}), json!({}))
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    let mails = smtp.wait_for(2).await;
    let path = mails[1].link_path().expect("a decision link");
    app.clock.advance(Duration::from_secs(25 * 3600));
    let (status, html) = page(path).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("expired"), "{html}");
}

#[tokio::test]
async fn deadlines_warn_digests_gather_and_slack_429_is_honoured() {
    let smtp = SmtpSink::start().await;
    let slack = SlackApi::default();
    slack.limited.store(1, Ordering::SeqCst);
    let slack_url = slack.serve().await;
    let app = spawn_with(|config| configure(config, Some(&smtp), Some(&slack_url))).await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let published = app
        .publish(r#"@reviewers("ops") @sla("PT1H") permit(principal, action, resource);"#)
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    // Ann takes email digests every 15 minutes.
    let patched = patch_user(
        &app,
        "ann",
        json!({"email": "ann@example.com",
               "notify": {"email": {"mode": "digest", "every_minutes": 15}}}),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let set = set_group(
        &app,
        "ops",
        json!({"slack_channel": "COPS", "events": ["task.created", "task.sla_warning"]}),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);

    for n in 0..2 {
        let submitted = app.submit(&key, "flag", json!({"n": n}), json!({})).await;
        assert_eq!(submitted.status, StatusCode::CREATED);
    }
    let tasks = app.tasks(&ann).await;
    assert_eq!(tasks.len(), 2);

    // Slack answered one message 429 with Retry-After: 1 (the other may
    // have gone out beside it). Nothing more goes to Slack until that second
    // has passed on the server's clock.
    let mut limited = false;
    for _ in 0..400 {
        let page = app
            .get("/v1/notifications?state=pending", ADMIN_TOKEN)
            .await;
        limited = page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["last_status"] == 429);
        if limited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(limited, "a 429 was recorded");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(slack.calls("chat.postMessage").len() <= 1);
    app.clock.advance(Duration::from_secs(2));
    let posted = slack.wait_for("chat.postMessage", 2).await;
    assert_eq!(posted.len(), 2);
    let mut retried = None;
    for _ in 0..400 {
        let page = app
            .get("/v1/notifications?state=delivered", ADMIN_TOKEN)
            .await;
        retried = page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["channel"] == "slack" && m["attempts"] == 2)
            .cloned();
        if retried.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let retried = retried.expect("one Slack message was sent twice");
    let one = app
        .get(&format!("/v1/notifications/{}", retried["id"]), ADMIN_TOKEN)
        .await;
    assert_eq!(one.body["history"][0]["status"], 429, "{}", one.body);
    assert_eq!(one.body["history"][1]["status"], 200, "{}", one.body);

    // The digest: one email for both tasks at the next quarter hour.
    assert!(smtp.messages().is_empty());
    app.clock.advance(Duration::from_secs(15 * 60));
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].subject, "2 loopgate reviews for ops", "{mails:?}");
    assert!(mails[0].text.matches("Review needed").count() == 2);

    // 75% of the hour: the SLA warning, logged and sent.
    app.clock.advance(Duration::from_secs(31 * 60));
    let warned = slack.wait_for("chat.postMessage", 4).await;
    let text = warned[2]["text"].as_str().unwrap();
    assert!(text.starts_with("Deadline near"), "{text}");
    let entries = app
        .get("/v1/audit/entries?start=0&end=200", ADMIN_TOKEN)
        .await;
    assert!(
        entries.body.to_string().matches("task.sla_warning").count() >= 2,
        "{}",
        entries.body
    );
    // Once per task and level.
    app.clock.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(slack.calls("chat.postMessage").len(), 4);
}

#[tokio::test]
async fn bad_settings_are_refused_and_users_choose_their_own() {
    let app = spawn_with(|config| configure(config, None, None)).await;
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    let bad = [
        json!({"email": ["not an address"]}),
        json!({"slack_channel": "general"}),
        json!({"teams_webhook": "ftp://teams.example/x"}),
        json!({"teams_webhook": "http://169.254.169.254/latest"}),
        json!({"events": ["task.claimed"]}),
        json!({"email": "a@example.com"}),
        json!({"extra": true}),
    ];
    for body in bad {
        let refused = set_group(&app, "ops", body.clone()).await;
        assert_unprocessable(&refused, &body);
    }
    let refused = set_group(&app, "Not A Group", json!({})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Only admins set a group's channels.
    let forbidden = app
        .call(
            Method::PUT,
            "/v1/groups/ops/notifications",
            Some(&ann),
            Some(json!({})),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    // Reviewers of the group read them.
    let read = app.get("/v1/groups/ops/notifications", &ann).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["events"], json!([]));

    // Users choose how they hear, but not their own addresses.
    let id = app.user_id("ann").await;
    let mine = app
        .call(
            Method::PATCH,
            &format!("/v1/users/{id}"),
            Some(&ann),
            Some(json!({"notify": {"email": {"mode": "off"}, "slack": {"mode": "digest", "every_minutes": 30}}})),
        )
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert_eq!(mine.body["notify"]["email"]["mode"], "off");
    assert_eq!(mine.body["notify"]["slack"]["every_minutes"], 30);
    let refused = app
        .call(
            Method::PATCH,
            &format!("/v1/users/{id}"),
            Some(&ann),
            Some(json!({"email": "ann@example.com"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    for notify in [
        json!({"email": {"mode": "digest"}}),
        json!({"email": {"mode": "digest", "every_minutes": 0}}),
        json!({"email": {"mode": "sometimes"}}),
    ] {
        let refused = app
            .call(
                Method::PATCH,
                &format!("/v1/users/{id}"),
                Some(&ann),
                Some(json!({"notify": notify})),
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{notify}");
    }
    for contact in [json!({"email": "nope"}), json!({"slack_user_id": "ann"})] {
        let refused = patch_user(&app, "ann", contact.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{contact}"
        );
    }

    // Slack interactions without Slack configured: refused, and the server
    // still serves.
    let (status, ..) = post_interaction(&app, "payload=%7B%7D", Some(0), Some("v0=00")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let huge = "a".repeat(300 * 1024);
    let (status, ..) = post_interaction(&app, &huge, Some(0), Some("v0=00")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        app.get("/healthz", ADMIN_TOKEN).await.status,
        StatusCode::OK
    );
}

/// Signed (so they get past the signature check) but hostile payloads:
/// nothing is decided, nothing fails, and the server still serves.
#[tokio::test]
async fn hostile_slack_payloads_decide_nothing_and_the_server_serves() {
    let slack = SlackApi::default();
    let slack_url = slack.serve().await;
    let app = spawn_with(|config| configure(config, None, Some(&slack_url))).await;
    let (key, ann) = app.ops_review().await;
    patch_user(&app, "ann", json!({"slack_user_id": "UANN"})).await;
    let submitted = app
        .submit(&key, "flag", json!({"fraud": true}), json!({}))
        .await;
    let proposal = submitted.body["id"].as_str().unwrap().to_owned();
    let task = app.task_of(&ann, &proposal).await;
    let task_id = task["id"].as_str().unwrap();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies = [
        "payload=".to_owned(),
        "payload=not%20json".to_owned(),
        "no-payload-here".to_owned(),
        format!(
            "payload={}",
            form_urlencoded::byte_serialize(deep.as_bytes()).collect::<String>()
        ),
        "payload=%7B%22type%22%3A%22block_actions%22%7D".to_owned(),
        "%FF%FE%00=%00".to_owned(),
    ];
    let mut now = seconds(&app);
    for body in &bodies {
        now += 1;
        let signature = sign(SIGNING_SECRET, now, body);
        let (status, _, text) = post_interaction(&app, body, Some(now), Some(&signature)).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{status} {text}"
        );
    }
    let payloads = [
        json!({"type": "block_actions", "user": {"id": 7}, "actions": "x"}),
        json!({"type": "block_actions", "user": {"id": "UANN"}, "trigger_id": "t",
               "actions": [{"action_id": "approve", "value": "tsk_nope|sha256:00"}]}),
        json!({"type": "block_actions", "user": {"id": "UANN"}, "trigger_id": "t",
               "actions": [{"action_id": "approve", "value": format!("{task_id}|{}", "x".repeat(5000))}]}),
        json!({"type": "view_submission", "user": {"id": "UANN"},
               "view": {"callback_id": "loopgate_decision", "private_metadata": "{not json"}}),
        json!({"type": "view_submission", "user": {"id": "UANN"},
               "view": {"callback_id": "loopgate_decision",
                        "private_metadata": json!({"t": task_id, "d": "sha256:bad", "v": "approve"}).to_string()}}),
        json!({"type": "view_submission", "user": {"id": "UANN"},
               "view": {"callback_id": "loopgate_decision",
                        "private_metadata": json!({"t": "../../v1/users", "d": task["digest"], "v": "approve"}).to_string()}}),
        json!({"type": "shortcut", "user": {"id": "UANN"}}),
    ];
    for payload in &payloads {
        now += 1;
        let (status, _, text) = interact(&app, payload, now).await;
        assert_eq!(status, StatusCode::OK, "{payload}: {text}");
    }
    // Text holding U+0000 is refused before anything reads it, as in the API.
    now += 1;
    let nul = json!({"type": "block_actions", "user": {"id": "UANN\u{0}"}, "trigger_id": "t",
                     "actions": [{"action_id": "approve", "value": format!("{task_id}|{}", task["digest"].as_str().unwrap())}]});
    let (status, _, text) = interact(&app, &nul, now).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("U+0000"), "{text}");
    // Timestamps at i64's ends (or beyond) are refused, not overflowed.
    for timestamp in [
        "-9223372036854775808",
        "9223372036854775807",
        "99999999999999999999",
        "1e3",
    ] {
        let response = app
            .http
            .post(format!("{}/integrations/slack/interactions", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", timestamp)
            .header("x-slack-signature", "v0=00")
            .body("payload=%7B%7D")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{timestamp}");
    }
    let still = app
        .get(&format!("/v1/proposals/{proposal}"), ADMIN_TOKEN)
        .await;
    assert_eq!(still.body["status"], "pending", "nothing was decided");
    assert!(slack.calls("views.open").is_empty());
    assert_eq!(
        app.get("/healthz", ADMIN_TOKEN).await.status,
        StatusCode::OK
    );
}

/// A message the mail server did not take stays in the outbox, across a
/// restart, and goes out once the server is back.
#[tokio::test]
async fn a_message_the_mail_server_missed_goes_out_after_a_restart() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let app = spawn_with(|config| {
        configure(config, None, None);
        config.smtp_url = Some(format!("smtp://127.0.0.1:{closed}"));
    })
    .await;
    let (key, _ann) = app.ops_review().await;
    patch_user(&app, "ann", json!({"email": "ann@example.com"})).await;
    set_group(&app, "ops", json!({"events": ["task.created"]})).await;
    let submitted = app
        .submit(&key, "flag", json!({"fraud": true}), json!({}))
        .await;
    assert_eq!(submitted.status, StatusCode::CREATED);
    let mut failed = Value::Null;
    for _ in 0..400 {
        let page = app.get("/v1/notifications", ADMIN_TOKEN).await;
        failed = page.body["items"][0].clone();
        if failed["attempts"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(failed["state"], "pending", "{failed}");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("mail server"),
        "{failed}"
    );

    let smtp = SmtpSink::start().await;
    let app = app
        .restart_with(|config| configure(config, Some(&smtp), None))
        .await;
    app.clock.advance(Duration::from_secs(5));
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].to, "ann@example.com");
    let id = failed["id"].as_i64().unwrap();
    for _ in 0..400 {
        let one = app
            .get(&format!("/v1/notifications/{id}"), ADMIN_TOKEN)
            .await;
        if one.body["state"] == "delivered" {
            assert_eq!(one.body["attempts"], 2, "{}", one.body);
            assert_eq!(one.body["history"][1]["status"], 250, "{}", one.body);
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the message was not recorded as delivered");
}

#[tokio::test]
async fn an_assigned_task_mails_its_assignee_and_an_away_member_s_delegate() {
    let smtp = SmtpSink::start().await;
    let app = spawn_with(|config| configure(config, Some(&smtp), None)).await;
    let (key, _ann) = app.ops_review().await;
    app.user("bob", &["reviewer"], &["ops"]).await;
    app.user("carol", &["reviewer"], &["ops"]).await;
    for name in ["ann", "bob", "carol"] {
        let email = format!("{name}@example.com");
        patch_user(&app, name, json!({ "email": email })).await;
    }
    set_group(&app, "ops", json!({"events": ["task.created"]})).await;
    let to = |mails: &[Mail]| {
        let mut to: Vec<String> = mails.iter().map(|m| m.to.clone()).collect();
        to.sort();
        to
    };
    let submit = || app.submit(&key, "flag", json!({"fraud": true}), json!({}));

    // A pooling group: ann is away, carol stands in; bob and carol hear.
    let away = json!({"away_until": "2026-11-20T00:00:00Z", "delegate": "carol"});
    assert_eq!(patch_user(&app, "ann", away).await.status, StatusCode::OK);
    submit().await;
    let mails = smtp.wait_for(2).await;
    assert_eq!(to(&mails), ["bob@example.com", "carol@example.com"]);

    // Round robin: ann's turn goes to carol, and only carol hears.
    let set = app
        .call(
            Method::PUT,
            "/v1/groups/ops",
            Some(ADMIN_TOKEN),
            Some(json!({"assignment": "round_robin"})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let assigned = submit().await;
    let task = app
        .task_of(ADMIN_TOKEN, assigned.body["id"].as_str().unwrap())
        .await;
    assert_eq!(task["assignee"], "carol");
    assert_eq!(task["delegated_from"], "ann");
    let mails = smtp.wait_for(3).await;
    assert_eq!(mails[2].to, "carol@example.com");

    // Not opened in time: back in the pool, and the members hear of it.
    app.advance(Duration::from_secs(30 * 60)).await;
    let mails = smtp.wait_for(5).await;
    assert_eq!(to(&mails[3..]), ["bob@example.com", "carol@example.com"]);
    assert!(
        mails[3].subject.contains("Back in your group's pool"),
        "{}",
        mails[3].subject
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 5, "ann, away, heard nothing");
}
