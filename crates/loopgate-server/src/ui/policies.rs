//! Policy pages: versions and activations, a version's highlighted text, diffs,
//! and the draft editor (validate, test, publish, activate).

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use loopgate_core::Role;
use loopgate_core::routing::Policies;
use loopgate_proto as proto;
use serde::Deserialize;

use crate::AppState;
use crate::auth::session::Session;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, Path};
use crate::http::policies;
use crate::ui::Form;
use crate::ui::{Nav, UiError, ok, render};

pub(crate) struct VersionRow {
    version: String,
    short: String,
    description: String,
    created_by: String,
    created_at: String,
    active: bool,
    shadow: bool,
    count: usize,
}

fn short(version: &str) -> String {
    version.chars().take(12).collect()
}

#[derive(Template)]
#[template(path = "policies.html")]
struct PoliciesPage {
    nav: Nav,
    versions: Vec<VersionRow>,
    activations: Vec<proto::PolicyActivation>,
    live: Option<String>,
}

/// `GET /ui/policies`: versions and the activation history.
pub(crate) async fn policies(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, UiError> {
    let list = ok(policies::list(State(app.clone()), session.caller()).await)?;
    let activations = ok(policies::activations(State(app), session.caller()).await)?;
    let versions: Vec<VersionRow> = list
        .items
        .into_iter()
        .map(|v| VersionRow {
            short: short(&v.version),
            count: v.policy_ids.len(),
            version: v.version,
            description: v.description,
            created_by: v.created_by,
            created_at: v.created_at,
            active: v.active,
            shadow: v.shadow,
        })
        .collect();
    Ok(render(&PoliciesPage {
        nav: Nav::new(&session, "policies"),
        live: versions
            .iter()
            .find(|v| v.active)
            .map(|v| v.version.clone()),
        versions,
        activations: activations.into_iter().rev().take(50).collect(),
    })?
    .into_response())
}

/// A span of highlighted Cedar.
pub(crate) struct Token {
    class: &'static str,
    text: String,
}

const KEYWORDS: &[&str] = &[
    "permit",
    "forbid",
    "when",
    "unless",
    "principal",
    "action",
    "resource",
    "context",
    "in",
    "has",
    "like",
    "is",
    "if",
    "then",
    "else",
    "true",
    "false",
];

/// Splits Cedar text into classed spans (comments, strings, annotations,
/// keywords, numbers, the rest), for display only.
pub(crate) fn highlight(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut plain = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let flush = |plain: &mut String, tokens: &mut Vec<Token>| {
        if !plain.is_empty() {
            tokens.push(Token {
                class: "plain",
                text: std::mem::take(plain),
            });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let class = if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            "comment"
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(chars.len());
            "string"
        } else if c == '@' || c.is_alphabetic() || c == '_' {
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if c == '@' {
                "annotation"
            } else if KEYWORDS.contains(&word.as_str()) {
                "keyword"
            } else {
                plain.push_str(&word);
                continue;
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            "number"
        } else {
            plain.push(c);
            i += 1;
            continue;
        };
        flush(&mut plain, &mut tokens);
        tokens.push(Token {
            class,
            text: chars[start..i].iter().collect(),
        });
    }
    flush(&mut plain, &mut tokens);
    tokens
}

#[derive(Template)]
#[template(path = "policy.html")]
struct PolicyPage {
    nav: Nav,
    v: proto::PolicyVersion,
    tokens: Vec<Token>,
    live: Option<String>,
}

/// `GET /ui/policies/{version}`.
pub(crate) async fn policy(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(version): Path<String>,
) -> Result<Response, UiError> {
    let v = ok(policies::get(State(app.clone()), session.caller(), Path(version)).await)?;
    let list = ok(policies::list(State(app), session.caller()).await)?;
    let live = list
        .items
        .into_iter()
        .find(|it| it.active)
        .map(|it| it.version);
    Ok(render(&PolicyPage {
        nav: Nav::new(&session, "policies"),
        tokens: highlight(&v.text),
        live: live.filter(|it| *it != v.version),
        v,
    })?
    .into_response())
}

#[derive(Deserialize)]
pub(crate) struct DiffQuery {
    a: String,
    b: String,
}

pub(crate) struct DiffLine {
    class: &'static str,
    text: String,
}

pub(crate) struct ChangedView {
    id: String,
    lines: Vec<DiffLine>,
}

#[derive(Template)]
#[template(path = "policy_diff.html")]
struct DiffPage {
    nav: Nav,
    a: String,
    b: String,
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<ChangedView>,
    unchanged: usize,
}

/// `GET /ui/policies/diff?a=OLD&b=NEW`: policy by policy.
pub(crate) async fn diff(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<DiffQuery>,
) -> Result<Response, UiError> {
    let load = |version: String| {
        let app = app.clone();
        let caller = session.caller();
        async move {
            let v = ok(policies::get(State(app), caller, Path(version)).await)?;
            Policies::parse(&v.text).map_err(|e| UiError::internal(&e))
        }
    };
    let old = load(query.a.clone()).await?;
    let new = load(query.b.clone()).await?;
    let d = loopgate_core::routing::diff::diff(&old, &new);
    let changed = d
        .changed
        .into_iter()
        .map(|c| ChangedView {
            id: c.id,
            lines: c
                .diff
                .lines()
                .map(|line| DiffLine {
                    class: match line.chars().next() {
                        Some('+') => "add",
                        Some('-') => "del",
                        Some('@') => "hunk",
                        _ => "same",
                    },
                    text: line.to_owned(),
                })
                .collect(),
        })
        .collect();
    Ok(render(&DiffPage {
        nav: Nav::new(&session, "policies"),
        a: short(&query.a),
        b: short(&query.b),
        added: d.added,
        removed: d.removed,
        changed,
        unchanged: d.unchanged,
    })?
    .into_response())
}

/// Results shown under the draft editor.
#[derive(Default)]
pub(crate) struct Outcome {
    ok: Option<String>,
    error: Option<String>,
    errors: Vec<proto::PolicyFinding>,
    warnings: Vec<proto::PolicyFinding>,
    tests: Option<proto::PolicyTestReport>,
}

#[derive(Template)]
#[template(path = "policy_draft.html")]
struct DraftPage {
    nav: Nav,
    text: String,
    cases: String,
    description: String,
    outcome: Outcome,
}

/// `GET /ui/policies/draft`: an editor holding the live text.
pub(crate) async fn draft(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, UiError> {
    session.caller().user_with(&[Role::PolicyAuthor])?;
    let list = ok(policies::list(State(app), session.caller()).await)?;
    let text = list
        .items
        .into_iter()
        .find(|it| it.active)
        .map(|it| it.text)
        .unwrap_or_default();
    Ok(render(&DraftPage {
        nav: Nav::new(&session, "policies"),
        text,
        cases: String::new(),
        description: String::new(),
        outcome: Outcome::default(),
    })?
    .into_response())
}

#[derive(Deserialize)]
pub(crate) struct DraftForm {
    op: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    cases: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    mode: Option<String>,
    /// For `activate`: the stored version and why.
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

fn findings(problem: &proto::Problem, key: &str) -> Vec<proto::PolicyFinding> {
    problem
        .extra
        .get(key)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// `POST /ui/policies/draft`: validate, run the cases, publish, or
/// activate a stored version (`op`). The editor keeps what was typed.
pub(crate) async fn draft_action(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Form(form): Form<DraftForm>,
) -> Result<Response, UiError> {
    let caller = session.caller();
    caller.user_with(&[Role::PolicyAuthor])?;
    let mut outcome = Outcome::default();
    let failed = |error: ApiError, outcome: &mut Outcome| {
        let problem = error.problem();
        outcome.errors = findings(&problem, "errors");
        outcome.tests = problem
            .extra
            .get("tests")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        outcome.error = Some(problem.detail);
    };
    match form.op.as_str() {
        "activate" => {
            let (Some(version), Some(reason)) = (form.version, form.reason) else {
                return Err(ApiError::invalid("activation needs a version and a reason").into());
            };
            let body = proto::ActivatePolicy {
                reason,
                mode: Some(if form.mode.as_deref() == Some("shadow") {
                    proto::PolicyMode::Shadow
                } else {
                    proto::PolicyMode::Live
                }),
            };
            ok(
                policies::activate(State(app), caller, Path(version.clone()), JsonBody(body)).await,
            )?;
            return Ok(Redirect::to(&format!("/ui/policies/{version}")).into_response());
        }
        "validate" => {
            let body = proto::PublishPolicy {
                text: form.text.clone(),
                description: String::new(),
                mode: None,
                cases: None,
            };
            match policies::validate(State(app), caller, JsonBody(body)).await {
                Ok(axum::Json(v)) => {
                    if v.errors.is_empty() {
                        outcome.ok = Some(format!(
                            "Valid: {} policies, version {}.",
                            v.policy_ids.len(),
                            short(&v.version)
                        ));
                    } else {
                        outcome.error = Some("The draft does not match the schema.".to_owned());
                    }
                    outcome.errors = v.errors;
                    outcome.warnings = v.warnings;
                }
                Err(error) => failed(error, &mut outcome),
            }
        }
        "test" => {
            let body = proto::TestPolicies {
                text: Some(form.text.clone()),
                cases: form.cases.clone(),
            };
            match policies::test(State(app), caller, JsonBody(body)).await {
                Ok(axum::Json(report)) => {
                    let message = format!("{} passed, {} failed.", report.passed, report.failed);
                    if report.failed == 0 {
                        outcome.ok = Some(message);
                    } else {
                        outcome.error = Some(message);
                    }
                    outcome.tests = Some(report);
                }
                Err(error) => failed(error, &mut outcome),
            }
        }
        "publish" => {
            let body = proto::PublishPolicy {
                text: form.text.clone(),
                description: form.description.clone(),
                mode: Some(if form.mode.as_deref() == Some("shadow") {
                    proto::PolicyMode::Shadow
                } else {
                    proto::PolicyMode::Live
                }),
                cases: (!form.cases.trim().is_empty()).then(|| form.cases.clone()),
            };
            match policies::publish(State(app), caller, JsonBody(body)).await {
                Ok((_, axum::Json(version))) => {
                    return Ok(
                        Redirect::to(&format!("/ui/policies/{}", version.version)).into_response()
                    );
                }
                Err(error) => failed(error, &mut outcome),
            }
        }
        other => {
            outcome.error = Some(format!("`{other}` is not something the editor can do."));
        }
    }
    let status = if outcome.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = DraftPage {
        nav: Nav::new(&session, "policies"),
        text: form.text,
        cases: form.cases,
        description: form.description,
        outcome,
    };
    Ok((status, render(&page)?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cedar_is_split_into_classed_spans_that_add_up_to_the_text() {
        let text = "@id(\"a\")\npermit (principal, action == Action::\"x\", resource)\nwhen { context.confidence >= decimal(\"0.9\") }; // ok\n";
        let tokens = highlight(text);
        let joined: String = tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(joined, text);
        let classes: Vec<(&str, &str)> = tokens
            .iter()
            .filter(|t| t.class != "plain")
            .map(|t| (t.class, t.text.as_str()))
            .collect();
        assert_eq!(
            classes,
            [
                ("annotation", "@id"),
                ("string", "\"a\""),
                ("keyword", "permit"),
                ("keyword", "principal"),
                ("keyword", "action"),
                ("string", "\"x\""),
                ("keyword", "resource"),
                ("keyword", "when"),
                ("keyword", "context"),
                ("string", "\"0.9\""),
                ("comment", "// ok"),
            ]
        );
    }
}
