//! Routing by policy: Cedar policies with loopgate's annotations decide
//! whether a proposal is allowed, denied or sent to human review.
//!
//! Convention (docs/policies.md): principal `System::"<id>"`, action
//! `Action::"<action>"`, resource `Subject::"<id>"` whose attributes are
//! `type` and `attributes`; `context` holds the proposal's context plus
//! `confidence` (a Cedar decimal), `risk_tier`, `oversight` and
//! `model_version`. A matching `forbid` denies; permits carry `@route`.
//! Precedence: deny > review > allow; among review matches the strictest wins
//! (most approvals, then shortest SLA, then policy id order).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use cedar_policy::{
    Authorizer, Context, Decision, Effect, Entities, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request,
};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::duration::parse_iso8601;
use crate::ids::is_group_name;
use crate::{OnTimeout, Oversight, RiskTier, Route};

/// The group that reviews when a review route names none.
pub const DEFAULT_GROUP: &str = "reviewers";

/// A parsed, checked policy set with loopgate's annotations read.
#[derive(Debug, Clone)]
pub struct Policies {
    set: PolicySet,
    version: String,
    text: String,
    rules: HashMap<String, Rules>,
    ids: Vec<String>,
}

/// What one permit policy's annotations say.
#[derive(Debug, Clone, PartialEq)]
struct Rules {
    route: Route,
    review: ReviewPlan,
    sample: f64,
}

/// How a review is carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewPlan {
    /// The first reviewer group.
    pub group: String,
    /// Distinct approvals required.
    pub approvals: u32,
    /// Deadline per level.
    pub sla: Option<Duration>,
    /// Groups to escalate to, in order.
    pub escalate_to: Vec<String>,
    /// What happens when the last deadline passes.
    pub on_timeout: OnTimeout,
    /// Reviewers do not see the model's output and confidence.
    pub blind: bool,
}

impl ReviewPlan {
    /// One approval from the default group, no deadline, fail closed.
    pub fn default_review() -> ReviewPlan {
        ReviewPlan {
            group: DEFAULT_GROUP.to_owned(),
            approvals: 1,
            sla: None,
            escalate_to: Vec::new(),
            on_timeout: OnTimeout::Reject,
            blind: false,
        }
    }
}

/// Settings that apply when no policy matches.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// The route with no matching policy (`review` unless configured).
    pub route: Route,
    /// The review plan of that route.
    pub review: ReviewPlan,
}

/// A refusal to accept policy text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// Cedar could not parse the text.
    #[error("{0}")]
    Syntax(String),
    /// An annotation has a bad value.
    #[error("policy `{policy}`: annotation `@{annotation}` {problem}")]
    Annotation {
        policy: String,
        annotation: String,
        problem: String,
    },
    /// Templates need links, which loopgate does not manage.
    #[error("policy templates are not supported")]
    Template,
}

/// What routing decided; recorded on the proposal and never recomputed.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// The route.
    pub route: Route,
    /// Ids of the policies that determined the route.
    pub matched: Vec<String>,
    /// The policy-set version.
    pub policy_version: String,
    /// The review plan (for `review`; QA samples use it too).
    pub review: ReviewPlan,
    /// QA sampling rate of the matched policies (0 when none).
    pub sample_rate: f64,
}

/// What a proposal brings to routing.
#[derive(Debug, Clone, Copy)]
pub struct RoutingRequest<'a> {
    /// System id.
    pub system: &'a str,
    /// Action.
    pub action: &'a str,
    /// Subject type.
    pub subject_type: &'a str,
    /// Subject id.
    pub subject_id: &'a str,
    /// Subject attributes.
    pub subject_attributes: &'a Map<String, Value>,
    /// Proposal context.
    pub context: &'a Map<String, Value>,
    /// Model confidence.
    pub confidence: Option<f64>,
    /// The system's risk tier.
    pub risk_tier: RiskTier,
    /// The system's oversight mode.
    pub oversight: Oversight,
    /// The model version.
    pub model_version: Option<&'a str>,
}

impl Policies {
    /// Parses Cedar text and checks loopgate's annotations. A policy may name
    /// itself with `@id("…")`; otherwise Cedar's `policy0`, `policy1`, … apply.
    pub fn parse(text: &str) -> Result<Policies, PolicyError> {
        let parsed = PolicySet::from_str(text)
            .map_err(|e| PolicyError::Syntax(located_message(text, &e)))?;
        if parsed.templates().next().is_some() {
            return Err(PolicyError::Template);
        }
        let mut set = PolicySet::new();
        let mut rules = HashMap::new();
        let mut ids = Vec::new();
        for policy in parsed.policies() {
            let policy = match policy.annotation("id") {
                Some(id) => policy.new_id(PolicyId::new(id)),
                None => policy.clone(),
            };
            let id = policy.id().to_string();
            if policy.effect() == Effect::Permit {
                rules.insert(id.clone(), read_rules(&id, &policy)?);
            }
            set.add(policy)
                .map_err(|e| PolicyError::Syntax(cedar_message(&e)))?;
            ids.push(id);
        }
        let version = {
            let hash = Sha256::digest(text.as_bytes());
            hex::encode(hash.get(..8).unwrap_or_default())
        };
        Ok(Policies {
            set,
            version,
            text: text.to_owned(),
            rules,
            ids,
        })
    }

    /// The empty set (everything takes the default route).
    pub fn empty() -> Policies {
        Policies {
            set: PolicySet::new(),
            version: String::from("none"),
            text: String::new(),
            rules: HashMap::new(),
            ids: Vec::new(),
        }
    }

    /// The version: a hash of the text.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The text this set was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Ids of the policies, in text order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }
}

/// Routes one proposal.
pub fn route(policies: &Policies, request: &RoutingRequest<'_>, defaults: &Defaults) -> Routing {
    let response = match cedar_request(request) {
        Ok((cedar_request, entities)) => {
            Some(Authorizer::new().is_authorized(&cedar_request, &policies.set, &entities))
        }
        Err(_) => None,
    };
    let Some(response) = response else {
        // The request could not be expressed in Cedar: fail closed to review.
        return Routing {
            route: Route::Review,
            matched: Vec::new(),
            policy_version: policies.version.clone(),
            review: defaults.review.clone(),
            sample_rate: 0.0,
        };
    };
    let mut matched: Vec<String> = response
        .diagnostics()
        .reason()
        .map(|id| id.to_string())
        .collect();
    matched.sort_by_key(|id| policies.ids.iter().position(|it| it == id));
    let base = Routing {
        route: Route::Deny,
        matched: matched.clone(),
        policy_version: policies.version.clone(),
        review: defaults.review.clone(),
        sample_rate: 0.0,
    };
    if response.decision() == Decision::Deny {
        if matched.is_empty() {
            return Routing {
                route: defaults.route,
                ..base
            };
        }
        return base;
    }
    let permits: Vec<(&String, &Rules)> = matched
        .iter()
        .filter_map(|id| policies.rules.get(id).map(|rules| (id, rules)))
        .collect();
    // QA samples go to the group of the policy with the highest sampling rate.
    let sampler = permits.iter().filter(|(_, rules)| 0.0 < rules.sample).fold(
        None,
        |best: Option<&Rules>, (_, rules)| match best {
            Some(best) if rules.sample <= best.sample => Some(best),
            _ => Some(rules),
        },
    );
    let sample_rate = sampler.map_or(0.0, |rules| rules.sample);
    let reviews: Vec<&(&String, &Rules)> = permits
        .iter()
        .filter(|(_, r)| r.route == Route::Review)
        .collect();
    if reviews.is_empty() {
        let review = sampler.map_or_else(|| defaults.review.clone(), |rules| rules.review.clone());
        return Routing {
            route: Route::Allow,
            sample_rate,
            review,
            ..base
        };
    }
    // INVARIANT: `reviews` is in policy id order, so `min_by` keeps the first of equals.
    let strictest = reviews.iter().min_by(|(_, a), (_, b)| {
        let sla_a = a.review.sla.unwrap_or(Duration::MAX);
        let sla_b = b.review.sla.unwrap_or(Duration::MAX);
        b.review
            .approvals
            .cmp(&a.review.approvals)
            .then(sla_a.cmp(&sla_b))
    });
    let review = match strictest {
        Some((_, rules)) => rules.review.clone(),
        None => defaults.review.clone(),
    };
    let matched = reviews.iter().map(|(id, _)| (*id).clone()).collect();
    Routing {
        route: Route::Review,
        matched,
        review,
        sample_rate,
        ..base
    }
}

/// Deterministic QA sampling: a proposal is sampled when
/// `SHA-256(secret || proposal_id)` read as a fraction falls under `rate`.
pub fn is_sampled(secret: &[u8], proposal_id: &str, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    let mut hasher = Sha256::new();
    hasher.update(secret);
    hasher.update(proposal_id.as_bytes());
    let hash = hasher.finalize();
    let mut head = [0_u8; 8];
    head.copy_from_slice(hash.get(..8).unwrap_or(&[0; 8]));
    let fraction = u64::from_be_bytes(head) as f64 / 18_446_744_073_709_551_616.0;
    fraction < rate
}

fn read_rules(id: &str, policy: &cedar_policy::Policy) -> Result<Rules, PolicyError> {
    let bad = |annotation: &str, problem: String| PolicyError::Annotation {
        policy: id.to_owned(),
        annotation: annotation.to_owned(),
        problem,
    };
    let route = match policy.annotation("route") {
        None | Some("review") => Route::Review,
        Some("allow") => Route::Allow,
        Some(other) => {
            return Err(bad(
                "route",
                format!("must be `allow` or `review`, not `{other}`"),
            ));
        }
    };
    let group = match policy.annotation("reviewers") {
        None => DEFAULT_GROUP.to_owned(),
        Some(group) if is_group_name(group) => group.to_owned(),
        Some(other) => {
            return Err(bad(
                "reviewers",
                format!("must be a group name (a-z, 0-9, `-`, `_`), not `{other}`"),
            ));
        }
    };
    let approvals = match policy.annotation("approvals") {
        None => 1,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=20).contains(&n) => n,
            _ => {
                return Err(bad(
                    "approvals",
                    format!("must be a whole number from 1 to 20, not `{text}`"),
                ));
            }
        },
    };
    let sla = match policy.annotation("sla") {
        None => None,
        Some(text) => match parse_iso8601(text) {
            Some(duration) => Some(duration),
            None => {
                return Err(bad(
                    "sla",
                    format!("must be an ISO 8601 duration such as `PT4H`, not `{text}`"),
                ));
            }
        },
    };
    let mut escalate_to = Vec::new();
    if let Some(text) = policy.annotation("escalate_to") {
        for group in text.split(',').map(str::trim) {
            if !is_group_name(group) {
                return Err(bad(
                    "escalate_to",
                    format!("must be group names separated by commas, not `{text}`"),
                ));
            }
            escalate_to.push(group.to_owned());
        }
    }
    let on_timeout = match policy.annotation("on_timeout") {
        None => OnTimeout::Reject,
        Some(text) => match OnTimeout::parse(text) {
            Some(it) => it,
            None => {
                return Err(bad(
                    "on_timeout",
                    format!("must be `reject`, `approve` or `escalate`, not `{text}`"),
                ));
            }
        },
    };
    let blind = match policy.annotation("blind") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(bad(
                "blind",
                format!("must be `true` or `false`, not `{other}`"),
            ));
        }
    };
    let sample = match policy.annotation("sample") {
        None => 0.0,
        Some(text) => match text.parse::<f64>() {
            Ok(rate) if (0.0..=1.0).contains(&rate) => rate,
            _ => {
                return Err(bad(
                    "sample",
                    format!("must be a fraction from 0 to 1, not `{text}`"),
                ));
            }
        },
    };
    let review = ReviewPlan {
        group,
        approvals,
        sla,
        escalate_to,
        on_timeout,
        blind,
    };
    Ok(Rules {
        route,
        review,
        sample,
    })
}

fn cedar_request(request: &RoutingRequest<'_>) -> Result<(Request, Entities), String> {
    let uid = |type_name: &str, id: &str| -> Result<EntityUid, String> {
        let type_name = EntityTypeName::from_str(type_name).map_err(|e| e.to_string())?;
        Ok(EntityUid::from_type_name_and_id(
            type_name,
            EntityId::new(id),
        ))
    };
    let principal = uid("System", request.system)?;
    let action = uid("Action", request.action)?;
    let resource = uid("Subject", request.subject_id)?;

    let mut context = Map::new();
    for (key, value) in request.context {
        if let Some(value) = to_cedar_json(value) {
            context.insert(key.clone(), value);
        }
    }
    if let Some(confidence) = request.confidence {
        context.insert("confidence".to_owned(), decimal(confidence));
    }
    context.insert("risk_tier".to_owned(), json!(request.risk_tier.as_str()));
    context.insert("oversight".to_owned(), json!(request.oversight.as_str()));
    if let Some(version) = request.model_version {
        context.insert("model_version".to_owned(), json!(version));
    }
    let context =
        Context::from_json_value(Value::Object(context), None).map_err(|e| e.to_string())?;

    let attributes =
        to_cedar_json(&Value::Object(request.subject_attributes.clone())).unwrap_or(json!({}));
    let entities = json!([
        {
            "uid": {"type": "System", "id": request.system},
            "attrs": {"risk_tier": request.risk_tier.as_str(), "oversight": request.oversight.as_str()},
            "parents": []
        },
        {
            "uid": {"type": "Subject", "id": request.subject_id},
            "attrs": {"type": request.subject_type, "attributes": attributes},
            "parents": []
        }
    ]);
    let entities = Entities::from_json_value(entities, None).map_err(|e| e.to_string())?;
    let cedar_request =
        Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())?;
    Ok((cedar_request, entities))
}

/// JSON as Cedar reads it: floats become decimals (4 places), nulls and
/// keys that Cedar reserves (`__extn`, `__entity`) are dropped.
fn to_cedar_json(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Bool(_) | Value::String(_) => Some(value.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(_) => Some(value.clone()),
            None => n.as_f64().map(decimal),
        },
        Value::Array(items) => Some(Value::Array(
            items.iter().filter_map(to_cedar_json).collect(),
        )),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                if key.starts_with("__") {
                    continue;
                }
                if let Some(value) = to_cedar_json(value) {
                    out.insert(key.clone(), value);
                }
            }
            Some(Value::Object(out))
        }
    }
}

fn decimal(value: f64) -> Value {
    // Cedar decimals hold 4 places and stay within ±922337203685477.
    let clamped = value.clamp(-922_337_203_685_477.0, 922_337_203_685_477.0);
    json!({"__extn": {"fn": "decimal", "arg": format!("{clamped:.4}")}})
}

/// Cedar's message with the line and column of each labelled span, e.g.
/// `unexpected token `resource` at line 1, column 26`.
fn located_message(text: &str, error: &(dyn miette::Diagnostic + Send + Sync)) -> String {
    let mut message = cedar_message(error);
    let mut related: Vec<&dyn miette::Diagnostic> =
        error.related().map(|it| it.collect()).unwrap_or_default();
    if related.is_empty() {
        related.push(error);
    }
    let mut places = Vec::new();
    for diagnostic in related {
        for label in diagnostic.labels().into_iter().flatten() {
            let offset = label.offset().min(text.len());
            let before = text.get(..offset).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit('\n')
                .next()
                .map_or(0, |it| it.chars().count())
                + 1;
            places.push(format!("line {line}, column {column}"));
        }
    }
    places.dedup();
    if !places.is_empty() {
        message.push_str(&format!(" at {}", places.join("; ")));
    }
    if let Some(help) = error.help() {
        message.push_str(&format!(" ({help})"));
    }
    message
}

fn cedar_message(error: &dyn std::error::Error) -> String {
    // Cedar's Display gives the headline; its diagnostics add the position.
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests;
