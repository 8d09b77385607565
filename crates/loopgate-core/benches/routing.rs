//! Routing with 1,000 policies spread over 100 actions and 10 systems:
//! the indexed `route` against evaluating the whole set.
//!
//! `cargo bench -p loopgate-core --bench routing`
#![allow(clippy::expect_used, clippy::panic, reason = "benchmark")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use loopgate_core::routing::{
    Defaults, Policies, ReviewPlan, RoutingRequest, ShapeRule, route, route_with_whole_set,
    typed_input,
};
use loopgate_core::{Oversight, RiskTier, Route};
use serde_json::{Map, json};

/// The binary's allocator, so the figures are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ACTIONS: usize = 100;
const SYSTEMS: usize = 10;
const POLICIES: usize = 1_000;

/// Ten policies per action, of the shapes the demo uses: amount bands,
/// confidence thresholds, subject attributes, some forbids.
fn policy_text() -> String {
    let mut text = String::new();
    for n in 0..POLICIES {
        let action = n % ACTIONS;
        let system = (n / ACTIONS) % SYSTEMS;
        let band = (n / ACTIONS) as i64 * 10_000;
        let policy = match n / ACTIONS % 4 {
            0 => format!(
                "@id(\"p{n}\") @route(\"allow\") @sample(\"0.05\") @reviewers(\"g{system}\")\n\
                 permit(principal == System::\"s{system}\", action == Action::\"a{action}\", resource)\n\
                 when {{ context has amount_minor && context.amount_minor < {band} && context.confidence.greaterThanOrEqual(decimal(\"0.9\")) }};\n"
            ),
            1 => format!(
                "@id(\"p{n}\") @reviewers(\"g{system}\") @sla(\"PT4H\") @escalate_to(\"leads\")\n\
                 permit(principal == System::\"s{system}\", action == Action::\"a{action}\", resource)\n\
                 when {{ context has amount_minor && context.amount_minor >= {band} }};\n"
            ),
            2 => format!(
                "@id(\"p{n}\") @reviewers(\"g{system}\") @approvals(\"2\")\n\
                 permit(principal, action == Action::\"a{action}\", resource)\n\
                 when {{ resource.attributes has region && resource.attributes.region == \"r{system}\" }};\n"
            ),
            _ => format!(
                "@id(\"p{n}\")\n\
                 forbid(principal == System::\"s{system}\", action == Action::\"a{action}\", resource)\n\
                 when {{ context has amount_minor && context.amount_minor > {} }};\n",
                band * 100
            ),
        };
        text.push_str(&policy);
    }
    text
}

fn bench(c: &mut Criterion) {
    let policies = Policies::parse(&policy_text()).expect("the generated set parses");
    assert_eq!(policies.ids().len(), POLICIES);
    let defaults = Defaults {
        route: Route::Review,
        review: ReviewPlan::default_review(),
    };
    let Some(context) = json!({"amount_minor": 25_000, "merchant": "m-17", "country": "DE"})
        .as_object()
        .cloned()
    else {
        return;
    };
    let attributes = json!({"region": "r3", "age_band": "30-39"})
        .as_object()
        .cloned()
        .unwrap_or_else(Map::new);
    let input = typed_input(None, "a42", &context, &attributes, ShapeRule::WhenDeclared)
        .expect("the context reads");
    let request = RoutingRequest {
        system: "s3",
        action: "a42",
        subject_type: "account",
        subject_id: "acct-7",
        input: &input,
        confidence: Some(0.93),
        risk_tier: RiskTier::High,
        oversight: Oversight::InTheLoop,
        model_version: Some("2.1"),
    };
    assert_eq!(
        route(&policies, &request, &defaults),
        route_with_whole_set(&policies, &request, &defaults)
    );
    // Each iteration reads the JSON context as a submission does: the
    // number rule and the error accounting are part of the cost.
    let route_json = |action: &str, set: fn(&Policies, &RoutingRequest<'_>, &Defaults) -> _| {
        let input = typed_input(
            None,
            action,
            black_box(&context),
            black_box(&attributes),
            ShapeRule::WhenDeclared,
        )
        .expect("the context reads");
        let request = RoutingRequest {
            action,
            input: &input,
            ..request
        };
        set(black_box(&policies), &request, &defaults)
    };
    let mut group = c.benchmark_group("routing/1000-policies");
    group.bench_function("indexed", |b| b.iter(|| route_json("a42", route)));
    group.bench_function("no-candidates", |b| {
        b.iter(|| route_json("not-in-any-policy", route))
    });
    group.bench_function("whole-set", |b| {
        b.iter(|| route_json("a42", route_with_whole_set))
    });
    group.bench_function("read-context-only", |b| {
        b.iter(|| {
            typed_input(
                None,
                "a42",
                black_box(&context),
                black_box(&attributes),
                ShapeRule::WhenDeclared,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
