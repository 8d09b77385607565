//! Slack: Block Kit messages per task with Approve, Reject and Open, the
//! rationale modal, and the interactions endpoint
//! (`POST /integrations/slack/interactions`), verified with the app's
//! signing secret (v0 HMAC-SHA256 over `v0:{timestamp}:{body}`, within five
//! minutes, compared in constant time, each signature taken once).
//!
//! A click acts as the loopgate user the Slack member maps to (their
//! `slack_user_id`, or else the one user with the email Slack has for them)
//! and goes through the API's decision handler: roles, groups, separation
//! of duties, quorum and the digest the message showed all apply.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac as _};
use loopgate_core::{Channel, EventKind, TaskId, Timestamp};
use loopgate_proto as proto;
use loopgate_store::{DueNotification, Principal, UserRecord};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Outcome, Summary, clip};
use crate::AppState;
use crate::auth::{Caller, Via};
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, Path};

/// How far a request's timestamp may be from now.
const WINDOW_SECONDS: u64 = 5 * 60;
/// Signatures remembered against replays (per process).
const MAX_SEEN: usize = 100_000;
/// Slack's limits (docs.slack.dev, Block Kit reference).
const MAX_SECTION_TEXT: usize = 3000;
const MAX_FIELD_TEXT: usize = 2000;
const MAX_HEADER_TEXT: usize = 150;

/// The Web API client.
pub(crate) struct SlackApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl SlackApi {
    pub(crate) fn new(base: &str, token: &str) -> Result<SlackApi, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("loopgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(SlackApi {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// Calls a Web API method with a JSON body.
    async fn call(&self, method: &str, body: &Value, now: Timestamp) -> Result<Value, Outcome> {
        let response = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| Outcome::Failed {
                status: None,
                error: format!("Slack could not be reached: {}", e.without_url()),
            })?;
        let status = response.status().as_u16();
        if status == 429 {
            let seconds = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(30)
                .clamp(1, 3600);
            return Err(Outcome::Wait {
                until: now.plus(Duration::from_secs(seconds)),
                error: format!("Slack asked to wait {seconds} s (429)"),
            });
        }
        let body: Value = response.json().await.map_err(|_| Outcome::Failed {
            status: Some(status),
            error: format!("Slack answered HTTP {status} without JSON"),
        })?;
        if body["ok"] != json!(true) {
            let error = body["error"].as_str().unwrap_or("unknown error");
            return Err(Outcome::Failed {
                status: Some(status),
                error: format!("Slack refused `{method}`: {}", clip(error, 200)),
            });
        }
        Ok(body)
    }
}

/// Posts a task's message, or rewrites every message about it.
pub(crate) async fn send(
    app: &AppState,
    api: &SlackApi,
    first: &DueNotification,
    batch: &[DueNotification],
) -> Outcome {
    let now = app.clock.now();
    let summaries = match summaries(app, batch).await {
        Ok(found) if found.is_empty() => {
            return Outcome::Dropped("the task no longer exists".to_owned());
        }
        Ok(found) => found,
        Err(error) => return error,
    };
    match first.channel {
        Channel::SlackUpdate => {
            let refs = match app.store.slack_messages(&first.task).await {
                Ok(refs) => refs,
                Err(error) => {
                    return Outcome::Failed {
                        status: None,
                        error: format!("the messages could not be read: {error}"),
                    };
                }
            };
            let summary = &summaries[0];
            for reference in refs {
                let Some((channel, ts)) = reference.split_once(':') else {
                    continue;
                };
                let body = json!({
                    "channel": channel, "ts": ts,
                    "text": summary.title(), "blocks": blocks(summary),
                });
                if let Err(outcome) = api.call("chat.update", &body, now).await {
                    return outcome;
                }
            }
            Outcome::Sent {
                status: Some(200),
                reference: None,
            }
        }
        _ => {
            let (text, blocks) = match &summaries[..] {
                [one] => (one.title(), blocks(one)),
                many => digest_blocks(many, &first.group),
            };
            let body = json!({"channel": first.target, "text": text, "blocks": blocks});
            match api.call("chat.postMessage", &body, now).await {
                Ok(answer) => {
                    // A digest is not rewritten (it covers many tasks).
                    let reference = match (answer["channel"].as_str(), answer["ts"].as_str()) {
                        (Some(channel), Some(ts)) if batch.len() == 1 => {
                            Some(format!("{channel}:{ts}"))
                        }
                        _ => None,
                    };
                    Outcome::Sent {
                        status: Some(200),
                        reference,
                    }
                }
                Err(outcome) => outcome,
            }
        }
    }
}

async fn summaries(app: &AppState, batch: &[DueNotification]) -> Result<Vec<Summary>, Outcome> {
    let mut out = Vec::new();
    for due in batch {
        match Summary::load(app, &due.task, due.kind).await {
            Ok(Some(summary)) => out.push(summary),
            Ok(None) => (),
            Err(error) => {
                return Err(Outcome::Failed {
                    status: None,
                    error: format!("the message could not be built: {error}"),
                });
            }
        }
    }
    Ok(out)
}

/// Text for Slack's `mrkdwn`: `&`, `<` and `>` escaped.
fn mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn plain(text: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": clip(text, max), "emoji": true})
}

/// A task's message: header, fields, output, context, and either the
/// buttons (while it can be decided) or what happened.
pub(crate) fn blocks(summary: &Summary) -> Value {
    let field = |name: &str, value: &str| json!({"type": "mrkdwn", "text": clip(&format!("*{name}*\n{}", mrkdwn(value)), MAX_FIELD_TEXT)});
    let mut fields = vec![
        field("System", &summary.system),
        field("Action", &summary.action),
        field("Subject", &summary.subject),
        field("Group", &summary.group),
    ];
    if let Some(confidence) = summary.confidence {
        fields.push(field("Confidence", &format!("{confidence:.2}")));
    }
    let mut out = vec![
        json!({"type": "header", "text": plain(&summary.title(), MAX_HEADER_TEXT)}),
        json!({"type": "section", "fields": fields}),
    ];
    let output = if summary.blind {
        "_Blind review: the output and confidence show in loopgate once it is decided._".to_owned()
    } else {
        summary
            .output
            .iter()
            .map(|(k, v)| format!("*{}*: {}", mrkdwn(k), mrkdwn(v)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if !output.is_empty() {
        out.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&output, MAX_SECTION_TEXT)}}));
    }
    if let Some(explanation) = &summary.explanation {
        let text = format!("*Explanation*: {}", mrkdwn(explanation));
        out.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&text, MAX_SECTION_TEXT)}}));
    }
    if let Some(deadline) = summary.deadline {
        out.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!("Deadline {}", deadline.to_rfc3339())}
        ]}));
    }
    let open = json!({"type": "button", "action_id": "open", "text": plain("Open in loopgate", 75),
                      "url": summary.link});
    if let Some(outcome) = &summary.outcome {
        out.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": clip(&format!("*{}*", mrkdwn(outcome)), MAX_SECTION_TEXT)}}));
    }
    if summary.open {
        out.push(actions(summary, open));
    } else {
        if summary.outcome.is_none() {
            out.push(
                json!({"type": "section", "text": {"type": "mrkdwn", "text": "*No longer open*"}}),
            );
        }
        out.push(json!({"type": "actions", "block_id": "loopgate_task", "elements": [open]}));
    }
    Value::Array(out)
}

/// Approve, Reject (each carries the task and the digest shown) and Open.
fn actions(summary: &Summary, open: Value) -> Value {
    let value = format!("{}|{}", summary.task.as_str(), summary.digest.as_str());
    json!({"type": "actions", "block_id": "loopgate_task", "elements": [
        {"type": "button", "action_id": "approve", "style": "primary", "text": plain("Approve", 75), "value": value},
        {"type": "button", "action_id": "reject", "style": "danger", "text": plain("Reject", 75), "value": value},
        open,
    ]})
}

/// One message for a digest: a line per task, linking to each.
fn digest_blocks(summaries: &[Summary], group: &str) -> (String, Value) {
    let title = format!("{} loopgate reviews for {group}", summaries.len());
    let mut out = vec![json!({"type": "header", "text": plain(&title, MAX_HEADER_TEXT)})];
    // 50 blocks at most: a header, 48 tasks, and a line for the rest.
    for summary in summaries.iter().take(48) {
        let line = format!(
            "<{}|{}> · {}",
            summary.link,
            mrkdwn(&summary.title()),
            mrkdwn(&summary.subject)
        );
        out.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&line, MAX_SECTION_TEXT)}}));
    }
    if 48 < summaries.len() {
        out.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!("and {} more in loopgate", summaries.len() - 48)}
        ]}));
    }
    (title, Value::Array(out))
}

/// `v0=` and the hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
pub(crate) fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Signatures already taken, with their timestamps (seconds).
#[derive(Default)]
pub(crate) struct Seen(Mutex<HashMap<String, i64>>);

impl Seen {
    /// Takes a signature once; `false` for a replay (or when too many are
    /// held, which fails closed).
    fn take(&self, signature: &str, timestamp: i64, now: i64) -> bool {
        let Ok(mut seen) = self.0.lock() else {
            return false;
        };
        if MAX_SEEN <= seen.len() {
            seen.retain(|_, at| now.abs_diff(*at) <= WINDOW_SECONDS);
        }
        if MAX_SEEN <= seen.len() || seen.contains_key(signature) {
            return false;
        }
        seen.insert(signature.to_owned(), timestamp);
        true
    }
}

/// Why a request is not from Slack, if it is not.
fn verify(app: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
    let Some(secret) = app.config.slack_signing_secret.as_deref() else {
        return Err("Slack interactions are not configured (slack_signing_secret)");
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(sent)) = (
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
    ) else {
        return Err("the request is not signed");
    };
    let Ok(seconds) = timestamp.parse::<i64>() else {
        return Err("the request's timestamp is not a number");
    };
    let now = app.clock.now().millis().div_euclid(1000);
    // (`abs_diff`: a timestamp near i64's ends must not overflow.)
    if WINDOW_SECONDS < now.abs_diff(seconds) {
        return Err("the request's timestamp is not within five minutes");
    }
    let expected = signature(secret, timestamp, body);
    if !crate::auth::session::same_secret(&expected, sent) {
        return Err("the signature does not match");
    }
    if !app.slack_seen.take(sent, seconds, now) {
        return Err("the request was already received");
    }
    Ok(())
}

fn unauthorized(why: &str) -> Response {
    let problem = ApiError::new(proto::ErrorCode::Unauthenticated, why.to_owned());
    problem.into_response()
}

/// Slack's interactivity requests (button clicks, the rationale modal),
/// signed with the app's signing secret; see docs/notifications.md.
#[utoipa::path(post, path = "/integrations/slack/interactions", tag = "notifications",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
                 description = "`payload=` and Slack's interaction JSON"),
    params(("X-Slack-Request-Timestamp" = String, Header), ("X-Slack-Signature" = String, Header)),
    responses((status = 200, description = "taken (a modal's answer is JSON)"),
              (status = 401, body = proto::Problem), (status = 413, description = "over 256 KiB")),
    security(()))]
pub async fn interactions(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = verify(&app, &headers, &body) {
        tracing::info!(why, "a Slack interaction was refused");
        return unauthorized(why);
    }
    let Some((_, payload)) = form_urlencoded::parse(&body).find(|(key, _)| key == "payload") else {
        return ApiError::invalid("the body has no `payload` JSON").into_response();
    };
    if payload.contains('\0') || crate::http::extract::json_shape(payload.as_bytes()).nul {
        return ApiError::invalid(crate::http::extract::NUL_REFUSED).into_response();
    }
    let Ok(payload) = serde_json::from_str::<Value>(&payload) else {
        return ApiError::invalid("the body has no `payload` JSON").into_response();
    };
    let Some(api) = app.slack.clone() else {
        return ApiError::invalid("Slack is not configured (slack_bot_token)").into_response();
    };
    match payload["type"].as_str() {
        Some("block_actions") => clicked(&app, &api, &payload).await,
        Some("view_submission") => submitted(&app, &api, &payload).await,
        _ => StatusCode::OK.into_response(),
    }
}

/// The loopgate user a Slack member acts as, if any.
async fn member(app: &AppState, api: &SlackApi, slack_user: &str) -> Option<UserRecord> {
    if let Ok(Some(user)) = app.store.user_for_slack(slack_user, None).await {
        return Some(user);
    }
    // Else by the email Slack has for them (Slack confirms addresses).
    let info = api
        .call("users.info", &json!({"user": slack_user}), app.clock.now())
        .await
        .ok()?;
    let email = info["user"]["profile"]["email"].as_str()?.to_owned();
    if info["user"]["is_email_confirmed"] == json!(false) {
        return None;
    }
    app.store
        .user_for_slack(slack_user, Some(email))
        .await
        .ok()
        .flatten()
}

/// Says something only the clicking member sees.
async fn ephemeral(app: &AppState, api: &SlackApi, channel: Option<&str>, user: &str, text: &str) {
    let Some(channel) = channel else { return };
    let body = json!({"channel": channel, "user": user, "text": clip(text, MAX_SECTION_TEXT)});
    if api
        .call("chat.postEphemeral", &body, app.clock.now())
        .await
        .is_err()
    {
        tracing::warn!("a Slack ephemeral reply could not be posted");
    }
}

/// What a button carries: the task and the digest its message showed.
fn button_value(value: &str) -> Option<(TaskId, String)> {
    let (task, digest) = value.split_once('|')?;
    Some((TaskId::parse(task)?, digest.to_owned()))
}

async fn clicked(app: &AppState, api: &SlackApi, payload: &Value) -> Response {
    let ok = StatusCode::OK.into_response();
    let Some(slack_user) = payload["user"]["id"].as_str() else {
        return ok;
    };
    let channel = payload["channel"]["id"].as_str();
    let action = &payload["actions"][0];
    let verdict = match action["action_id"].as_str() {
        Some("approve") => "approve",
        Some("reject") => "reject",
        _ => return ok,
    };
    let Some((task, digest)) = action["value"].as_str().and_then(button_value) else {
        return ok;
    };
    let Some(user) = member(app, api, slack_user).await else {
        ephemeral(app, api, channel, slack_user,
            "Your Slack account is not linked to a loopgate user, so nothing was decided. Ask an admin to set your Slack member id in loopgate.").await;
        return ok;
    };
    // The policy's `@rationale("required")`, as the task carries it.
    let mut required = false;
    let refusal = match app.store.task(&task).await {
        Ok(Some(record)) => {
            required = record.task.plan.rationale_required;
            let now = app.clock.now();
            // As the API's `Caller::reviewer`: a reviewer (or an admin)
            // of the task's group.
            let reviews = user.roles.iter().any(|r| {
                matches!(
                    r,
                    loopgate_core::Role::Reviewer | loopgate_core::Role::Admin
                )
            });
            if !reviews || !user.groups.contains(&record.task.group) {
                Some(format!(
                    "You ({}) are not a reviewer of the group `{}`: nothing was decided.",
                    user.username, record.task.group
                ))
            } else if !record.task.effective_state(now).is_active() {
                Some("This task is no longer open: nothing was decided.".to_owned())
            } else if record.digest.as_str() != digest {
                Some(stale_text(app, &task).await)
            } else {
                None
            }
        }
        _ => Some("This task does not exist (any more).".to_owned()),
    };
    if let Some(text) = refusal {
        ephemeral(app, api, channel, slack_user, &text).await;
        return ok;
    }
    let Some(trigger) = payload["trigger_id"].as_str() else {
        return ok;
    };
    let meta = json!({"t": task.as_str(), "d": digest, "v": verdict, "c": channel}).to_string();
    let title = if verdict == "approve" {
        "Approve"
    } else {
        "Reject"
    };
    let view = json!({
        "type": "modal",
        "callback_id": "loopgate_decision",
        "private_metadata": meta,
        "title": plain(title, 24),
        "submit": plain(title, 24),
        "close": plain("Cancel", 24),
        "blocks": [
            {"type": "input", "block_id": "rationale", "optional": !required,
             "label": plain(if required { "Rationale (required)" } else { "Rationale" }, 2000),
             "element": {"type": "plain_text_input", "action_id": "text", "multiline": true, "max_length": 3000}},
        ],
    });
    if api
        .call(
            "views.open",
            &json!({"trigger_id": trigger, "view": view}),
            app.clock.now(),
        )
        .await
        .is_err()
    {
        tracing::warn!("the Slack decision modal could not be opened");
    }
    ok
}

async fn stale_text(app: &AppState, task: &TaskId) -> String {
    let mut text =
        "The proposal changed since this message was posted: nothing was decided. It now reads:\n"
            .to_owned();
    if let Ok(Some(summary)) = Summary::load(app, task, EventKind::TaskCreated).await {
        for (key, value) in summary.lines() {
            text.push_str(&format!("{key}: {value}\n"));
        }
        text.push_str(&summary.link);
    }
    text
}

async fn submitted(app: &AppState, api: &SlackApi, payload: &Value) -> Response {
    let view = &payload["view"];
    if view["callback_id"].as_str() != Some("loopgate_decision") {
        return StatusCode::OK.into_response();
    }
    let meta: Value = view["private_metadata"]
        .as_str()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default();
    let (Some(slack_user), Some(task), Some(digest), Some(verdict)) = (
        payload["user"]["id"].as_str(),
        meta["t"].as_str(),
        meta["d"].as_str(),
        meta["v"].as_str(),
    ) else {
        return modal_error("This form is not one of loopgate's.");
    };
    let channel = meta["c"].as_str();
    let Some(user) = member(app, api, slack_user).await else {
        return modal_error("Your Slack account is not linked to a loopgate user.");
    };
    let rationale = view["state"]["values"]["rationale"]["text"]["value"]
        .as_str()
        .map(str::to_owned)
        .filter(|r| !r.trim().is_empty());
    let verdict = match verdict {
        "approve" => proto::Verdict::Approve,
        _ => proto::Verdict::Reject,
    };
    let caller = Caller(
        Principal::User(user),
        Via::Delegated(format!("slack:{slack_user}")),
    );
    let request = proto::DecisionRequest {
        verdict,
        rationale,
        output: None,
        labels: None,
        message: None,
        grant: None,
        seen_digest: digest.to_owned(),
    };
    let decided = crate::http::tasks::decide(
        State(app.clone()),
        caller,
        Path(task.to_owned()),
        JsonBody(request),
    )
    .await;
    match decided {
        Ok(_) => Json200(json!({"response_action": "clear"})).into_response(),
        Err(error) if error.code() == proto::ErrorCode::StaleDigest => {
            if let Some(task) = TaskId::parse(task) {
                let text = stale_text(app, &task).await;
                ephemeral(app, api, channel, slack_user, &text).await;
            }
            Json200(json!({"response_action": "clear"})).into_response()
        }
        Err(error) => modal_error(&error.problem().detail),
    }
}

/// The modal stays open with the message under the rationale.
fn modal_error(text: &str) -> Response {
    Json200(json!({"response_action": "errors", "errors": {"rationale": clip(text, 300)}}))
        .into_response()
}

struct Json200(Value);

impl IntoResponse for Json200 {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_slacks_worked_example() {
        // docs.slack.dev/authentication/verifying-requests-from-slack
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            signature(
                "8f742231b10e8888abcd99yyyzzz85a5",
                "1531420618",
                body.as_bytes()
            ),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn a_signature_is_taken_once() {
        let seen = Seen::default();
        assert!(seen.take("v0=aa", 100, 100));
        assert!(!seen.take("v0=aa", 100, 100));
        assert!(seen.take("v0=bb", 100, 100));
    }

    #[test]
    fn mrkdwn_is_escaped() {
        assert_eq!(mrkdwn("<@U1> & <!here>"), "&lt;@U1&gt; &amp; &lt;!here&gt;");
    }
}
