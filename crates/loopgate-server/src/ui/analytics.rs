//! The analytics dashboard: the `/v1/analytics/*` reports of one system and
//! period, with charts drawn here as SVG (no script, no library).

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use loopgate_core::Role;
use loopgate_proto as proto;
use serde::Deserialize;

use crate::AppState;
use crate::auth::session::Session;
use crate::charts;
use crate::http::analytics::{self, AnalyticsQuery};
use crate::http::extract::Params;
use crate::http::systems;
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
        daily_svg: charts::daily(&overview.daily),
        reliability_svg: charts::reliability(&calibration.bins),
        curve_svg: charts::threshold_curve(&thresholds),
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
