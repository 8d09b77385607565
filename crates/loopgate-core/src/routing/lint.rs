//! Lint: warnings about a policy set that is valid but probably not what
//! its author meant. Warnings never block a publish.

use std::collections::{BTreeMap, BTreeSet};

use cedar_policy::{ActionConstraint, Effect, PrincipalConstraint};
use serde_json::Value;

use super::schema::{Finding, GeneratedSchema};
use super::{DEFAULT_GROUP, Policies};
use crate::{OnTimeout, RiskTier, Route};

/// Annotations loopgate reads.
pub const ANNOTATIONS: &[&str] = &[
    "id",
    "route",
    "reviewers",
    "approvals",
    "sla",
    "escalate_to",
    "on_timeout",
    "blind",
    "rationale",
    "sample",
    "max_auto",
    "grantable",
    "grantable_risk",
];

/// Annotations that only mean something on a review route.
const REVIEW_ONLY: &[&str] = &[
    "approvals",
    "sla",
    "escalate_to",
    "on_timeout",
    "blind",
    "rationale",
];

/// What lint knows about the deployment.
#[derive(Debug, Clone, Default)]
pub struct Deployment {
    /// Registered systems and their risk tiers.
    pub systems: BTreeMap<String, RiskTier>,
    /// Groups that have at least one member.
    pub staffed_groups: BTreeSet<String>,
    /// The generated schema, when systems declare their actions.
    pub schema: Option<GeneratedSchema>,
}

/// Lints `policies` against `deployment`; findings in policy order.
pub fn lint(policies: &Policies, deployment: &Deployment) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut warn = |policy: &str, message: String| {
        findings.push(Finding {
            policy: policy.to_owned(),
            message,
        });
    };
    if policies.set.is_empty() {
        warn(
            "*",
            "the text holds no policy: every proposal will take the default route (`default_route`, review unless configured)".to_owned(),
        );
    }
    let high_risk: Vec<&String> = deployment
        .systems
        .iter()
        .filter(|(_, tier)| **tier == RiskTier::High)
        .map(|(id, _)| id)
        .collect();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for policy in policies.set.policies() {
        let id = policy.id().to_string();
        for message in untyped_attributes(policy, deployment.schema.as_ref()) {
            warn(&id, message);
        }
        for (name, _) in policy.annotations() {
            if !ANNOTATIONS.contains(&name) {
                let hint = ANNOTATIONS
                    .iter()
                    .find(|known| close(known, name))
                    .map(|known| format!(" (did you mean `@{known}`?)"))
                    .unwrap_or_default();
                warn(
                    &id,
                    format!("unknown annotation `@{name}`{hint}: loopgate ignores it"),
                );
            }
        }
        let principal = match policy.principal_constraint() {
            PrincipalConstraint::Eq(uid)
            | PrincipalConstraint::In(uid)
            | PrincipalConstraint::IsIn(_, uid) => Some(uid),
            PrincipalConstraint::Any | PrincipalConstraint::Is(_) => None,
        };
        if let Some(uid) = &principal {
            let type_name = uid.type_name().to_string();
            let system = uid.id().unescaped();
            if type_name != "System" {
                warn(
                    &id,
                    format!(
                        "can never match: the principal is always a `System`, not a `{type_name}`"
                    ),
                );
            } else if !deployment.systems.is_empty() && !deployment.systems.contains_key(system) {
                warn(
                    &id,
                    format!(
                        "names system `{system}`, which is not registered: it matches nothing until it is"
                    ),
                );
            }
        }
        if let PrincipalConstraint::Is(type_name) = policy.principal_constraint()
            && type_name.to_string() != "System"
        {
            warn(
                &id,
                format!("can never match: the principal is always a `System`, not a `{type_name}`"),
            );
        }
        if policy.effect() == Effect::Forbid {
            for (name, _) in policy.annotations() {
                if name != "id" && ANNOTATIONS.contains(&name) {
                    warn(
                        &id,
                        format!("`@{name}` has no effect on a `forbid`: it denies"),
                    );
                }
            }
            continue;
        }
        let Some(rules) = policies.rules.get(&id) else {
            continue;
        };
        match rules.route {
            Route::Review => {
                if policy.annotation("reviewers").is_none() {
                    warn(
                        &id,
                        format!(
                            "sends to review without `@reviewers`: the default group `{DEFAULT_GROUP}` decides"
                        ),
                    );
                }
                if rules.review.on_timeout == OnTimeout::Approve {
                    let systems: Vec<&String> = match &principal {
                        Some(uid) => high_risk
                            .iter()
                            .copied()
                            .filter(|it| it.as_str() == uid.id().unescaped())
                            .collect(),
                        None => high_risk.clone(),
                    };
                    if !systems.is_empty() {
                        let names: Vec<String> =
                            systems.iter().map(|it| format!("`{it}`")).collect();
                        warn(
                            &id,
                            format!(
                                "`@on_timeout(\"approve\")` approves unreviewed proposals of high-risk system {}",
                                names.join(", ")
                            ),
                        );
                    }
                }
                if policy.annotation("sample").is_some() {
                    warn(&id, "`@sample` has no effect on a review route".to_owned());
                }
                let mut named = vec![rules.review.group.clone()];
                named.extend(rules.review.escalate_to.iter().cloned());
                for group in named {
                    groups.entry(group).or_default().push(id.clone());
                }
            }
            Route::Allow | Route::Deny => {
                for name in REVIEW_ONLY {
                    if policy.annotation(name).is_some() {
                        warn(&id, format!("`@{name}` has no effect on an allow route"));
                    }
                }
                if rules.sample > 0.0 {
                    groups
                        .entry(rules.review.group.clone())
                        .or_default()
                        .push(id.clone());
                }
            }
        }
    }
    for (group, users) in &groups {
        if !deployment.staffed_groups.contains(group) {
            for policy in users {
                warn(
                    policy,
                    format!("group `{group}` has no members: its reviews would wait for no one"),
                );
            }
        }
    }
    if let Some(schema) = &deployment.schema {
        let validation = schema.validate(policies);
        findings.extend(validation.warnings);
        for note in &schema.notes {
            findings.push(Finding {
                policy: String::new(),
                message: note.clone(),
            });
        }
    }
    let order = |policy: &str| policies.ids.iter().position(|it| it == policy);
    findings.sort_by_key(|finding| order(&finding.policy));
    findings.dedup();
    findings
}

/// Context keys loopgate sets itself, always typed.
const OURS: &[&str] = &["confidence", "risk_tier", "oversight", "model_version"];

/// Warnings for attributes a policy compares that no declared shape types
/// for its actions: a proposal may send any type there, and a wrong type
/// makes the policy fail to evaluate.
fn untyped_attributes(
    policy: &cedar_policy::Policy,
    schema: Option<&GeneratedSchema>,
) -> Vec<String> {
    let Ok(json) = policy.to_json() else {
        return Vec::new();
    };
    let mut read = (BTreeSet::new(), BTreeSet::new());
    attributes_read(&json, &mut read);
    let (context, subject) = read;
    let actions: Option<Vec<String>> = match policy.action_constraint() {
        ActionConstraint::Any => None,
        ActionConstraint::Eq(uid) => Some(vec![uid.id().unescaped().to_owned()]),
        ActionConstraint::In(uids) => Some(
            uids.iter()
                .map(|it| it.id().unescaped().to_owned())
                .collect(),
        ),
    };
    let declares = |action: &str, name: &str| {
        schema
            .and_then(|it| it.context_attributes.get(action))
            .is_some_and(|names| names.contains(name))
    };
    let mut warnings = Vec::new();
    for name in context {
        let typed = OURS.contains(&name.as_str())
            || match &actions {
                Some(actions) => actions.iter().all(|action| declares(action, &name)),
                None => schema.is_some_and(|it| {
                    it.context_attributes
                        .values()
                        .any(|names| names.contains(&name))
                }),
            };
        if !typed {
            warnings.push(format!(
                "compares `context.{name}`, which no declared shape types for its actions: a proposal may send any type there, and a wrong type makes this policy fail to evaluate (counted restrictively); declare it with `loopgate system shape`"
            ));
        }
    }
    for name in subject {
        if !schema.is_some_and(|it| it.subject_attributes.contains(&name)) {
            warnings.push(format!(
                "compares `resource.attributes.{name}`, which no declared shape types; declare it in `subject_attributes`"
            ));
        }
    }
    warnings
}

/// The context and subject attributes an expression (Cedar's JSON form)
/// reads with `.`; `has` alone is not a read.
fn attributes_read(value: &Value, read: &mut (BTreeSet<String>, BTreeSet<String>)) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(access)) = map.get(".")
                && let (Some(left), Some(Value::String(attr))) =
                    (access.get("left"), access.get("attr"))
            {
                if left.get("Var").and_then(Value::as_str) == Some("context") {
                    read.0.insert(attr.clone());
                }
                let inner = left.get(".");
                let on_resource = inner
                    .and_then(|it| it.get("left"))
                    .and_then(|it| it.get("Var"))
                    .and_then(Value::as_str)
                    == Some("resource");
                let of_attributes = inner.and_then(|it| it.get("attr")).and_then(Value::as_str)
                    == Some("attributes");
                if on_resource && of_attributes {
                    read.1.insert(attr.clone());
                }
            }
            for inner in map.values() {
                attributes_read(inner, read);
            }
        }
        Value::Array(items) => {
            for inner in items {
                attributes_read(inner, read);
            }
        }
        _ => (),
    }
}

/// One edit apart (a typo): same length with one change, or one extra letter.
fn close(known: &str, name: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (known.chars().collect(), name.chars().collect());
    match a.len().abs_diff(b.len()) {
        0 => a.iter().zip(&b).filter(|(x, y)| x != y).count() == 1,
        1 => {
            let (long, short) = if a.len() > b.len() {
                (&a, &b)
            } else {
                (&b, &a)
            };
            (0..long.len()).any(|skip| {
                long.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, c)| c)
                    .eq(short.iter())
            })
        }
        _ => false,
    }
}
