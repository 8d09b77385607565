//! A differential property test of fail-closed routing. Over random policy
//! sets (forbids, review and allow permits over Long, decimal, String and
//! Bool attributes) and random contexts, each attribute written in a
//! random way (as is, as a float, with an exponent, as text, in a list):
//!
//! - with the attributes declared in a shape, the route of the request as
//!   written is never less restrictive than the route of the same request
//!   typed by the shape (a refusal is the most restrictive of all);
//! - without a shape, a policy set in which a `forbid` fails to evaluate
//!   always denies;
//! - whole numbers however written route exactly like the number.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use loopgate_core::routing::schema::Shape;
use loopgate_core::routing::{
    Defaults, Policies, ReviewPlan, RoutingRequest, ShapeRule, TypedInput, route, typed_input,
};
use loopgate_core::{Oversight, RiskTier, Route};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Deny > review > allow; a refusal is stricter still.
fn rank(route: Option<Route>) -> u8 {
    match route {
        Some(Route::Allow) => 0,
        Some(Route::Review) => 1,
        Some(Route::Deny) => 2,
        None => 3,
    }
}

fn shape() -> Shape {
    serde_json::from_value(json!({"actions": {"act": {"context": {
        "n": "Long", "d": "decimal", "s": "String", "b": "Bool"
    }}}}))
    .unwrap()
}

fn condition() -> impl Strategy<Value = String> {
    let one = prop_oneof![
        (0..200_i64).prop_map(|k| format!("context.n > {k}")),
        (0..200_i64).prop_map(|k| format!("context.n == {k}")),
        (0..200_i64).prop_map(|k| format!("context has n && context.n <= {k}")),
        (0..100_u32).prop_map(|k| format!(
            "context.d.greaterThan(decimal(\"{}.{:02}\"))",
            k / 100,
            k % 100
        )),
        (0..100_u32).prop_map(|k| format!(
            "context has d && context.d.lessThan(decimal(\"{}.{:02}\"))",
            k / 100,
            k % 100
        )),
        prop::sample::select(vec!["a", "b", "c"]).prop_map(|v| format!("context.s == \"{v}\"")),
        prop::sample::select(vec!["a", "b"])
            .prop_map(|v| format!("context has s && context.s == \"{v}\"")),
        Just("context.b".to_owned()),
        Just("context has b && context.b".to_owned()),
        Just("true".to_owned()),
    ];
    prop_oneof![
        one.clone(),
        (one.clone(), one.clone()).prop_map(|(a, b)| format!("{a} && {b}")),
        (one.clone(), one).prop_map(|(a, b)| format!("({a}) || ({b})")),
    ]
}

fn policy() -> impl Strategy<Value = String> {
    (0..3_u8, condition()).prop_map(|(kind, condition)| match kind {
        0 => format!("forbid(principal, action, resource) when {{ {condition} }};"),
        1 => format!(
            "@reviewers(\"leads\") permit(principal, action, resource) when {{ {condition} }};"
        ),
        _ => {
            format!("@route(\"allow\") permit(principal, action, resource) when {{ {condition} }};")
        }
    })
}

/// The truth: typed values, each present or not.
#[derive(Debug, Clone)]
struct Truth {
    n: Option<i64>,
    d: Option<(i64, u32)>,
    s: Option<String>,
    b: Option<bool>,
}

fn truth() -> impl Strategy<Value = Truth> {
    (
        prop::option::of(0..250_i64),
        prop::option::of((0..3_i64, 0..100_u32)),
        prop::option::of(prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned)),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(n, d, s, b)| Truth { n, d, s, b })
}

/// How an attribute is written: 0 as is; 1-4 other ways.
type Writing = [u8; 4];

fn write(truth: &Truth, writing: Writing) -> String {
    let mut fields = Vec::new();
    if let Some(n) = truth.n {
        fields.push(match writing[0] {
            0 => format!("\"n\": {n}"),
            1 => format!("\"n\": {n}.0"),
            2 => format!("\"n\": {n}e0"),
            3 => format!("\"n\": \"{n}\""),
            _ => format!("\"n\": [{n}]"),
        });
    }
    if let Some((whole, cents)) = truth.d {
        fields.push(match writing[1] {
            0 | 1 => format!("\"d\": {whole}.{cents:02}"),
            2 => format!("\"d\": {}e-2", whole * 100 + i64::from(cents)),
            3 => format!("\"d\": \"{whole}.{cents:02}\""),
            _ => format!("\"d\": [{whole}.{cents:02}]"),
        });
    }
    if let Some(s) = &truth.s {
        fields.push(match writing[2] {
            0 | 1 => format!("\"s\": \"{s}\""),
            2 => "\"s\": 7".to_owned(),
            3 => format!("\"s\": [\"{s}\"]"),
            _ => format!("\"s\": {{\"v\": \"{s}\"}}"),
        });
    }
    if let Some(b) = truth.b {
        fields.push(match writing[3] {
            0 | 1 => format!("\"b\": {b}"),
            2 => format!("\"b\": \"{b}\""),
            3 => format!("\"b\": {}", u8::from(b)),
            _ => format!("\"b\": [{b}]"),
        });
    }
    format!("{{{}}}", fields.join(", "))
}

fn read(text: &str, shape: Option<&Shape>) -> Result<TypedInput, String> {
    let Ok(Value::Object(context)) = serde_json::from_str::<Value>(text) else {
        panic!("not an object: {text}")
    };
    typed_input(shape, "act", &context, &Map::new(), ShapeRule::WhenDeclared)
        .map_err(|e| e.to_string())
}

fn route_of(policies: &Policies, input: &TypedInput) -> loopgate_core::routing::Routing {
    let request = RoutingRequest {
        system: "s",
        action: "act",
        subject_type: "Account",
        subject_id: "a",
        input,
        confidence: Some(0.5),
        risk_tier: RiskTier::High,
        oversight: Oversight::InTheLoop,
        model_version: None,
    };
    let defaults = Defaults {
        route: Route::Review,
        review: ReviewPlan::default_review(),
    };
    route(policies, &request, &defaults)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn wrong_types_are_never_less_restrictive(
        texts in prop::collection::vec(policy(), 1..6),
        truth in truth(),
        writing in prop::array::uniform4(0..5_u8),
    ) {
        let text: String = texts
            .iter()
            .enumerate()
            .map(|(n, it)| format!("@id(\"p{n}\") {it}\n"))
            .collect();
        let policies = Policies::parse(&text).unwrap();
        let shape = shape();
        let typed = read(&write(&truth, [0; 4]), Some(&shape)).unwrap();
        let truth_route = route_of(&policies, &typed).route;
        let written = write(&truth, writing);
        let written_route = read(&written, Some(&shape)).ok().map(|input| route_of(&policies, &input).route);
        prop_assert!(
            rank(truth_route.into()) <= rank(written_route),
            "typed: {truth_route}, as written ({written}): {written_route:?}\n{text}"
        );

        // Without a shape: a forbid that fails to evaluate denies.
        if let Ok(input) = read(&written, None) {
            let routing = route_of(&policies, &input);
            let forbid_failed = routing.errors.iter().any(|error| {
                let n: usize = error.policy.trim_start_matches('p').parse().unwrap();
                texts[n].starts_with("forbid")
            });
            if forbid_failed {
                prop_assert_eq!(routing.route, Route::Deny, "{}\n{}", written, text);
            }
        }
    }

    #[test]
    fn whole_numbers_route_alike_however_written(
        texts in prop::collection::vec(policy(), 1..6),
        n in 0..250_i64,
        form in 0..4_u8,
    ) {
        let text = texts.join("\n");
        let policies = Policies::parse(&text).unwrap();
        let plain = route_of(&policies, &read(&format!("{{\"n\": {n}}}"), None).unwrap());
        let written = match form {
            0 => format!("{{\"n\": {n}.0}}"),
            1 => format!("{{\"n\": {n}e0}}"),
            2 => format!("{{\"n\": {}e-1}}", n * 10),
            _ => format!("{{\"n\": {n}.000}}"),
        };
        let other = route_of(&policies, &read(&written, None).unwrap());
        prop_assert_eq!(plain, other, "{}", written);
    }
}
