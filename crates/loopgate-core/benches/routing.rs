//! Routing with 1,000 policies spread over 100 actions and 10 systems:
//! the indexed `route` against evaluating the whole set.
//!
//! `cargo bench -p loopgate-core --bench routing`
#![allow(clippy::expect_used, clippy::panic, reason = "benchmark")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use loopgate_core::routing::{
    Defaults, Policies, ReviewPlan, RoutingRequest, route, route_with_whole_set,
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
    let request = RoutingRequest {
        system: "s3",
        action: "a42",
        subject_type: "account",
        subject_id: "acct-7",
        subject_attributes: &attributes,
        context: &context,
        confidence: Some(0.93),
        risk_tier: RiskTier::High,
        oversight: Oversight::InTheLoop,
        model_version: Some("2.1"),
    };
    assert_eq!(
        route(&policies, &request, &defaults),
        route_with_whole_set(&policies, &request, &defaults)
    );
    let mut group = c.benchmark_group("routing/1000-policies");
    group.bench_function("indexed", |b| {
        b.iter(|| route(black_box(&policies), black_box(&request), &defaults))
    });
    let unmatched = RoutingRequest {
        action: "not-in-any-policy",
        ..request
    };
    group.bench_function("no-candidates", |b| {
        b.iter(|| route(black_box(&policies), black_box(&unmatched), &defaults))
    });
    group.bench_function("whole-set", |b| {
        b.iter(|| route_with_whole_set(black_box(&policies), black_box(&request), &defaults))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
