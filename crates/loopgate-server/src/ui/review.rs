//! The reviewer's pages: the queue, a task (the proposal, claim on open,
//! decide), and a proposal read on its own.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use loopgate_core::Timestamp;
use loopgate_proto as proto;
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::auth::session::Session;
use crate::http::extract::{JsonBody, Params, Path};
use crate::http::{audit, proposals, tasks};
use crate::ui::Form;
use crate::ui::{Nav, UiError, lower, ok, render};

/// The queue's filters, also carried through a task and back.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct QueueFilter {
    #[serde(default, deserialize_with = "empty_none")]
    system: Option<String>,
    #[serde(default, deserialize_with = "empty_none")]
    action: Option<String>,
    #[serde(default, deserialize_with = "empty_none")]
    group: Option<String>,
    #[serde(default, deserialize_with = "empty_none")]
    kind: Option<String>,
    /// Any value: only the tasks assigned to or claimed by the caller.
    #[serde(default, deserialize_with = "empty_none")]
    mine: Option<String>,
}

/// Empty form fields mean "any".
fn empty_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.filter(|it| !it.trim().is_empty()))
}

impl QueueFilter {
    /// As a query string (without `?`), empty when unfiltered.
    fn query(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("system", &self.system),
            ("action", &self.action),
            ("group", &self.group),
            ("kind", &self.kind),
            ("mine", &self.mine),
        ] {
            if let Some(value) = value {
                out.append_pair(key, value);
            }
        }
        out.finish()
    }
}

/// One row of the queue.
pub(crate) struct Row {
    id: String,
    system: String,
    action: String,
    group: String,
    kind: &'static str,
    level: u32,
    approvals: u32,
    required: u32,
    due_at: Option<String>,
    due_text: String,
    overdue: bool,
    claimed_by: Option<String>,
    /// The member it is reserved for (groups that assign).
    assignee: Option<String>,
    /// Claimed by or assigned to the caller.
    mine: bool,
    /// Claimed by or assigned to someone else: not the caller's to decide.
    taken: bool,
    age: String,
    blind: bool,
    /// The digest the row stands for (a batch decision is bound to it).
    digest: String,
    /// The proposal's batch, when other rows of the view share it.
    batch: Option<String>,
    /// On the batch's first row: how many rows the batch has.
    batch_head: Option<usize>,
}

/// A filter choice with its count.
pub(crate) struct Count {
    key: String,
    label: String,
    n: usize,
}

fn kind_key(kind: proto::TaskKind) -> &'static str {
    match kind {
        proto::TaskKind::Gate => "gate",
        proto::TaskKind::PostHoc => "post_hoc",
        proto::TaskKind::QaSample => "qa_sample",
    }
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "gate" => "Gate",
        "post_hoc" => "Post-hoc",
        _ => "QA sample",
    }
}

/// "3m", "2h 5m", "4d": a short span for people.
pub(crate) fn span(millis: i64) -> String {
    let secs = millis.unsigned_abs() / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => match (secs % 3600) / 60 {
            0 => format!("{}h", secs / 3600),
            m => format!("{}h {m}m", secs / 3600),
        },
        _ => format!("{}d", secs / 86_400),
    }
}

fn parse_time(text: &str) -> Option<Timestamp> {
    Timestamp::parse_rfc3339(text)
}

/// The caller's open and claimed tasks (up to 500 each), soonest due first,
/// then oldest; with `filter` applied.
async fn load_queue(
    app: &AppState,
    session: &Session,
    filter: &QueueFilter,
) -> Result<Vec<proto::Task>, UiError> {
    let mut all = Vec::new();
    for state in [proto::TaskState::Open, proto::TaskState::Claimed] {
        let query = tasks::TaskQuery {
            state: Some(state),
            group: filter.group.clone(),
            system: filter.system.clone(),
            mine: filter.mine.as_ref().map(|_| true),
            cursor: None,
            limit: Some(500),
        };
        let page = ok(tasks::list(State(app.clone()), session.caller(), Params(query)).await)?;
        all.extend(page.items);
    }
    all.retain(|task| {
        filter.action.as_ref().is_none_or(|it| *it == task.action)
            && filter
                .kind
                .as_deref()
                .is_none_or(|it| it == kind_key(task.kind))
    });
    all.sort_by(|a, b| {
        let due = |t: &proto::Task| {
            t.due_at
                .as_deref()
                .and_then(parse_time)
                .map(Timestamp::millis)
        };
        (due(a).unwrap_or(i64::MAX), &a.created_at)
            .cmp(&(due(b).unwrap_or(i64::MAX), &b.created_at))
    });
    Ok(batched(all))
}

/// The tasks with each batch's tasks together, where its first one is.
fn batched(sorted: Vec<proto::Task>) -> Vec<proto::Task> {
    let mut out: Vec<proto::Task> = Vec::with_capacity(sorted.len());
    let mut rest: Vec<Option<proto::Task>> = sorted.into_iter().map(Some).collect();
    for i in 0..rest.len() {
        let Some(task) = rest[i].take() else { continue };
        let batch = task.batch.clone();
        out.push(task);
        if let Some(batch) = batch {
            for later in rest.iter_mut().skip(i + 1) {
                if later
                    .as_ref()
                    .is_some_and(|t| t.batch.as_ref() == Some(&batch))
                {
                    out.extend(later.take());
                }
            }
        }
    }
    out
}

/// Rows of `tasks`, with the batches that have more than one row marked.
fn rows(tasks: &[proto::Task], me: &str, now: Timestamp) -> Vec<Row> {
    let mut rows: Vec<Row> = tasks.iter().map(|t| row(t, me, now)).collect();
    let mut i = 0;
    while i < rows.len() {
        let batch = tasks[i].batch.clone();
        let n = tasks[i..]
            .iter()
            .take_while(|t| batch.is_some() && t.batch == batch)
            .count();
        if 1 < n {
            rows[i].batch_head = Some(n);
            for row in &mut rows[i..i + n] {
                row.batch = batch.clone();
            }
        }
        i += n.max(1);
    }
    rows
}

fn row(task: &proto::Task, me: &str, now: Timestamp) -> Row {
    let due = task.due_at.as_deref().and_then(parse_time);
    let (due_text, overdue) = match due {
        Some(due) if due <= now => (
            format!("overdue {}", span(now.millis() - due.millis())),
            true,
        ),
        Some(due) => (format!("in {}", span(due.millis() - now.millis())), false),
        None => ("no deadline".to_owned(), false),
    };
    let created = parse_time(&task.created_at).unwrap_or(now);
    Row {
        id: task.id.clone(),
        system: task.system.clone(),
        action: task.action.clone(),
        group: task.group.clone(),
        kind: kind_label(kind_key(task.kind)),
        level: task.level,
        approvals: task.approvals,
        required: task.required,
        due_at: task.due_at.clone(),
        due_text,
        overdue,
        mine: task.claimed_by.as_deref() == Some(me) || task.assignee.as_deref() == Some(me),
        taken: !free_for(task, me),
        claimed_by: task.claimed_by.clone(),
        assignee: task.assignee.clone(),
        age: span(now.millis() - created.millis()),
        blind: task.blind,
        digest: task.digest.clone(),
        batch: None,
        batch_head: None,
    }
}

/// Neither claimed by nor assigned to someone else: `me` may take it.
fn free_for(task: &proto::Task, me: &str) -> bool {
    task.claimed_by.as_deref().is_none_or(|who| who == me)
        && task.assignee.as_deref().is_none_or(|who| who == me)
}

fn counts<'a>(keys: impl Iterator<Item = &'a str>, label: impl Fn(&str) -> String) -> Vec<Count> {
    let mut map = std::collections::BTreeMap::<&str, usize>::new();
    for key in keys {
        *map.entry(key).or_default() += 1;
    }
    map.into_iter()
        .map(|(key, n)| Count {
            key: key.to_owned(),
            label: label(key),
            n,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    nav: Nav,
    filter: QueueFilter,
    query: String,
    rows: Vec<Row>,
    total: usize,
    overdue: usize,
    kinds: Vec<Count>,
    /// Tasks claimed by or assigned to the caller.
    mine: usize,
    groups: Vec<Count>,
    systems: Vec<Count>,
    actions: Vec<Count>,
    notice: Option<String>,
    /// Why items of a batch failed (the first few).
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "queue_rows.html")]
struct QueueRows {
    rows: Vec<Row>,
    query: String,
}

#[derive(Deserialize)]
pub(crate) struct QueueParams {
    #[serde(flatten)]
    filter: QueueFilter,
    #[serde(default)]
    done: Option<String>,
    /// After a batch: how many were decided, how many failed, and why the
    /// first failed.
    #[serde(default)]
    decided: Option<String>,
    #[serde(default)]
    failed: Option<String>,
    #[serde(default)]
    why: Option<String>,
}

/// `GET /ui/queue`.
pub(crate) async fn queue(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Query(params): Query<QueueParams>,
) -> Result<Response, UiError> {
    let filter = params.filter;
    let now = app.clock.now();
    // Counts are over the unfiltered queue, so that every choice shows
    // what it holds.
    let everything = load_queue(&app, &session, &QueueFilter::default()).await?;
    let shown = load_queue(&app, &session, &filter).await?;
    let me = session.user.username.clone();
    let rows: Vec<Row> = rows(&shown, &me, now);
    let page = QueuePage {
        nav: Nav::new(&session, "queue"),
        query: filter.query(),
        total: rows.len(),
        overdue: rows.iter().filter(|r| r.overdue).count(),
        kinds: counts(everything.iter().map(|t| kind_key(t.kind)), |k| {
            kind_label(k).to_owned()
        }),
        mine: everything
            .iter()
            .filter(|t| t.claimed_by.as_deref() == Some(&me) || t.assignee.as_deref() == Some(&me))
            .count(),
        groups: counts(everything.iter().map(|t| t.group.as_str()), str::to_owned),
        systems: counts(everything.iter().map(|t| t.system.as_str()), str::to_owned),
        actions: counts(everything.iter().map(|t| t.action.as_str()), str::to_owned),
        rows,
        filter,
        notice: match (&params.done, &params.decided) {
            (_, Some(decided)) => Some(format!(
                "{} decision{} recorded.",
                decided,
                if decided == "1" { "" } else { "s" }
            )),
            (Some(_), None) => {
                Some("Decision recorded. Your queue is empty for these filters.".to_owned())
            }
            (None, None) => None,
        },
        problem: params.failed.map(|failed| {
            let why = params.why.unwrap_or_default();
            let why: String = why.chars().take(300).collect();
            format!("{failed} could not be decided: {why}")
        }),
    };
    Ok(render(&page)?.into_response())
}

/// `POST /ui/queue/decisions`: the selected rows approved or rejected
/// together, with one rationale, through `POST /v1/tasks/decisions` (each
/// task its own decision, bound to the digest its row showed).
pub(crate) async fn decide_selected(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    session.caller().reviewer()?;
    let mut verdict = None;
    let mut rationale = String::new();
    let mut items = Vec::new();
    for (key, value) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            "verdict" => verdict = Some(value.into_owned()),
            "rationale" => rationale = value.trim().to_owned(),
            "task" => {
                if let Some((id, digest)) = value.split_once(' ') {
                    items.push((id.to_owned(), digest.to_owned()));
                }
            }
            _ => (),
        }
    }
    let verdict = match verdict.as_deref() {
        Some("approve") => proto::Verdict::Approve,
        Some("reject") => proto::Verdict::Reject,
        _ => {
            return Err(UiError::status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "A batch is approved or rejected.",
            ));
        }
    };
    if items.is_empty() {
        return Ok(
            Redirect::to("/ui/queue?failed=0&why=select%20at%20least%20one%20task").into_response(),
        );
    }
    let request = proto::BatchDecisionRequest {
        items: items
            .into_iter()
            .map(|(task_id, seen_digest)| proto::BatchDecisionItem {
                task_id,
                verdict,
                rationale: (!rationale.is_empty()).then(|| rationale.clone()),
                output: None,
                labels: None,
                message: None,
                grant: None,
                seen_digest,
            })
            .collect(),
    };
    let answer =
        ok(tasks::decide_many(State(app.clone()), session.caller(), JsonBody(request)).await)?;
    let decided = answer.items.iter().filter(|it| it.status == 200).count();
    let failures: Vec<String> = answer
        .items
        .iter()
        .filter_map(|it| {
            it.error
                .as_ref()
                .map(|e| format!("{}: {}", it.task_id, e.detail))
        })
        .collect();
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("decided", &decided.to_string());
    if !failures.is_empty() {
        query.append_pair("failed", &failures.len().to_string());
        query.append_pair(
            "why",
            &failures
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    Ok(Redirect::to(&format!("/ui/queue?{}", query.finish())).into_response())
}

/// `GET /ui/queue/rows`: the table body alone, for live refresh.
pub(crate) async fn queue_rows(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Query(filter): Query<QueueFilter>,
) -> Result<Response, UiError> {
    let now = app.clock.now();
    let shown = load_queue(&app, &session, &filter).await?;
    let rows = rows(&shown, &session.user.username, now);
    Ok(render(&QueueRows {
        rows,
        query: filter.query(),
    })?
    .into_response())
}

/// A JSON value shown two ways: pretty text, and its top-level fields.
pub(crate) struct Shown {
    pretty: String,
    fields: Vec<(String, String)>,
}

fn shown(value: &Value) -> Shown {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
    let fields = match value {
        Value::Object(map) => map.iter().map(|(k, v)| (humanize(k), scalar(v))).collect(),
        other => vec![("value".to_owned(), scalar(other))],
    };
    Shown { pretty, fields }
}

/// `reason_code` → `Reason code`.
fn humanize(key: &str) -> String {
    let text = key.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        Value::Bool(true) => "yes".to_owned(),
        Value::Bool(false) => "no".to_owned(),
        other => other.to_string(),
    }
}

/// One bar of the explanation chart: x and width in percent of the chart.
pub(crate) struct Bar {
    name: String,
    value: String,
    x: f64,
    width: f64,
    negative: bool,
    y: usize,
}

/// A number for people: whole numbers as they are, others to three
/// significant digits (`0.06575874734556664` reads `0.0658`).
pub(crate) fn human(n: f64) -> String {
    if !n.is_finite() {
        return format!("{n}");
    }
    if n.fract() == 0.0 && n.abs() < 1e15 {
        return format!("{n:.0}");
    }
    #[expect(clippy::cast_possible_truncation, reason = "a small exponent")]
    let exponent = n.abs().log10().floor() as i32;
    let digits = usize::try_from((2 - exponent).clamp(0, 9)).unwrap_or(0);
    let text = format!("{n:.digits$}");
    match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.').to_owned(),
        false => text,
    }
}

/// Numeric features as bars around a zero line (at the left when all are
/// positive). Features whose sizes differ more than tenfold (a 0.07 score
/// beside 13 reports) share a logarithmic axis, so that none is invisible;
/// the second value says which.
fn bars(explanation: Option<&Value>) -> (Vec<Bar>, bool) {
    let Some(Value::Object(features)) = explanation.and_then(|e| e.get("features")) else {
        return (Vec::new(), false);
    };
    let numeric: Vec<(&String, f64)> = features
        .iter()
        .filter_map(|(k, v)| v.as_f64().map(|n| (k, n)))
        .filter(|(_, n)| n.is_finite())
        .take(20)
        .collect();
    let max = numeric.iter().map(|(_, n)| n.abs()).fold(0.0_f64, f64::max);
    let min = numeric
        .iter()
        .map(|(_, n)| n.abs())
        .filter(|n| 0.0 < *n)
        .fold(f64::INFINITY, f64::min);
    let log = min.is_finite() && 10.0 * min < max;
    let size = |n: f64| match log {
        true => (1.0 + n.abs() / min).log10(),
        false => n.abs(),
    };
    let top = size(max);
    let any_negative = numeric.iter().any(|(_, n)| *n < 0.0);
    let zero = if any_negative { 50.0 } else { 0.0 };
    let room = if any_negative { 50.0 } else { 100.0 };
    let bars = numeric
        .into_iter()
        .enumerate()
        .map(|(i, (name, n))| {
            let width = if top == 0.0 {
                0.0
            } else {
                size(n) / top * room
            };
            Bar {
                name: name.clone(),
                value: human(n),
                x: if n < 0.0 { zero - width } else { zero },
                width: width.max(0.5),
                negative: n < 0.0,
                y: i * 22,
            }
        })
        .collect();
    (bars, log)
}

/// One recorded decision.
pub(crate) struct DecisionView {
    reviewer: String,
    verdict: String,
    level: u32,
    at: String,
    rationale: Option<String>,
}

/// One event of a proposal's history.
pub(crate) struct HistoryItem {
    time: String,
    kind: String,
    actor: String,
    index: u64,
}

/// Everything the proposal panel shows.
pub(crate) struct ProposalView {
    id: String,
    system: String,
    action: String,
    status: String,
    route: String,
    policy_version: String,
    matched: String,
    created_at: String,
    subject: String,
    attributes: Vec<(String, String)>,
    input: Shown,
    /// `None` in blind review.
    output: Option<Shown>,
    output_json: String,
    confidence: Option<String>,
    confidence_pct: u32,
    summary: Option<String>,
    bars: Vec<Bar>,
    chart_height: usize,
    /// The bars share a logarithmic axis.
    chart_log: bool,
    model: String,
    context: Vec<(String, String)>,
    outcome: Option<String>,
    decided_by: Option<String>,
    modified: bool,
    decisions: Vec<DecisionView>,
    history: Vec<HistoryItem>,
    erased: bool,
    /// Policies that failed to evaluate: (policy, kind, message).
    policy_errors: Vec<(String, String, String)>,
}

fn proposal_view(p: proto::Proposal, trail: Option<proto::ProposalAudit>) -> ProposalView {
    let explanation = p.explanation.as_ref();
    let (bars, chart_log) = bars(explanation);
    let history = trail
        .map(|trail| {
            trail
                .entries
                .iter()
                .filter_map(|entry| {
                    let value: Value = serde_json::from_str(&entry.entry).ok()?;
                    Some(HistoryItem {
                        time: value.get("time")?.as_str()?.to_owned(),
                        kind: value.get("type")?.as_str()?.to_owned(),
                        actor: value.get("actor")?.as_str()?.to_owned(),
                        index: entry.index,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let hidden = p.output.is_null() && p.confidence.is_none() && p.erased_at.is_none();
    let policy_errors = p
        .policy_errors
        .iter()
        .map(|it| {
            (
                it.policy.clone(),
                it.kind.replace('_', " "),
                it.message.clone(),
            )
        })
        .collect();
    ProposalView {
        policy_errors,
        id: p.id,
        system: p.system,
        action: p.action,
        status: lower(&p.status),
        route: lower(&p.route),
        policy_version: p.policy_version,
        matched: if p.matched_policies.is_empty() {
            "none (default route)".to_owned()
        } else {
            p.matched_policies.join(", ")
        },
        created_at: p.created_at,
        subject: format!("{} {}", p.subject.type_, p.subject.id),
        attributes: p
            .subject
            .attributes
            .iter()
            .map(|(k, v)| (humanize(k), scalar(v)))
            .collect(),
        input: shown(&p.input),
        output: (!hidden).then(|| shown(&p.output)),
        output_json: serde_json::to_string_pretty(&p.output).unwrap_or_default(),
        confidence: p.confidence.map(|c| format!("{c:.2}")),
        confidence_pct: p
            .confidence
            .map_or(0, |c| (c.clamp(0.0, 1.0) * 100.0).round() as u32),
        summary: explanation
            .and_then(|e| e.get("summary"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        chart_height: bars.len() * 22,
        chart_log,
        bars,
        model: p
            .model
            .map(|m| match m.version {
                Some(v) => format!("{} {v}", m.name),
                None => m.name,
            })
            .unwrap_or_else(|| "—".to_owned()),
        context: p
            .context
            .iter()
            .map(|(k, v)| (humanize(k), scalar(v)))
            .collect(),
        outcome: p.resolution.as_ref().map(|r| lower(&r.outcome)),
        decided_by: p.resolution.as_ref().map(|r| lower(&r.decided_by)),
        modified: p.resolution.as_ref().is_some_and(|r| r.modified),
        decisions: p
            .resolution
            .map(|r| r.decisions)
            .unwrap_or_default()
            .into_iter()
            .map(|d| DecisionView {
                verdict: lower(&d.verdict),
                reviewer: d.reviewer,
                level: d.level,
                at: d.decided_at,
                rationale: d.rationale,
            })
            .collect(),
        history,
        erased: p.erased_at.is_some(),
    }
}

async fn load_proposal(
    app: &AppState,
    session: &Session,
    id: &str,
) -> Result<ProposalView, UiError> {
    let proposal = ok(proposals::get(
        State(app.clone()),
        session.caller(),
        Path(id.to_owned()),
        Params(proposals::WaitQuery::default()),
    )
    .await)?;
    let trail = audit::proposal(State(app.clone()), session.caller(), Path(id.to_owned()))
        .await
        .ok()
        .map(|axum::Json(it)| it);
    Ok(proposal_view(proposal, trail))
}

#[derive(Template)]
#[template(path = "proposal.html")]
struct ProposalPage {
    nav: Nav,
    p: ProposalView,
}

/// `GET /ui/proposals/{id}`.
pub(crate) async fn proposal(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let p = load_proposal(&app, &session, &id).await?;
    Ok(render(&ProposalPage {
        nav: Nav::new(&session, "queue"),
        p,
    })?
    .into_response())
}

/// What the decision form had, kept when it comes back with an error.
#[derive(Default)]
pub(crate) struct Draft {
    rationale: String,
    output: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    nav: Nav,
    task: proto::Task,
    kind: &'static str,
    p: ProposalView,
    query: String,
    lease: String,
    mine: bool,
    taken_by: Option<String>,
    can_decide: bool,
    due_text: String,
    overdue: bool,
    prev: Option<String>,
    next: Option<String>,
    position: usize,
    total: usize,
    draft: Draft,
    /// The proposal waits for this task: words can be sent back instead.
    can_respond: bool,
    /// The proposal's comment thread: (author, words, when).
    comments: Vec<(String, String, String)>,
    /// Whether the caller may add to it (reviewers, admins).
    can_comment: bool,
}

async fn task_page(
    app: &AppState,
    session: &Session,
    id: &str,
    filter: QueueFilter,
    draft: Draft,
) -> Result<TaskPage, UiError> {
    let task = ok(tasks::get(State(app.clone()), session.caller(), Path(id.to_owned())).await)?;
    let p = load_proposal(app, session, &task.proposal_id).await?;
    let thread = crate::http::proposals::comments(
        State(app.clone()),
        session.caller(),
        Path(task.proposal_id.clone()),
    )
    .await;
    let comments = ok(thread)?
        .items
        .into_iter()
        .map(|c| {
            let body = c.body.unwrap_or_else(|| "(erased)".to_owned());
            (c.author, body, c.created_at)
        })
        .collect();
    let can_comment = session
        .caller()
        .user_with(&[loopgate_core::Role::Reviewer])
        .is_ok();
    let now = app.clock.now();
    let me = session.user.username.as_str();
    let queue = load_queue(app, session, &filter).await?;
    let ids: Vec<&str> = queue
        .iter()
        .filter(|t| free_for(t, me) || t.id == task.id)
        .map(|t| t.id.as_str())
        .collect();
    let at = ids.iter().position(|it| *it == task.id);
    let (prev, next) = match at {
        Some(i) => (
            i.checked_sub(1)
                .and_then(|j| ids.get(j))
                .map(|s| s.to_string()),
            ids.get(i + 1).map(|s| s.to_string()),
        ),
        None => (None, ids.first().map(|s| s.to_string())),
    };
    let lease_end = task.lease_expires_at.as_deref().and_then(parse_time);
    let holder = task
        .claimed_by
        .clone()
        .filter(|_| lease_end.is_some_and(|end| now < end));
    let mine = holder.as_deref() == Some(me);
    let open = matches!(
        task.state,
        proto::TaskState::Open | proto::TaskState::Claimed
    );
    let nav = Nav::new(session, "queue");
    // Reserved for another member of the group (groups that assign).
    let reserved_for = task.assignee.clone().filter(|who| who != me);
    let can_decide = open && nav.reviewer && (holder.is_none() || mine) && reserved_for.is_none();
    let lease = match (&holder, lease_end) {
        (Some(who), Some(end)) if mine => format!(
            "Yours for {} (until {})",
            span(end.millis() - now.millis()),
            end.to_rfc3339()
        ),
        (Some(who), Some(end)) => {
            format!("Taken by {who} for {}", span(end.millis() - now.millis()))
        }
        _ if open => match (
            &reserved_for,
            task.return_at.as_deref().and_then(parse_time),
        ) {
            (Some(who), Some(back)) => format!(
                "Assigned to {who}; back in the pool in {} unless opened",
                span(back.millis() - now.millis())
            ),
            (Some(who), None) => format!("Assigned to {who}"),
            (None, _) if task.assignee.is_some() => "Assigned to you".to_owned(),
            (None, _) => "Not claimed".to_owned(),
        },
        _ => "Closed".to_owned(),
    };
    let r = row(&task, me, now);
    Ok(TaskPage {
        nav,
        kind: r.kind,
        due_text: r.due_text,
        overdue: r.overdue,
        taken_by: holder.filter(|_| !mine).or(reserved_for),
        mine,
        can_decide,
        can_respond: matches!(task.kind, proto::TaskKind::Gate),
        comments,
        can_comment,
        lease,
        prev,
        next,
        position: at.map_or(0, |i| i + 1),
        total: ids.len(),
        query: filter.query(),
        task,
        p,
        draft,
    })
}

/// `GET /ui/tasks/{id}`: the proposal under review and the decision form;
/// the page's script claims the task when it opens.
pub(crate) async fn task(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(filter): Query<QueueFilter>,
) -> Result<Response, UiError> {
    let page = task_page(&app, &session, &id, filter, Draft::default()).await?;
    Ok(render(&page)?.into_response())
}

fn back_to_task(id: &str, query: &str) -> Redirect {
    let sep = if query.is_empty() { "" } else { "?" };
    Redirect::to(&format!("/ui/tasks/{id}{sep}{query}"))
}

/// `POST /ui/tasks/{id}/claim` (without script).
pub(crate) async fn claim(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(filter): Query<QueueFilter>,
) -> Result<Response, UiError> {
    ok(tasks::claim(State(app), session.caller(), Path(id.clone())).await)?;
    Ok(back_to_task(&id, &filter.query()).into_response())
}

#[derive(Deserialize)]
pub(crate) struct CommentForm {
    body: String,
}

/// `POST /ui/tasks/{id}/comments`: adds to the proposal's thread, back to
/// the task.
pub(crate) async fn comment(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(filter): Query<QueueFilter>,
    Form(form): Form<CommentForm>,
) -> Result<Response, UiError> {
    let task = ok(tasks::get(State(app.clone()), session.caller(), Path(id.clone())).await)?;
    let body = proto::NewComment { body: form.body };
    let _added = crate::http::proposals::add_comment(
        State(app),
        session.caller(),
        Path(task.proposal_id),
        JsonBody(body),
    )
    .await?;
    Ok(back_to_task(&id, &filter.query()).into_response())
}

/// `POST /ui/tasks/{id}/release`: back to the queue.
pub(crate) async fn release(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(filter): Query<QueueFilter>,
) -> Result<Response, UiError> {
    ok(tasks::release(State(app), session.caller(), Path(id)).await)?;
    let query = filter.query();
    let sep = if query.is_empty() { "" } else { "?" };
    Ok(Redirect::to(&format!("/ui/queue{sep}{query}")).into_response())
}

#[derive(Deserialize)]
pub(crate) struct DecisionForm {
    verdict: String,
    #[serde(default)]
    rationale: String,
    #[serde(default)]
    output: Option<String>,
    /// With `respond`: the words for the AI.
    #[serde(default)]
    message: String,
    /// With `approve`: a standing grant for this long (empty: none).
    #[serde(default)]
    grant_for: String,
    /// Its uses (empty: until it ends).
    #[serde(default)]
    grant_uses: String,
    /// `same_output` or `same_subject`.
    #[serde(default)]
    grant_scope: String,
    seen_digest: String,
}

/// The grant a task page's approval offers: none unless `grant_for` is
/// filled in (the API checks the terms against the policy).
fn grant_offer(
    verdict: proto::Verdict,
    form: &DecisionForm,
) -> Result<Option<proto::GrantOffer>, String> {
    let duration = form.grant_for.trim();
    if verdict != proto::Verdict::Approve || duration.is_empty() {
        return Ok(None);
    }
    let uses = match form.grant_uses.trim() {
        "" => None,
        text => match text.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(format!(
                    "The grant's uses must be a whole number, not `{text}`."
                ));
            }
        },
    };
    let scope = match form.grant_scope.as_str() {
        "" | "same_output" => proto::GrantScope::SameOutput,
        "same_subject" => proto::GrantScope::SameSubject,
        other => {
            return Err(format!(
                "`{other}` is not a grant scope: same_output or same_subject."
            ));
        }
    };
    Ok(Some(proto::GrantOffer {
        for_: duration.to_owned(),
        uses,
        scope,
    }))
}

/// `POST /ui/tasks/{id}/decide`: records the decision and opens the next
/// task. A refused decision comes back with the form as it was.
pub(crate) async fn decide(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(filter): Query<QueueFilter>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, UiError> {
    let refuse = |message: String, form: DecisionForm| Draft {
        rationale: form.rationale,
        output: form.output,
        error: Some(message),
    };
    let verdict = match form.verdict.as_str() {
        "approve" => proto::Verdict::Approve,
        "reject" => proto::Verdict::Reject,
        "modify" => proto::Verdict::Modify,
        "escalate" => proto::Verdict::Escalate,
        "respond" => proto::Verdict::Respond,
        other => {
            let message = format!(
                "`{other}` is not a decision: approve, reject, modify, escalate or respond."
            );
            return again(&app, &session, &id, filter, refuse(message, form)).await;
        }
    };
    let output = match (verdict, form.output.as_deref()) {
        (proto::Verdict::Modify, Some(text)) => match serde_json::from_str::<Value>(text) {
            Ok(value) => Some(value),
            Err(error) => {
                let message = format!("The edited output is not valid JSON: {error}.");
                return again(&app, &session, &id, filter, refuse(message, form)).await;
            }
        },
        (proto::Verdict::Modify, None) => {
            let message = "Modify needs the edited output.".to_owned();
            return again(&app, &session, &id, filter, refuse(message, form)).await;
        }
        _ => None,
    };
    let grant = match grant_offer(verdict, &form) {
        Ok(grant) => grant,
        Err(message) => return again(&app, &session, &id, filter, refuse(message, form)).await,
    };
    let rationale = form.rationale.trim();
    let request = proto::DecisionRequest {
        verdict,
        rationale: (!rationale.is_empty()).then(|| rationale.to_owned()),
        output,
        labels: None,
        message: (verdict == proto::Verdict::Respond).then(|| form.message.trim().to_owned()),
        grant,
        seen_digest: form.seen_digest.clone(),
    };
    let decided = tasks::decide(
        State(app.clone()),
        session.caller(),
        Path(id.clone()),
        JsonBody(request),
    )
    .await;
    if let Err(error) = decided {
        let problem = error.problem();
        let mut message = problem.detail;
        if let Some(help) = problem.help {
            message = format!("{message}. {help}");
        }
        return again(&app, &session, &id, filter, refuse(message, form)).await;
    }
    // The next task of the same queue, if any.
    let queue = load_queue(&app, &session, &filter).await?;
    let me = session.user.username.as_str();
    let next = queue.iter().find(|t| t.id != id && free_for(t, me));
    let query = filter.query();
    Ok(match next {
        Some(task) => back_to_task(&task.id, &query).into_response(),
        None => {
            let sep = if query.is_empty() { "" } else { "&" };
            Redirect::to(&format!("/ui/queue?done=1{sep}{query}")).into_response()
        }
    })
}

async fn again(
    app: &AppState,
    session: &Session,
    id: &str,
    filter: QueueFilter,
    draft: Draft,
) -> Result<Response, UiError> {
    let page = task_page(app, session, id, filter, draft).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_short() {
        assert_eq!(span(4_000), "4s");
        assert_eq!(span(-125_000), "2m");
        assert_eq!(span(3_600_000), "1h");
        assert_eq!(span(7_500_000), "2h 5m");
        assert_eq!(span(3 * 86_400_000), "3d");
    }

    #[test]
    fn numbers_read_short_and_far_apart_sizes_share_a_log_axis() {
        assert_eq!(human(0.06575874734556664), "0.0658");
        assert_eq!(human(13.0), "13");
        assert_eq!(human(-2.5), "-2.5");
        assert_eq!(human(1234.5678), "1235");
        assert_eq!(human(0.1), "0.1");
        assert_eq!(human(1e-9), "0.000000001");
        assert_eq!(human(1e-12), "0");
        let explanation = serde_json::json!({"features": {"toxicity": 0.066, "reports": 13}});
        let (bars, log) = bars(Some(&explanation));
        assert!(log);
        let widths: Vec<f64> = bars.iter().map(|b| b.width).collect();
        // 13 reports fill the axis; the score is still a visible bar.
        assert!(
            widths.iter().any(|w| (*w - 100.0).abs() < 1e-9),
            "{widths:?}"
        );
        assert!(widths.iter().all(|w| 10.0 < *w), "{widths:?}");
        assert_eq!(
            bars.iter().find(|b| b.name == "toxicity").unwrap().value,
            "0.066"
        );
    }

    #[test]
    fn bars_center_on_zero_when_some_are_negative() {
        let explanation = serde_json::json!({"features": {"a": 2.0, "b": -1.0, "c": "text"}});
        let (bars, log) = bars(Some(&explanation));
        assert!(!log);
        assert_eq!(bars.len(), 2);
        assert_eq!((bars[0].x, bars[0].width), (50.0, 50.0));
        assert_eq!((bars[1].x, bars[1].width), (25.0, 25.0));
        assert!(bars[1].negative);
    }
}
