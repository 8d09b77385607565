//! Data-driven routing tests: policy text + proposal → expected route.
#![allow(clippy::type_complexity, reason = "a fixture tuple")]

use expect_test::{Expect, expect};
use serde_json::{Map, Value, json};

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

/// Routes a one-line fixture proposal of `fraud-detector` (see [`fixture`]).
fn routing_of(policies: &Policies, proposal: &str) -> Routing {
    let (action, context, attributes, confidence, oversight, risk_tier) = fixture(proposal);
    let input = typed_input(
        None,
        &action,
        &context,
        &attributes,
        ShapeRule::WhenDeclared,
    )
    .unwrap();
    let request = RoutingRequest {
        system: "fraud-detector",
        action: &action,
        subject_type: "Account",
        subject_id: "acct-1",
        input: &input,
        confidence,
        risk_tier,
        oversight,
        model_version: Some("1.0"),
    };
    let defaults = Defaults {
        route: Route::Review,
        review: ReviewPlan::default_review(),
    };
    route(policies, &request, &defaults)
}

#[track_caller]
fn check(policies: &str, proposal: &str, expect: Expect) {
    let policies = Policies::parse(policies).unwrap();
    let routing = routing_of(&policies, proposal);
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
        if plan.rationale_required {
            text.push_str(" rationale");
        }
        match plan.grant {
            Grantable::No => (),
            Grantable::UpTo(max) => {
                text.push_str(&format!(" grantable={}", crate::duration::format(max)))
            }
            Grantable::NotAtRisk(tier) => text.push_str(&format!(" grant_refused={tier}")),
        }
    }
    if routing.sample_rate > 0.0 {
        text.push_str(&format!(" sample={}", routing.sample_rate));
    }
    for error in &routing.errors {
        text.push_str(&format!("\nerror in {}: {}", error.policy, error.message));
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
fn a_rationale_asked_for_by_any_matching_review_is_asked_for() {
    check(
        r#"
@id("a") @reviewers("one") @approvals("2") permit(principal, action, resource);
@id("b") @reviewers("two") @rationale("required") permit(principal, action, resource);
"#,
        "diagnose",
        expect!["review by [a, b] group=one approvals=2 on_timeout=reject rationale"],
    );
    check_invalid(
        r#"@id("b") @reviewers("two") @rationale("yes") permit(principal, action, resource);"#,
        expect!["policy `b`: annotation `@rationale` must be `required` or `optional`, not `yes`"],
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
fn an_erroring_allow_allows_nothing() {
    // `amount_minor` is missing: the allow cannot hold, and the error is reported.
    check(
        r#"
@route("allow") permit(principal, action, resource) when { context.amount_minor < 100 };
"#,
        "refund",
        expect![[r#"
            review by [] group=reviewers approvals=1 on_timeout=reject
            error in policy0: record does not have the attribute `amount_minor` at line 2, column 60 (available attributes: ["model_version", "oversight", "risk_tier"])"#]],
    );
}

/// The issue's policy set: a limit beside an allow.
const LIMIT: &str = r#"
@id("deny-big") forbid(principal, action == Action::"refund", resource) when { context has amount_minor && context.amount_minor > 100000 };
@id("refunds") @route("allow") permit(principal, action == Action::"refund", resource);
"#;

#[test]
fn whole_numbers_written_as_floats_are_longs() {
    for amount in ["5000000", "5000000.0", "5e6", "5E+6", "50000000e-1"] {
        check(
            LIMIT,
            &format!("refund amount_minor={amount}"),
            expect!["deny by [deny-big]"],
        );
    }
    check(
        LIMIT,
        "refund amount_minor=99999.0",
        expect!["allow by [refunds]"],
    );
}

#[test]
fn an_erroring_forbid_denies() {
    // A decimal, a string and a set cannot be compared with `>`: Cedar
    // skips the forbid, loopgate denies.
    check(
        LIMIT,
        "refund amount_minor=5000000.5",
        expect![[r#"
            deny by [deny-big]
            error in deny-big: type error: expected long, got decimal at line 2, column 108"#]],
    );
    check(
        LIMIT,
        r#"refund amount_minor="5000000""#,
        expect![[r#"
            deny by [deny-big]
            error in deny-big: type error: expected long, got string at line 2, column 108"#]],
    );
}

#[test]
fn an_erroring_review_permit_sends_to_its_reviewers() {
    check(
        r#"
@id("big") @reviewers("leads") @approvals("2") @sla("PT1H")
permit(principal, action == Action::"refund", resource) when { context.amount_minor > 100000 };
@id("refunds") @route("allow") permit(principal, action == Action::"refund", resource);
"#,
        r#"refund amount_minor="lots""#,
        expect![[r#"
            review by [big] group=leads approvals=2 sla=3600s on_timeout=reject
            error in big: type error: expected long, got string at line 3, column 64"#]],
    );
}

#[test]
fn a_satisfied_forbid_and_an_erroring_one_both_determine_the_deny() {
    check(
        r#"
@id("a") forbid(principal, action, resource) when { context.x > 1 };
@id("b") forbid(principal, action, resource) when { context.y > 1 };
@route("allow") permit(principal, action, resource);
"#,
        r#"refund x=2 y="2""#,
        expect![[r#"
            deny by [a, b]
            error in b: type error: expected long, got string at line 3, column 53"#]],
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

#[test]
fn max_auto_caps_allow_routes() {
    let policies = Policies::parse(
        r#"
@id("small") @route("allow") @max_auto("100/h") @reviewers("fraud-analysts")
permit(principal, action, resource);
"#,
    )
    .unwrap();
    let routing = routing_of(&policies, "block_card");
    assert_eq!(routing.route, Route::Allow);
    let [limit] = routing.limits.as_slice() else {
        panic!("{:?}", routing.limits)
    };
    assert_eq!(
        (limit.policy.as_str(), limit.rate.to_string()),
        ("small", "100/h".to_owned())
    );
    let over = routing.over_limit(limit);
    assert_eq!(over.route, Route::Review);
    assert_eq!(over.matched, vec!["small".to_owned()]);
    assert_eq!(over.review.group, "fraud-analysts");
}

#[test]
fn max_auto_needs_an_allow_route_and_a_rate() {
    check_invalid(
        r#"@max_auto("100/h") permit(principal, action, resource);"#,
        expect![[
            r#"policy `policy0`: annotation `@max_auto` caps automation, so it needs `@route("allow")`"#
        ]],
    );
    check_invalid(
        r#"@route("allow") @max_auto("lots") permit(principal, action, resource);"#,
        expect![
            "policy `policy0`: annotation `@max_auto` must be a count per period such as `100/h` (s, m, h or d), not `lots`"
        ],
    );
}

#[test]
fn the_index_evaluates_only_policies_in_scope() {
    let policies = Policies::parse(
        r#"
permit(principal == System::"a", action == Action::"x", resource);
permit(principal == System::"a", action, resource);
permit(principal, action in [Action::"x", Action::"y"], resource);
permit(principal, action, resource);
permit(principal == System::"b", action == Action::"y", resource);
permit(principal == Subject::"a", action == Action::"x", resource);
permit(principal, action == Other::Action::"x", resource);
"#,
    )
    .unwrap();
    let count = |p: &str, a: &str| policies.index.candidate_count(p, a);
    assert_eq!(count("a", "x"), 4);
    assert_eq!(count("a", "y"), 3);
    assert_eq!(count("a", "z"), 2);
    assert_eq!(count("b", "y"), 3);
    assert_eq!(count("c", "z"), 1);
}

mod differential {
    //! For random policy sets and requests, the indexed evaluation gives the
    //! same route, matched policies and plan as Cedar over the whole set.
    use proptest::prelude::*;

    use super::*;

    fn principal() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("principal".to_owned()),
            (0..4).prop_map(|i| format!("principal == System::\"s{i}\"")),
            (0..4).prop_map(|i| format!("principal in System::\"s{i}\"")),
            Just("principal is System".to_owned()),
            Just("principal is Subject".to_owned()),
            (0..4).prop_map(|i| format!("principal is System in System::\"s{i}\"")),
            Just("principal == Subject::\"s0\"".to_owned()),
        ]
    }

    fn action() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("action".to_owned()),
            (0..5).prop_map(|i| format!("action == Action::\"a{i}\"")),
            (0..5, 0..5)
                .prop_map(|(i, j)| format!("action in [Action::\"a{i}\", Action::\"a{j}\"]")),
            (0..5).prop_map(|i| format!("action in Action::\"a{i}\"")),
        ]
    }

    fn condition() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            (0..200_i64)
                .prop_map(|k| format!("when {{ context has amount && context.amount > {k} }}")),
            // Errors when `amount` is missing: Cedar skips the policy.
            (0..200_i64).prop_map(|k| format!("when {{ context.amount <= {k} }}")),
            Just("when { context.confidence.lessThan(decimal(\"0.5\")) }".to_owned()),
            Just("when { resource.attributes has g && resource.attributes.g == \"x\" }".to_owned()),
            Just("unless { principal.risk_tier == \"high\" }".to_owned()),
            Just("when { false }".to_owned()),
        ]
    }

    fn annotations() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("@route(\"allow\")".to_owned()),
            Just("@route(\"allow\") @sample(\"0.1\") @reviewers(\"qa\")".to_owned()),
            Just("@route(\"allow\") @max_auto(\"5/h\")".to_owned()),
            (1..4_u32).prop_map(|n| format!("@reviewers(\"g{n}\") @approvals(\"{n}\")")),
            (1..4_u32).prop_map(|n| format!("@sla(\"PT{n}H\")")),
        ]
    }

    fn policy() -> impl Strategy<Value = String> {
        (
            any::<bool>(),
            annotations(),
            principal(),
            action(),
            condition(),
        )
            .prop_map(|(forbid, annotations, principal, action, condition)| {
                if forbid {
                    format!("forbid({principal}, {action}, resource) {condition};")
                } else {
                    format!("{annotations} permit({principal}, {action}, resource) {condition};")
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn indexed_routing_is_cedars_routing(
            policies in prop::collection::vec(policy(), 0..25),
            requests in prop::collection::vec(
                (0..5_u32, 0..6_u32, prop::option::of(0..250_i64), prop::option::of(0.0..1.0_f64), any::<bool>(), any::<bool>()),
                1..8,
            ),
        ) {
            let text = policies.join("\n");
            let policies = Policies::parse(&text).unwrap();
            let defaults = Defaults { route: Route::Review, review: ReviewPlan::default_review() };
            for (system, action, amount, confidence, group_x, high) in requests {
                let (system, action) = (format!("s{system}"), format!("a{action}"));
                let mut context = Map::new();
                if let Some(amount) = amount {
                    context.insert("amount".to_owned(), amount.into());
                }
                let mut attributes = Map::new();
                if group_x {
                    attributes.insert("g".to_owned(), "x".into());
                }
                let input = typed_input(None, &action, &context, &attributes, ShapeRule::WhenDeclared).unwrap();
                let request = RoutingRequest {
                    system: &system,
                    action: &action,
                    subject_type: "Account",
                    subject_id: "acct-1",
                    input: &input,
                    confidence,
                    risk_tier: if high { RiskTier::High } else { RiskTier::Limited },
                    oversight: Oversight::InTheLoop,
                    model_version: None,
                };
                let indexed = route(&policies, &request, &defaults);
                let whole = route_with_whole_set(&policies, &request, &defaults);
                prop_assert_eq!(indexed, whole, "policies:\n{}", text);
            }
        }
    }
}

mod lifecycle {
    //! Schema, lint, case files and diffs.
    use std::collections::{BTreeMap, BTreeSet};

    use expect_test::expect;

    use super::super::cases;
    use super::super::diff::diff;
    use super::super::lint::{Deployment, lint};
    use super::super::schema::{Finding, Shape, generate};
    use super::*;

    fn fraud_shape() -> Shape {
        serde_json::from_value(json!({
            "actions": {"block_card": {"context": {"amount_minor": "Long", "merchant": "String"}}},
            "subject_attributes": {"region": "String"}
        }))
        .unwrap()
    }

    fn show(findings: &[Finding]) -> String {
        findings
            .iter()
            .map(|f| format!("{}: {}\n", f.policy, f.message))
            .collect()
    }

    #[test]
    fn the_schema_comes_from_declarations() {
        let other: Shape = serde_json::from_value(json!({
            "actions": {"block_card": {"context": {"merchant": "Long"}}, "mcp:crm/refund": {}}
        }))
        .unwrap();
        let schema = generate([&fraud_shape(), &other]);
        expect![[r#"
            // Generated by loopgate from the systems' declarations. Do not edit.
            entity System = { "oversight": String, "risk_tier": String };
            entity Subject = { "attributes": { "region"?: String }, "type": String };
            action "block_card" appliesTo {
              principal: [System],
              resource: [Subject],
              context: { "amount_minor"?: Long, "confidence": decimal, "model_version"?: String, "oversight": String, "risk_tier": String }
            };
            action "mcp:crm/refund" appliesTo {
              principal: [System],
              resource: [Subject],
              context: { "confidence": decimal, "model_version"?: String, "oversight": String, "risk_tier": String }
            };
        "#]]
        .assert_eq(&schema.text);
        assert_eq!(
            schema.notes,
            vec![
                "action `block_card`: systems declare `merchant` with different types; it is left out of the schema"
            ]
        );
    }

    #[test]
    fn validation_names_the_policy_and_line() {
        let schema = generate([&fraud_shape()]);
        let policies = Policies::parse(
            r#"@id("ok") @route("allow")
permit(principal, action == Action::"block_card", resource)
  when { context has amount_minor && context.amount_minor < 500 && context.confidence.greaterThan(decimal("0.9")) };
@id("typo")
permit(principal, action == Action::"block_card", resource)
  when { context.ammount_minor > 5 };
@id("wrong-type")
permit(principal, action == Action::"block_card", resource)
  when { context has merchant && context.merchant > 5 };
@id("undeclared")
permit(principal, action == Action::"refund", resource);
"#,
        )
        .unwrap();
        let validation = schema.validate(&policies);
        let errors = show(&validation.errors);
        assert!(errors.contains("typo: "), "{errors}");
        assert!(errors.contains("ammount_minor"), "{errors}");
        assert!(errors.contains("line 6"), "{errors}");
        assert!(errors.contains("wrong-type: "), "{errors}");
        assert!(!errors.contains("ok: "), "{errors}");
        expect![[r#"
            undeclared: not type-checked: no system declares action `refund`
        "#]]
        .assert_eq(&show(&validation.warnings));
    }

    #[test]
    fn lint_warns_about_likely_mistakes() {
        let policies = Policies::parse(
            r#"@id("no-group") permit(principal == System::"fraud-detector", action, resource);
@id("typo") @reviewer("leads") @reviewers("leads") permit(principal, action, resource);
@id("auto-approve") @reviewers("leads") @on_timeout("approve") permit(principal, action, resource);
@id("unknown-system") @route("allow") @sla("PT1H") permit(principal == System::"ghost", action, resource);
@id("wrong-type") @route("allow") permit(principal == Subject::"x", action, resource);
@id("never") @route("allow") permit(principal, action, resource) when { false };
@id("deny") @reviewers("leads") forbid(principal, action == Action::"block_card", resource);
"#,
        )
        .unwrap();
        let deployment = Deployment {
            systems: BTreeMap::from([("fraud-detector".to_owned(), RiskTier::High)]),
            staffed_groups: BTreeSet::from(["reviewers".to_owned()]),
            schema: Some(generate([&fraud_shape()])),
        };
        expect![[r#"
            no-group: sends to review without `@reviewers`: the default group `reviewers` decides
            typo: unknown annotation `@reviewer` (did you mean `@reviewers`?): loopgate ignores it
            typo: group `leads` has no members: its reviews would wait for no one
            auto-approve: `@on_timeout("approve")` approves unreviewed proposals of high-risk system `fraud-detector`
            auto-approve: group `leads` has no members: its reviews would wait for no one
            unknown-system: names system `ghost`, which is not registered: it matches nothing until it is
            unknown-system: `@sla` has no effect on an allow route
            wrong-type: can never match: the principal is always a `System`, not a `Subject`
            wrong-type: policy is impossible: the policy expression evaluates to false for all valid requests at line 5, column 1
            wrong-type: unable to find an applicable action given the policy scope constraints at line 5, column 1
            never: policy is impossible: the policy expression evaluates to false for all valid requests at line 6, column 1
            deny: `@reviewers` has no effect on a `forbid`: it denies
        "#]]
        .assert_eq(&show(&lint(&policies, &deployment)));
    }

    #[test]
    fn lint_warns_about_a_text_without_policies() {
        for text in ["", "  \n", "// only a comment\n"] {
            let policies = Policies::parse(text).unwrap();
            expect![[r#"
                *: the text holds no policy: every proposal will take the default route (`default_route`, review unless configured)
            "#]]
            .assert_eq(&show(&lint(&policies, &Deployment::default())));
        }
    }

    #[test]
    fn lint_warns_about_attributes_no_shape_types() {
        let policies = Policies::parse(
            r#"@id("typed") forbid(principal, action == Action::"block_card", resource) when { context.amount_minor > 5 && context.confidence.lessThan(decimal("0.5")) };
@id("untyped") forbid(principal, action == Action::"block_card", resource) when { context has velocity && context.velocity > 5 };
@id("subject") forbid(principal, action, resource) when { resource.attributes.region == "x" && resource.attributes.country == "DE" };
"#,
        )
        .unwrap();
        let deployment = Deployment {
            schema: Some(generate([&fraud_shape()])),
            ..Deployment::default()
        };
        let warnings: Vec<String> = lint(&policies, &deployment)
            .into_iter()
            .filter(|it| it.message.starts_with("compares"))
            .map(|it| {
                format!(
                    "{}: {}",
                    it.policy,
                    it.message.split(',').next().unwrap_or_default()
                )
            })
            .collect();
        expect![[r#"
            [
                "untyped: compares `context.velocity`",
                "subject: compares `resource.attributes.country`",
            ]
        "#]]
        .assert_debug_eq(&warnings);
    }

    #[test]
    fn case_files_check_routes_and_name_bad_lines() {
        let policies = Policies::parse(
            r#"@id("small") @route("allow") permit(principal, action == Action::"block_card", resource)
  when { context has amount_minor && context.amount_minor < 500 };
@id("large") @reviewers("fraud-analysts") @approvals("2") permit(principal, action == Action::"block_card", resource)
  when { context has amount_minor && context.amount_minor >= 500 };
"#,
        )
        .unwrap();
        let file = cases::parse(
            r#"
cases:
  - name: small amounts go through
    system: fraud-detector
    action: block_card
    context: {amount_minor: 100}
    expect: {route: allow, matched: [small]}
  - name: large amounts need two analysts
    system: fraud-detector
    action: block_card
    context: {amount_minor: 90000}
    expect: {route: review, reviewers: fraud-leads, approvals: 2}
"#,
        )
        .unwrap();
        let defaults = Defaults {
            route: Route::Review,
            review: ReviewPlan::default_review(),
        };
        let results = cases::run(&policies, &file, &defaults, |_| None);
        let shown: Vec<String> = results
            .iter()
            .map(|r| {
                format!(
                    "{} {} {:?} [{}]",
                    r.name,
                    r.passed,
                    r.failures,
                    r.matched.join(",")
                )
            })
            .collect();
        expect![[r#"
            [
                "small amounts go through true [] [small]",
                "large amounts need two analysts false [\"expected reviewers `fraud-leads`, got `fraud-analysts`\"] [large]",
            ]
        "#]]
        .assert_debug_eq(&shown);

        let error = cases::parse(
            "cases:\n  - system: a\n    action: b\n    expect: {route: allow}\n    contex: {}\n",
        )
        .unwrap_err();
        assert!(error.contains("unknown field `contex`"), "{error}");
        assert!(error.contains("line 5"), "{error}");
        let error = cases::parse(
            r#"{"cases": [{"system": "a", "action": "b", "expect": {"route": "maybe"}}]}"#,
        )
        .unwrap_err();
        expect![
            "case 1: `expect.route` must be `allow`, `review`, `deny` or `refused`, not `maybe`"
        ]
        .assert_eq(&error);
        let error = cases::parse("{\"cases\": [\n{\"system\": 1}]}").unwrap_err();
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn diffs_are_by_policy_id() {
        let old = Policies::parse(
            r#"@id("a") permit(principal, action, resource);
@id("b") @route("allow") permit(principal, action, resource) when { context.x < 5 };
@id("gone") forbid(principal, action, resource);
"#,
        )
        .unwrap();
        let new = Policies::parse(
            r#"@id("a")    permit(principal, action, resource);
@id("b") @route("allow") permit(principal, action, resource) when { context.x < 50 };
@id("new") forbid(principal, action, resource);
"#,
        )
        .unwrap();
        let d = diff(&old, &new);
        assert_eq!(
            (d.added.clone(), d.removed.clone(), d.unchanged),
            (vec!["new".to_owned()], vec!["gone".to_owned()], 1)
        );
        let [changed] = d.changed.as_slice() else {
            panic!("{d:?}")
        };
        assert_eq!(changed.id, "b");
        assert!(changed.diff.contains("-@id(\"b\") @route(\"allow\") permit(principal, action, resource) when { context.x < 5 };"), "{}", changed.diff);
        assert!(changed.diff.contains("+@id(\"b\")"), "{}", changed.diff);
    }
}

#[test]
fn grants_need_every_matching_review_policy_a_low_risk_and_no_errors() {
    let policies = r#"
        @id("tools") @grantable("PT2H") permit(principal, action, resource);
        @id("short") @grantable("PT30M") @grantable_risk("high") permit(principal, action == Action::"pay", resource);
        @id("plain") permit(principal, action == Action::"wire", resource);
        @id("odd") @grantable("PT1H") permit(principal, action == Action::"odd", resource) when { context.amount > 10 };
    "#;
    check(
        policies,
        "read",
        expect![[
            r#"review by [tools] group=reviewers approvals=1 on_timeout=reject grantable=2h"#
        ]],
    );
    check(
        policies,
        "pay",
        expect![[
            r#"review by [tools, short] group=reviewers approvals=1 on_timeout=reject grantable=30m"#
        ]],
    );
    check(
        policies,
        "read risk=high",
        expect![[
            r#"review by [tools] group=reviewers approvals=1 on_timeout=reject grant_refused=high"#
        ]],
    );
    check(
        policies,
        "pay risk=high",
        expect![[
            r#"review by [tools, short] group=reviewers approvals=1 on_timeout=reject grant_refused=high"#
        ]],
    );
    check(
        policies,
        "wire",
        expect![[r#"review by [tools, plain] group=reviewers approvals=1 on_timeout=reject"#]],
    );
    check(
        policies,
        "odd amount=\"many\"",
        expect![[r#"
        review by [tools, odd] group=reviewers approvals=1 on_timeout=reject
        error in odd: type error: expected long, got string at line 5, column 99"#]],
    );
}
