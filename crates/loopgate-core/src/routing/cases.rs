//! Tests for policies: a case file (YAML or JSON) of proposals and the
//! route each must take, run against a policy set.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::schema::Shape;
use super::{Defaults, EvaluationError, Policies, RoutingRequest, ShapeRule, route, typed_input};
use crate::{Oversight, RiskTier, Route};

/// `expect.route` of a case whose proposal the API would refuse with
/// `422 invalid_context` (a number that breaks the rule, a shape not met).
pub const REFUSED: &str = "refused";

/// A case file: `cases:` (or a bare list) of cases.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The cases, in order.
    pub cases: Vec<Case>,
}

/// One proposal and what routing must make of it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Shown in reports; `case N` when missing.
    #[serde(default)]
    pub name: Option<String>,
    /// System id.
    pub system: String,
    /// Action.
    pub action: String,
    /// Subject; `{"type": "subject", "id": "case"}` when missing.
    #[serde(default)]
    pub subject: Option<CaseSubject>,
    /// Proposal context.
    #[serde(default)]
    pub context: Map<String, Value>,
    /// Model confidence.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Model version.
    #[serde(default)]
    pub model_version: Option<String>,
    /// The system's risk tier; the registered one (or `limited`) when missing.
    #[serde(default)]
    pub risk_tier: Option<String>,
    /// The system's oversight mode; the registered one (or `in_the_loop`) when missing.
    #[serde(default)]
    pub oversight: Option<String>,
    /// What must come out.
    pub expect: Expectation,
}

/// A case's subject.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSubject {
    /// Subject type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Subject id.
    pub id: String,
    /// Attributes.
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// What a case expects; fields left out are not checked.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `allow`, `review`, `deny`, or `refused` (the API would refuse the
    /// proposal: its context breaks the number rule or the declared shape).
    pub route: String,
    /// The reviewer group (review routes).
    #[serde(default)]
    pub reviewers: Option<String>,
    /// Approvals required (review routes).
    #[serde(default)]
    pub approvals: Option<u32>,
    /// Exactly these policies decided the route.
    #[serde(default)]
    pub matched: Option<Vec<String>>,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Whether everything expected came out.
    pub passed: bool,
    /// What did not match, one sentence each.
    pub failures: Vec<String>,
    /// The route it took (`deny` when the proposal would be refused).
    pub route: Route,
    /// Why the API would refuse the proposal, when it would.
    pub refused: Option<String>,
    /// Policies whose evaluation failed, each counted restrictively.
    pub errors: Vec<EvaluationError>,
    /// The policies that decided it.
    pub matched: Vec<String>,
    /// The reviewer group (review routes).
    pub reviewers: Option<String>,
    /// Approvals required (review routes).
    pub approvals: Option<u32>,
}

/// Reads a case file: JSON when it starts with `{` or `[`, YAML otherwise.
/// Errors name the line and column.
pub fn parse(text: &str) -> Result<CaseFile, String> {
    let trimmed = text.trim_start();
    let file = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if trimmed.starts_with('[') {
            serde_json::from_str::<Vec<Case>>(text).map(|cases| CaseFile { cases })
        } else {
            serde_json::from_str::<CaseFile>(text)
        }
        .map_err(|error| format!("case file is not valid: {error}"))?
    } else {
        let value: yaml_serde::Value = yaml_serde::from_str(text)
            .map_err(|error| format!("case file is not valid YAML: {error}"))?;
        if value.is_sequence() {
            yaml_serde::from_str::<Vec<Case>>(text).map(|cases| CaseFile { cases })
        } else {
            yaml_serde::from_str::<CaseFile>(text)
        }
        .map_err(|error| format!("case file is not valid: {error}"))?
    };
    for (n, case) in file.cases.iter().enumerate() {
        let name = case_name(case, n);
        if Route::parse(&case.expect.route).is_none() && case.expect.route != REFUSED {
            return Err(format!(
                "{name}: `expect.route` must be `allow`, `review`, `deny` or `refused`, not `{}`",
                case.expect.route
            ));
        }
        if let Some(tier) = &case.risk_tier
            && RiskTier::parse(tier).is_none()
        {
            return Err(format!("{name}: `risk_tier` `{tier}` is not a risk tier"));
        }
        if let Some(mode) = &case.oversight
            && Oversight::parse(mode).is_none()
        {
            return Err(format!(
                "{name}: `oversight` `{mode}` is not an oversight mode"
            ));
        }
    }
    Ok(file)
}

fn case_name(case: &Case, n: usize) -> String {
    case.name
        .clone()
        .unwrap_or_else(|| format!("case {}", n + 1))
}

/// What a case's system is, as registered.
#[derive(Debug, Clone, Copy)]
pub struct CaseSystem<'a> {
    /// Its risk tier.
    pub risk_tier: RiskTier,
    /// Its oversight mode.
    pub oversight: Oversight,
    /// Its declared shape.
    pub shape: Option<&'a Shape>,
    /// Whether its actions must have a declared shape.
    pub rule: ShapeRule,
}

/// Runs every case. `system` gives a registered system: its risk tier and
/// oversight mode, for cases that do not state them, and its shape, which
/// the case's context must meet as a proposal's would.
pub fn run<'a>(
    policies: &Policies,
    file: &CaseFile,
    defaults: &Defaults,
    system: impl Fn(&str) -> Option<CaseSystem<'a>>,
) -> Vec<CaseResult> {
    let empty = Map::new();
    let mut results = Vec::with_capacity(file.cases.len());
    for (n, case) in file.cases.iter().enumerate() {
        let registered = system(&case.system);
        let risk_tier = case
            .risk_tier
            .as_deref()
            .and_then(RiskTier::parse)
            .or(registered.map(|it| it.risk_tier))
            .unwrap_or(RiskTier::Limited);
        let oversight = case
            .oversight
            .as_deref()
            .and_then(Oversight::parse)
            .or(registered.map(|it| it.oversight))
            .unwrap_or(Oversight::InTheLoop);
        let (subject_type, subject_id, attributes) = match &case.subject {
            Some(subject) => (
                subject.type_.as_str(),
                subject.id.as_str(),
                &subject.attributes,
            ),
            None => ("subject", "case", &empty),
        };
        let name = case_name(case, n);
        let input = match typed_input(
            registered.and_then(|it| it.shape),
            &case.action,
            &case.context,
            attributes,
            registered.map_or(ShapeRule::WhenDeclared, |it| it.rule),
        ) {
            Ok(input) => input,
            Err(error) => {
                let refused = error.to_string();
                let mut failures = Vec::new();
                if case.expect.route != REFUSED {
                    failures.push(format!(
                        "expected route `{}`, but the proposal would be refused: {refused}",
                        case.expect.route
                    ));
                }
                results.push(CaseResult {
                    name,
                    passed: failures.is_empty(),
                    failures,
                    route: Route::Deny,
                    refused: Some(refused),
                    errors: Vec::new(),
                    matched: Vec::new(),
                    reviewers: None,
                    approvals: None,
                });
                continue;
            }
        };
        let request = RoutingRequest {
            system: &case.system,
            action: &case.action,
            subject_type,
            subject_id,
            input: &input,
            confidence: case.confidence,
            risk_tier,
            oversight,
            model_version: case.model_version.as_deref(),
        };
        let routing = route(policies, &request, defaults);
        let reviewing = routing.route == Route::Review;
        let reviewers = reviewing.then(|| routing.review.group.clone());
        let approvals = reviewing.then_some(routing.review.approvals);
        let mut failures = Vec::new();
        let expect = &case.expect;
        if expect.route != routing.route.as_str() {
            failures.push(format!(
                "expected route `{}`, got `{}`",
                expect.route, routing.route
            ));
        }
        if let Some(group) = &expect.reviewers
            && reviewers.as_ref() != Some(group)
        {
            failures.push(format!(
                "expected reviewers `{group}`, got {}",
                reviewers
                    .as_deref()
                    .map_or("none".to_owned(), |it| format!("`{it}`"))
            ));
        }
        if let Some(count) = expect.approvals
            && approvals != Some(count)
        {
            failures.push(format!(
                "expected {count} approvals, got {}",
                approvals.map_or("none".to_owned(), |it| it.to_string())
            ));
        }
        if let Some(matched) = &expect.matched
            && *matched != routing.matched
        {
            failures.push(format!(
                "expected matched policies [{}], got [{}]",
                matched.join(", "),
                routing.matched.join(", ")
            ));
        }
        results.push(CaseResult {
            name,
            passed: failures.is_empty(),
            failures,
            route: routing.route,
            refused: None,
            errors: routing.errors,
            matched: routing.matched,
            reviewers,
            approvals,
        });
    }
    results
}
