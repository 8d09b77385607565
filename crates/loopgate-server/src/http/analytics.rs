//! `/v1/analytics/*`: the feedback and oversight figures of one system over
//! a period (auditors and admins).

use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use loopgate_core::{Role, SystemId, Timestamp};
use loopgate_proto as proto;
use loopgate_store::aggregates;
use loopgate_store::{AnalyticsFilter, LabelRow, TotalsQuery};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::convert;
use crate::http::error::ApiError;
use crate::http::extract::Params;
use crate::http::parse_id;
use crate::reports;

/// Filters and settings of the analytics reports.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQuery {
    /// System id (required).
    #[param(required, pattern = r"^[a-z][a-z0-9-]{0,63}$")]
    pub(crate) system: Option<String>,
    /// Only this action.
    #[param(min_length = 1)]
    pub(crate) action: Option<String>,
    /// The period up to now: `30d` (default), `12h`, or ISO 8601 (`P7D`,
    /// `PT12H`); at most 9999 days.
    #[param(pattern = r"^([1-9][0-9]{0,3}[hd]|P[1-9][0-9]{0,3}D|PT[1-9][0-9]{0,4}H)$")]
    pub(crate) since: Option<String>,
    /// Fairness: the subject attribute to group by (default: the first,
    /// by name, that the system's proposals carry).
    #[param(min_length = 1)]
    pub(crate) attribute: Option<String>,
    /// Fairness: the AI counts as positive at confidence ≥ this (default 0.5).
    #[param(minimum = 0.0, maximum = 1.0)]
    pub(crate) threshold: Option<f64>,
    /// Fairness: groups smaller than this are not compared (default 30).
    pub(crate) min_group: Option<u64>,
    /// Thresholds: the target error rate of auto-approval (default 0.01).
    #[param(minimum = 0.0, maximum = 1.0)]
    pub(crate) target: Option<f64>,
    /// 1 − confidence level of intervals and bounds (default 0.05).
    #[param(minimum = 0.0, maximum = 1.0)]
    pub(crate) alpha: Option<f64>,
    /// QA: the half-width of the error-rate interval to plan for (default 0.01).
    #[param(minimum = 0.0, maximum = 1.0)]
    pub(crate) half_width: Option<f64>,
}

fn fraction(name: &str, value: Option<f64>, default: f64) -> Result<f64, ApiError> {
    match value {
        None => Ok(default),
        Some(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Some(v) => Err(ApiError::invalid(format!(
            "`{name}` must be a fraction from 0 to 1, not {v}"
        ))),
    }
}

/// The window a query names, after the role check.
async fn window(
    app: &AppState,
    caller: &Caller,
    query: &AnalyticsQuery,
) -> Result<(proto::AnalyticsWindow, AnalyticsFilter), ApiError> {
    caller.user_with(&[Role::Auditor])?;
    let Some(system) = query.system.as_deref() else {
        return Err(ApiError::invalid(
            "name the system: `?system=fraud-detector`",
        ));
    };
    let system = parse_id(system, SystemId::parse, "system")?;
    if app.system(&system).await?.is_none() {
        return Err(ApiError::not_found("system", system.as_str()));
    }
    let since = match query.since.as_deref() {
        None => Duration::from_secs(30 * 86_400),
        Some(text) => crate::http::formats::period("since", text)?,
    };
    // Up to and including now.
    let to = app.clock.now().plus(Duration::from_millis(1));
    let from = Timestamp::from_millis(
        to.millis()
            .saturating_sub(i64::try_from(since.as_millis()).unwrap_or(i64::MAX)),
    );
    let filter = AnalyticsFilter {
        system: system.clone(),
        action: query.action.clone(),
        from,
        to,
    };
    let window = proto::AnalyticsWindow {
        system: system.to_string(),
        action: query.action.clone(),
        from: from.to_rfc3339(),
        to: to.to_rfc3339(),
    };
    Ok((window, filter))
}

/// Sums the counts of the window's metrics: the stored counts of its
/// whole days, and the contributions of the proposals of its first day when
/// it starts inside one.
async fn load(
    app: &AppState,
    caller: &Caller,
    query: &AnalyticsQuery,
    metrics: &[&'static str],
) -> Result<(proto::AnalyticsWindow, AnalyticsFilter, reports::Totals), ApiError> {
    let (window, filter) = window(app, caller, query).await?;
    let first = aggregates::day_of(filter.from.millis());
    let whole = if first * aggregates::DAY_MS == filter.from.millis() {
        first
    } else {
        first + 1
    };
    let partial = if first < whole {
        let part = AnalyticsFilter {
            to: Timestamp::from_millis((whole * aggregates::DAY_MS).min(filter.to.millis())),
            ..filter.clone()
        };
        app.store.review_facts(part).await?
    } else {
        Vec::new()
    };
    let rows = app
        .store
        .analytics_totals(TotalsQuery {
            system: filter.system.clone(),
            action: filter.action.clone(),
            from_day: whole,
            metrics: metrics.to_vec(),
        })
        .await?;
    let totals = compute(move || reports::Totals::new(rows, &partial)).await?;
    Ok((window, filter, totals))
}

async fn compute<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(&e))
}

/// Volumes by route and outcome, override rate, decision times, deadline breaches, escalations, queue depth per day.
#[utoipa::path(get, path = "/v1/analytics/overview", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, body = proto::Overview), (status = 403, body = proto::Problem)))]
pub async fn overview(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<AnalyticsQuery>,
) -> Result<Json<proto::Overview>, ApiError> {
    let (window, filter, totals) = load(&app, &caller, &query, reports::needs::OVERVIEW).await?;
    Ok(Json(reports::overview(
        window,
        &totals,
        filter.from,
        filter.to,
    )))
}

/// Calibration of confidence against human verdicts: reliability bins, ECE, MCE, Brier score.
#[utoipa::path(get, path = "/v1/analytics/calibration", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, body = proto::CalibrationReport), (status = 403, body = proto::Problem)))]
pub async fn calibration(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<AnalyticsQuery>,
) -> Result<Json<proto::CalibrationReport>, ApiError> {
    let (window, _, totals) = load(&app, &caller, &query, reports::needs::CALIBRATION).await?;
    Ok(Json(reports::calibration_report(window, &totals)))
}

/// The error rate of auto-approved proposals estimated from QA samples, and the sampling rate for a precision.
#[utoipa::path(get, path = "/v1/analytics/qa", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, body = proto::QaReport), (status = 403, body = proto::Problem)))]
pub async fn qa(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<AnalyticsQuery>,
) -> Result<Json<proto::QaReport>, ApiError> {
    let alpha = fraction("alpha", query.alpha, 0.05)?;
    let half_width = fraction("half_width", query.half_width, 0.01)?;
    let (window, _, totals) = load(&app, &caller, &query, reports::needs::QA).await?;
    Ok(Json(reports::qa_report(window, &totals, half_width, alpha)))
}

/// Threshold advice: the lowest confidence threshold whose error bound stays within the target.
#[utoipa::path(get, path = "/v1/analytics/thresholds", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, body = proto::ThresholdReport), (status = 403, body = proto::Problem)))]
pub async fn thresholds(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<AnalyticsQuery>,
) -> Result<Json<proto::ThresholdReport>, ApiError> {
    let alpha = fraction("alpha", query.alpha, 0.05)?;
    let target = fraction("target", query.target, 0.01)?;
    let (window, _, totals) = load(&app, &caller, &query, reports::needs::THRESHOLDS).await?;
    Ok(Json(reports::threshold_report(
        window, &totals, target, alpha,
    )))
}

/// Fairness across the values of a subject attribute, for the AI and for the reviewers.
#[utoipa::path(get, path = "/v1/analytics/fairness", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, body = proto::FairnessReport), (status = 403, body = proto::Problem)))]
pub async fn fairness(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<AnalyticsQuery>,
) -> Result<Json<proto::FairnessReport>, ApiError> {
    let alpha = fraction("alpha", query.alpha, 0.05)?;
    let threshold = fraction("threshold", query.threshold, 0.5)?;
    let min_group = query.min_group.unwrap_or(30);
    let (window, filter, totals) = load(&app, &caller, &query, reports::needs::FAIRNESS).await?;
    // Without one named: the first attribute the system's proposals carry
    // (the report says which), or none (a report without groups).
    let attribute = match query.attribute.clone() {
        Some(attribute) => attribute,
        None => app
            .store
            .attribute_keys(&filter.system)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default(),
    };
    Ok(Json(
        compute(move || {
            reports::fairness_report(window, &totals, &attribute, threshold, min_group, alpha)
        })
        .await?,
    ))
}

/// Reviewer agreement (Cohen's κ per pair, Fleiss' κ, Krippendorff's α), diligence, and the items to adjudicate.
#[utoipa::path(get, path = "/v1/analytics/agreement", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, body = proto::AgreementReport), (status = 403, body = proto::Problem)))]
pub async fn agreement(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<AnalyticsQuery>,
) -> Result<Json<proto::AgreementReport>, ApiError> {
    let (window, filter, totals) = load(&app, &caller, &query, reports::needs::AGREEMENT).await?;
    let disagreements = app
        .store
        .disagreements(filter, 100)
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(Json(reports::agreement_report(
        window,
        &totals,
        disagreements,
    )))
}

/// Rows read per store call while exporting.
const EXPORT_PAGE: u32 = 1000;

fn label(system: &str, row: LabelRow) -> proto::LabelRecord {
    proto::LabelRecord {
        proposal: row.id.to_string(),
        system: system.to_owned(),
        action: row.action,
        created_at: row.created_at.to_rfc3339(),
        input: row.input,
        ai_output: row.ai_output,
        output: row.output,
        confidence: row.confidence,
        status: convert::status_to_proto(row.status),
        decided_by: row.decided_by.map(convert::decided_by_to_proto),
        modified: row.modified,
        attributes: row.attributes,
        decisions: row
            .decisions
            .into_iter()
            .map(|d| proto::LabelDecision {
                reviewer: d.reviewer,
                verdict: convert::verdict_to_proto(d.verdict),
                rationale: d.rationale,
                labels: d.labels,
                decided_at: d.decided_at.to_rfc3339(),
            })
            .collect(),
    }
}

/// Labeled data: every proposal of the period that people decided (input, the AI's output and confidence, the final output, verdicts, rationales, labels, subject attributes), one JSON object per line, streamed page by page (constant memory). Erased payloads are left out.
#[utoipa::path(get, path = "/v1/exports/labels", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, description = "NDJSON of LabelRecord", content_type = "application/x-ndjson"),
              (status = 403, body = proto::Problem)))]
pub async fn labels(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    let (window, filter) = window(&app, &caller, &query).await?;
    let system = window.system;
    let state = (app, filter, system, Some(0_i64));
    let lines = futures::stream::unfold(state, |(app, filter, system, after)| async move {
        let after_seq = after?;
        let page = match app
            .store
            .label_rows(filter.clone(), Some(after_seq), EXPORT_PAGE)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "label export stopped");
                let line =
                    serde_json::json!({"error": "the export stopped early; see the server log"});
                return Some((
                    Ok::<Bytes, std::io::Error>(Bytes::from(format!("{line}\n"))),
                    (app, filter, system, None),
                ));
            }
        };
        if page.is_empty() {
            return None;
        }
        let next = page.last().map(|row| row.seq);
        let full = page.len() == EXPORT_PAGE as usize;
        let mut chunk = Vec::new();
        for row in page {
            if serde_json::to_writer(&mut chunk, &label(&system, row)).is_ok() {
                chunk.push(b'\n');
            }
        }
        let after = if full { next } else { None };
        Some((Ok(Bytes::from(chunk)), (app, filter, system, after)))
    });
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}
