//! Data-driven routing tests: policy text + proposal → expected route.
#![allow(clippy::type_complexity, reason = "a fixture tuple")]

use expect_test::{Expect, expect};

use super::*;

/// A proposal in one line: `action key=value ...`; the keys `confidence`,
/// `oversight`, `risk` and `attr.<name>` are special, the rest go to context.
fn fixture(
    line: &str,
) -> (
    String,
    Map<String, Value>,
    Map<String, Value>,
    Option<f64>,
    Oversight,
    RiskTier,
) {
    let mut words = line.split_whitespace();
    let action = words.next().unwrap().to_owned();
    let (mut context, mut attributes) = (Map::new(), Map::new());
    let (mut confidence, mut oversight, mut risk) = (None, Oversight::InTheLoop, RiskTier::Limited);
    for word in words {
        let (key, value) = word.split_once('=').unwrap();
        let parsed: Value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        match key {
            "confidence" => confidence = parsed.as_f64(),
            "oversight" => oversight = Oversight::parse(value).unwrap(),
            "risk" => risk = RiskTier::parse(value).unwrap(),
            _ => match key.strip_prefix("attr.") {
                Some(name) => drop(attributes.insert(name.to_owned(), parsed)),
                None => drop(context.insert(key.to_owned(), parsed)),
            },
        }
    }
    (action, context, attributes, confidence, oversight, risk)
}

#[track_caller]
fn check(policies: &str, proposal: &str, expect: Expect) {
    let policies = Policies::parse(policies).unwrap();
    let (action, context, attributes, confidence, oversight, risk_tier) = fixture(proposal);
    let request = RoutingRequest {
        system: "fraud-detector",
        action: &action,
        subject_type: "Account",
        subject_id: "acct-1",
        subject_attributes: &attributes,
        context: &context,
        confidence,
        risk_tier,
        oversight,
        model_version: Some("1.0"),
    };
    let defaults = Defaults {
        route: Route::Review,
        review: ReviewPlan::default_review(),
    };
    let routing = route(&policies, &request, &defaults);
    let mut text = format!("{} by [{}]", routing.route, routing.matched.join(", "));
    if routing.route == Route::Review {
        let plan = &routing.review;
        text.push_str(&format!(
            " group={} approvals={}",
            plan.group, plan.approvals
        ));
        if let Some(sla) = plan.sla {
            text.push_str(&format!(" sla={}s", sla.as_secs()));
        }
        if !plan.escalate_to.is_empty() {
            text.push_str(&format!(" escalate_to={}", plan.escalate_to.join(",")));
        }
        text.push_str(&format!(" on_timeout={}", plan.on_timeout));
        if plan.blind {
            text.push_str(" blind");
        }
    }
    if routing.sample_rate > 0.0 {
        text.push_str(&format!(" sample={}", routing.sample_rate));
    }
    expect.assert_eq(&text);
}

#[track_caller]
fn check_invalid(policies: &str, expect: Expect) {
    let error = Policies::parse(policies).unwrap_err();
    expect.assert_eq(&error.to_string());
}

#[test]
fn no_policies_take_the_default_route() {
    check(
        "",
        "block_card",
        expect!["review by [] group=reviewers approvals=1 on_timeout=reject"],
    );
}

#[test]
fn forbid_beats_permit() {
    check(
        r#"
forbid(principal, action == Action::"block_card", resource) when { context.amount_minor > 100000 };
@route("allow") permit(principal, action, resource);
"#,
        "block_card amount_minor=129900",
        expect!["deny by [policy0]"],
    );
}

#[test]
fn allow_when_only_allow_matches() {
    check(
        r#"
forbid(principal, action == Action::"block_card", resource) when { context.amount_minor > 100000 };
@route("allow") @sample("0.05") permit(principal, action, resource);
"#,
        "block_card amount_minor=500",
        expect!["allow by [policy1] sample=0.05"],
    );
}

#[test]
fn review_beats_allow() {
    check(
        r#"
@route("allow") permit(principal, action, resource);
@id("low-confidence") @reviewers("fraud-analysts") @sla("PT4H")
permit(principal, action, resource) when { context.confidence.lessThan(decimal("0.9")) };
"#,
        "block_card confidence=0.87",
        expect![
            "review by [low-confidence] group=fraud-analysts approvals=1 sla=14400s on_timeout=reject"
        ],
    );
}

#[test]
fn strictest_review_wins() {
    check(
        r#"
@id("a") @reviewers("one") @sla("PT1H") permit(principal, action, resource);
@id("b") @reviewers("two") @approvals("2") @sla("PT8H") permit(principal, action, resource);
@id("c") @reviewers("three") @approvals("2") @sla("PT2H") @escalate_to("leads, heads") @on_timeout("escalate") @blind("true") permit(principal, action, resource);
"#,
        "diagnose",
        expect![
            "review by [a, b, c] group=three approvals=2 sla=7200s escalate_to=leads,heads on_timeout=escalate blind"
        ],
    );
}

#[test]
fn ties_go_to_policy_order() {
    check(
        r#"
@id("z-first") @reviewers("first") permit(principal, action, resource);
@id("a-second") @reviewers("second") permit(principal, action, resource);
"#,
        "diagnose",
        expect!["review by [z-first, a-second] group=first approvals=1 on_timeout=reject"],
    );
}

#[test]
fn principal_action_and_subject_attributes() {
    let policies = r#"
@route("allow") permit(principal == System::"fraud-detector", action == Action::"flag", resource)
  when { resource.attributes.country == "DE" && context.risk_tier == "limited" };
"#;
    check(
        policies,
        "flag attr.country=DE",
        expect!["allow by [policy0]"],
    );
    check(
        policies,
        "flag attr.country=FR",
        expect!["review by [] group=reviewers approvals=1 on_timeout=reject"],
    );
    check(
        policies,
        "other attr.country=DE",
        expect!["review by [] group=reviewers approvals=1 on_timeout=reject"],
    );
}

#[test]
fn errors_in_a_condition_skip_the_policy() {
    // `amount_minor` is missing: Cedar skips the policy; authors guard with `has`.
    check(
        r#"
@route("allow") permit(principal, action, resource) when { context.amount_minor < 100 };
"#,
        "refund",
        expect!["review by [] group=reviewers approvals=1 on_timeout=reject"],
    );
}

#[test]
fn invalid_annotations_are_named() {
    check_invalid(
        r#"@route("maybe") permit(principal, action, resource);"#,
        expect!["policy `policy0`: annotation `@route` must be `allow` or `review`, not `maybe`"],
    );
    check_invalid(
        r#"@id("x") @sla("4 hours") permit(principal, action, resource);"#,
        expect![
            "policy `x`: annotation `@sla` must be an ISO 8601 duration such as `PT4H`, not `4 hours`"
        ],
    );
    check_invalid(
        r#"@approvals("0") permit(principal, action, resource);"#,
        expect![
            "policy `policy0`: annotation `@approvals` must be a whole number from 1 to 20, not `0`"
        ],
    );
    check_invalid(
        r#"@sample("1.5") @route("allow") permit(principal, action, resource);"#,
        expect!["policy `policy0`: annotation `@sample` must be a fraction from 0 to 1, not `1.5`"],
    );
}

#[test]
fn syntax_errors_carry_cedars_message() {
    let error = Policies::parse("permit(principal, action resource);").unwrap_err();
    assert!(matches!(error, PolicyError::Syntax(_)), "{error:?}");
}

#[test]
fn sampling_is_deterministic() {
    let sampled: usize = (0..10_000)
        .filter(|i| is_sampled(b"secret", &format!("prp_{i}"), 0.05))
        .count();
    assert!((400..600).contains(&sampled), "{sampled}");
    assert_eq!(
        is_sampled(b"secret", "prp_1", 0.5),
        is_sampled(b"secret", "prp_1", 0.5)
    );
    assert!(!is_sampled(b"secret", "prp_1", 0.0));
    assert!(is_sampled(b"secret", "prp_1", 1.0));
}
