//! The analytics dashboard: the `/v1/analytics/*` reports of one system and
//! period, with charts drawn here as SVG (no script, no library).

use std::fmt::Write as _;

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use loopgate_core::Role;
use loopgate_proto as proto;
use serde::Deserialize;

use crate::AppState;
use crate::http::analytics::{self, AnalyticsQuery};
use crate::http::extract::Params;
use crate::http::systems;
use crate::ui::session::Session;
use crate::ui::{Nav, UiError, ok, render};

#[derive(Deserialize)]
pub(crate) struct DashboardQuery {
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    attribute: Option<String>,
}

#[derive(Template)]
#[template(path = "analytics.html")]
struct Dashboard {
    nav: Nav,
    systems: Vec<String>,
    system: String,
    since: String,
    attribute: String,
    overview: proto::Overview,
    calibration: proto::CalibrationReport,
    qa: proto::QaReport,
    thresholds: proto::ThresholdReport,
    fairness: Option<proto::FairnessReport>,
    fairness_note: Option<String>,
    agreement: proto::AgreementReport,
    daily_svg: String,
    reliability_svg: String,
    curve_svg: String,
}

/// `GET /ui/analytics`.
pub(crate) async fn dashboard(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, UiError> {
    let caller = session.caller();
    caller.user_with(&[Role::Auditor])?;
    let systems: Vec<String> = ok(systems::list(State(app.clone()), caller.clone()).await)?
        .items
        .into_iter()
        .map(|s| s.id)
        .collect();
    let Some(system) = query
        .system
        .filter(|s| !s.is_empty())
        .or_else(|| systems.first().cloned())
    else {
        return Err(UiError::status(
            axum::http::StatusCode::NOT_FOUND,
            "There are no systems yet, so there is nothing to analyse.",
        ));
    };
    let since = query
        .since
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "30d".to_owned());
    let base = || AnalyticsQuery {
        system: Some(system.clone()),
        since: Some(since.clone()),
        ..Default::default()
    };
    let overview =
        ok(analytics::overview(State(app.clone()), caller.clone(), Params(base())).await)?;
    let calibration =
        ok(analytics::calibration(State(app.clone()), caller.clone(), Params(base())).await)?;
    let qa = ok(analytics::qa(State(app.clone()), caller.clone(), Params(base())).await)?;
    let thresholds =
        ok(analytics::thresholds(State(app.clone()), caller.clone(), Params(base())).await)?;
    let agreement =
        ok(analytics::agreement(State(app.clone()), caller.clone(), Params(base())).await)?;
    // Fairness needs an attribute: the one asked for, or the API names the choices.
    let attribute = query.attribute.unwrap_or_default();
    let fairness_query = AnalyticsQuery {
        attribute: (!attribute.is_empty()).then(|| attribute.clone()),
        min_group: Some(10),
        ..base()
    };
    let (fairness, fairness_note) =
        match analytics::fairness(State(app.clone()), caller.clone(), Params(fairness_query)).await
        {
            Ok(axum::Json(report)) => (Some(report), None),
            Err(error) => (None, Some(error.problem().detail)),
        };
    let page = Dashboard {
        nav: Nav::new(&session, "analytics"),
        daily_svg: daily_svg(&overview.daily),
        reliability_svg: reliability_svg(&calibration.bins),
        curve_svg: curve_svg(&thresholds),
        systems,
        system,
        since,
        attribute,
        overview,
        calibration,
        qa,
        thresholds,
        fairness,
        fairness_note,
        agreement,
    };
    Ok(render(&page)?.into_response())
}

/// Submitted per day as bars, tasks open at the end of the day as a line.
fn daily_svg(days: &[proto::DayCounts]) -> String {
    let max = days
        .iter()
        .map(|d| d.submitted.max(d.open_at_end))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let width = 100.0 / days.len().max(1) as f64;
    let mut svg = String::from(
        r#"<svg viewBox="0 0 100 40" preserveAspectRatio="none" class="chart-svg" role="img" aria-labelledby="daily-title"><title id="daily-title">Proposals submitted per day (bars) and review tasks open at the end of each day (line)</title>"#,
    );
    let mut line = String::new();
    for (i, day) in days.iter().enumerate() {
        let h = day.submitted as f64 / max * 38.0;
        let x = i as f64 * width;
        let _ = write!(
            svg,
            r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" class="bar"><title>{}: {} submitted, {} resolved, {} open</title></rect>"#,
            x + width * 0.1,
            40.0 - h,
            width * 0.8,
            h,
            day.day,
            day.submitted,
            day.resolved,
            day.open_at_end
        );
        let _ = write!(
            line,
            "{:.2},{:.2} ",
            x + width / 2.0,
            40.0 - day.open_at_end as f64 / max * 38.0
        );
    }
    let _ = write!(
        svg,
        r#"<polyline points="{}" class="line" vector-effect="non-scaling-stroke"/></svg>"#,
        line.trim_end()
    );
    svg
}

/// The reliability diagram: accuracy against mean confidence per bin, the
/// diagonal for perfect calibration.
fn reliability_svg(bins: &[proto::CalibrationBin]) -> String {
    let mut svg = String::from(
        r#"<svg viewBox="-8 -4 112 112" class="chart-square" role="img" aria-labelledby="rel-title"><title id="rel-title">Reliability: share right (up) against stated confidence (across); on the diagonal the AI is calibrated</title><rect x="0" y="0" width="100" height="100" class="frame"/><line x1="0" y1="100" x2="100" y2="0" class="diagonal"/>"#,
    );
    let most = bins.iter().map(|b| b.n).max().unwrap_or(0).max(1) as f64;
    for bin in bins {
        if let (Some(c), Some(a)) = (bin.mean_confidence, bin.accuracy) {
            let r = 1.5 + 4.0 * (bin.n as f64 / most).sqrt();
            let _ = write!(
                svg,
                r#"<circle cx="{:.2}" cy="{:.2}" r="{r:.2}" class="dot"><title>confidence {c:.2}: right {:.0}% of {} items</title></circle>"#,
                c * 100.0,
                100.0 - a * 100.0,
                a * 100.0,
                bin.n
            );
        }
    }
    svg.push_str(r#"<text x="0" y="108" class="axis">0</text><text x="94" y="108" class="axis">1</text><text x="-7" y="3" class="axis">1</text></svg>"#);
    svg
}

/// The threshold curve: error rate and its upper bound against the
/// threshold, with the target as a dashed line.
fn curve_svg(report: &proto::ThresholdReport) -> String {
    let mut svg = String::from(
        r#"<svg viewBox="-8 -4 112 112" class="chart-square" role="img" aria-labelledby="curve-title"><title id="curve-title">Error of auto-approval (line) and its upper bound (dashed) against the confidence threshold; the red line is the target</title><rect x="0" y="0" width="100" height="100" class="frame"/>"#,
    );
    let y = |v: f64| 100.0 - v.clamp(0.0, 1.0) * 100.0;
    let mut rate = String::new();
    let mut bound = String::new();
    for p in &report.curve {
        if let Some(e) = p.error_rate {
            let _ = write!(rate, "{:.2},{:.2} ", p.threshold * 100.0, y(e));
        }
        if let Some(u) = p.upper_bound {
            let _ = write!(bound, "{:.2},{:.2} ", p.threshold * 100.0, y(u));
        }
    }
    let _ = write!(
        svg,
        r#"<line x1="0" x2="100" y1="{t:.2}" y2="{t:.2}" class="target"/><polyline points="{}" class="line"/><polyline points="{}" class="line dashed"/>"#,
        rate.trim_end(),
        bound.trim_end(),
        t = y(report.target)
    );
    if let Some(best) = &report.recommended {
        let _ = write!(
            svg,
            r#"<line x1="{x:.2}" x2="{x:.2}" y1="0" y2="100" class="pick"><title>recommended threshold {:.2}</title></line>"#,
            best.threshold,
            x = best.threshold * 100.0
        );
    }
    svg.push_str(r#"<text x="0" y="108" class="axis">0</text><text x="94" y="108" class="axis">1</text></svg>"#);
    svg
}
