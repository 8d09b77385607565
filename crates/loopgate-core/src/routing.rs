//! Routing by policy: Cedar policies with loopgate's annotations decide
//! whether a proposal is allowed, denied or sent to human review.
//!
//! Convention (docs/policies.md): principal `System::"<id>"`, action
//! `Action::"<action>"`, resource `Subject::"<id>"` whose attributes are
//! `type` and `attributes`; `context` holds the proposal's context plus
//! `confidence` (a Cedar decimal), `risk_tier`, `oversight` and
//! `model_version`. A matching `forbid` denies; permits carry `@route`.
//! Precedence: deny > review > allow; among review matches the strictest wins
//! (most approvals, then shortest SLA, then policy id order), and a rationale
//! is required when any matching review policy requires one.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use cedar_policy::{
    Authorizer, Context, Decision, Effect, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicyId, PolicySet, Request, RestrictedExpression,
};
use sha2::{Digest as _, Sha256};

use crate::duration::parse_iso8601;
use crate::grant::{self, GrantRule, Grantable};
use crate::ids::is_group_name;
use crate::{OnTimeout, Oversight, RiskTier, Route};

/// The group that reviews when a review route names none.
pub const DEFAULT_GROUP: &str = "reviewers";

pub mod bounds;
pub mod cases;
pub mod diff;
mod index;
pub mod limit;
pub mod lint;
pub mod schema;
pub mod value;

pub use limit::{AutoLimit, Rate};
pub use value::{Attr, Decimal, InvalidContext, ShapeRule, TypedInput, typed_input};

/// A parsed, checked policy set with loopgate's annotations read.
#[derive(Debug, Clone)]
pub struct Policies {
    set: PolicySet,
    version: String,
    text: String,
    rules: HashMap<String, Rules>,
    ids: Vec<String>,
    index: Arc<index::PolicyIndex>,
}

/// What one permit policy's annotations say.
#[derive(Debug, Clone, PartialEq)]
struct Rules {
    route: Route,
    review: ReviewPlan,
    sample: f64,
    max_auto: Option<Rate>,
    /// `@grantable` and `@grantable_risk`.
    grant: Option<GrantRule>,
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
    /// Every decision must carry a rationale (`@rationale("required")`).
    pub rationale_required: bool,
    /// Whether approvers may give a standing grant, and for how long
    /// (`@grantable`, decided per proposal with the system's risk tier).
    pub grant: Grantable,
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
            rationale_required: false,
            grant: Grantable::No,
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
    /// Nesting that could exhaust a stack while Cedar reads the text.
    #[error("policy text refused at line {line}, column {column}: {problem}")]
    TooDeep {
        problem: String,
        line: usize,
        column: usize,
    },
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
    /// Caps on automation of the matched allow policies (`@max_auto`): when
    /// any is used up, the proposal goes to review instead (see
    /// [`Routing::over_limit`]).
    pub limits: Vec<AutoLimit>,
    /// Policies whose evaluation failed on this request, in policy order.
    /// Each counted the most restrictive way it could: a `forbid` denied, a
    /// review permit sent to review, an allow permit allowed nothing.
    pub errors: Vec<EvaluationError>,
}

/// A policy whose evaluation failed on a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvaluationError {
    /// The policy id.
    pub policy: String,
    /// What went wrong, from a closed list: `type_error`,
    /// `missing_attribute`, `missing_entity`, `integer_overflow`,
    /// `extension_error`, `recursion_limit`, `request_error`, `other`.
    pub kind: String,
    /// Cedar's message with the place in the policy text. It may quote
    /// values from the request, so the audit log keeps only its salted hash.
    pub message: String,
}

impl Routing {
    /// The routing when the automation cap of `limit` is used up: review by
    /// that policy's group and plan.
    pub fn over_limit(&self, limit: &AutoLimit) -> Routing {
        Routing {
            route: Route::Review,
            matched: vec![limit.policy.clone()],
            policy_version: self.policy_version.clone(),
            review: limit.review.clone(),
            sample_rate: 0.0,
            limits: Vec::new(),
            errors: self.errors.clone(),
        }
    }
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
    /// Context and subject attributes, read by the number rule and checked
    /// against the system's shape ([`typed_input`]).
    pub input: &'a TypedInput,
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
    ///
    /// The text's nesting is bounded before Cedar sees it ([`bounds`]); its
    /// size is the caller's to bound.
    pub fn parse(text: &str) -> Result<Policies, PolicyError> {
        bounds::check(text)?;
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
        let index = Arc::new(index::PolicyIndex::new(set.policies()));
        Ok(Policies {
            set,
            version,
            text: text.to_owned(),
            rules,
            ids,
            index,
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
            index: Arc::default(),
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

    /// The Cedar policy set.
    pub fn cedar(&self) -> &PolicySet {
        &self.set
    }
}

/// Routes one proposal, evaluating only the policies whose scope can
/// match it (see `index`): the same answer as [`route_with_whole_set`].
pub fn route(policies: &Policies, request: &RoutingRequest<'_>, defaults: &Defaults) -> Routing {
    let candidates = policies.index.candidates(request.system, request.action);
    decide(policies, &candidates, request, defaults)
}

/// Routes one proposal by evaluating every policy of the set: the reference
/// that [`route`] must agree with, kept for tests and benchmarks.
pub fn route_with_whole_set(
    policies: &Policies,
    request: &RoutingRequest<'_>,
    defaults: &Defaults,
) -> Routing {
    decide(policies, &policies.set, request, defaults)
}

fn decide(
    policies: &Policies,
    set: &PolicySet,
    request: &RoutingRequest<'_>,
    defaults: &Defaults,
) -> Routing {
    let base = Routing {
        route: Route::Review,
        matched: Vec::new(),
        policy_version: policies.version.clone(),
        review: defaults.review.clone(),
        sample_rate: 0.0,
        limits: Vec::new(),
        errors: Vec::new(),
    };
    let response = match cedar_request(request) {
        Ok((cedar_request, entities)) => {
            Authorizer::new().is_authorized(&cedar_request, set, &entities)
        }
        Err(message) => {
            // The request could not be expressed in Cedar: fail closed to review.
            return Routing {
                errors: vec![EvaluationError {
                    policy: String::new(),
                    kind: "request_error".to_owned(),
                    message,
                }],
                ..base
            };
        }
    };
    let order = |id: &str| policies.ids.iter().position(|it| it == id);
    let mut errors: Vec<EvaluationError> = response
        .diagnostics()
        .errors()
        .map(|error| match error {
            cedar_policy::AuthorizationError::PolicyEvaluationError(error) => EvaluationError {
                policy: error.policy_id().to_string(),
                kind: error_kind(error.inner()).to_owned(),
                message: located_message(&policies.text, error.inner()),
            },
        })
        .collect();
    errors.sort_by_key(|it| order(&it.policy));
    // INVARIANT: an erroring policy counts the most restrictive way it can.
    // Cedar skips it; a `forbid` skipped because `5000000.0` is not a Long
    // would let the proposal through.
    let erroring_forbids: Vec<String> = errors
        .iter()
        .filter(|it| {
            set.policy(&PolicyId::new(&it.policy))
                .is_some_and(|policy| policy.effect() == Effect::Forbid)
        })
        .map(|it| it.policy.clone())
        .collect();
    let erroring_reviews = errors.iter().filter(|it| {
        policies
            .rules
            .get(&it.policy)
            .is_some_and(|rules| rules.route == Route::Review)
    });
    let mut matched: Vec<String> = response
        .diagnostics()
        .reason()
        .map(|id| id.to_string())
        .collect();
    let satisfied_forbid = response.decision() == Decision::Deny && !matched.is_empty();
    if satisfied_forbid || !erroring_forbids.is_empty() {
        if !satisfied_forbid {
            matched.clear();
        }
        matched.extend(erroring_forbids);
        matched.sort_by_key(|id| order(id));
        matched.dedup();
        return Routing {
            route: Route::Deny,
            matched,
            errors,
            ..base
        };
    }
    matched.extend(erroring_reviews.map(|it| it.policy.clone()));
    matched.sort_by_key(|id| order(id));
    matched.dedup();
    if matched.is_empty() {
        return Routing {
            route: defaults.route,
            errors,
            ..base
        };
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
        let limits = permits
            .iter()
            .filter_map(|(id, rules)| {
                rules.max_auto.map(|rate| AutoLimit {
                    policy: (*id).clone(),
                    rate,
                    review: rules.review.clone(),
                })
            })
            .collect();
        return Routing {
            route: Route::Allow,
            matched,
            sample_rate,
            review,
            limits,
            errors,
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
    let mut review = match strictest {
        Some((_, rules)) => rules.review.clone(),
        None => defaults.review.clone(),
    };
    // A rationale asked for by any matching review policy is asked for.
    review.rationale_required |= reviews.iter().any(|(_, r)| r.review.rationale_required);
    // Grants only where every matching review policy allows them, and
    // never when a policy failed to evaluate (fail closed: a grant would be
    // less restrictive than the review the error counts as).
    review.grant = match errors.is_empty() {
        true => GrantRule::combine(
            reviews.iter().map(|(_, r)| r.grant.as_ref()),
            request.risk_tier,
        ),
        false => Grantable::No,
    };
    let matched = reviews.iter().map(|(id, _)| (*id).clone()).collect();
    Routing {
        route: Route::Review,
        matched,
        review,
        sample_rate,
        errors,
        ..base
    }
}

/// The kind of an evaluation error, for metrics and the audit log.
fn error_kind(error: &cedar_policy::EvaluationError) -> &'static str {
    use cedar_policy::EvaluationError as E;
    match error {
        E::TypeError(_) => "type_error",
        E::EntityAttrDoesNotExist(_) | E::RecordAttrDoesNotExist(_) => "missing_attribute",
        E::EntityDoesNotExist(_) => "missing_entity",
        E::IntegerOverflow(_) => "integer_overflow",
        E::FailedExtensionFunctionLookup(_)
        | E::FailedExtensionFunctionExecution(_)
        | E::WrongNumArguments(_) => "extension_error",
        E::RecursionLimit(_) => "recursion_limit",
        _ => "other",
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
    let rationale_required = match policy.annotation("rationale") {
        None | Some("optional") => false,
        Some("required") => true,
        Some(other) => {
            return Err(bad(
                "rationale",
                format!("must be `required` or `optional`, not `{other}`"),
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
    let max_auto = match policy.annotation("max_auto") {
        None => None,
        Some(text) => match Rate::parse(text) {
            Some(rate) => Some(rate),
            None => {
                return Err(bad(
                    "max_auto",
                    format!(
                        "must be a count per period such as `100/h` (s, m, h or d), not `{text}`"
                    ),
                ));
            }
        },
    };
    let grant = match policy.annotation("grantable") {
        None => None,
        Some(text) => match parse_iso8601(text) {
            Some(max) if max <= grant::MAX_DURATION => Some(GrantRule {
                max,
                risk: RiskTier::Limited,
            }),
            _ => {
                return Err(bad(
                    "grantable",
                    format!(
                        "must be an ISO 8601 duration of at most 30 days such as `PT1H`, not `{text}`"
                    ),
                ));
            }
        },
    };
    let grant = match (grant, policy.annotation("grantable_risk")) {
        (grant, None) => grant,
        (Some(rule), Some(text)) => match RiskTier::parse(text) {
            Some(risk) => Some(GrantRule { risk, ..rule }),
            None => {
                return Err(bad(
                    "grantable_risk",
                    format!(
                        "must be a risk tier (`minimal`, `limited`, `high`, `unacceptable`), not `{text}`"
                    ),
                ));
            }
        },
        (None, Some(_)) => {
            return Err(bad(
                "grantable_risk",
                "says on which risk tiers grants may be made, so it needs `@grantable`".to_owned(),
            ));
        }
    };
    if grant.is_some() && route != Route::Review {
        return Err(bad(
            "grantable",
            "lets reviewers approve ahead, so it needs a review policy (not `@route(\"allow\")`)"
                .to_owned(),
        ));
    }
    if max_auto.is_some() && route != Route::Allow {
        return Err(bad(
            "max_auto",
            "caps automation, so it needs `@route(\"allow\")`".to_owned(),
        ));
    }
    let review = ReviewPlan {
        group,
        approvals,
        sla,
        escalate_to,
        on_timeout,
        blind,
        rationale_required,
        grant: Grantable::No,
    };
    Ok(Rules {
        route,
        review,
        sample,
        max_auto,
        grant,
    })
}

/// Cedar's type names, parsed once (parsing a name runs Cedar's parser).
static TYPES: LazyLock<Option<[EntityTypeName; 3]>> = LazyLock::new(|| {
    let parse = |name: &str| EntityTypeName::from_str(name).ok();
    Some([parse("System")?, parse("Action")?, parse("Subject")?])
});

/// Confidences as Cedar decimals, made on first use: `new_decimal` parses
/// the extension's name each time, a third of a routing's cost.
static CONFIDENCES: LazyLock<Vec<OnceLock<RestrictedExpression>>> =
    LazyLock::new(|| (0..=10_000).map(|_| OnceLock::new()).collect());

fn confidence(value: f64) -> RestrictedExpression {
    let step = (value.clamp(0.0, 1.0) * 10_000.0).round();
    // INVARIANT: `step` is a whole number from 0 to 10,000.
    match CONFIDENCES.get(step as usize) {
        Some(cell) if (step / 10_000.0 - value).abs() < 1e-12 => {
            cell.get_or_init(|| decimal(step / 10_000.0)).clone()
        }
        _ => decimal(value),
    }
}

fn cedar_request(request: &RoutingRequest<'_>) -> Result<(Request, Entities), String> {
    let Some([system_type, action_type, subject_type]) = TYPES.as_ref() else {
        return Err("Cedar refused loopgate's entity type names".to_owned());
    };
    let uid = |type_name: &EntityTypeName, id: &str| {
        EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
    };
    let principal = uid(system_type, request.system);
    let action = uid(action_type, request.action);
    let resource = uid(subject_type, request.subject_id);

    let text = |value: &str| RestrictedExpression::new_string(value.to_owned());
    // Keys loopgate sets replace the proposal's own keys of the same name.
    let ours = |key: &str| match key {
        "risk_tier" | "oversight" => true,
        "confidence" => request.confidence.is_some(),
        "model_version" => request.model_version.is_some(),
        _ => false,
    };
    let mut context: Vec<(String, RestrictedExpression)> = request
        .input
        .context
        .iter()
        .filter(|(key, _)| !ours(key))
        .map(|(key, value)| (key.clone(), to_cedar(value)))
        .collect();
    if let Some(confidence) = request.confidence {
        context.push(("confidence".to_owned(), self::confidence(confidence)));
    }
    context.push(("risk_tier".to_owned(), text(request.risk_tier.as_str())));
    context.push(("oversight".to_owned(), text(request.oversight.as_str())));
    if let Some(version) = request.model_version {
        context.push(("model_version".to_owned(), text(version)));
    }
    let context = Context::from_pairs(context).map_err(|e| e.to_string())?;

    let system = Entity::new(
        principal.clone(),
        HashMap::from([
            ("risk_tier".to_owned(), text(request.risk_tier.as_str())),
            ("oversight".to_owned(), text(request.oversight.as_str())),
        ]),
        HashSet::new(),
    )
    .map_err(|e| e.to_string())?;
    let subject = Entity::new(
        resource.clone(),
        HashMap::from([
            ("type".to_owned(), text(request.subject_type)),
            (
                "attributes".to_owned(),
                record(&request.input.subject_attributes),
            ),
        ]),
        HashSet::new(),
    )
    .map_err(|e| e.to_string())?;
    let entities = Entities::from_entities([system, subject], None).map_err(|e| e.to_string())?;
    let cedar_request =
        Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())?;
    Ok((cedar_request, entities))
}

/// A typed value as a Cedar expression.
fn to_cedar(value: &Attr) -> RestrictedExpression {
    match value {
        Attr::Bool(b) => RestrictedExpression::new_bool(*b),
        Attr::Long(long) => RestrictedExpression::new_long(*long),
        Attr::Decimal(decimal) => RestrictedExpression::new_decimal(decimal.to_string()),
        Attr::String(s) => RestrictedExpression::new_string(s.clone()),
        Attr::Set(items) => RestrictedExpression::new_set(items.iter().map(to_cedar)),
        Attr::Record(fields) => record(fields),
    }
}

fn record(fields: &[(String, Attr)]) -> RestrictedExpression {
    let fields = fields
        .iter()
        .map(|(key, value)| (key.clone(), to_cedar(value)));
    // INVARIANT: keys come from a JSON map, so there are no duplicates, the
    // only failure of new_record. Should one slip through, an empty set in
    // its place makes every policy reading it error, which counts
    // restrictively.
    RestrictedExpression::new_record(fields)
        .unwrap_or_else(|_| RestrictedExpression::new_set(std::iter::empty()))
}

fn decimal(value: f64) -> RestrictedExpression {
    // Cedar decimals hold 4 places and stay within ±922337203685477.
    let clamped = value.clamp(-922_337_203_685_477.0, 922_337_203_685_477.0);
    RestrictedExpression::new_decimal(format!("{clamped:.4}"))
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
            let (line, column) = line_and_column(text, label.offset());
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

/// The 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |it| it.chars().count())
        + 1;
    (line, column)
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
